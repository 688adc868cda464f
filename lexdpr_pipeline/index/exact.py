"""Exact top-k inner-product search (FAISS ``IndexFlatIP``) over L2-normalized float32 vectors, i.e. cosine.

The ground truth for evaluation and for measuring an approximate index's recall.
"""

from __future__ import annotations

import numpy as np


def _as_matrix(vecs: np.ndarray, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(vecs, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (n, dim), got shape {arr.shape}")
    return arr


def exact_search(query_vecs: np.ndarray, passage_vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` passages per query by inner product, best first: ``(scores, indices)``, each ``(n_queries, k')``.

    ``k' = min(k, n_passages)``, so every returned index is a real passage (never FAISS's ``-1`` padding).
    """
    import faiss

    queries = _as_matrix(query_vecs, "query_vecs")
    passages = _as_matrix(passage_vecs, "passage_vecs")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if queries.shape[1] != passages.shape[1]:
        raise ValueError(f"dimension mismatch: queries {queries.shape[1]}, passages {passages.shape[1]}")
    k = min(k, passages.shape[0])
    if k == 0 or queries.shape[0] == 0:
        return np.zeros((queries.shape[0], k), np.float32), np.zeros((queries.shape[0], k), np.int64)
    index = faiss.IndexFlatIP(passages.shape[1])
    index.add(passages)
    scores, idx = index.search(queries, k)
    return scores, idx.astype(np.int64, copy=False)
