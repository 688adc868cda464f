"""Exact inner-product search agrees with brute-force numpy and never pads with -1."""

from __future__ import annotations

import numpy as np
import pytest

from lexdpr_pipeline.index.exact import exact_search


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    passages, queries = _unit(rng, 200, 16), _unit(rng, 7, 16)
    scores, idx = exact_search(queries, passages, 10)
    brute = queries @ passages.T
    expected = np.argsort(-brute, axis=1)[:, :10]
    assert idx.shape == scores.shape == (7, 10)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_k_clipped_to_corpus_size() -> None:
    rng = np.random.default_rng(1)
    scores, idx = exact_search(_unit(rng, 3, 8), _unit(rng, 5, 8), 50)
    assert scores.shape == (3, 5)
    assert idx.shape == (3, 5)
    assert (idx >= 0).all()
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3, 4]


def test_bad_shapes_are_clear_errors() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="dimension mismatch"):
        exact_search(_unit(rng, 2, 8), _unit(rng, 5, 4), 3)
    with pytest.raises(ValueError, match="2-d"):
        exact_search(np.zeros(8, np.float32), _unit(rng, 5, 8), 3)
