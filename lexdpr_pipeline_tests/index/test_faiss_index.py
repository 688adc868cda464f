"""DenseIndex: build / search / save / load per FAISS type, incremental updates, filtered search, recall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.index.embeddings import EmbeddingSet
from lexdpr_pipeline.index.exact import exact_search
from lexdpr_pipeline.index.faiss_index import (
    DenseIndex,
    IndexSpec,
    approximate_recall,
    find_previous,
    index_key,
)

TYPES = ["flat", "ivf", "hnsw"]


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _set(n: int = 400, *, seed: int = 0, model: str = "m1") -> EmbeddingSet:
    return EmbeddingSet([f"p{i:04d}" for i in range(n)], [f"h{i}" for i in range(n)], _vectors(n, seed=seed), model)


def _spec(faiss_type: str) -> IndexSpec:
    # nprobe as large as nlist gets: IVF then scans every list and is exact, so results are comparable.
    return IndexSpec(faiss_type=faiss_type, ivf_nprobe=10_000)


@pytest.mark.parametrize("faiss_type", TYPES)
def test_every_passage_finds_itself_first(faiss_type: str) -> None:
    embs = _set()
    index = DenseIndex.build(embs, _spec(faiss_type))
    assert len(index) == 400 and index.ids == embs.ids
    hits = index.search(embs.vectors, 3)
    assert [h[0][0] for h in hits] == embs.ids
    assert all(h[0][1] == pytest.approx(1.0, abs=1e-5) and len(h) == 3 for h in hits)
    assert all(h[0][1] >= h[1][1] >= h[2][1] for h in hits)


def test_ivf_lists_are_clipped_for_tiny_corpora() -> None:
    assert IndexSpec(faiss_type="ivf").nlist_for(100) == 2  # 100 // 39
    assert IndexSpec(faiss_type="ivf").nlist_for(10) == 1
    assert IndexSpec(faiss_type="ivf").nlist_for(1_000_000) == 4000  # 4·sqrt(n)
    assert IndexSpec(faiss_type="ivf", ivf_nlist=50).nlist_for(100_000) == 50
    assert DenseIndex.build(_set(100), IndexSpec(faiss_type="ivf")).info == {"nlist": 2}


def test_k_beyond_the_corpus_returns_what_there_is() -> None:
    index = DenseIndex.build(_set(5), IndexSpec())
    assert [len(h) for h in index.search(_vectors(2, seed=3), 50)] == [5, 5]


@pytest.mark.parametrize("faiss_type", TYPES)
def test_save_and_load_round_trip(tmp_path: Path, faiss_type: str) -> None:
    embs = _set()
    index = DenseIndex.build(embs, _spec(faiss_type))
    path = index.save(tmp_path / "idx")
    assert sorted(p.name for p in path.iterdir()) == ["faiss_index.json", "ids.parquet", "index.faiss"]
    meta = json.loads((path / "faiss_index.json").read_text())
    assert (meta["faiss_type"], meta["dim"], meta["model_version"], meta["ntotal"]) == (faiss_type, 16, "m1", 400)
    tuned = DenseIndex.load(path, nprobe=7, ef_search=99)
    assert (tuned.spec.ivf_nprobe, tuned.spec.hnsw_ef_search) == (7, 99)
    loaded = DenseIndex.load(path)  # the stored search parameters
    queries = _vectors(5, seed=9)
    assert [[p for p, _ in h] for h in loaded.search(queries, 5)] == [
        [p for p, _ in h] for h in index.search(queries, 5)
    ]


def test_load_refuses_an_index_whose_ids_disagree(tmp_path: Path) -> None:
    path = DenseIndex.build(_set(50), IndexSpec()).save(tmp_path / "idx")
    table = pl.read_parquet(path / "ids.parquet")
    table.head(49).write_parquet(path / "ids.parquet")
    with pytest.raises(ValueError, match="disagree"):
        DenseIndex.load(path)


def _changed(embs: EmbeddingSet, *, change: int, drop: int, add: int) -> EmbeddingSet:
    """``embs`` with the first ``change`` passages re-embedded, the last ``drop`` removed and ``add`` new ones."""
    n = len(embs)
    ids = embs.ids[: n - drop] + [f"new{i}" for i in range(add)]
    hashes = [f"changed{i}" if i < change else h for i, h in enumerate(embs.content_hashes[: n - drop])]
    hashes += [f"hnew{i}" for i in range(add)]
    vectors = np.concatenate([np.asarray(embs.vectors)[: n - drop], _vectors(add, seed=5)])
    vectors[:change] = _vectors(change, seed=7)
    return EmbeddingSet(ids, hashes, vectors, embs.model_version)


@pytest.mark.parametrize("faiss_type", ["flat", "ivf"])
def test_incremental_update_adds_and_removes(faiss_type: str) -> None:
    old = _set()
    new = _changed(old, change=5, drop=3, add=4)
    index, report = DenseIndex.build(old, _spec(faiss_type)).update(new)
    assert report.describe() == "incremental (added 9, removed 8)"
    assert sorted(index.ids) == sorted(new.ids) and len(index) == len(new)
    # Every passage, old, changed or new, is found by its current vector (an IVF's ids must survive the removals).
    hits = index.search(new.vectors, 1)
    assert [h[0][0] for h in hits] == new.ids
    fresh = DenseIndex.build(new, _spec(faiss_type))
    queries = _vectors(20, seed=11)
    assert [[p for p, _ in h] for h in index.search(queries, 10)] == [
        [p for p, _ in h] for h in fresh.search(queries, 10)
    ]


def test_hnsw_adds_in_place_but_rebuilds_to_remove() -> None:
    old = _set()
    index, report = DenseIndex.build(old, _spec("hnsw")).update(_changed(old, change=0, drop=0, add=4))
    assert report.describe() == "incremental (added 4, removed 0)" and len(index) == 404
    new = _changed(old, change=2, drop=0, add=0)
    rebuilt, report = DenseIndex.build(old, _spec("hnsw")).update(new)
    assert report.mode == "rebuilt" and "cannot remove" in report.reason
    assert [h[0][0] for h in rebuilt.search(new.vectors, 1)] == new.ids


def test_rebuild_when_too_much_changed_or_the_model_changed() -> None:
    old = _set()
    _, report = DenseIndex.build(old, _spec("ivf")).update(_changed(old, change=100, drop=0, add=0))
    assert report.mode == "rebuilt" and "retrained" in report.reason
    _, report = DenseIndex.build(old, _spec("flat")).update(_set(model="m2"))
    assert report.mode == "rebuilt" and report.reason == "model changed"
    _, report = DenseIndex.build(old, _spec("flat")).update(old, spec=_spec("hnsw"))
    assert report.mode == "rebuilt" and report.reason == "index parameters changed"


@pytest.mark.parametrize("faiss_type", TYPES)
def test_filtered_search_only_returns_allowed_passages(faiss_type: str) -> None:
    embs = _set()
    index = DenseIndex.build(embs, IndexSpec(faiss_type=faiss_type))
    allowed = np.zeros(len(embs), dtype=bool)
    allowed[::7] = True
    queries = _vectors(10, seed=4)
    exact_scores, exact_rows = exact_search(queries, np.asarray(embs.vectors)[allowed], 5)
    expected = np.flatnonzero(allowed)[exact_rows]
    if faiss_type != "flat":
        index.attach_vectors(embs)  # exact over the allowed subset
    scores, labels = index.search_labels(queries, 5, allowed=allowed)
    assert allowed[labels[labels >= 0]].all()
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)


def test_filtered_search_without_attached_vectors_stays_inside_the_filter() -> None:
    embs = _set()
    index = DenseIndex.build(embs, IndexSpec(faiss_type="hnsw"))
    allowed = np.zeros(len(embs), dtype=bool)
    allowed[:40] = True
    _, labels = index.search_labels(_vectors(5, seed=2), 10, allowed=allowed)
    assert (labels >= 0).sum() > 0 and allowed[labels[labels >= 0]].all()


def test_recall_against_exact_search() -> None:
    embs = _set(2000)
    queries = _vectors(50, seed=8)
    assert approximate_recall(DenseIndex.build(embs, IndexSpec()), embs, queries) == 1.0
    narrow = DenseIndex.build(embs, IndexSpec(faiss_type="ivf", ivf_nlist=40, ivf_nprobe=1))
    wide = DenseIndex.build(embs, IndexSpec(faiss_type="ivf", ivf_nlist=40, ivf_nprobe=40))
    assert approximate_recall(narrow, embs, queries) < approximate_recall(wide, embs, queries) == 1.0


def test_find_previous_picks_a_compatible_index(tmp_path: Path) -> None:
    embs = _set(60)
    flat = DenseIndex.build(embs, IndexSpec()).save(tmp_path / "a")
    DenseIndex.build(embs, IndexSpec(faiss_type="hnsw")).save(tmp_path / "b")
    DenseIndex.build(_set(60, model="m2"), IndexSpec()).save(tmp_path / "c")
    assert find_previous(tmp_path, model_version="m1", spec=IndexSpec(), dim=16) == flat
    assert find_previous(tmp_path, model_version="m1", spec=IndexSpec(ivf_nprobe=3), dim=16) == flat
    assert find_previous(tmp_path, model_version="m3", spec=IndexSpec(), dim=16) is None
    assert find_previous(tmp_path, model_version="m1", spec=IndexSpec(faiss_type="ivf"), dim=16) is None
    # search-time parameters are not part of an index's identity; build parameters are
    assert index_key("e", IndexSpec(ivf_nprobe=1)) == index_key("e", IndexSpec(ivf_nprobe=2))
    assert index_key("e", IndexSpec(faiss_type="hnsw", hnsw_m=8)) != index_key("e", IndexSpec(faiss_type="hnsw"))


def test_bad_spec_and_bad_queries_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="faiss_type"):
        IndexSpec(faiss_type="annoy")
    index = DenseIndex.build(_set(10), IndexSpec())
    with pytest.raises(ValueError, match="shape"):
        index.search(np.zeros((2, 8), np.float32), 3)
    with pytest.raises(ValueError, match="empty"):
        DenseIndex.build(EmbeddingSet([], [], np.zeros((0, 4), np.float32), "m"), IndexSpec())


def test_small_batches_on_a_flat_index_match_faiss_exactly() -> None:
    """Flat search of a few queries goes through one BLAS product over FAISS's own storage (FLAT_NUMPY_MAX_QUERIES);
    it returns what FAISS's search returns — after an in-place update too, and with a filter (padded with -1)."""
    import lexdpr_pipeline.index.faiss_index as fi

    index = DenseIndex.build(_set(500), _spec("flat"))
    index.update(_set(530, seed=3))  # relabels: removed ids and new rows, read through a fresh view
    queries = _vectors(3, seed=9)
    allowed = np.zeros(len(index.ids_by_label), dtype=bool)
    allowed[np.flatnonzero([pid is not None for pid in index.ids_by_label])[:7]] = True
    fast = [index.search_labels(queries, 20), index.search_labels(queries, 20, allowed=allowed)]
    original, fi.FLAT_NUMPY_MAX_QUERIES = fi.FLAT_NUMPY_MAX_QUERIES, 0  # force FAISS
    try:
        slow = [index.search_labels(queries, 20), index.search_labels(queries, 20, allowed=allowed)]
    finally:
        fi.FLAT_NUMPY_MAX_QUERIES = original
    assert index._flat_storage() is not None
    for (f_scores, f_labels), (s_scores, s_labels) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(f_labels, s_labels)
        np.testing.assert_allclose(f_scores[f_labels >= 0], s_scores[s_labels >= 0], rtol=1e-5, atol=1e-6)
    filtered_labels = fast[1][1]
    assert (filtered_labels[:, 7:] == -1).all() and set(filtered_labels[:, :7].ravel()) <= set(np.flatnonzero(allowed))
