"""End to end through the real CLIs (`dagster asset materialize`, `lex-dpr`) on a small slice of ../shared/corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lexdpr_pipeline_tests.conftest import CORPUS

BIN = Path(sys.executable).parent
STATUTE_LAWS = ["민법", "근로기준법", "가사소송법"]
N_PRECEDENTS = 12
INGEST_AND_PROBE = ["raw_statutes", "raw_admin_rules", "raw_precedents", "statute_probe"]


def _slice_mirror(dest: Path) -> None:
    for law in STATUTE_LAWS:
        shutil.copytree(CORPUS / "legalize-kr" / "kr" / law, dest / "legalize-kr" / "kr" / law)
    precs = sorted((CORPUS / "precedent-kr" / "민사" / "대법원").glob("*.md"))[:N_PRECEDENTS]
    out = dest / "precedent-kr" / "민사" / "대법원"
    out.mkdir(parents=True)
    for p in precs:
        shutil.copy(p, out / p.name)


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    _slice_mirror(tmp_path / "mirror")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "dagster.yaml", home / "dagster.yaml")
    e = {k: v for k, v in os.environ.items() if not k.startswith(("LEXDPR", "LAW_GO_KR", "DAGSTER"))}
    e.update(
        DAGSTER_HOME=str(home),
        LEXDPR_MIRROR_DIR=str(tmp_path / "mirror"),
        LEXDPR_DATA_DIR=str(tmp_path / "data"),
        PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}",
    )
    return e


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _states(env: dict[str, str]) -> dict[str, str]:
    from lexdpr_pipeline.definitions import build_definitions
    from lexdpr_pipeline.orchestration import asset_states
    from lexdpr_pipeline.settings import load_settings
    from lexdpr_pipeline_tests.assets.staleness_defs import statute_probe

    defs = dg.Definitions.merge(build_definitions(load_settings(environ=env)), dg.Definitions(assets=[statute_probe]))
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return {s.key.to_user_string(): s.status for s in asset_states(instance, defs)}


@pytest.mark.slow
def test_cli_materialize_then_unchanged_rerun_keeps_downstream_fresh(env: dict[str, str], tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    module = ["-m", "lexdpr_pipeline_tests.assets.staleness_defs", "-d", str(repo)]
    materialize = [str(BIN / "dagster"), "asset", "materialize", *module]
    # cwd = tmp_path: the repo's .env (if any) must not redirect DAGSTER_HOME.
    # As scripts/main.sh does: observe the mirrors, then materialize everything.
    _run([str(BIN / "dagster"), "job", "execute", *module, "-j", "observe_sources_job"], env, tmp_path)
    _run([*materialize, "--select", ",".join(INGEST_AND_PROBE)], env, tmp_path)

    statutes = pl.read_parquet(tmp_path / "data" / "tables" / "raw_statutes.parquet")
    assert statutes["law_name"].unique().len() >= len(STATUTE_LAWS)
    assert pl.read_parquet(tmp_path / "data" / "tables" / "raw_precedents.parquet").height == N_PRECEDENTS
    states = _states(env)
    assert {k: states[k] for k in INGEST_AND_PROBE} == dict.fromkeys(INGEST_AND_PROBE, "FRESH")

    # The same ingest again: new materializations, same content hash → downstream stays fresh.
    _run([*materialize, "--select", "group:ingest"], env, tmp_path)
    assert _states(env)["statute_probe"] == "FRESH"

    # Change one statute in the mirror: refresh re-reads exactly the statutes, and downstream becomes stale.
    civil = tmp_path / "mirror" / "legalize-kr" / "kr" / "민법" / "법률.md"
    civil.write_text(civil.read_text(encoding="utf-8").replace("조리에 의한다", "조리에 따른다"), encoding="utf-8")
    lexdpr = str(BIN / "lex-dpr")
    dry = _run([lexdpr, "refresh", "--dry-run", "--select", "group:ingest"], env, tmp_path)
    assert "raw_statutes: STALE" in dry and "raw_precedents" not in dry
    out = _run([lexdpr, "refresh", "--select", "group:ingest"], env, tmp_path)
    assert "materialized raw_statutes" in out and "raw_precedents" not in out.split("materialized", 1)[1]
    assert _states(env)["statute_probe"] == "STALE"
    assert "nothing to run" in _run([lexdpr, "refresh", "--select", "group:ingest"], env, tmp_path)
    changed = pl.read_parquet(tmp_path / "data" / "tables" / "raw_statutes.parquet")
    assert changed.filter(pl.col("text").str.contains("조리에 따른다")).height == 1
