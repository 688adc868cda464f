"""`lex-dpr crawl-precedents` end to end: CLI → raw_precedents asset (source=api) → crawler → local DRF replay."""

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from lexdpr_pipeline.cli import app
from lexdpr_pipeline_tests.sources.lawgo.conftest import FAKE_OC, FakeDrf


def test_crawl_precedents_through_the_asset(drf: FakeDrf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "DAGSTER_HOME": str(tmp_path / "home"),
        "LEXDPR_DATA_DIR": str(tmp_path / "data"),
        "LAW_GO_KR_OC": FAKE_OC,
        "LAW_GO_KR_BASE_URL": drf.base_url,
        "LAW_GO_KR_RATE_LIMIT": "0",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["crawl-precedents", "--since", "2000-01-01", "--limit", "4"])
    assert result.exit_code == 0, result.output
    assert "success" in result.output and FAKE_OC not in result.output

    table = pl.read_parquet(tmp_path / "data" / "tables" / "raw_precedents.parquet")
    assert table.height == 4 and set(table["source"]) == {"api"}
    assert table["prec_id"].str.starts_with("prec:").all()
    assert any("prncYd" in s and s["prncYd"].startswith("20000101~") for s in drf.searches())
    for path in tmp_path.rglob("*"):  # raw bodies, sidecars, tables, reports, Dagster's run storage: no key
        if path.is_file():
            assert FAKE_OC.encode() not in path.read_bytes(), path

    again = CliRunner().invoke(app, ["crawl-precedents", "--since", "2000-01-01", "--limit", "4"])
    assert again.exit_code == 0, again.output
    assert pl.read_parquet(tmp_path / "data" / "tables" / "raw_precedents.parquet").equals(table)
