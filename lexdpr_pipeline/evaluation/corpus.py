"""The corpus an evaluation searches: all of ``merged_corpus``, or every positive plus a seeded random sample.

The sample is uniform over the non-positive passages — not mined hard negatives — so it favours neither the dense
model nor BM25. Scores on a sampled corpus are higher than on the full one; compare systems on the same corpus only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import polars as pl

from lexdpr_pipeline.evaluation.queries import EvalQueries

logger = logging.getLogger(__name__)


def eval_corpus(
    merged_corpus: pl.DataFrame,
    queries_list: Iterable[EvalQueries],
    max_passages: int | None,
    seed: int = 13,
) -> pl.DataFrame:
    """``None``: the whole corpus. ``N``: every positive of the given queries + a seeded uniform sample of the rest,
    ``N`` passages in all (more only when the positives alone exceed ``N``), sorted by ``passage_id``."""
    if max_passages is None:
        return merged_corpus
    if max_passages <= 0:
        raise ValueError(f"corpus_max_passages must be positive or None, got {max_passages}")
    positives: set[str] = set()
    for queries in queries_list:
        positives |= queries.all_relevant()
    is_positive = pl.col("passage_id").is_in(sorted(positives))
    kept = merged_corpus.filter(is_positive)
    rest = merged_corpus.filter(~is_positive).sort("passage_id")
    n_rest = max(0, max_passages - kept.height)
    if kept.height > max_passages:
        logger.warning(
            "eval corpus: %d positives exceed corpus_max_passages=%d; keeping all of them", kept.height, max_passages
        )
    if n_rest < rest.height:
        picked = np.sort(np.random.default_rng(seed).choice(rest.height, size=n_rest, replace=False))
        rest = rest.select(pl.all().gather(picked.tolist()))
    return pl.concat([kept, rest]).sort("passage_id")
