"""Evaluation queries: one split of ``dataset_splits``, optionally a seeded sample stratified by query type.

Relevant passages are a query's ``positive_ids``. Precedent-derived queries (``prec``, ``cross_law``,
``cross_prec``) were taken from a decision's 판시사항, so that decision's own passages (its 판시사항 — the query
text itself —, its body chunks, and those of companion decisions sharing passages with it) would rank first without
being answers: they are excluded from the query's ranking. A positive is never excluded (a ``prec`` query's
positives are its own decision's 판결요지). Statute/admin-rule heading queries exclude nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lexdpr_pipeline.pairs.negatives import ExclusionIndex

#: Query types whose text comes from a decision: that decision's passages are excluded from their rankings.
SOURCE_DOCUMENT_TYPES = frozenset({"prec", "cross_law", "cross_prec"})
REQUIRED_COLUMNS = ("query_id", "query_type", "query_text", "group_id", "query_passage_id", "positive_ids", "split")


@dataclass
class EvalQueries:
    """The queries of one split, in a fixed order, with what counts as relevant and what is left out per query."""

    split: str
    ids: list[str]
    texts: list[str]
    types: list[str]
    relevant: dict[str, set[str]]
    exclude: dict[str, set[str]]
    source_of: dict[str, str]  # law | admrul | prec, or mixed: the corpus source(s) of the query's positives
    skipped: Counter[str] = field(default_factory=Counter)  # queries left out, by reason

    def __len__(self) -> int:
        return len(self.ids)

    def all_relevant(self) -> set[str]:
        return set().union(*self.relevant.values()) if self.relevant else set()

    def type_of(self) -> dict[str, str]:
        return dict(zip(self.ids, self.types, strict=True))


def source_of_passage(passage_id: str) -> str:
    """The corpus source a passage id names (``law:…`` → ``law``), by the id contract."""
    return passage_id.split(":", 1)[0]


def _source_of(positives: set[str]) -> str:
    sources = {source_of_passage(p) for p in positives}
    return sources.pop() if len(sources) == 1 else "mixed"


def _quotas(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Proportional allocation of ``n`` over groups (largest remainder), at least 1 per group, at most its size.

    With fewer than ``n`` rows in all it is every row; with more groups than ``n`` each group still gets 1.
    """
    total = sum(sizes.values())
    if total <= n:
        return dict(sizes)
    exact = {t: n * s / total for t, s in sizes.items()}
    quota = {t: min(sizes[t], max(1, int(exact[t]))) for t in sizes}
    while sum(quota.values()) < n:
        open_ = [t for t in sorted(sizes) if quota[t] < sizes[t]]
        quota[max(open_, key=lambda t: exact[t] - quota[t])] += 1
    while sum(quota.values()) > n and any(q > 1 for q in quota.values()):
        shrink = [t for t in sorted(sizes) if quota[t] > 1]
        quota[min(shrink, key=lambda t: exact[t] - quota[t])] -= 1
    return quota


def stratified_sample(frame: pl.DataFrame, n: int | None, seed: int, by: str = "query_type") -> pl.DataFrame:
    """At most ``n`` rows (``None``: all), proportional per ``by`` value with at least one each; the same inputs
    and seed always give the same rows (independent of the input row order)."""
    frame = frame.sort("query_id")
    if n is None or frame.height <= n:
        return frame
    if n <= 0:
        raise ValueError(f"max_queries must be positive, got {n}")
    sizes = dict(frame.group_by(by).len().iter_rows())
    rng = np.random.default_rng(seed)
    parts = []
    for value, quota in sorted(_quotas(sizes, n).items()):
        part = frame.filter(pl.col(by) == value)
        picked = np.sort(rng.choice(part.height, size=quota, replace=False))
        parts.append(part.select(pl.all().gather(picked.tolist())))
    return pl.concat(parts).sort("query_id")


def build_exclusion_index(merged_corpus: pl.DataFrame) -> ExclusionIndex:
    """Passages per document duplicate group (pairs' :class:`ExclusionIndex`); a frame without ``aliases`` is fine."""
    if "aliases" not in merged_corpus.columns:
        merged_corpus = merged_corpus.with_columns(pl.lit(None, pl.List(pl.String)).alias("aliases"))
    return ExclusionIndex(merged_corpus)


def eval_queries(
    splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    split: str,
    *,
    max_queries: int | None = None,
    seed: int = 13,
    exclude_query_document: bool = True,
    exclusion_index: ExclusionIndex | None = None,
) -> EvalQueries:
    """The queries of ``split`` (see the module doc). Positives missing from the corpus are dropped from a query's
    relevant set, and a query left with none is skipped; both are counted in ``skipped``."""
    missing = [c for c in REQUIRED_COLUMNS if c not in splits.columns]
    if missing:
        raise ValueError(f"dataset_splits lacks columns {missing}")
    rows = stratified_sample(splits.filter(pl.col("split") == split), max_queries, seed)
    passage_ids = set(merged_corpus["passage_id"].to_list())
    if exclude_query_document and exclusion_index is None:
        exclusion_index = build_exclusion_index(merged_corpus)
    out = EvalQueries(split, [], [], [], {}, {}, {})
    for qid, qtype, text, group, qpid, positives in rows.select(
        "query_id", "query_type", "query_text", "group_id", "query_passage_id", "positive_ids"
    ).iter_rows():
        given = set(positives or [])
        relevant = given & passage_ids
        if len(relevant) < len(given):
            out.skipped["positive not in corpus (dropped from relevant)"] += len(given) - len(relevant)
        if not relevant:
            out.skipped["query without a positive in the corpus"] += 1
            continue
        exclude: set[str] = set()
        if exclude_query_document and qtype in SOURCE_DOCUMENT_TYPES and exclusion_index is not None:
            exclude = exclusion_index.exclusions([qpid] if qpid else [], [group] if group else [])
            exclude = (exclude & passage_ids) - relevant
        out.ids.append(qid)
        out.texts.append(text)
        out.types.append(qtype)
        out.relevant[qid] = relevant
        out.exclude[qid] = exclude
        out.source_of[qid] = _source_of(relevant)
    return out
