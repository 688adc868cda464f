"""Hard negatives: passages that look relevant to BM25 but are not cited.

Excluded for every query: its positives, every other passage of a positive document, every passage that stands
in for one of those (a kept duplicate whose ``aliases`` name them), and every passage of the document the query
was taken from. Negatives come from distinct documents, so one long decision cannot fill a query's quota.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.sources.ids import doc_id_of
from lexdpr_pipeline.text.passages import duplicate_groups


@dataclass
class NegativeStats:
    queries: int = 0
    wanted_per_query: int = 0
    short_rows: int = 0  # queries with fewer negatives than wanted (reported, kept)
    histogram: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "wanted_per_query": self.wanted_per_query,
            "short_rows": self.short_rows,
            "negatives_per_query": {str(k): v for k, v in sorted(self.histogram.items())},
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


def _blocked_sets(pairs: pl.DataFrame, excl: ExclusionIndex) -> list[set[str]]:
    """Per query: every passage that must never be its negative (see the module doc)."""
    out: list[set[str]] = []
    for pos, pos_docs, group, qpid in pairs.select(
        "positive_ids", "positive_doc_ids", "group_id", "query_passage_id"
    ).iter_rows():
        blocked = excl.exclusions(pos or [], [*(pos_docs or []), group])
        if qpid:
            blocked.add(qpid)
        out.append(blocked)
    return out


def _pick(candidates: Iterable[str], blocked: set[str], per_query: int) -> list[str]:
    """The first ``per_query`` allowed candidates, one per document."""
    chosen: list[str] = []
    seen_docs: set[str] = set()
    for pid in candidates:
        doc = doc_id_of(pid)
        if pid in blocked or doc in seen_docs:
            continue
        seen_docs.add(doc)
        chosen.append(pid)
        if len(chosen) == per_query:
            break
    return chosen


def _attach(pairs: pl.DataFrame, negatives: list[list[str]], per_query: int) -> tuple[pl.DataFrame, NegativeStats]:
    stats = NegativeStats(queries=pairs.height, wanted_per_query=per_query)
    for chosen in negatives:
        stats.histogram[len(chosen)] = stats.histogram.get(len(chosen), 0) + 1
        stats.short_rows += len(chosen) < per_query
    out = pairs.with_columns(
        pl.Series("negative_ids", negatives, dtype=pl.List(pl.String)),
        pl.Series("negative_doc_ids", [[doc_id_of(p) for p in n] for n in negatives], dtype=pl.List(pl.String)),
    )
    return out, stats


def mine_bm25_negatives(
    pairs: pl.DataFrame,
    merged: pl.DataFrame,
    index: BM25Index,
    *,
    per_query: int,
    candidates: int = 30,
    progress: bool = True,
) -> tuple[pl.DataFrame, NegativeStats]:
    """Add ``negative_ids`` and ``negative_doc_ids`` (best BM25 first) to ``pairs``."""
    exclude = _blocked_sets(pairs, ExclusionIndex(merged))
    texts = pairs["query_text"].to_list()
    k = max(candidates, per_query)
    hits = index.search_many(texts, k=k, exclude=exclude, n_threads=0, progress=progress)
    # Long, heavily chunked documents can fill the candidate list on their own: look deeper for those rows.
    short = [i for i, row in enumerate(hits) if len({doc_id_of(pid) for pid, _ in row}) < per_query and len(row) == k]
    if short:
        deeper = index.search_many([texts[i] for i in short], k=k * 8, exclude=[exclude[i] for i in short])
        for i, row in zip(short, deeper, strict=True):
            hits[i] = row
    negatives = [_pick((pid for pid, _ in row), blocked, per_query) for row, blocked in zip(hits, exclude, strict=True)]
    return _attach(pairs, negatives, per_query)


def mine_dense_negatives(
    pairs: pl.DataFrame,
    merged: pl.DataFrame,
    model,  # lexdpr_pipeline.models.biencoder.BiEncoder
    *,
    per_query: int,
    range_max: int = 50,
    relative_margin: float = 0.05,
    batch_size: int = 32,
) -> tuple[pl.DataFrame, NegativeStats]:
    """Dense hard negatives with sentence-transformers' ``mine_hard_negatives`` and the base model.

    ``relative_margin`` drops candidates scoring within that fraction of the positive's score — the likely false
    negatives (uncited but relevant passages). Mining asks for extra candidates, then applies the same exclusions
    and one-per-document rule as BM25 mining. Replaces ``negative_ids``/``negative_doc_ids``.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    excl = ExclusionIndex(merged)
    text_to_id = dict(zip(merged["text"].to_list(), merged["passage_id"].to_list(), strict=True))
    id_to_text = dict(zip(merged["passage_id"].to_list(), merged["text"].to_list(), strict=True))
    anchors = pairs["query_text"].to_list()
    positives = [id_to_text[p[0]] for p in pairs["positive_ids"].to_list()]
    mined = mine_hard_negatives(
        Dataset.from_dict({"anchor": anchors, "positive": positives}),
        model.model,
        corpus=merged["text"].to_list(),
        range_max=range_max,
        relative_margin=relative_margin,
        num_negatives=min(range_max, per_query * 4),
        sampling_strategy="top",
        query_prompt=model.template.query,
        corpus_prompt=model.template.passage,
        output_format="labeled-list",
        batch_size=batch_size,
        verbose=False,
    )
    by_anchor: dict[str, list[str]] = {}
    for row in mined:
        docs = [d for d, label in zip(row[mined.column_names[1]], row[mined.column_names[2]], strict=True) if not label]
        by_anchor.setdefault(row["anchor"], docs)
    negatives = [
        _pick((text_to_id[t] for t in by_anchor.get(anchor, []) if t in text_to_id), blocked, per_query)
        for anchor, blocked in zip(anchors, _blocked_sets(pairs, excl), strict=True)
    ]
    return _attach(pairs, negatives, per_query)
