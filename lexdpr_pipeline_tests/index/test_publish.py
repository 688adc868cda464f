"""index.publish: FAISS reuse / incremental update / build in the artifact store, BM25 reuse, and the pointer."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.artifacts import (
    ArtifactStore,
    Bm25IndexManifest,
    EmbeddingSetManifest,
    IndexPointer,
    Kind,
    MissingArtifactError,
)
from lexdpr_pipeline.index.bm25 import BM25Index, BM25Params, corpus_key
from lexdpr_pipeline.index.embeddings import EmbeddingSet
from lexdpr_pipeline.index.faiss_index import INDEX_FILE, META_FILE, DenseIndex, IndexSpec, index_key
from lexdpr_pipeline.index.publish import build_or_reuse_bm25, build_or_update_faiss, publish_index
from lexdpr_pipeline.search.engine import load_engine
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline.text.korean import KoreanTokenizer

N = 40


def _vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _set(n: int = N, *, changed: tuple[int, ...] = (), seed: int = 0) -> EmbeddingSet:
    """``n`` passages of model m1; the ``changed`` ones get a new content hash and a new vector."""
    vectors = _vectors(n, seed)
    hashes = [f"h{i}" for i in range(n)]
    for i in changed:
        hashes[i] = f"h{i}-changed"
        vectors[i] = _vectors(1, 1000 + i)[0]
    return EmbeddingSet([f"p{i:04d}" for i in range(n)], hashes, vectors, "m1", "/models/m1")


def _published(store: ArtifactStore, embeddings: EmbeddingSet, spec: IndexSpec = IndexSpec()) -> IndexPointer:
    """Build, save and publish ``embeddings`` as the asset chain does."""
    emb_path = embeddings.save(store.folder(Kind.EMBEDDINGS, str(embeddings.key)))
    emb = EmbeddingSetManifest(
        path=str(emb_path),
        model_path="/models/m1",
        model_version=embeddings.model_version,
        dim=embeddings.dim,
        passages=len(embeddings),
        content_hash=str(embeddings.key),
    )
    corpus = store.table_path("merged_corpus")
    if not corpus.is_file():
        corpus.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"passage_id": embeddings.ids}).write_parquet(corpus)
    build = build_or_update_faiss(embeddings, spec, store, progress=False)
    faiss = build.manifest(emb, None)
    return publish_index(store, embeddings=emb, faiss=faiss, bm25=None, corpus_path=corpus)


def test_the_same_content_key_reuses_the_stored_index(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    embeddings = _set()
    first = build_or_update_faiss(embeddings, IndexSpec(), store, progress=False)
    assert first.report.mode == "built" and first.previous is None
    assert first.path == store.folder(Kind.FAISS, index_key(str(embeddings.key), IndexSpec()))
    assert first.path.parent == tmp_path.resolve() / "indexes" / "faiss"
    written = (first.path / INDEX_FILE).stat().st_mtime_ns

    # search-time parameters are not part of the key: the stored index is reused, not rewritten
    again = build_or_update_faiss(embeddings, IndexSpec(ivf_nprobe=3), store, progress=False)
    assert again.report.mode == "reused" and again.path == first.path and again.key == first.key
    assert (first.path / INDEX_FILE).stat().st_mtime_ns == written
    assert len(DenseIndex.load(again.path)) == N


def test_an_update_starts_from_the_index_the_pointer_names(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    served = _published(store, _set())
    # A compatible index of fewer passages, newer on disk than the served one: it must not be the one updated.
    other = build_or_update_faiss(_set(N - 10), IndexSpec(), store, progress=False)
    assert other.previous == Path(served.faiss_path)  # itself an update of the served index
    later = os.stat(served.faiss_path).st_mtime + 100
    os.utime(other.path, (later, later))

    update = build_or_update_faiss(_set(changed=(0,)), IndexSpec(), store, progress=False)
    assert update.previous == Path(served.faiss_path)
    assert (update.report.mode, update.report.added, update.report.removed) == ("incremental", 1, 1)
    assert update.path not in (other.path, Path(served.faiss_path))
    assert DenseIndex.load(update.path).table.filter(pl.col("passage_id") == "p0000")["content_hash"].item() == (
        "h0-changed"
    )

    # Without a pointer the newest compatible index is the one updated (the old behaviour, still the fallback).
    store.pointer_path.unlink()
    fallback = build_or_update_faiss(_set(changed=(1,)), IndexSpec(), store, progress=False)
    assert fallback.previous == other.path and fallback.report.added == 11


def test_publish_writes_the_pointer_and_it_reads_back(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    embeddings = _set()
    pointer = _published(store, embeddings, IndexSpec(faiss_type="hnsw", hnsw_m=8))
    assert store.read_pointer() == pointer
    key = index_key(str(embeddings.key), IndexSpec(faiss_type="hnsw", hnsw_m=8))
    assert pointer.faiss_path == str(store.folder(Kind.FAISS, key)) and pointer.index_version == key
    assert (pointer.faiss_type, pointer.passages, pointer.model_version) == ("hnsw", N, "m1")
    assert pointer.corpus_path == str(store.table_path("merged_corpus")) and pointer.bm25_path is None
    assert pointer.model_path == "/models/m1" and pointer.created_at
    assert Path(pointer.embeddings_path or "").parent == tmp_path.resolve() / "embeddings"

    # the manifest the faiss_index asset records, with the BM25 index named
    build = build_or_update_faiss(embeddings, IndexSpec(faiss_type="hnsw", hnsw_m=8), store, progress=False)
    emb = EmbeddingSetManifest(pointer.embeddings_path or "", "/models/m1", "m1", 16, N, str(embeddings.key))
    bm25 = Bm25IndexManifest(path="/indexes/bm25/x", passages=N, content_hash="b")
    manifest = build.manifest(emb, bm25)
    assert (manifest.path, manifest.content_hash, manifest.update) == (
        pointer.faiss_path,
        key,
        "reused " + ("(an index with this content key exists)"),
    )
    assert manifest.params["hnsw_m"] == 8 and manifest.bm25_path == "/indexes/bm25/x"
    republished = publish_index(
        store, embeddings=emb, faiss=manifest, bm25=bm25, corpus_path=store.table_path("merged_corpus")
    )
    assert store.read_pointer() == republished and republished.bm25_path == "/indexes/bm25/x"


def test_publish_refuses_an_inconsistent_set(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    embeddings = _set()
    pointer = _published(store, embeddings)
    before = store.pointer_bytes()
    build = build_or_update_faiss(embeddings, IndexSpec(), store, progress=False)
    emb = EmbeddingSetManifest(pointer.embeddings_path or "", "/models/m1", "m1", 16, N, str(embeddings.key))
    other = EmbeddingSetManifest("/elsewhere", "/models/m2", "m2", 16, N, "k2")
    with pytest.raises(ValueError, match="not publishing"):
        publish_index(
            store, embeddings=other, faiss=build.manifest(emb, None), bm25=None, corpus_path=Path(pointer.corpus_path)
        )
    with pytest.raises(FileNotFoundError, match="corpus"):
        publish_index(store, embeddings=emb, faiss=build.manifest(emb, None), bm25=None, corpus_path=tmp_path / "no")
    assert store.pointer_bytes() == before


def test_a_bad_pointer_is_a_clear_error_and_does_not_block_a_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ArtifactStore(tmp_path)
    settings = load_settings(overrides=[f"paths.data_dir={tmp_path}"], environ={})
    with pytest.raises(MissingArtifactError, match="faiss_index"):
        load_engine(settings)
    store.pointer_path.parent.mkdir(parents=True)
    store.pointer_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"CURRENT\.json.*not valid JSON"):
        load_engine(settings)
    empty = IndexPointer("/m", "m1", "/faiss", "flat", "/corpus").to_dict() | {"faiss_path": ""}
    store.pointer_path.write_text(json.dumps(empty), encoding="utf-8")
    with pytest.raises(ValueError, match=r"CURRENT\.json.*lacks \['faiss_path'\]"):
        store.read_pointer()

    with caplog.at_level(logging.WARNING, logger="lexdpr_pipeline.index.publish"):
        build = build_or_update_faiss(_set(), IndexSpec(), store, progress=False)
    assert build.report.mode == "built" and (build.path / META_FILE).is_file()
    assert "ignoring the current index pointer" in caplog.text


def test_bm25_is_reused_for_the_same_corpus(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    corpus = pl.DataFrame(
        {
            "passage_id": ["a", "b", "c"],
            "text": ["손해배상 책임이 있다.", "계약을 해지할 수 있다.", "민법 제750조에 따른 불법행위."],
        }
    )
    first = build_or_reuse_bm25(corpus, store, progress=False)
    key = corpus_key(corpus, KoreanTokenizer(), BM25Params())
    assert not first.reused and first.manifest.content_hash == key
    assert first.manifest.path == str(store.folder(Kind.BM25, key)) and first.manifest.passages == 3
    assert BM25Index.load(first.manifest.path).search("손해배상", k=1)[0][0] == "a"
    assert build_or_reuse_bm25(corpus, store, progress=False) == type(first)(first.manifest, True)

    reworded = corpus.with_columns(pl.Series("text", ["손해배상 책임이 없다.", *corpus["text"].to_list()[1:]]))
    assert corpus_key(reworded, KoreanTokenizer(), BM25Params()) != key
    assert corpus_key(corpus, KoreanTokenizer(), BM25Params(k1=1.5)) != key
    changed = build_or_reuse_bm25(reworded, store, progress=False)
    assert not changed.reused and changed.manifest.path != first.manifest.path
