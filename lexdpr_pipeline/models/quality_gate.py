"""The quality gate of an exported / quantized encoder: is it close enough to the torch fp32 model to replace it?

On a fixed sample of passages and queries, both encoders embed everything; the gate passes when

- the mean cosine between the reference's and the candidate's vectors (passages and queries together) is at least
  ``min_mean_cosine`` (0.99; the minimum is reported), and
- when valid queries with relevant passage ids are given, the candidate's nDCG@k (queries ranked against the sampled
  passages, exact search) is not lower than the reference's by more than ``ndcg_tolerance`` relative (1%).
  A candidate that ranks better passes: the gate guards against losing quality.

A pure function of its inputs: nothing is read or written; either side may be given as precomputed
:class:`Vectors` (e.g. torch vectors computed once for several candidates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from lexdpr_pipeline.metrics.retrieval import evaluate_rankings

DEFAULT_MIN_MEAN_COSINE = 0.99
DEFAULT_NDCG_TOLERANCE = 0.01


class Encoder(Protocol):
    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray: ...


@dataclass(frozen=True)
class Vectors:
    """Precomputed embeddings of the gate's sample, in the order of its passages and queries."""

    passages: np.ndarray
    queries: np.ndarray


@dataclass
class GateReport:
    passed: bool
    n_passages: int
    n_queries: int
    mean_cosine: float  # over passages and queries together
    min_cosine: float
    passage_mean_cosine: float
    passage_min_cosine: float
    query_mean_cosine: float
    query_min_cosine: float
    min_mean_cosine: float  # the threshold used
    ndcg_k: int
    ndcg_tolerance: float
    ndcg_reference: float | None = None  # None: no qrels given (or none usable)
    ndcg_candidate: float | None = None
    ndcg_relative_change: float | None = None  # (candidate - reference) / reference
    n_scored_queries: int = 0  # queries with at least one relevant id among the sampled passages
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when passed)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _as_items(data: Sequence[str] | Mapping[str, str]) -> tuple[list[str], list[str]]:
    if isinstance(data, Mapping):
        return [str(k) for k in data], [str(v) for v in data.values()]
    texts = list(data)
    return [str(i) for i in range(len(texts))], texts


def _vectors(side: Encoder | Vectors, passages: list[str], queries: list[str], batch_size: int) -> Vectors:
    if isinstance(side, Vectors):
        vec = Vectors(np.asarray(side.passages, dtype=np.float32), np.asarray(side.queries, dtype=np.float32))
        if len(vec.passages) != len(passages) or len(vec.queries) != len(queries):
            raise ValueError(
                f"precomputed vectors ({len(vec.passages)} passages, {len(vec.queries)} queries) do not match the "
                f"sample ({len(passages)} passages, {len(queries)} queries)"
            )
        return vec
    return Vectors(
        np.asarray(side.encode_passages(passages, batch_size=batch_size), dtype=np.float32),
        np.asarray(side.encode_queries(queries, batch_size=batch_size), dtype=np.float32),
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"reference and candidate vectors differ in shape: {a.shape} vs {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _ndcg(vec: Vectors, passage_ids: list[str], query_ids: list[str], relevant: dict[str, set[str]], k: int) -> float:
    scores = vec.queries @ vec.passages.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rankings = {qid: [passage_ids[j] for j in row] for qid, row in zip(query_ids, top, strict=True)}
    return evaluate_rankings(rankings, relevant, ks=(k,)).metrics[f"ndcg@{k}"]


def quality_gate(
    reference: Encoder | Vectors,
    candidate: Encoder | Vectors,
    passages: Sequence[str] | Mapping[str, str],
    queries: Sequence[str] | Mapping[str, str],
    qrels: Mapping[str, set[str] | Sequence[str]] | None = None,
    *,
    min_mean_cosine: float = DEFAULT_MIN_MEAN_COSINE,
    ndcg_tolerance: float = DEFAULT_NDCG_TOLERANCE,
    k: int = 10,
    batch_size: int = 32,
) -> GateReport:
    """Compare ``candidate`` with ``reference`` (the torch fp32 model) on the sample.

    ``passages`` / ``queries``: texts, or id -> text mappings (a plain sequence is numbered "0", "1", …).
    ``qrels``: query id -> relevant passage ids; relevant ids outside the sampled passages are ignored and queries
    left without any are not scored.
    """
    passage_ids, passage_texts = _as_items(passages)
    query_ids, query_texts = _as_items(queries)
    if not passage_texts and not query_texts:
        raise ValueError("the quality gate needs at least one passage or query")
    ref = _vectors(reference, passage_texts, query_texts, batch_size)
    cand = _vectors(candidate, passage_texts, query_texts, batch_size)
    cos_p = _cosines(ref.passages, cand.passages)
    cos_q = _cosines(ref.queries, cand.queries)
    n_bad = int((~np.isfinite(cos_p)).sum() + (~np.isfinite(cos_q)).sum())
    cos_p, cos_q = (np.where(np.isfinite(c), c, -1.0) for c in (cos_p, cos_q))  # a NaN vector counts as worst
    both = np.concatenate([cos_p, cos_q])

    def mean_min(values: np.ndarray) -> tuple[float, float]:
        return (float(values.mean()), float(values.min())) if len(values) else (float("nan"), float("nan"))

    (p_mean, p_min), (q_mean, q_min) = mean_min(cos_p), mean_min(cos_q)
    report = GateReport(
        passed=False,
        n_passages=len(passage_texts),
        n_queries=len(query_texts),
        mean_cosine=float(both.mean()),
        min_cosine=float(both.min()),
        passage_mean_cosine=p_mean,
        passage_min_cosine=p_min,
        query_mean_cosine=q_mean,
        query_min_cosine=q_min,
        min_mean_cosine=min_mean_cosine,
        ndcg_k=k,
        ndcg_tolerance=ndcg_tolerance,
    )
    if n_bad:
        report.reasons.append(f"{n_bad} candidate vectors are not finite")
    if report.mean_cosine < min_mean_cosine:
        report.reasons.append(f"mean cosine {report.mean_cosine:.4f} < {min_mean_cosine}")
    if qrels and passage_texts and query_texts:
        known = set(passage_ids)
        asked = set(query_ids)
        relevant = {str(q): {str(p) for p in rel} & known for q, rel in qrels.items() if str(q) in asked}
        relevant = {q: rel for q, rel in relevant.items() if rel}
        report.n_scored_queries = len(relevant)
        if relevant:
            ref_ndcg = _ndcg(ref, passage_ids, query_ids, relevant, k)
            cand_ndcg = _ndcg(cand, passage_ids, query_ids, relevant, k)
            report.ndcg_reference, report.ndcg_candidate = ref_ndcg, cand_ndcg
            if ref_ndcg > 0:
                report.ndcg_relative_change = (cand_ndcg - ref_ndcg) / ref_ndcg
                if report.ndcg_relative_change < -ndcg_tolerance:
                    report.reasons.append(
                        f"nDCG@{k} {cand_ndcg:.4f} is {-report.ndcg_relative_change:.2%} below the reference's "
                        f"{ref_ndcg:.4f} (tolerance {ndcg_tolerance:.0%})"
                    )
    report.passed = not report.reasons
    return report
