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
    assert set(figures["engine"]) == {"dense_type", "dense", "bm25", "hybrid"}
    assert all(figures["engine"][m]["p99_ms"] >= figures["engine"][m]["p50_ms"] > 0 for m in ("dense", "bm25"))
    assert set(figures["api"]) == {"dense", "hybrid"} and figures["api"]["dense"]["n"] == 3  # through uvicorn
    assert figures["faiss_scaled"]["vectors"] == 500 and figures["faiss_scaled"]["flat"]["size_mb"] > 0
