"""Fusing a dense and a BM25 result list into one score per passage.

- Reciprocal rank fusion: ``score(p) = Σ_lists 1 / (rrf_k + rank_list(p))`` with 1-based ranks; a list that does
  not contain ``p`` adds nothing. Scale-free, so cosine and BM25 never need calibrating against each other.
- Weighted sum: each list's scores min-max normalized to [0, 1] over that list's candidates, then
  ``dense_weight · dense + (1 − dense_weight) · bm25``; a passage missing from a list gets 0 there. A list whose
  scores are all equal normalizes to 1.0 (its candidates are all equally its best).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rrf(ranked_lists: Sequence[Sequence[K]], k: int = 60) -> dict[K, float]:
    """Reciprocal rank fusion of best-first lists (each without repeats)."""
    if k < 0:
        raise ValueError(f"rrf_k must be >= 0, got {k}")
    fused: dict[K, float] = {}
    for ranked in ranked_lists:
        for rank, key in enumerate(ranked, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return fused


def minmax(scores: Mapping[K, float]) -> dict[K, float]:
    """Scale ``scores`` to [0, 1] (all equal → 1.0)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return dict.fromkeys(scores, 1.0)
    return {key: (value - lo) / (hi - lo) for key, value in scores.items()}


def weighted(dense: Mapping[K, float], bm25: Mapping[K, float], dense_weight: float = 0.5) -> dict[K, float]:
    """Weighted sum of min-max-normalized dense and BM25 scores."""
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
    d, b = minmax(dense), minmax(bm25)
    return {key: dense_weight * d.get(key, 0.0) + (1.0 - dense_weight) * b.get(key, 0.0) for key in d.keys() | b.keys()}


def candidate_group(sources: Iterable[str]) -> str:
    """Which stored choice (fusion, linking) applies to a candidate list, by its passages' sources: all precedents →
    ``prec``, all statute/admin-rule articles → ``law``, mixed or none → ``all``."""
    found = set(sources)
    if found == {"prec"}:
        return "prec"
    return "law" if found and found <= {"law", "admrul"} else "all"
