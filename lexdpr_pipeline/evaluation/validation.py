"""A quick dense validation for training-time early stopping: a fixed query sample over a fixed small corpus."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from lexdpr_pipeline.evaluation.corpus import eval_corpus
from lexdpr_pipeline.evaluation.queries import eval_queries
from lexdpr_pipeline.evaluation.retrievers import dense_rankings
from lexdpr_pipeline.metrics.retrieval import evaluate_rankings
from lexdpr_pipeline.models.biencoder import BiEncoder


def validate_dense(
    model: BiEncoder,
    splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    *,
    split: str = "valid",
    max_queries: int | None = 300,
    corpus_max_passages: int | None = 5000,
    ks: Iterable[int] = (1, 5, 10, 100),
    seed: int = 13,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, float]:
    """Mean metrics (``{"ndcg@10": …}``) of ``model`` on a seeded stratified sample of ``split``'s queries over
    their positives + a seeded sample of the corpus; the same inputs always give the same queries and passages.
    Raises ``ValueError`` when the split has no scorable query."""
    ks = tuple(sorted(set(ks)))
    queries = eval_queries(splits, merged_corpus, split, max_queries=max_queries, seed=seed)
    if not len(queries):
        raise ValueError(f"split {split!r} has no query with a positive in the corpus; nothing to validate on")
    corpus = eval_corpus(merged_corpus, [queries], corpus_max_passages, seed)
    rankings, _ = dense_rankings(model, queries, corpus, max(ks), batch_size=batch_size, progress=progress)
    return evaluate_rankings(rankings, queries.relevant, ks).metrics
