"""The encoder factory, the backend-keyed version, the gate's sample and auto's choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.index.embeddings import EmbeddingCache, embed_corpus
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.models.encoders import encoder_version, load_encoder
from lexdpr_pipeline.models.export import export_encoder
from lexdpr_pipeline.models.export_gate import BackendResult, backends_to_try, choose_backend, gate_sample
from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder


def test_encoder_version_keeps_torch_and_separates_exports() -> None:
    assert encoder_version("abc") == encoder_version("abc", "torch") == "abc"  # existing caches stay valid
    versions = {encoder_version("abc", b) for b in ("torch", "onnx", "onnx-int8")}
    assert len(versions) == 3
    with pytest.raises(ValueError, match="unknown encoder backend"):
        encoder_version("abc", "openvino")


def test_cache_folders_differ_by_backend(tmp_path: Path) -> None:
    corpus = pl.DataFrame({"passage_id": ["a", "b"], "content_hash": ["h1", "h2"], "text": ["가", "나"]})

    class Fixed:
        def __init__(self, value: float) -> None:
            self.value = value

        def encode_passages(self, texts, *, batch_size=32, progress=False):
            return np.full((len(texts), 4), self.value, dtype=np.float32)

    torch_run = embed_corpus(corpus, Fixed(1.0), model_version=encoder_version("m"), root=tmp_path, progress=False)
    onnx_run = embed_corpus(
        corpus, Fixed(2.0), model_version=encoder_version("m", "onnx"), root=tmp_path, progress=False
    )
    assert onnx_run.encoded == 2 and onnx_run.path != torch_run.path  # nothing of torch's reused
    cache = tmp_path / "cache"
    assert EmbeddingCache(cache, "m").dir != EmbeddingCache(cache, "m|onnx").dir
    assert len(list(cache.iterdir())) == 2


def test_load_encoder(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert isinstance(load_encoder(tiny_model_dir), BiEncoder)
    with pytest.raises(ValueError, match="needs the export folder"):
        load_encoder(tiny_model_dir, "onnx")
    folder = export_encoder(tiny_model_dir, tmp_path / "fp32", "onnx")
    encoder = load_encoder(tiny_model_dir, "onnx", folder, threads=1)
    assert isinstance(encoder, OnnxEncoder) and encoder.threads == 1
    with pytest.raises(ValueError, match="holds a 'onnx' export, not 'onnx-int8'"):
        load_encoder(tiny_model_dir, "onnx-int8", folder)


def test_gate_sample_holds_the_positives_and_is_seeded() -> None:
    corpus = pl.DataFrame({"passage_id": [f"p{i:03d}" for i in range(200)], "text": [f"문서 {i}" for i in range(200)]})
    splits = pl.DataFrame(
        {
            "query_id": ["q1", "q2", "q3"],
            "query_text": ["질의 1", "질의 2", "질의 3"],
            "split": ["valid", "valid", "train"],
            "positive_ids": [["p150", "gone"], ["p199"], ["p000"]],
        }
    )
    sample = gate_sample(corpus, splits, n_passages=10, n_queries=5)
    assert set(sample.queries) == {"q1", "q2"}  # valid only
    assert sample.qrels == {"q1": ["p150"], "q2": ["p199"]}  # positives outside the corpus dropped
    assert len(sample.passages) == 10 and {"p150", "p199"} <= set(sample.passages)
    assert sample.passages["p150"] == "문서 150"
    assert gate_sample(corpus.reverse(), splits, n_passages=10, n_queries=5) == sample  # row order does not matter
    no_splits = gate_sample(corpus, None, n_passages=300, n_queries=5)
    assert len(no_splits.passages) == 200 and not no_splits.queries


def test_auto_choice_and_what_each_setting_exports() -> None:
    assert backends_to_try("torch") == () and backends_to_try("onnx") == ("onnx",)
    assert backends_to_try("auto") == ("onnx-int8", "onnx")
    assert backends_to_try("auto", gpu=True) == () and backends_to_try("onnx", gpu=True) == ("onnx",)
    ok, bad = BackendResult("x", passed=True), BackendResult("x", passed=False)
    assert choose_backend("auto", {"onnx-int8": ok, "onnx": ok}) == "onnx-int8"
    assert choose_backend("auto", {"onnx-int8": bad, "onnx": ok}) == "onnx"
    assert choose_backend("auto", {"onnx-int8": bad, "onnx": bad}) == "torch"
    assert choose_backend("onnx-int8", {"onnx-int8": bad}) == "onnx-int8"  # forced: the check reports it
