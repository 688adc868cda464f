"""Smoke run of scripts/bench_search.py on the tiny model and a corpus slice: it prints every figure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline_tests.conftest import REPO_ROOT
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice


def _bench():
    spec = importlib.util.spec_from_file_location("bench_search", REPO_ROOT / "scripts" / "bench_search.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_prints_every_figure(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "merged_corpus.parquet"
    corpus_slice().write_parquet(corpus)
    splits = tmp_path / "dataset_splits.parquet"
    pl.DataFrame(
        {"query_text": ["국가배상 책임", "가등기담보권 실행", "손해배상 청구"], "split": "test"}
    ).write_parquet(splits)
    out = tmp_path / "figures.json"
    argv = ["--model", str(tiny_model_dir), "--corpus", str(corpus), "--splits", str(splits), "--limit", "70"]
    argv += ["--queries", "3", "--latency-queries", "3", "--workdir", str(tmp_path / "work"), "--json", str(out)]
    argv += ["--api", "--scale-to", "500"]
    assert _bench().main(argv) == 0
    printed = capsys.readouterr().out
    for needle in ("passages/s:", "one-law change", "| flat |", "| ivf |", "| hnsw |", "| dense |", "| bm25 |"):
        assert needle in printed
    assert "| hybrid |" in printed and "3 test-split queries" in printed
    figures = json.loads(out.read_text())
    assert figures["passages"] == 70
    change = figures["embed"]["one_law_change"]
    assert change["encoded"] == change["law_passages"] > 0 and change["reused"] == 70 - change["law_passages"]
    assert figures["faiss"]["flat"]["recall_at_10"] == 1.0
    engine = figures["engine"]["by_backend"]["torch"]
    assert set(engine) == {"dense", "bm25", "hybrid"} and figures["engine"]["passages"] == 70
    assert all(engine[m]["p99_ms"] >= engine[m]["p95_ms"] >= engine[m]["p50_ms"] > 0 for m in ("dense", "bm25"))
    assert set(figures["api"]) == {"dense", "hybrid"} and figures["api"]["dense"]["n"] == 3  # through uvicorn
    assert figures["faiss_scaled"]["vectors"] == 500 and figures["faiss_scaled"]["flat"]["size_mb"] > 0


def test_bench_full_corpus_with_an_exported_query_encoder(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """--full-corpus: every passage of the corpus is searchable, the unembedded ones on synthetic vectors (counted);
    --embed-backend embeds the slice with the int8 export; --backends times it as the query encoder beside torch."""
    corpus = tmp_path / "merged_corpus.parquet"
    frame = corpus_slice()
    frame.write_parquet(corpus)
    out = tmp_path / "figures.json"
    argv = ["--model", str(tiny_model_dir), "--corpus", str(corpus), "--splits", str(tmp_path / "none.parquet")]
    argv += ["--limit", "40", "--queries", "3", "--latency-queries", "3", "--types", "flat", "--json", str(out)]
    argv += ["--full-corpus", "--backends", "torch,onnx-int8", "--embed-backend", "onnx-int8"]
    argv += ["--workdir", str(tmp_path / "work")]
    assert _bench().main(argv) == 0
    printed = capsys.readouterr().out
    assert "query encoder onnx-int8" in printed and "synthetic" in printed
    figures = json.loads(out.read_text())
    assert figures["embed_backend"] == "onnx-int8" and figures["embed"]["full"]["encoded"] == 40
    assert figures["engine"]["passages"] == frame.height > 40
    assert figures["engine"]["synthetic_vectors"] == frame.height - 40
    assert set(figures["engine"]["by_backend"]) == {"torch", "onnx-int8"}
    assert set(figures["engine"]["by_backend"]["onnx-int8"]) == {"dense", "bm25", "hybrid"}
    assert (tmp_path / "work" / "export" / "onnx-int8" / "export.json").is_file()
