"""Smoke run of scripts/bench_index_scale.py: every type measured in its own process, the table, JSON and the
extrapolation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lexdpr_pipeline_tests.conftest import REPO_ROOT


def _bench():
    spec = importlib.util.spec_from_file_location("bench_index_scale", REPO_ROOT / "scripts" / "bench_index_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_measures_each_type_and_extrapolates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "figures.json"
    argv = ["--n", "10000", "--dim", "64", "--types", "flat,ivfpq,hnsw", "--queries", "40", "--batch", "8"]
    argv += ["--threads", "1", "--extrapolate", "1000000,100000000", "--json", str(out)]
    assert _bench().main(argv) == 0
    printed = capsys.readouterr().out
    assert "| flat |" in printed and "| ivfpq |" in printed and "| hnsw |" in printed
    assert "Extrapolated from the measured point (N = 10,000), not measured" in printed
    figures = json.loads(out.read_text())
    rows = {r["type"]: r for r in figures["measured"]}
    assert rows["flat"]["recall_at_10"] == 1.0 and rows["ivfpq"]["recall_at_10"] >= 0.9  # re-ranked
    assert rows["ivfpq"]["params"]["pq_m"] == 8 and "built_as" not in rows["ivfpq"]["params"]  # dim / 8
    assert rows["ivfpq"]["bytes_per_vector"] < rows["flat"]["bytes_per_vector"] / 4
    assert all(r["peak_rss_mb"] > 0 and r["single"]["p95_ms"] >= r["single"]["p50_ms"] for r in rows.values())
    extra = {(e["type"], e["n"]): e for e in figures["extrapolated"]}
    assert len(extra) == 6
    assert extra[("flat", 100_000_000)]["resident_gb"] == pytest.approx((4 * 64 + 8) * 1e8 / 1e9, abs=0.01)
    assert extra[("ivfpq", 100_000_000)]["resident_gb"] == pytest.approx((8 + 8) * 1e8 / 1e9, abs=0.01)
    # flat scales linearly with N, IVF-PQ as sqrt(N) (the figures are rounded: 3 decimals measured, 2 extrapolated)
    flat, ivfpq = rows["flat"]["single"]["p50_ms"], rows["ivfpq"]["single"]["p50_ms"]
    assert extra[("flat", 1_000_000)]["single_p50_ms"] == pytest.approx(100 * flat, rel=0.02, abs=0.06)
    assert extra[("ivfpq", 1_000_000)]["single_p50_ms"] == pytest.approx(10 * ivfpq, rel=0.02, abs=0.011)
