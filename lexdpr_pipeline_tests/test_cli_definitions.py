"""The CLI's plumbing: definitions built once per command, typed run configs, the one "missing upstream" helper."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

import lexdpr_pipeline.definitions as definitions
from lexdpr_pipeline.cli import app
from lexdpr_pipeline.orchestration import missing_upstream, run_config_for
from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline_tests.conftest import CORPUS


@pytest.fixture()
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./lexdpr.yaml or ./.env of the repo
    monkeypatch.delenv("LEXDPR_CONFIG", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEXDPR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEXDPR_MIRROR_DIR", str(tmp_path / "mirror"))
    return tmp_path


def test_importing_the_code_location_builds_nothing_and_dagster_finds_its_loader() -> None:
    from dagster._core.workspace.autodiscovery import loadable_targets_from_loaded_module

    targets = loadable_targets_from_loaded_module(definitions)
    assert [t.attribute for t in targets] == ["code_location"]  # the @dg.definitions loader, not a built object
    assert not any(isinstance(v, dg.Definitions) for k, v in vars(definitions).items() if k != "_defs")
    built = definitions.code_location()
    assert isinstance(built, dg.Definitions) and built.resolve_job_def("ingest_job")


@pytest.mark.parametrize("command", [["status"], ["refresh", "--dry-run"]])
def test_a_command_builds_the_definitions_once(
    command: list[str], cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Settings | None] = []
    real = definitions.build_definitions

    def counting(settings: Settings | None = None) -> dg.Definitions:
        built.append(settings)
        return real(settings)

    monkeypatch.setattr(definitions, "build_definitions", counting)
    result = CliRunner().invoke(app, ["--set", "ingest.max_items=3", *command])
    assert result.exit_code == 0, result.output
    assert "raw_statutes" in result.output
    assert len(built) == 1, f"{command}: definitions built {len(built)} times"
    assert built[0] is not None and built[0].ingest.max_items == 3  # from the CLI's own settings (--set)


def test_run_configs_come_from_the_config_classes_and_fit_the_jobs() -> None:
    from lexdpr_pipeline.assets.ingest import INGEST_ASSETS, IngestConfig, raw_precedents
    from lexdpr_pipeline.assets.sweeps import SweepRunConfig, SweepStrategy, hyperparameter_sweep_op, sweep_job
    from lexdpr_pipeline.assets.training import TrainRunConfig, trained_model

    defs = definitions.build_definitions(Settings())
    assets_job = defs.resolve_implicit_global_asset_job_def()
    train = run_config_for({trained_model: TrainRunConfig(overrides=["train.epochs=2"], test_run=True)})
    assert train == {"ops": {"trained_model": {"config": {"overrides": ["train.epochs=2"], "test_run": True}}}}
    ingest = run_config_for(
        dict.fromkeys(INGEST_ASSETS, IngestConfig(overrides=["ingest.max_items=5"], since="2020-01-01"))
    )
    assert ingest["ops"][raw_precedents.op.name]["config"]["overrides"] == ["ingest.max_items=5"]
    assert set(ingest["ops"]) == {"raw_statutes", "raw_admin_rules", "raw_precedents"}
    sweep = run_config_for({hyperparameter_sweep_op: SweepRunConfig(n_trials=2, strategy=SweepStrategy.tpe)})
    assert sweep["ops"]["hyperparameter_sweep"]["config"]["strategy"] == "tpe"
    for job, config in ((assets_job, train), (assets_job, ingest), (defs.resolve_job_def(sweep_job.name), sweep)):
        assert dg.validate_run_config(job, config)


def test_the_ingest_run_config_refuses_other_sections() -> None:
    from lexdpr_pipeline.assets.ingest import ingest_settings

    effective = ingest_settings(Settings(), ["ingest.source=api", "lawgo.detail_parse_retries=0"])
    assert effective.ingest.source == "api" and effective.lawgo.detail_parse_retries == 0
    with pytest.raises(ValueError, match=r"may set ingest\.\*, lawgo\.\* only"):
        ingest_settings(Settings(), ["train.epochs=2"])
    with pytest.raises(ValueError, match=r"lawgo\.oc is a secret"):
        ingest_settings(Settings(), ["lawgo.oc=abc"])


def test_materialize_flags_become_the_ingest_run_config(cli_env: Path) -> None:
    src = sorted((CORPUS / "precedent-kr" / "민사" / "대법원").glob("*.md"))[:3]
    dest = cli_env / "mirror" / "precedent-kr" / "민사" / "대법원"
    dest.mkdir(parents=True)
    for path in src:
        shutil.copy(path, dest / path.name)
    args = ["materialize", "--select", "raw_precedents", "--source", "mirror", "--limit", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(cli_env / "data" / "tables" / "raw_precedents.parquet").height == 2
    with dg.DagsterInstance.from_config(str(cli_env / "home")) as instance:
        runs = [r for r in instance.get_runs() if r.tags.get("lexdpr/trigger") == "materialize"]
        assert len(runs) == 1
        config = runs[0].run_config["ops"]["raw_precedents"]["config"]
    assert config["overrides"] == ["ingest.source=mirror", "ingest.max_items=2"] and config["incremental"] is True


def test_missing_upstream_lists_never_materialized_assets_in_dependency_order() -> None:
    @dg.asset
    def a() -> int:
        return 1

    @dg.asset
    def b(a: int) -> int:
        return a + 1

    @dg.asset
    def c(b: int) -> int:
        return b + 1

    @dg.asset
    def unrelated() -> int:
        return 0

    defs = dg.Definitions(assets=[a, b, c, unrelated])
    with dg.instance_for_test() as instance:
        assert dg.materialize([a], instance=instance).success
        assert missing_upstream(instance, defs, [c.key]) == [b.key, c.key]
        assert missing_upstream(instance, defs, [a.key]) == []
