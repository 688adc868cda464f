"""Queries with citation-linked positives — where LexDPR's supervision comes from.

Query types (each can be switched off, so strategies such as law-only vs law+admin vs all can be compared):

- ``law`` / ``admrul``: an article's heading as users search it (``민법 불법행위의 내용``) → the article.
- ``prec``: a decision's 판시사항 → the same decision's 판결요지.
- ``cross_law``: 판시사항 → the statute articles the decision cites (참조조문). A numbered 판시사항
  (``[1] … [2] …``) whose citations carry the same numbers gives one query per number.
- ``cross_prec``: 판시사항 → the earlier decisions it cites (참조판례), grouped the same way.

Every query carries ``group_id`` (the document it was derived from, or the canonical one of its companion
decisions when identical passages link them) so the splits keep a decision together, and
``query_passage_id`` (the passage its text came from) so mining and evaluation can leave that passage out.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import polars as pl

from lexdpr_pipeline.text.passages import alias_map, duplicate_groups

QUERY_TYPES = ("law", "admrul", "prec", "cross_law", "cross_prec")

PAIR_SCHEMA = pl.Schema(
    {
        "query_id": pl.String(),
        "query_type": pl.String(),
        "query_text": pl.String(),
        "group_id": pl.String(),  # the document the query derives from (keeps a decision in one split)
        "group_date": pl.Date(),  # 선고일자 of that decision (None for statute queries)
        "query_passage_id": pl.String(),  # the passage the query text was taken from (None for heading queries)
        "positive_ids": pl.List(pl.String()),  # passage ids in merged_corpus
        "positive_doc_ids": pl.List(pl.String()),
        "former_citation": pl.Boolean(),  # some positive comes from a 구법 (former version) citation
    }
)


@dataclass(frozen=True)
class QueryConfig:
    query_types: tuple[str, ...] = QUERY_TYPES
    split_numbered_holdings: bool = True
    include_former_citations: bool = True  # 구법 citations resolve to the current article (flagged)
    min_query_chars: int = 4

    def __post_init__(self) -> None:
        unknown = set(self.query_types) - set(QUERY_TYPES)
        if unknown:
            raise ValueError(f"unknown query types {sorted(unknown)}; choose from {QUERY_TYPES}")


@dataclass
class QueryStats:
    queries: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"queries": dict(self.queries), "skipped": dict(self.skipped)}


_GROUP_MARK = re.compile(r"\[\s*(\d{1,3})\s*\]")
_LETTERS = "가나다라마바사아자차카타파하"
_LETTER_MARK = re.compile(r"(?:^|(?<=\s))([가나다라마바사아자차카타파하])\s*\.\s")


def numbered_parts(text: str) -> dict[int, str]:
    """``[1] A [2] B`` (or the older ``가. A 나. B``) → ``{1: "A", 2: "B"}``; unnumbered text → ``{}``.

    The numbers match the groups the citation parser gives 참조조문/참조판례 (``가.`` = 1, ``나.`` = 2, …).
    """
    marks = [(m.start(), m.end(), int(m.group(1))) for m in _GROUP_MARK.finditer(text)]
    if not marks:
        # Letter labels only count in sequence (가, 나, 다 …), so a stray "다." inside a sentence is not a mark.
        expected = 0
        for m in _LETTER_MARK.finditer(text):
            if expected < len(_LETTERS) and m.group(1) == _LETTERS[expected]:
                marks.append((m.start(), m.end(), expected + 1))
                expected += 1
        if len(marks) < 2:
            return {}
    if not marks or text[: marks[0][0]].strip():
        return {}
    parts: dict[int, str] = {}
    for i, (_start, end, number) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        chunk = text[end:stop].strip()
        if chunk:
            parts.setdefault(number, chunk)
    return parts


class CorpusView:
    """What the query builder needs to know about ``merged_corpus``: passages per document, aliases, sections."""

    def __init__(self, merged: pl.DataFrame) -> None:
        by_chunk = merged.sort("doc_id", "chunk_index")
        self.doc_passages: dict[str, list[str]] = {
            doc: pids for doc, pids in by_chunk.group_by("doc_id", maintain_order=True).agg("passage_id").iter_rows()
        }
        self.aliases = alias_map(merged)
        self.groups = duplicate_groups(merged)
        # (doc, section) → its passages in order (a long 판시사항/판결요지 is chunked into several).
        self.section_passages: dict[tuple[str, str], list[str]] = defaultdict(list)
        ordered = merged.sort("doc_id", "chunk_index").select("passage_id", "doc_id", "section")
        for pid, doc, section in ordered.iter_rows():
            if section in ("holdings", "summary"):
                self.section_passages[(doc, section)].append(pid)
        # A dropped duplicate's section is still reachable through its alias.
        self.passage_ids = set(merged["passage_id"])

    def group_of(self, doc_id: str) -> str:
        """The canonical document of ``doc_id``'s duplicate group (itself when it has no duplicates)."""
        return self.groups.get(doc_id, doc_id)

    def passages_of(self, doc_id: str) -> list[str]:
        if doc_id in self.doc_passages:
            return self.doc_passages[doc_id]
        alias = self.aliases.get(doc_id)
        return [alias] if alias else []

    def resolve_passage(self, passage_id: str) -> str | None:
        if passage_id in self.passage_ids:
            return passage_id
        return self.aliases.get(passage_id)


def _row(
    qid: str,
    qtype: str,
    text: str,
    group_id: str,
    group_date: object,
    query_pid: str | None,
    positives: list[str],
    pos_docs: list[str],
    former: bool = False,
) -> dict[str, object]:
    return {
        "query_id": qid,
        "query_type": qtype,
        "query_text": " ".join(text.split()),  # the mirror keeps source line breaks and indentation
        "group_id": group_id,
        "group_date": group_date,
        "query_passage_id": query_pid,
        "positive_ids": positives,
        "positive_doc_ids": pos_docs,
        "former_citation": former,
    }


def heading_queries(
    articles: pl.DataFrame, *, qtype: str, id_col: str, name_col: str, view: CorpusView, stats: QueryStats
) -> list[dict[str, object]]:
    """``{law name} {article title}`` → the article (its passages in the corpus)."""
    rows = []
    for doc_id, name, title in articles.select(id_col, name_col, "article_title").iter_rows():
        if not title:
            stats.skipped[f"{qtype}: article without title"] += 1
            continue
        positives = view.passages_of(doc_id)
        if not positives:
            stats.skipped[f"{qtype}: article not in corpus (deleted/stub)"] += 1
            continue
        text = f"{name} {title}"
        rows.append(_row(f"q:{doc_id}", qtype, text, doc_id, None, None, positives, [doc_id]))
    stats.queries[qtype] += len(rows)
    return rows


def _union(*maps: dict[str, bool]) -> dict[str, bool]:
    """Union of target → former-flag maps (a target is former if any citation of it was)."""
    out: dict[str, bool] = {}
    for m in maps:
        for target, former in m.items():
            out[target] = out.get(target, False) or former
    return out


def _targets_by_group(citations: pl.DataFrame, kind: str, include_former: bool) -> dict[str, dict[int | None, dict]]:
    """prec_id → group (None = unnumbered) → {target_id: former} for resolved citations of one kind."""
    out: dict[str, dict[int | None, dict[str, bool]]] = {}
    sel = citations.filter((pl.col("kind") == kind) & (pl.col("status") == "resolved"))
    if not include_former:
        sel = sel.filter(~pl.col("former"))
    for prec_id, groups, target, former in sel.select("prec_id", "groups", "target_id", "former").iter_rows():
        per = out.setdefault(prec_id, {})
        for g in groups or [None]:
            slot = per.setdefault(g, {})
            slot[target] = slot.get(target, False) or bool(former)
    return out


def precedent_queries(
    raw_precedents: pl.DataFrame,
    citations: pl.DataFrame,
    *,
    config: QueryConfig,
    view: CorpusView,
    stats: QueryStats,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    wanted = set(config.query_types)
    targets = {
        "cross_law": _targets_by_group(citations, "statute", config.include_former_citations),
        "cross_prec": _targets_by_group(citations, "case", config.include_former_citations),
    }
    for prec_id, holdings, date in raw_precedents.select("prec_id", "holdings", "decision_date").iter_rows():
        holdings = (holdings or "").strip()
        if len(holdings) < config.min_query_chars:
            stats.skipped["precedent without 판시사항"] += 1
            continue
        group = view.group_of(prec_id)  # companion decisions share a group (and so a split)
        holdings_pids = view.section_passages.get((prec_id, "holdings"))
        # A 판시사항 identical to another decision's was deduplicated: its text lives on as that passage.
        holdings_pid = holdings_pids[0] if holdings_pids else view.resolve_passage(f"{prec_id}#0")
        if "prec" in wanted:
            summary_pids = view.section_passages.get((prec_id, "summary"))
            if not summary_pids:
                stats.skipped["prec: no 판결요지 passage (missing, or same text as 판시사항)"] += 1
            else:
                qid = f"q:prec:{prec_id[5:]}"
                rows.append(_row(qid, "prec", holdings, group, date, holdings_pid, summary_pids, [prec_id]))
                stats.queries["prec"] += 1
        parts = numbered_parts(holdings) if config.split_numbered_holdings else {}
        for qtype, kind_targets in targets.items():
            if qtype not in wanted:
                continue
            per_group = kind_targets.get(prec_id)
            if not per_group:
                stats.skipped[f"{qtype}: no resolved citation"] += 1
                continue
            numbered = {g for g in per_group if g is not None}
            if parts and numbered and numbered <= set(parts):
                # Citations outside any number apply to every part.
                shared = per_group.get(None, {})
                queries = [(f":{g}", parts[g], _union(per_group[g], shared)) for g in sorted(numbered)]
            else:
                queries = [("", holdings, _union(*per_group.values()))]
            for suffix, text, target_map in queries:
                docs = sorted(d for d in target_map if d != prec_id)
                # Two cited documents can share a passage (one was deduplicated into the other): list it once.
                positives = list(dict.fromkeys(p for d in docs for p in view.passages_of(d)))
                kept_docs = [d for d in docs if view.passages_of(d)]
                if len(kept_docs) < len(docs):
                    stats.skipped[f"{qtype}: cited target not in corpus (deleted/stub)"] += len(docs) - len(kept_docs)
                if not positives:
                    stats.skipped[f"{qtype}: query with no target in corpus"] += 1
                    continue
                former = any(target_map[d] for d in kept_docs)
                rows.append(
                    _row(
                        f"q:{qtype}:{prec_id[5:]}{suffix}",
                        qtype,
                        text,
                        group,
                        date,
                        holdings_pid,
                        positives,
                        kept_docs,
                        former,
                    )
                )
                stats.queries[qtype] += 1
    return rows


def build_queries(
    raw_statutes: pl.DataFrame,
    raw_admin_rules: pl.DataFrame,
    raw_precedents: pl.DataFrame,
    citations: pl.DataFrame,
    merged: pl.DataFrame,
    config: QueryConfig,
) -> tuple[pl.DataFrame, QueryStats]:
    """All enabled query types → one table in :data:`PAIR_SCHEMA` (negatives are mined separately)."""
    view = CorpusView(merged)
    stats = QueryStats()
    rows: list[dict[str, object]] = []
    if "law" in config.query_types:
        rows += heading_queries(
            raw_statutes, qtype="law", id_col="article_id", name_col="law_name", view=view, stats=stats
        )
    if "admrul" in config.query_types:
        rows += heading_queries(
            raw_admin_rules, qtype="admrul", id_col="article_id", name_col="rule_name", view=view, stats=stats
        )
    if set(config.query_types) & {"prec", "cross_law", "cross_prec"}:
        rows += precedent_queries(raw_precedents, citations, config=config, view=view, stats=stats)
    frame = pl.DataFrame(rows, schema=PAIR_SCHEMA, orient="row") if rows else pl.DataFrame(schema=PAIR_SCHEMA)
    dupes = frame.height - frame["query_id"].n_unique()
    if dupes:
        raise ValueError(f"{dupes} duplicate query ids: the id scheme is broken")
    return frame.sort("query_id"), stats
