"""Schemathesis (every check, positive and negative data) against the API over the tiny real index, bounded and
deterministic. The full run: ``.venv/bin/python scripts/schemathesis_api.py`` (see docs/API.md)."""

from __future__ import annotations

from pathlib import Path

from lexdpr_pipeline_tests.api.schemathesis_run import run_schemathesis

BOUNDED = ["--max-examples", "25", "--seed", "20261203", "--generation-deterministic", "--workers", "1"]


def test_schemathesis_finds_nothing(tmp_path: Path, tiny_model_dir: Path) -> None:
    status, output = run_schemathesis(tmp_path, tiny_model_dir, BOUNDED, capture=True)
    assert status == 0, output[-6000:]
    assert "No issues found" in output and "5 selected / 5 total" in output
    assert "Warnings:" not in output
