"""The encoder factory, the backend-keyed version, the gate's sample and auto's choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.index.embeddings import EmbeddingCache, embed_corpus
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.models.encoders import cpu_supports_bf16, encoder_version, load_encoder, needs_export
from lexdpr_pipeline.models.export import export_encoder
from lexdpr_pipeline.models.export_gate import (
    BackendResult,
    backends_to_try,
    batch_backend,
    choose_backend,
    choose_query_backend,
    gate_sample,
)
from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder


def test_encoder_version_keeps_torch_and_separates_exports() -> None:
    assert encoder_version("abc") == encoder_version("abc", "torch") == "abc"  # existing caches stay valid
    versions = {encoder_version("abc", b) for b in ("torch", "torch-bf16", "onnx", "onnx-int8")}
    assert len(versions) == 4
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
    assert backends_to_try("auto") == ("onnx-int8", "onnx")  # no native bf16: torch-bf16 would be slower than fp32
    assert backends_to_try("auto", bf16=True) == ("torch-bf16", "onnx-int8", "onnx")
    assert backends_to_try("torch-bf16") == ("torch-bf16",)  # forced: gated even where it is slow
    assert backends_to_try("auto", gpu=True, bf16=True) == () and backends_to_try("onnx", gpu=True) == ("onnx",)
    with pytest.raises(ValueError, match="unknown encoder backend"):
        backends_to_try("openvino")
    ok, bad = BackendResult("x", passed=True), BackendResult("x", passed=False)
    torch_ok = {"torch": ok}
    assert choose_backend("auto", {**torch_ok, "onnx-int8": ok, "onnx": ok}) == "onnx-int8"
    assert choose_backend("auto", {**torch_ok, "onnx-int8": bad, "onnx": ok}) == "onnx"
    assert choose_backend("auto", {**torch_ok, "onnx-int8": bad, "onnx": bad}) == "torch"
    assert choose_backend("auto", {**torch_ok, "torch-bf16": ok, "onnx-int8": ok}) == "torch-bf16"
    assert choose_backend("auto", {**torch_ok, "torch-bf16": bad, "onnx-int8": ok}) == "onnx-int8"
    assert choose_backend("onnx-int8", {"onnx-int8": bad}) == "onnx-int8"  # forced: the check reports it
    # queries: only auto's torch-bf16 hands them to onnxruntime (the first ONNX backend that passed)
    gated = {**torch_ok, "torch-bf16": ok, "onnx-int8": bad, "onnx": ok}
    assert choose_query_backend("auto", "torch-bf16", gated) == "onnx"
    assert choose_query_backend("auto", "torch-bf16", {**gated, "onnx": bad}) is None
    assert choose_query_backend("torch-bf16", "torch-bf16", gated) is None  # forced: one runtime for both
    assert choose_query_backend("auto", "onnx-int8", {**gated, "onnx-int8": ok}) is None


def test_eval_backend_auto() -> None:
    assert batch_backend("auto", gpu=False, bf16=True) == "torch-bf16"
    assert batch_backend("auto", gpu=False, bf16=False) == "onnx-int8"
    assert batch_backend("auto", gpu=True, bf16=True) == "torch"
    assert batch_backend("onnx", gpu=True) == "onnx"  # an explicit backend is kept
    with pytest.raises(ValueError, match="unknown encoder backend"):
        batch_backend("openvino")


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    def cpuinfo(name: str, flags: str) -> str:
        path = tmp_path / name
        path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n", encoding="utf-8")
        return str(path)

    assert cpu_supports_bf16(cpuinfo("amx", "avx512f amx_tile amx_bf16 amx_int8"))
    assert cpu_supports_bf16(cpuinfo("zen4", "avx512f avx512_bf16 avx512_vnni"))
    assert not cpu_supports_bf16(cpuinfo("vnni", "avx512f avx512_vnni avx2"))  # int8 only: auto keeps onnx-int8
    assert not cpu_supports_bf16(str(tmp_path / "missing"))


def test_torch_bf16_is_close_to_fp32_and_never_saved(tiny_model_dir: Path, tmp_path: Path) -> None:
    texts = ["국가배상 책임", "가등기담보 실행에 관한 법률 제3조", "손해배상 청구의 소", "공무원"] * 3
    fp32 = load_encoder(tiny_model_dir, "torch")
    bf16 = load_encoder(tiny_model_dir, "torch-bf16")
    assert isinstance(bf16, BiEncoder) and bf16.precision == "bf16" and not needs_export("torch-bf16")
    weights = list(bf16.model.parameters())
    assert weights and all(str(w.dtype) == "torch.bfloat16" for w in weights)
    for encode in ("encode_passages", "encode_queries"):
        a, b = getattr(fp32, encode)(texts), getattr(bf16, encode)(texts)
        assert b.dtype == np.float32 and b.shape == a.shape
        assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)  # normalized in fp32
        cosine = (a * b).sum(axis=1)
        assert cosine.min() > 0.999 and not np.array_equal(a, b)  # close, but really computed in bf16
    assert bf16.encode_queries([]).shape == (0, a.shape[1])
    with pytest.raises(ValueError, match="encoding only"):
        bf16.save(tmp_path / "out")
