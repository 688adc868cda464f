"""Hard negatives: passages that look relevant (to BM25, or to the base model) but are not cited — and are not
likely false negatives either.

A mined candidate is dropped, and counted under the first rule that fires (:data:`RULES`), when it is

- ``positive``: one of the query's positives;
- ``positive_document``: another passage (chunk, section) of a positive's document, or a passage that stands in
  for one (a kept duplicate whose ``aliases`` name it) — :class:`ExclusionIndex`;
- ``query_document``: a passage of the document the query was taken from (its own decision, companions included);
- ``cited_by_query_decision``: a document the query's decision cites (``precedent_citations``) that is not a
  positive of this row's type — e.g. the cited precedents of a ``cross_law`` query, the cited articles of a
  ``prec`` query, or the articles of another ``[n]`` part of a numbered 판시사항;
- ``shares_citation``: a decision that cites one of the statute articles or precedents the query's decision cites,
  or cites the query's decision itself (it states the same rule: exactly what a new decision's citations are);
- ``near_duplicate``: text overlap with a positive at or above ``max_overlap`` (Jaccard of character 3-grams);
- ``dense_margin`` (dense miner): a base-model score within ``relative_margin`` of the positive's.

Citation rules need the citations table and apply to queries taken from a decision (``prec``, ``cross_law``,
``cross_prec``); heading queries have no citing decision. Negatives come from distinct documents, so one long
decision cannot fill a query's quota (a repeat document is skipped, not counted). Per row, the counts land in the
``negatives_removed`` struct column (the pairs report sums them by type); :class:`NegativeStats` has the totals.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.sources.ids import doc_id_of
from lexdpr_pipeline.text.passages import duplicate_groups

#: Why a mined candidate was not used, in the order the rules are tried (see the module doc).
RULES = (
    "positive",
    "positive_document",
    "query_document",
    "cited_by_query_decision",
    "shares_citation",
    "near_duplicate",
    "dense_margin",
)
REMOVED_COLUMN = "negatives_removed"
REMOVED_DTYPE = pl.Struct({rule: pl.Int32 for rule in RULES})
SHINGLE = 3  # characters per shingle of the near-duplicate test
_DECISION_QUERY = re.compile(r"^q:(?:prec|cross_law|cross_prec):(\d+)")


@dataclass
class NegativeStats:
    queries: int = 0
    wanted_per_query: int = 0
    short_rows: int = 0  # queries with fewer negatives than wanted (reported, kept)
    histogram: dict[int, int] = field(default_factory=dict)
    removed: Counter[str] = field(default_factory=Counter)  # candidates dropped, by rule
    removed_by_type: dict[str, Counter[str]] = field(default_factory=dict)  # query type → rule → candidates
    rules: dict[str, object] = field(default_factory=dict)  # the rule settings in effect

    def removed_by_rule(self) -> dict[str, int]:
        return {rule: int(self.removed.get(rule, 0)) for rule in RULES}

    def removed_markdown(self) -> str:
        """Candidates removed, rule × query type, as a markdown table."""
        types = sorted(self.removed_by_type)
        lines = ["| rule | " + " | ".join([*types, "all"]) + " |", "|" + "---|" * (len(types) + 2)]
        for rule, total in self.removed_by_rule().items():
            cells = [str(self.removed_by_type[t].get(rule, 0)) for t in types]
            lines.append(f"| {rule} | " + " | ".join([*cells, str(total)]) + " |")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "wanted_per_query": self.wanted_per_query,
            "short_rows": self.short_rows,
            "negatives_per_query": {str(k): v for k, v in sorted(self.histogram.items())},
            "removed_by_rule": self.removed_by_rule(),
            "removed_by_type": {
                t: {rule: int(c.get(rule, 0)) for rule in RULES} for t, c in sorted(self.removed_by_type.items())
            },
            "rules": self.rules,
        }


class ExclusionIndex:
    """Everything that must never be a negative for a given set of positive documents."""

    def __init__(self, merged: pl.DataFrame) -> None:
        self.groups = duplicate_groups(merged)
        # Passages per duplicate group: a document, its companions, and the kept passages standing in for them.
        self.group_passages: dict[str, set[str]] = defaultdict(set)
        for pid, doc, aliases in merged.select("passage_id", "doc_id", "aliases").iter_rows():
            self.group_passages[self.group_of(doc)].add(pid)
            for alias in aliases or []:
                self.group_passages[self.group_of(doc_id_of(alias))].add(pid)

    def group_of(self, doc: str) -> str:
        return self.groups.get(doc, doc)

    def exclusions(self, positive_ids: Sequence[str], docs: Sequence[str]) -> set[str]:
        out = set(positive_ids)
        for doc in docs:
            out |= self.group_passages.get(self.group_of(doc), set())
        return out


class CitationIndex:
    """What each decision cites: resolved ``precedent_citations`` rows (statute and case, former-law ones too),
    keyed and valued by duplicate group, so a companion decision or a stand-in passage counts as its group."""

    def __init__(self, citations: pl.DataFrame, group_of: Callable[[str], str]) -> None:
        self.group_of = group_of
        self.cites: dict[str, set[str]] = defaultdict(set)
        resolved = citations.filter((pl.col("status") == "resolved") & pl.col("target_id").is_not_null())
        for prec_id, target in resolved.select("prec_id", "target_id").iter_rows():
            self.cites[group_of(prec_id)].add(group_of(target))

    def cited_by(self, decisions: Iterable[str]) -> set[str]:
        """Groups of every document one of ``decisions`` cites."""
        out: set[str] = set()
        for d in decisions:
            out |= self.cites.get(self.group_of(d), set())
        return out

    def of(self, doc: str) -> set[str]:
        return self.cites.get(self.group_of(doc), set())


def shingles(text: str) -> frozenset[str]:
    """Character :data:`SHINGLE`-grams of ``text`` with whitespace runs collapsed (the text itself when shorter)."""
    t = " ".join(text.split())
    if len(t) <= SHINGLE:
        return frozenset({t}) if t else frozenset()
    return frozenset(t[i : i + SHINGLE] for i in range(len(t) - SHINGLE + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


class NearDuplicates:
    """``is_near(candidate, positives)``: Jaccard of character shingles ≥ ``threshold`` with any positive.

    Shingle sets are cached per passage (bounded); a size ratio below the threshold skips the set intersection
    (Jaccard ≤ min/max size)."""

    def __init__(self, texts: dict[str, str], threshold: float, cache_size: int = 100_000) -> None:
        self.texts = texts
        self.threshold = threshold
        self.cache_size = cache_size
        self._cache: dict[str, frozenset[str]] = {}

    def _shingles(self, pid: str) -> frozenset[str]:
        got = self._cache.get(pid)
        if got is None:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            got = self._cache[pid] = shingles(self.texts.get(pid, ""))
        return got

    def is_near(self, candidate: str, positives: Iterable[str]) -> bool:
        a = self._shingles(candidate)
        if not a:
            return False
        for pos in positives:
            b = self._shingles(pos)
            if not b or min(len(a), len(b)) < self.threshold * max(len(a), len(b)):
                continue
            if jaccard(a, b) >= self.threshold:
                return True
        return False


def query_decisions(query_id: str, group_id: str | None, query_passage_id: str | None) -> set[str]:
    """The decision(s) a query was taken from: its id's ``prec:`` serial, its group and its passage's document
    (a deduplicated 판시사항 lives on as a companion's passage). Empty for heading queries."""
    out = {d for d in (group_id, doc_id_of(query_passage_id) if query_passage_id else None) if d}
    m = _DECISION_QUERY.match(query_id or "")
    if m:
        out.add(f"prec:{int(m.group(1))}")
    return {d for d in out if d.startswith("prec:")}


class RowRules:
    """The drop rules for one query row: ``reason(pid)`` is the first rule that rejects ``pid``, or None."""

    def __init__(
        self, row: dict[str, Any], excl: ExclusionIndex, cites: CitationIndex | None, near: NearDuplicates | None
    ) -> None:
        self.excl, self.cites, self.near = excl, cites, near
        self.positives: list[str] = list(row["positive_ids"] or [])
        self.positive_set = set(self.positives)
        self.positive_doc = excl.exclusions([], list(row["positive_doc_ids"] or []))
        qpid, group = row["query_passage_id"], row["group_id"]
        self.query_doc = excl.exclusions([qpid] if qpid else [], [group] if group else [])
        self.decisions: set[str] = set()
        self.cited: set[str] = set()
        if cites is not None:
            self.decisions = {excl.group_of(d) for d in query_decisions(row["query_id"], group, qpid)}
            self.cited = cites.cited_by(self.decisions)

    def reason(self, pid: str) -> str | None:
        if pid in self.positive_set:
            return "positive"
        if pid in self.positive_doc:
            return "positive_document"
        if pid in self.query_doc:
            return "query_document"
        if self.decisions and self.cites is not None:
            group = self.excl.group_of(doc_id_of(pid))
            if group in self.cited:
                return "cited_by_query_decision"
            theirs = self.cites.of(group)
            if theirs and (theirs & self.cited or theirs & self.decisions):
                return "shares_citation"
        if self.near is not None and self.near.is_near(pid, self.positives):
            return "near_duplicate"
        return None


def _row_rules(
    pairs: pl.DataFrame,
    merged: pl.DataFrame,
    citations: pl.DataFrame | None,
    max_overlap: float | None,
) -> list[RowRules]:
    excl = ExclusionIndex(merged)
    cites = CitationIndex(citations, excl.group_of) if citations is not None else None
    near = None
    if max_overlap is not None:
        near = NearDuplicates(dict(merged.select("passage_id", "text").iter_rows()), max_overlap)
    cols = ("query_id", "group_id", "query_passage_id", "positive_ids", "positive_doc_ids")
    return [RowRules(row, excl, cites, near) for row in pairs.select(cols).iter_rows(named=True)]


def _pick(candidates: Iterable[tuple[str, bool]], rules: RowRules, per_query: int) -> tuple[list[str], Counter[str]]:
    """The first ``per_query`` allowed candidates, one per document, and what each rule removed on the way.

    ``candidates``: (passage id, too close to the positive's score) in rank order."""
    chosen: list[str] = []
    removed: Counter[str] = Counter()
    seen_docs: set[str] = set()
    if per_query <= 0:
        return chosen, removed
    for pid, too_close in candidates:
        doc = doc_id_of(pid)
        if doc in seen_docs:
            continue
        why = rules.reason(pid) or ("dense_margin" if too_close else None)
        if why is not None:
            removed[why] += 1
            continue
        seen_docs.add(doc)
        chosen.append(pid)
        if len(chosen) == per_query:
            break
    return chosen, removed


def _attach(
    pairs: pl.DataFrame,
    negatives: list[list[str]],
    removed: list[Counter[str]],
    per_query: int,
    rules: dict[str, object],
) -> tuple[pl.DataFrame, NegativeStats]:
    stats = NegativeStats(queries=pairs.height, wanted_per_query=per_query, rules=rules)
    for chosen in negatives:
        stats.histogram[len(chosen)] = stats.histogram.get(len(chosen), 0) + 1
        stats.short_rows += len(chosen) < per_query
    for qtype, counts in zip(pairs["query_type"].to_list(), removed, strict=True):
        stats.removed.update(counts)
        stats.removed_by_type.setdefault(qtype, Counter()).update(counts)
    out = pairs.with_columns(
        pl.Series("negative_ids", negatives, dtype=pl.List(pl.String)),
        pl.Series("negative_doc_ids", [[doc_id_of(p) for p in n] for n in negatives], dtype=pl.List(pl.String)),
        pl.Series(REMOVED_COLUMN, [{rule: c.get(rule, 0) for rule in RULES} for c in removed], dtype=REMOVED_DTYPE),
    )
    return out, stats


def mine_bm25_negatives(
    pairs: pl.DataFrame,
    merged: pl.DataFrame,
    index: BM25Index,
    *,
    per_query: int,
    candidates: int = 30,
    citations: pl.DataFrame | None = None,
    max_overlap: float | None = None,
    progress: bool = True,
) -> tuple[pl.DataFrame, NegativeStats]:
    """Add ``negative_ids`` and ``negative_doc_ids`` (best BM25 first) and ``negatives_removed`` to ``pairs``.

    ``citations`` (the ``precedent_citations`` table) turns on the citation rules, ``max_overlap`` the
    near-duplicate rule (module doc); None leaves them off."""
    row_rules = _row_rules(pairs, merged, citations, max_overlap)
    # Positives and the query's own passage can never be negatives: left out of the search itself. Everything the
    # other rules drop comes through the ranking, so the counts say what each rule removed.
    exclude = [
        r.positive_set | ({qpid} if qpid else set())
        for r, qpid in zip(row_rules, pairs["query_passage_id"].to_list(), strict=True)
    ]
    texts = pairs["query_text"].to_list()
    k = max(candidates, per_query)
    hits = index.search_many(texts, k=k, exclude=exclude, n_threads=0, progress=progress)
    picked = [_pick(((pid, False) for pid, _ in row), r, per_query) for row, r in zip(hits, row_rules, strict=True)]
    # Long, heavily chunked documents or dropped candidates can use up the list: look deeper for those rows.
    short = [i for i, row in enumerate(hits) if len(picked[i][0]) < per_query and len(row) == k]
    if short:
        deeper = index.search_many([texts[i] for i in short], k=k * 8, exclude=[exclude[i] for i in short])
        for i, row in zip(short, deeper, strict=True):
            picked[i] = _pick(((pid, False) for pid, _ in row), row_rules[i], per_query)
    rules = {"miner": "bm25", "citation_rules": citations is not None, "max_overlap": max_overlap}
    return _attach(pairs, [p[0] for p in picked], [p[1] for p in picked], per_query, rules)


def mine_dense_negatives(
    pairs: pl.DataFrame,
    merged: pl.DataFrame,
    model,  # lexdpr_pipeline.models.biencoder.BiEncoder
    *,
    per_query: int,
    range_max: int = 50,
    relative_margin: float = 0.05,
    citations: pl.DataFrame | None = None,
    max_overlap: float | None = None,
    batch_size: int = 32,
) -> tuple[pl.DataFrame, NegativeStats]:
    """Dense hard negatives with sentence-transformers' ``mine_hard_negatives`` and the base model.

    The ``range_max`` best candidates per query come back with their scores; ``relative_margin`` then drops those
    scoring above ``min positive score − |min positive score| × relative_margin`` (sentence-transformers' rule,
    applied here so it is counted as ``dense_margin``) — the likely false negatives. The positives of rows with the
    same query text count together (the library deduplicates queries). The other rules are as for BM25.
    Replaces ``negative_ids``/``negative_doc_ids``.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    row_rules = _row_rules(pairs, merged, citations, max_overlap)
    text_to_id = dict(zip(merged["text"].to_list(), merged["passage_id"].to_list(), strict=True))
    id_to_text = dict(zip(merged["passage_id"].to_list(), merged["text"].to_list(), strict=True))
    anchors = pairs["query_text"].to_list()
    positives = [id_to_text[p[0]] for p in pairs["positive_ids"].to_list()]
    mined = mine_hard_negatives(
        Dataset.from_dict({"anchor": anchors, "positive": positives}),
        model.model,
        corpus=merged["text"].to_list(),
        range_max=range_max,
        num_negatives=range_max,
        sampling_strategy="top",
        query_prompt=model.template.query,
        corpus_prompt=model.template.passage,
        output_format="labeled-list",
        output_scores=True,
        batch_size=batch_size,
        verbose=False,
    )
    texts_col = mined.column_names[1]
    by_anchor: dict[str, tuple[list[str], list[float]]] = {}
    min_positive: dict[str, float] = {}
    for row in mined:
        anchor, scores = row["anchor"], row["scores"]
        min_positive[anchor] = min(min_positive.get(anchor, float("inf")), scores[0])
        by_anchor.setdefault(anchor, (row[texts_col][1:], scores[1:]))

    def ranked(anchor: str) -> Iterable[tuple[str, bool]]:
        texts, scores = by_anchor.get(anchor, ([], []))
        floor = min_positive.get(anchor, float("inf"))
        threshold = floor - abs(floor) * relative_margin
        for text, score in zip(texts, scores, strict=True):
            if text in text_to_id:
                yield text_to_id[text], score > threshold

    picked = [_pick(ranked(anchor), r, per_query) for anchor, r in zip(anchors, row_rules, strict=True)]
    rules = {
        "miner": "dense",
        "citation_rules": citations is not None,
        "max_overlap": max_overlap,
        "dense_relative_margin": relative_margin,
    }
    return _attach(pairs, [p[0] for p in picked], [p[1] for p in picked], per_query, rules)
