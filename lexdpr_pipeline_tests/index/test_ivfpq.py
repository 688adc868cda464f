"""IVF-PQ (``index.faiss_type: ivfpq``): training, exact re-ranking, size, filtered search, persistence, updates,
the flat fallback on small corpora and pq_m validation — on seeded clustered synthetic vectors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import lexdpr_pipeline.index.faiss_index as faiss_index
from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.index.embeddings import EmbeddingSet
from lexdpr_pipeline.index.exact import exact_search
from lexdpr_pipeline.index.faiss_index import INDEX_FILE, DenseIndex, IndexSpec, approximate_recall
from lexdpr_pipeline.index.publish import build_or_update_faiss

DIM = 64
N = 4000
# 16 sub-quantizers of 4 dims, 6-bit codes: 12 bytes of code a passage; trainable from 39·64 = 2,496 passages.
SPEC = IndexSpec(faiss_type="ivfpq", pq_m=16, pq_nbits=6, ivf_nprobe=16, pq_rerank=100)


def _clustered(n: int, *, seed: int, clusters: int = 60, spread: float = 0.6) -> np.ndarray:
    """Normalized vectors around ``clusters`` seeded centres (embeddings have structure; iid noise has none)."""
    centres = np.random.default_rng(1234).standard_normal((clusters, DIM))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(clusters, size=n)] + spread * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _set(n: int = N, *, seed: int = 0, model: str = "m1") -> EmbeddingSet:
    ids = [f"p{i:05d}" for i in range(n)]
    return EmbeddingSet(ids, [f"h{i}" for i in range(n)], _clustered(n, seed=seed), model, "/models/m1")


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    """k-means under OpenMP slows down badly on a busy machine with few cores; one thread is quicker there."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def embs() -> EmbeddingSet:
    return _set()


@pytest.fixture(scope="module")
def built(embs: EmbeddingSet) -> DenseIndex:
    return DenseIndex.build(embs, SPEC)


QUERIES = _clustered(100, seed=99)


def test_ivfpq_trains_on_a_seeded_sample_and_reranks_to_high_recall(embs: EmbeddingSet, built: DenseIndex) -> None:
    assert built.kind == "ivfpq" and len(built) == N and built.ids == embs.ids
    assert built.info == {"nlist": N // 39, "pq_m": 16, "pq_nbits": 6, "train_points": N, "train_seed": 0}
    raw = approximate_recall(built, embs, QUERIES)  # PQ scores only: no vectors attached
    index = DenseIndex.build(embs, SPEC)
    index.attach_vectors(embs)
    reranked = approximate_recall(index, embs, QUERIES)
    assert reranked >= 0.9 and reranked > raw
    # re-ranked scores are the exact cosines of the returned passages, best first
    scores, labels = index.search_labels(QUERIES[:5], 10)
    expected = np.einsum("qkd,qd->qk", np.asarray(embs.vectors)[labels], QUERIES[:5])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    # the same seed and sample: the same index
    again = DenseIndex.build(embs, SPEC)
    assert np.array_equal(again.search_labels(QUERIES, 10)[1], built.search_labels(QUERIES, 10)[1])


def test_training_sample_is_capped(monkeypatch: pytest.MonkeyPatch, embs: EmbeddingSet) -> None:
    monkeypatch.setattr(faiss_index, "PQ_TRAIN_MAX", 3000)
    index = DenseIndex.build(embs, IndexSpec(**{**SPEC.__dict__, "ivf_nlist": 20}))
    assert index.info["train_points"] == 3000 and len(index) == N  # every vector is still added
    # never fewer than 39 points per coarse list (here 102 lists: 3,978 points)
    assert DenseIndex.build(embs, SPEC).info["train_points"] == 39 * (N // 39)


def test_ivfpq_on_disk_is_much_smaller_than_flat(tmp_path: Path, embs: EmbeddingSet, built: DenseIndex) -> None:
    flat = DenseIndex.build(embs, IndexSpec()).save(tmp_path / "flat")
    pq = built.save(tmp_path / "pq")
    flat_bytes, pq_bytes = (flat / INDEX_FILE).stat().st_size, (pq / INDEX_FILE).stat().st_size
    assert flat_bytes >= N * DIM * 4
    # 12 code bytes + an 8-byte id a passage, plus centroids and codebooks: well under a quarter of flat
    assert pq_bytes < flat_bytes / 4


@pytest.mark.parametrize("exact_max", [faiss_index.EXACT_FILTER_MAX, 0])
def test_filtered_search_returns_only_allowed_passages(
    monkeypatch: pytest.MonkeyPatch, embs: EmbeddingSet, exact_max: int
) -> None:
    """Attached vectors: exact over the allowed subset, or (exact_max=0) FAISS's IDSelector + exact re-ranking."""
    monkeypatch.setattr(faiss_index, "EXACT_FILTER_MAX", exact_max)
    index = DenseIndex.build(embs, SPEC)
    index.attach_vectors(embs)
    allowed = np.zeros(N, dtype=bool)
    allowed[::5] = True
    _, labels = index.search_labels(QUERIES, 10, allowed=allowed)
    assert (labels >= 0).all() and allowed[labels].all()
    _, rows = exact_search(QUERIES, np.asarray(embs.vectors)[allowed], 10)
    truth = np.flatnonzero(allowed)[rows]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(labels, truth, strict=True)])
    assert overlap == 1.0 if exact_max else overlap >= 0.85


def test_filtered_search_without_vectors_stays_inside_the_filter(built: DenseIndex) -> None:
    allowed = np.zeros(N, dtype=bool)
    allowed[:300] = True
    _, labels = built.search_labels(QUERIES[:10], 10, allowed=allowed)
    assert (labels >= 0).sum() > 0 and allowed[labels[labels >= 0]].all()


def test_save_and_load_round_trip(tmp_path: Path, embs: EmbeddingSet, built: DenseIndex) -> None:
    path = built.save(tmp_path / "idx")
    meta = json.loads((path / "faiss_index.json").read_text())
    assert meta["faiss_type"] == "ivfpq" and meta["info"]["pq_m"] == 16 and meta["params"]["pq_rerank"] == 100
    loaded = DenseIndex.load(path)
    assert (loaded.kind, loaded.spec, loaded.info) == ("ivfpq", built.spec, built.info)
    assert np.array_equal(loaded.search_labels(QUERIES, 10)[1], built.search_labels(QUERIES, 10)[1])
    tuned = DenseIndex.load(path, nprobe=4, rerank=0)
    assert (tuned.spec.ivf_nprobe, tuned.spec.pq_rerank) == (4, 0)
    tuned.attach_vectors(embs)  # rerank=0: attached vectors are not used for unfiltered search
    plain = DenseIndex.load(path, nprobe=4)
    assert np.array_equal(tuned.search_labels(QUERIES, 10)[1], plain.search_labels(QUERIES, 10)[1])


def test_bad_pq_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"pq_m=10 must divide the embedding dimension 64"):
        DenseIndex.build(_set(), IndexSpec(faiss_type="ivfpq", pq_m=10))
    with pytest.raises(ValueError, match="must divide"):  # refused before the small-corpus fallback too
        DenseIndex.build(_set(50), IndexSpec(faiss_type="ivfpq", pq_m=10))
    for bad in ({"pq_nbits": 0}, {"pq_nbits": 17}, {"pq_rerank": -1}, {"pq_m": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            IndexSpec(faiss_type="ivfpq", **bad)
    assert [IndexSpec().pq_m_for(d) for d in (384, 768, 32, 100)] == [48, 96, 4, 10]


def test_small_corpora_fall_back_to_flat_and_are_rebuilt_once_large_enough() -> None:
    small = _set(1000)  # < 39·64 passages: PQ codebooks cannot be trained
    index = DenseIndex.build(small, SPEC)
    assert index.kind == "flat" and index.spec.faiss_type == "ivfpq"
    assert "1000 passages < 2496" in index.info["fallback"]
    assert approximate_recall(index, small, QUERIES) == 1.0
    grown = _set(N)  # the first 1000 passages unchanged, 3000 new
    rebuilt, report = index.update(grown)
    assert report.mode == "rebuilt" and "enough to train IVF-PQ" in report.reason
    assert rebuilt.kind == "ivfpq" and len(rebuilt) == N


def test_incremental_update_follows_ivf(embs: EmbeddingSet) -> None:
    index = DenseIndex.build(embs, SPEC)
    n = len(embs)
    ids = embs.ids[: n - 30] + [f"new{i}" for i in range(40)]
    hashes = [f"changed{i}" if i < 50 else h for i, h in enumerate(embs.content_hashes[: n - 30])]
    vectors = np.concatenate([np.asarray(embs.vectors)[: n - 30], _clustered(40, seed=5)])
    vectors[:50] = _clustered(50, seed=7)
    new = EmbeddingSet(ids, hashes + [f"hn{i}" for i in range(40)], vectors, "m1", "/models/m1")
    updated, report = index.update(new)
    assert report.describe() == "incremental (added 90, removed 80)" and updated is index
    assert sorted(updated.ids) == sorted(new.ids) and len(updated) == len(new)
    updated.attach_vectors(new)
    assert [h[0][0] for h in updated.search(new.vectors[-40:], 1)] == new.ids[-40:]
    assert approximate_recall(updated, new, QUERIES) >= 0.9
    # too much changed: the lists and codebooks are retrained
    moved = _set(seed=3)
    _, report = index.update(EmbeddingSet(moved.ids, [f"m{i}" for i in range(N)], moved.vectors, "m1", "/models/m1"))
    assert report.mode == "rebuilt" and "retrained" in report.reason


def test_build_or_update_faiss_records_what_was_built(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    small = _set(500)
    first = build_or_update_faiss(small, IndexSpec(faiss_type="ivfpq"), store, progress=False)
    assert first.meta["info"]["built_as"] == "flat" and "9984" in first.meta["info"]["fallback"]
    grown = _set(N)
    second = build_or_update_faiss(grown, SPEC, store, progress=False)  # other build params: a fresh build
    assert second.report.mode == "built" and second.meta["info"]["pq_m"] == 16
    third = build_or_update_faiss(_set(N - 10), SPEC, store, progress=False)
    assert third.previous == second.path and third.report.describe() == "incremental (added 0, removed 10)"
