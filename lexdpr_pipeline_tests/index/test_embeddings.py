"""Embedding sets and the incremental per-model cache, with the tiny model on a real corpus slice."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.index import embeddings as emb_mod
from lexdpr_pipeline.index.embeddings import (
    EmbeddingCache,
    EmbeddingSet,
    embed_corpus,
    export_embeddings,
    export_formats_available,
)
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice, with_changed_law


class SpyEncoder:
    """Wraps a model and records every text it was asked to encode."""

    def __init__(self, model: BiEncoder, fail_after: int | None = None) -> None:
        self.model = model
        self.texts: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.texts += list(texts)
        return self.model.encode_passages(texts, batch_size=batch_size)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> BiEncoder:
    return BiEncoder.load(tiny_model_dir)


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    return corpus_slice()


def test_embed_writes_a_normalized_content_addressed_set(tmp_path: Path, model: BiEncoder, corpus: pl.DataFrame):
    spy = SpyEncoder(model)
    result = embed_corpus(corpus, spy, model_version="m1", root=tmp_path, progress=False)
    assert (result.encoded, result.reused, result.from_existing) == (corpus.height, 0, False)
    assert sorted(spy.texts) == sorted(corpus["text"].to_list())
    assert result.path == tmp_path / result.embeddings.key[:20]
    assert sorted(p.name for p in result.path.iterdir()) == ["embeddings.json", "ids.parquet", "vectors.npy"]
    loaded = EmbeddingSet.load(result.path)
    assert loaded.ids == corpus["passage_id"].to_list()
    assert loaded.content_hashes == corpus["content_hash"].to_list()
    assert loaded.vectors.dtype == np.float32 and loaded.vectors.shape == (corpus.height, 32)
    np.testing.assert_allclose(np.linalg.norm(loaded.vectors, axis=1), 1.0, atol=1e-5)
    direct = model.encode_passages(corpus["text"].to_list()[:3])
    np.testing.assert_allclose(loaded.vectors[:3], direct, atol=1e-5)
    ids = pl.read_parquet(result.path / "ids.parquet")
    assert ids.columns == ["passage_id", "content_hash", "row"] and ids["row"].to_list() == list(range(corpus.height))
    meta = json.loads((result.path / "embeddings.json").read_text())
    assert meta["model_version"] == "m1" and meta["dim"] == 32 and meta["passages"] == corpus.height


def test_same_corpus_and_model_reuses_the_set_without_encoding(tmp_path: Path, model: BiEncoder, corpus):
    embed_corpus(corpus, SpyEncoder(model), model_version="m1", root=tmp_path, progress=False)
    spy = SpyEncoder(model)
    again = embed_corpus(corpus, spy, model_version="m1", root=tmp_path, progress=False)
    assert again.from_existing and again.encoded == 0 and again.reused == corpus.height and spy.calls == 0
    # A different model version is a different set and a different cache: everything is encoded.
    other = SpyEncoder(model)
    result = embed_corpus(corpus, other, model_version="m2", root=tmp_path, progress=False)
    assert result.encoded == corpus.height and result.path != again.path


def test_one_changed_law_reencodes_exactly_its_passages(tmp_path: Path, model: BiEncoder, corpus: pl.DataFrame):
    first = embed_corpus(corpus, SpyEncoder(model), model_version="m1", root=tmp_path, progress=False)
    law = "국가배상법"
    changed = with_changed_law(corpus, law)
    spy = SpyEncoder(model)
    second = embed_corpus(changed, spy, model_version="m1", root=tmp_path, progress=False)
    law_texts = changed.filter(pl.col("law_name") == law)["text"].to_list()
    assert sorted(spy.texts) == sorted(law_texts)
    assert second.encoded == len(law_texts) and second.reused == corpus.height - len(law_texts)
    assert second.path != first.path  # a new content key
    old, new = EmbeddingSet.load(first.path), EmbeddingSet.load(second.path)
    same = (~changed["law_name"].eq(law).fill_null(False)).to_numpy()
    np.testing.assert_array_equal(np.asarray(new.vectors)[same], np.asarray(old.vectors)[same])
    np.testing.assert_allclose(np.asarray(new.vectors)[~same], model.encode_passages(law_texts), atol=1e-5)


def test_an_interrupted_run_resumes_from_the_cache(tmp_path: Path, model, corpus, monkeypatch):
    monkeypatch.setattr(emb_mod, "SHARD_ROWS", 30)
    crashing = SpyEncoder(model, fail_after=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_corpus(corpus, crashing, model_version="m1", root=tmp_path, progress=False)
    assert not any(p.name != "cache" for p in tmp_path.iterdir())  # no half-written set
    spy = SpyEncoder(model)
    result = embed_corpus(corpus, spy, model_version="m1", root=tmp_path, progress=False)
    assert result.reused == 30 and result.encoded == corpus.height - 30
    assert not set(spy.texts) & set(crashing.texts)


def test_cache_compaction_keeps_every_vector(tmp_path: Path, model, corpus, monkeypatch):
    monkeypatch.setattr(emb_mod, "SHARD_ROWS", 10)
    monkeypatch.setattr(emb_mod, "MAX_SHARDS", 3)
    result = embed_corpus(corpus, SpyEncoder(model), model_version="m1", root=tmp_path, progress=False)
    cache = EmbeddingCache(tmp_path / "cache", "m1")
    assert len(cache.shards()) == 1 and len(cache) == corpus.height
    positions, vectors = cache.lookup(corpus["content_hash"].to_list())
    assert positions.tolist() == list(range(corpus.height))
    np.testing.assert_array_equal(vectors, np.asarray(result.embeddings.vectors))


def test_bad_corpus_and_bad_encoder_output_are_clear_errors(tmp_path: Path, model, corpus):
    with pytest.raises(ValueError, match="null"):
        embed_corpus(
            corpus.with_columns(pl.lit(None, pl.String).alias("text")), model, model_version="m", root=tmp_path
        )
    with pytest.raises(ValueError, match="unique"):
        embed_corpus(pl.concat([corpus.head(2), corpus.head(1)]), model, model_version="m", root=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        embed_corpus(corpus.head(0), model, model_version="m", root=tmp_path)

    class NaNEncoder:
        def encode_passages(self, texts, *, batch_size=32, progress=False):
            return np.full((len(texts), 4), np.nan, np.float32)

    with pytest.raises(ValueError, match="non-finite"):
        embed_corpus(corpus.head(3), NaNEncoder(), model_version="m", root=tmp_path, progress=False)


def test_the_model_factory_is_only_called_when_something_needs_encoding(tmp_path: Path, model, corpus):
    calls = []

    def factory():
        calls.append(1)
        return model

    embed_corpus(corpus, factory, model_version="m1", root=tmp_path, progress=False)
    embed_corpus(corpus, factory, model_version="m1", root=tmp_path, progress=False)
    assert calls == [1]


def test_exports_round_trip(tmp_path: Path) -> None:
    vecs = np.eye(3, 4, dtype=np.float32)
    embs = EmbeddingSet(["law:1:1", "prec:2#0", "prec:2#1"], ["a", "b", "c"], vecs, "m")
    (npz,) = export_embeddings(embs, tmp_path / "out.npz")
    with np.load(npz, allow_pickle=False) as data:
        assert data["ids"].tolist() == embs.ids and data["content_hashes"].tolist() == ["a", "b", "c"]
        np.testing.assert_array_equal(data["vectors"], vecs)
    npy, ids = export_embeddings(embs, tmp_path / "out.npy")
    np.testing.assert_array_equal(np.load(npy, allow_pickle=False), vecs)
    assert pl.read_parquet(ids)["passage_id"].to_list() == embs.ids
    if "hdf5" not in export_formats_available():
        with pytest.raises(RuntimeError, match="h5py"):
            export_embeddings(embs, tmp_path / "out.h5")
    with pytest.raises(ValueError, match="unknown export format"):
        export_embeddings(embs, tmp_path / "out.csv")
