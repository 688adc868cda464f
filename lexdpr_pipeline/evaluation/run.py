"""One evaluation end to end: queries per split, one shared corpus, every system ranked and scored, the report.

Each dense model encodes the corpus once and reuses the vectors for every split; BM25 reuses the full index only
when the eval corpus is the full corpus (else it indexes the sample).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from lexdpr_pipeline.evaluation.corpus import eval_corpus
from lexdpr_pipeline.evaluation.queries import EvalQueries, build_exclusion_index, eval_queries
from lexdpr_pipeline.evaluation.report import EvalReport, write_report
from lexdpr_pipeline.evaluation.retrievers import (
    Rankings,
    bm25_index_for,
    bm25_rankings,
    dense_rankings,
    encode_corpus,
)
from lexdpr_pipeline.evaluation.scoring import PER_QUERY_SCHEMA, evaluate_systems, table_schema
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import EmbeddingCache
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.settings import EvalSettings
from lexdpr_pipeline.storage import write_parquet

logger = logging.getLogger(__name__)

FINE_TUNED = "fine-tuned"
BASE = "base (zero-shot)"
BM25 = "bm25"
RANKS_FILE = "per_query_ranks.parquet"


@dataclass(frozen=True)
class EvalPlan:
    """What to evaluate on (the ``eval`` settings section, without Dagster)."""

    ks: tuple[int, ...] = (1, 5, 10, 100)
    splits: tuple[str, ...] = ("valid", "test")
    max_queries_per_split: int | None = None
    corpus_max_passages: int | None = None
    exclude_query_document: bool = True
    batch_size: int = 64
    seed: int = 13

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) <= 0:
            raise ValueError(f"eval.ks must be positive integers, got {list(self.ks)}")
        if not self.splits:
            raise ValueError("eval.splits is empty: nothing to evaluate")

    @property
    def depth(self) -> int:
        return max(self.ks)

    @classmethod
    def from_settings(cls, s: EvalSettings) -> EvalPlan:
        return cls(
            ks=tuple(sorted(set(s.ks))),
            splits=tuple(s.splits),
            max_queries_per_split=s.max_queries_per_split,
            corpus_max_passages=s.corpus_max_passages,
            exclude_query_document=s.exclude_query_document,
            batch_size=s.batch_size,
            seed=s.seed,
        )


@dataclass
class EvalRun:
    table: pl.DataFrame  # system, split, group, n_queries, metric columns
    per_query: pl.DataFrame  # PER_QUERY_SCHEMA
    corpus_size: int
    queries_per_split: dict[str, int]
    skipped: dict[str, dict[str, int]]  # split → reason → count
    timings_s: dict[str, float] = field(default_factory=dict)
    report: EvalReport | None = None
    ranks_path: Path | None = None

    def overall(self) -> dict[tuple[str, str], dict[str, float]]:
        """``(split, system)`` → overall mean metrics."""
        metrics = [c for c in self.table.columns if "@" in c]
        rows = self.table.filter(pl.col("group") == "all")
        return {(r["split"], r["system"]): {m: r[m] for m in metrics} for r in rows.iter_rows(named=True)}


def run_evaluation(
    models: Mapping[str, BiEncoder | Callable[[], BiEncoder]],
    splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    plan: EvalPlan,
    *,
    bm25: bool = True,
    full_bm25: Callable[[], BM25Index] | None = None,
    out_dir: Path | None = None,
    notes: Mapping[str, object] | None = None,
    progress: bool = True,
    embedding_caches: Mapping[str, EmbeddingCache] | None = None,
) -> EvalRun:
    """Score each dense model in ``models`` (name → model, or a loader called once) and, with ``bm25``, BM25, on
    ``plan.splits``. ``full_bm25`` loads the index over all of ``merged_corpus`` (used only for a full-corpus
    evaluation). With ``out_dir`` the per-query ranks and the report are written there. ``embedding_caches`` (name →
    that model's cache) spares re-encoding passages an earlier evaluation or embedding run already encoded: the
    zero-shot base model is then encoded once, not in every evaluation."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    excl = build_exclusion_index(merged_corpus) if plan.exclude_query_document else None
    queries: list[EvalQueries] = []
    skipped: dict[str, dict[str, int]] = {}
    for split in plan.splits:
        q = eval_queries(
            splits,
            merged_corpus,
            split,
            max_queries=plan.max_queries_per_split,
            seed=plan.seed,
            exclude_query_document=plan.exclude_query_document,
            exclusion_index=excl,
        )
        skipped[split] = dict(q.skipped)
        if not len(q):
            logger.warning("evaluation: split %r has no query to evaluate; skipped", split)
            skipped[split]["split without queries"] = 1
            continue
        queries.append(q)
    if not queries:
        raise ValueError(f"no queries to evaluate in splits {list(plan.splits)} (see dataset_splits)")
    corpus = eval_corpus(merged_corpus, queries, plan.corpus_max_passages, plan.seed)
    timings["prepare_s"] = time.perf_counter() - started
    logger.info("evaluation: %d passages, queries %s", corpus.height, {q.split: len(q) for q in queries})

    rankings: dict[str, dict[str, Rankings]] = {q.split: {} for q in queries}  # split → system → rankings
    for name, model_or_loader in models.items():
        t0 = time.perf_counter()
        model = model_or_loader if isinstance(model_or_loader, BiEncoder) else model_or_loader()
        vecs = encode_corpus(
            model,
            corpus,
            batch_size=plan.batch_size,
            progress=progress,
            cache=(embedding_caches or {}).get(name),
        )
        for q in queries:
            rankings[q.split][name], _ = dense_rankings(
                model, q, corpus, plan.depth, batch_size=plan.batch_size, progress=progress, passage_vecs=vecs
            )
        del model, vecs
        timings[f"{name}_s"] = time.perf_counter() - t0
    if bm25:
        t0 = time.perf_counter()
        full = full_bm25() if full_bm25 is not None and plan.corpus_max_passages is None else None
        index = bm25_index_for(corpus, full, progress=progress)
        for q in queries:
            rankings[q.split][BM25] = bm25_rankings(index, q, plan.depth, progress=progress)
        timings[f"{BM25}_s"] = time.perf_counter() - t0

    tables, ranks = [], []
    for q in queries:
        table, per_query = evaluate_systems(rankings[q.split], q, plan.ks)
        tables.append(table)
        ranks.append(per_query)
    run = EvalRun(
        table=pl.concat(tables) if tables else pl.DataFrame(schema=table_schema(plan.ks)),
        per_query=pl.concat(ranks) if ranks else pl.DataFrame(schema=PER_QUERY_SCHEMA),
        corpus_size=corpus.height,
        queries_per_split={q.split: len(q) for q in queries},
        skipped=skipped,
        timings_s=timings,
    )
    if out_dir is not None:
        run.ranks_path = write_parquet(run.per_query, Path(out_dir) / RANKS_FILE)
        excluded = {q.split: sum(len(e) for e in q.exclude.values()) for q in queries}
        run.report = write_report(
            run.table,
            Path(out_dir),
            notes={
                **(notes or {}),
                "eval corpus": f"{corpus.height} passages"
                + (
                    ""
                    if plan.corpus_max_passages is None
                    else f" (positives + seeded sample, cap {plan.corpus_max_passages})"
                ),
                "queries per split": run.queries_per_split,
                "excluded own-decision passages per split": excluded,
                "ks": list(plan.ks),
                "seed": plan.seed,
            },
        )
    timings["total_s"] = time.perf_counter() - started
    return run
