"""Passages: what the retriever indexes and the bi-encoder is trained on.

- Statutes and admin rules: one passage per article, reading the way lawyers cite —
  ``민법 제750조(불법행위의 내용) 고의 또는 과실로 …`` — 항/호/목 kept in order. Long articles are chunked, and each
  chunk repeats the citation header so it stands on its own.
- Precedents: 판시사항 and 판결요지 are passages of their own (chunked only when over budget); 판례내용 is chunked.

Ids follow the contract: an unchunked article's passage id is its doc id (``law:001706:750``); a document with
several passages numbers them ``{doc_id}#k``. Deleted articles, empty texts and stubs are filtered and counted.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from lexdpr_pipeline.sources.ids import chunk_id
from lexdpr_pipeline.text.chunking import TokenCounter, chunk_spans

PASSAGE_SCHEMA = pl.Schema(
    {
        "passage_id": pl.String(),
        "doc_id": pl.String(),
        "source": pl.String(),  # law | admrul | prec
        "section": pl.String(),  # article | holdings (판시사항) | summary (판결요지) | body (판례내용)
        "chunk_index": pl.Int32(),  # k within the document (0 for a single passage)
        "n_chunks": pl.Int32(),  # passages the document has
        "title": pl.String(),
        "text": pl.String(),
        "n_tokens": pl.Int32(),  # with the configured tokenizer, text only (no template, no special tokens)
        "law_id": pl.String(),  # 법령ID / 행정규칙ID
        "law_name": pl.String(),  # 법령명 / 행정규칙명
        "law_kind": pl.String(),  # 법령구분 / 행정규칙종류
        "article_key": pl.String(),  # "750", "10-2"
        "effective_date": pl.Date(),  # 시행일자
        "court": pl.String(),
        "case_type": pl.String(),  # 사건종류
        "case_no": pl.String(),  # 사건번호
        "decision_date": pl.Date(),  # 선고일자
        "content_hash": pl.String(),
    }
)


@dataclass(frozen=True)
class PassageConfig:
    max_tokens: int = 256  # passage budget in model tokens (the template prefix and special tokens come on top)
    overlap: int = 32
    min_body_chars: int = 8  # shorter article bodies are stubs
    prec_body_max_chunks: int | None = None  # cap 판례내용 chunks per decision (None: all)

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError(f"text.max_tokens must be at least 16, got {self.max_tokens}")
        if not 0 <= self.overlap < self.max_tokens // 2:
            raise ValueError(f"text.overlap must be in [0, max_tokens/2), got {self.overlap}")
        if self.prec_body_max_chunks is not None and self.prec_body_max_chunks < 0:
            raise ValueError("text.prec_body_max_chunks must be >= 0 or None")


@dataclass
class PassageStats:
    documents: int = 0
    passages: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    chunks_per_doc: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "documents": self.documents,
            "passages": self.passages,
            "dropped": dict(self.dropped),
            "chunks_per_doc": {str(k): v for k, v in sorted(self.chunks_per_doc.items())},
        }


_WS = re.compile(r"\s+")
# Articles that only point elsewhere: "종전 제192조의4는 제192조의7로 이동 <…>", "[제목 변경]"-only, etc.
_POINTER = re.compile(
    r"^(?:\[?종전\s*)?제\s*\d+\s*조(?:의\s*\d+)?\S*\s*(?:은|는)?\s*제\s*\d+\s*조(?:의\s*\d+)?\S*(?:으로|로)\s*이동"
)
_DELETED = re.compile(r"^\s*삭제\s*(?:<[^>]*>\s*)*$")


def content_hash(text: str) -> str:
    """Hash of the text with whitespace collapsed: equal texts (modulo spacing) dedupe."""
    return hashlib.sha256(_WS.sub(" ", text).strip().encode("utf-8")).hexdigest()[:32]


def article_label(number: int, branch: int) -> str:
    return f"제{number}조의{branch}" if branch else f"제{number}조"


def statute_header(law_name: str, number: int, branch: int, title: str) -> str:
    """``민법 제750조(불법행위의 내용)`` — how a lawyer cites the article."""
    return f"{law_name} {article_label(number, branch)}" + (f"({title})" if title else "")


def stub_reason(body: str, is_deleted: bool, min_chars: int) -> str | None:
    """Why an article body is not a passage (``None`` when it is one)."""
    stripped = body.strip()
    if is_deleted or _DELETED.match(stripped):
        return "deleted"
    if not stripped:
        return "empty"
    if _POINTER.match(stripped) or len(_WS.sub("", stripped)) < min_chars:
        return "stub"
    return None


def _row(**values: object) -> dict[str, object]:
    return {name: values.get(name) for name in PASSAGE_SCHEMA.names()}


def _finish(rows: list[dict[str, object]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=PASSAGE_SCHEMA, orient="row") if rows else pl.DataFrame(schema=PASSAGE_SCHEMA)
    return frame.sort("passage_id")


def _article_passages(
    records: Iterable[dict[str, object]],
    *,
    source: str,
    id_col: str,
    law_id_col: str,
    law_name_col: str,
    law_kind_col: str,
    counter: TokenCounter,
    config: PassageConfig,
) -> tuple[pl.DataFrame, PassageStats]:
    stats = PassageStats()
    kept: list[tuple[dict[str, object], str, str]] = []
    for rec in records:
        stats.documents += 1
        body = str(rec["text"] or "")
        reason = stub_reason(body, bool(rec["is_deleted"]), config.min_body_chars)
        if reason:
            stats.dropped[reason] += 1
            continue
        header = statute_header(
            str(rec[law_name_col]), int(rec["article_no"]), int(rec["article_branch"]), str(rec["article_title"] or "")
        )
        kept.append((rec, header, body.strip()))
    header_spans = counter.spans_many([h for _, h, _ in kept])
    body_spans = counter.spans_many([b for _, _, b in kept])
    rows: list[dict[str, object]] = []
    for (rec, header, body), h_spans, b_spans in zip(kept, header_spans, body_spans, strict=True):
        budget = max(config.max_tokens - len(h_spans), config.max_tokens // 4)
        chunks = chunk_spans(body, b_spans, budget, min(config.overlap, budget - 1))
        doc_id = str(rec[id_col])
        stats.chunks_per_doc[len(chunks)] += 1
        for k, ch in enumerate(chunks):
            text = f"{header} {body[ch.start : ch.end].strip()}"
            rows.append(
                _row(
                    passage_id=doc_id if len(chunks) == 1 else chunk_id(doc_id, k),
                    doc_id=doc_id,
                    source=source,
                    section="article",
                    chunk_index=k,
                    n_chunks=len(chunks),
                    title=header,
                    text=text,
                    n_tokens=len(h_spans) + ch.n_tokens,
                    law_id=rec[law_id_col],
                    law_name=rec[law_name_col],
                    law_kind=rec[law_kind_col],
                    article_key=rec["article_key"],
                    effective_date=rec["effective_date"],
                    content_hash=content_hash(text),
                )
            )
    stats.passages = len(rows)
    return _finish(rows), stats


def statute_passages(
    raw_statutes: pl.DataFrame, counter: TokenCounter, config: PassageConfig
) -> tuple[pl.DataFrame, PassageStats]:
    return _article_passages(
        raw_statutes.iter_rows(named=True),
        source="law",
        id_col="article_id",
        law_id_col="law_id",
        law_name_col="law_name",
        law_kind_col="law_kind",
        counter=counter,
        config=config,
    )


def admin_rule_passages(
    raw_admin_rules: pl.DataFrame, counter: TokenCounter, config: PassageConfig
) -> tuple[pl.DataFrame, PassageStats]:
    return _article_passages(
        raw_admin_rules.iter_rows(named=True),
        source="admrul",
        id_col="article_id",
        law_id_col="rule_id",
        law_name_col="rule_name",
        law_kind_col="rule_kind",
        counter=counter,
        config=config,
    )


def precedent_title(rec: dict[str, object]) -> str:
    """``대법원 2020. 8. 20. 선고 2017두52153 판결 [부당해고구제재심판정취소]``."""
    date = rec.get("decision_date")
    when = f"{date.year}. {date.month}. {date.day}. 선고 " if date else ""  # type: ignore[union-attr]
    kind = f" {rec['judgment_type']}" if rec.get("judgment_type") else ""  # the mirror does not say 판결/결정
    return f"{rec['court']} {when}{rec['case_no']}{kind} [{str(rec['case_name']).strip()}]".strip()


def precedent_passages(
    raw_precedents: pl.DataFrame, counter: TokenCounter, config: PassageConfig
) -> tuple[pl.DataFrame, PassageStats]:
    """판시사항 and 판결요지 as passages of their own, 판례내용 in overlapping chunks (all within the budget)."""
    stats = PassageStats()
    records = list(raw_precedents.iter_rows(named=True))
    bodies = [str(r["body"] or "").strip() for r in records]
    body_spans = counter.spans_many(bodies)
    short_texts = [t for r in records for t in (str(r["holdings"] or "").strip(), str(r["summary"] or "").strip())]
    short_spans = iter(counter.spans_many(short_texts))
    rows: list[dict[str, object]] = []
    for rec, body, b_spans in zip(records, bodies, body_spans, strict=True):
        stats.documents += 1
        doc_id = str(rec["prec_id"])
        parts: list[tuple[str, str, int]] = []
        for section in ("holdings", "summary"):
            text = str(rec[section] or "").strip()
            spans = next(short_spans)
            if not text:
                stats.dropped[f"empty {section}"] += 1
                continue
            # Usually one passage; a 판시사항/판결요지 longer than the budget is chunked rather than truncated.
            chunks = chunk_spans(text, spans, config.max_tokens, config.overlap)
            parts += [(section, text[c.start : c.end].strip(), c.n_tokens) for c in chunks]
        if body:
            chunks = chunk_spans(body, b_spans, config.max_tokens, config.overlap)
            if config.prec_body_max_chunks is not None and len(chunks) > config.prec_body_max_chunks:
                stats.dropped["body chunks over cap"] += len(chunks) - config.prec_body_max_chunks
                chunks = chunks[: config.prec_body_max_chunks]
            parts += [("body", body[c.start : c.end].strip(), c.n_tokens) for c in chunks]
        else:
            stats.dropped["empty body"] += 1
        if not parts:
            stats.dropped["no text at all"] += 1
            continue
        title = precedent_title(rec)
        stats.chunks_per_doc[len(parts)] += 1
        for k, (section, text, n_tokens) in enumerate(parts):
            rows.append(
                _row(
                    passage_id=chunk_id(doc_id, k),
                    doc_id=doc_id,
                    source="prec",
                    section=section,
                    chunk_index=k,
                    n_chunks=len(parts),
                    title=title,
                    text=text,
                    n_tokens=n_tokens,
                    court=rec["court"],
                    case_type=rec["case_type"],
                    case_no=rec["case_no"],
                    decision_date=rec["decision_date"],
                    content_hash=content_hash(text),
                )
            )
    stats.passages = len(rows)
    return _finish(rows), stats


_SOURCE_RANK = {"law": 0, "admrul": 1, "prec": 2}


def merge_corpus(frames: Sequence[pl.DataFrame]) -> tuple[pl.DataFrame, dict[str, int]]:
    """Concatenate passage tables and drop passages whose text repeats one already kept.

    The kept passage (statutes before admin rules before precedents, then the smallest id) lists the ids it
    stands for in ``aliases``, so a citation to a dropped passage or document still finds its text.
    """
    allp = pl.concat([f.select(PASSAGE_SCHEMA.names()) for f in frames], how="vertical")
    ranked = allp.with_columns(pl.col("source").replace_strict(_SOURCE_RANK, return_dtype=pl.Int8).alias("_rank"))
    ranked = ranked.sort(["content_hash", "_rank", "passage_id"])
    aliases = (
        ranked.group_by("content_hash", maintain_order=True)
        .agg(pl.col("passage_id").first().alias("passage_id"), pl.col("passage_id").slice(1).alias("aliases"))
        .select("passage_id", "aliases")
    )
    merged = (
        ranked.unique("content_hash", keep="first", maintain_order=True)
        .drop("_rank")
        .join(aliases, on="passage_id", how="left")
        .sort("passage_id")
    )
    stats = {"input_passages": allp.height, "kept": merged.height, "duplicates_dropped": allp.height - merged.height}
    return merged, stats


def alias_map(merged: pl.DataFrame) -> dict[str, str]:
    """Dropped passage id → kept passage id, plus dropped document id → a kept passage id for documents none of
    whose passages survived deduplication."""
    mapping: dict[str, str] = {}
    for pid, aliases in merged.select("passage_id", "aliases").iter_rows():
        for alias in aliases or []:
            mapping[alias] = pid
    kept_docs = set(merged["doc_id"])
    for alias, pid in list(mapping.items()):
        doc = alias.split("#", 1)[0]
        if doc not in kept_docs:
            mapping.setdefault(doc, pid)
    return mapping


def duplicate_groups(merged: pl.DataFrame) -> dict[str, str]:
    """Document id → the canonical id of its group of documents linked by deduplicated passages.

    Companion decisions (the same ruling filed under two case numbers, or identical 판시사항) end up in one group,
    so splits keep them together and negative mining never uses one as a "negative" for the other. Documents
    without duplicates map to themselves.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for doc, aliases in merged.select("doc_id", "aliases").iter_rows():
        for alias in aliases or []:
            a, b = find(doc), find(alias.split("#", 1)[0])
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {doc: find(doc) for doc in parent}
