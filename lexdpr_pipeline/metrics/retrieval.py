"""Rank-based retrieval metrics with binary relevance, matching sentence-transformers'
``InformationRetrievalEvaluator`` definitions so numbers are comparable:

- Accuracy@k: 1 if any relevant id is in the top k.
- Precision@k: relevant ids in the top k / k.   Recall@k: relevant ids in the top k / all relevant ids.
- MRR@k: 1 / rank of the first relevant id within the top k (0 if none).
- NDCG@k: DCG with gain 1 and discount 1/log2(rank + 1), over the ideal DCG of min(|relevant|, k) hits.
- MAP@k: the sum of precision at each relevant rank within the top k, over min(k, |relevant|).

Queries without any relevant id are skipped (and counted) rather than scored 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

METRICS = ("accuracy", "precision", "recall", "mrr", "ndcg", "map")
DEFAULT_KS = (1, 5, 10, 100)


def query_metrics(ranked: Sequence[str], relevant: set[str], ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Metrics for one query: ``{"ndcg@10": …, "recall@100": …, …}``. ``ranked`` is best first, without repeats."""
    if not relevant:
        raise ValueError("a query needs at least one relevant id")
    out: dict[str, float] = {}
    hits = [i for i, doc in enumerate(ranked) if doc in relevant]  # 0-based ranks of relevant results
    for k in ks:
        if k <= 0:
            raise ValueError("k must be positive")
        top = [r for r in hits if r < k]
        n = len(top)
        out[f"accuracy@{k}"] = 1.0 if n else 0.0
        out[f"precision@{k}"] = n / k
        out[f"recall@{k}"] = n / len(relevant)
        out[f"mrr@{k}"] = 1.0 / (top[0] + 1) if n else 0.0
        dcg = sum(1.0 / math.log2(r + 2) for r in top)
        idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
        out[f"ndcg@{k}"] = dcg / idcg
        ap = sum((j + 1) / (r + 1) for j, r in enumerate(top))
        out[f"map@{k}"] = ap / min(k, len(relevant))
    return out


@dataclass
class EvalResult:
    metrics: dict[str, float]  # mean over scored queries
    per_query: dict[str, dict[str, float]]
    skipped_no_relevant: int

    @property
    def n_queries(self) -> int:
        return len(self.per_query)


def evaluate_rankings(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    ks: Iterable[int] = DEFAULT_KS,
) -> EvalResult:
    """Mean metrics over the queries of ``relevant`` (a query missing from ``rankings`` ranks nothing)."""
    ks = tuple(ks)
    per_query: dict[str, dict[str, float]] = {}
    skipped = 0
    for qid, rel in relevant.items():
        if not rel:
            skipped += 1
            continue
        per_query[qid] = query_metrics(_dedupe(rankings.get(qid, ())), rel, ks)
    names = [f"{m}@{k}" for m in METRICS for k in ks]
    means = {n: (sum(q[n] for q in per_query.values()) / len(per_query) if per_query else 0.0) for n in names}
    return EvalResult(means, per_query, skipped)


def _dedupe(ranked: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for doc in ranked:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out
