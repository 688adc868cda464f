"""The quality gate as a pure function, on hand-made vectors (no model needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from lexdpr_pipeline.models.quality_gate import Vectors, quality_gate


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def sample() -> tuple[dict[str, str], dict[str, str], dict[str, set[str]], Vectors]:
    """8 passages, 4 queries; query i is the passage 2i vector plus a little noise, and passage 2i is relevant."""
    rng = np.random.default_rng(0)
    passages = _unit(rng.normal(size=(8, 16)))
    queries = _unit(passages[::2] + 0.1 * rng.normal(size=(4, 16)))
    p_ids = {f"p{i}": f"passage {i}" for i in range(8)}
    q_ids = {f"q{i}": f"query {i}" for i in range(4)}
    qrels = {f"q{i}": {f"p{2 * i}"} for i in range(4)}
    return p_ids, q_ids, qrels, Vectors(passages, queries)


class CountingEncoder:
    """An encoder returning fixed vectors, checking it gets the sample's texts in order."""

    def __init__(self, vectors: Vectors) -> None:
        self.vectors = vectors
        self.calls: list[tuple[str, list[str]]] = []

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        self.calls.append(("q", list(texts)))
        return self.vectors.queries

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        self.calls.append(("p", list(texts)))
        return self.vectors.passages


def test_identical_vectors_pass(sample) -> None:
    passages, queries, qrels, vec = sample
    encoder = CountingEncoder(vec)
    report = quality_gate(vec, encoder, passages, queries, qrels)
    assert report.passed and report.reasons == []
    assert report.mean_cosine == pytest.approx(1.0) and report.min_cosine == pytest.approx(1.0)
    assert report.n_passages == 8 and report.n_queries == 4 and report.n_scored_queries == 4
    assert report.ndcg_reference == pytest.approx(1.0) and report.ndcg_relative_change == pytest.approx(0.0)
    assert sorted(encoder.calls) == [("p", list(passages.values())), ("q", list(queries.values()))]
    assert report.to_dict()["passed"] is True


def test_low_cosine_fails_and_reports_the_minimum(sample) -> None:
    passages, queries, _, vec = sample
    noisy = Vectors(vec.passages.copy(), vec.queries.copy())
    noisy.passages[3] = -noisy.passages[3]  # one vector flipped: mean 10/12 ≈ 0.83, min -1
    report = quality_gate(vec, noisy, passages, queries)
    assert not report.passed and report.min_cosine == pytest.approx(-1.0)
    assert report.passage_min_cosine == pytest.approx(-1.0) and report.query_min_cosine == pytest.approx(1.0)
    assert report.mean_cosine == pytest.approx(10 / 12, abs=1e-6)
    assert report.ndcg_reference is None  # no qrels: no ranking check
    # The threshold is configurable.
    assert quality_gate(vec, noisy, passages, queries, min_mean_cosine=0.8).passed


def test_ndcg_drop_beyond_tolerance_fails(sample) -> None:
    passages, queries, qrels, vec = sample
    swapped = Vectors(vec.passages[[1, 0, 3, 2, 5, 4, 7, 6]], vec.queries)  # relevant passages moved to other ids
    report = quality_gate(vec, swapped, passages, queries, qrels, min_mean_cosine=-1.0)
    assert not report.passed and report.ndcg_candidate < report.ndcg_reference
    assert report.ndcg_relative_change < -0.01
    assert any("nDCG@10" in r for r in report.reasons)
    # The other way round (candidate better than the reference) is not a loss of quality: it passes.
    better = quality_gate(swapped, vec, passages, queries, qrels, min_mean_cosine=-1.0)
    assert better.passed and better.ndcg_relative_change > 0


def test_qrels_outside_the_sample_are_not_scored(sample) -> None:
    passages, queries, _, vec = sample
    qrels = {"q0": {"p0", "elsewhere"}, "q1": {"elsewhere"}, "unknown-query": {"p2"}}
    report = quality_gate(vec, vec, passages, queries, qrels)
    assert report.passed and report.n_scored_queries == 1


def test_plain_sequences_and_mismatches(sample) -> None:
    _, _, _, vec = sample
    passages = [f"passage {i}" for i in range(8)]
    queries = [f"query {i}" for i in range(4)]
    assert quality_gate(vec, vec, passages, queries, {"0": ["0"]}).n_scored_queries == 1
    with pytest.raises(ValueError, match="do not match the sample"):
        quality_gate(vec, Vectors(vec.passages[:5], vec.queries), passages, queries)
    with pytest.raises(ValueError, match="differ in shape"):
        quality_gate(vec, Vectors(vec.passages[:, :8], vec.queries[:, :8]), passages, queries)


def test_non_finite_vectors_fail(sample) -> None:
    passages, queries, _, vec = sample
    broken = Vectors(vec.passages.copy(), vec.queries.copy())
    broken.queries[0] = np.nan
    report = quality_gate(vec, broken, passages, queries, min_mean_cosine=0.5)
    assert not report.passed and any("not finite" in r for r in report.reasons)
    assert report.query_min_cosine == -1.0
