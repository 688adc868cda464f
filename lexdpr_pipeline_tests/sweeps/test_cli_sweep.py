"""``lex-dpr sweep`` through Typer's CliRunner. The Dagster instance and code location are replaced by an ephemeral
instance holding stand-ins for the data stages (tiny real training set, tiny model); the sweep itself is real."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from typer.testing import CliRunner

from lexdpr_pipeline import cli
from lexdpr_pipeline.assets.sweeps import SWEEP_KEY
from lexdpr_pipeline.settings import Settings, load_settings
from lexdpr_pipeline_tests.sweeps.conftest import settings_overrides
from lexdpr_pipeline_tests.sweeps.test_sweep_job import sweep_defs

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def fake_location(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> dict:
    """``_instance_and_defs`` → an ephemeral instance with the stand-in upstream materialized, and definitions built
    from the settings the CLI loaded (so the test sees which settings file reached the run)."""
    seen: dict = {}

    def instance_and_defs(settings: Settings):
        root = settings.data_dir.parent
        defs = sweep_defs(root, tiny_model_dir)
        instance = dg.DagsterInstance.ephemeral()
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance).success
        seen.update(settings=settings, instance=instance)
        return instance, defs

    monkeypatch.setattr(cli, "_instance_and_defs", instance_and_defs)
    return seen


def _settings_file(root: Path) -> Path:
    """A settings YAML equivalent to the tests' overrides (the global --config)."""
    tree: dict = {}
    for item in settings_overrides(root):
        key, value = item.split("=", 1)
        section, field = key.split(".")
        tree.setdefault(section, {})[field] = yaml.safe_load(value)
    path = root / "settings.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def test_sweep_command_runs_the_job_and_prints_the_summary(fake_location: dict, tmp_path: Path):
    settings_file = _settings_file(tmp_path)
    sweep_file = REPO / "configs" / "sweep_tiny.yaml"
    result = runner.invoke(
        cli.app, ["--config", str(settings_file), "sweep", "--config", str(sweep_file), "--trials", "1"]
    )
    assert result.exit_code == 0, result.output
    # the global --config was the settings file, the sweep's --config the sweep file
    assert fake_location["settings"].data_dir == (tmp_path / "data").resolve()
    best = tmp_path / "data" / "sweeps" / "smoke" / "best.yaml"
    assert best.exists() and f"best_config: {best}" in result.output
    assert "Sweep smoke" in result.output and "train with the best settings" in result.output
    assert load_settings(best, environ={}).train.max_steps == 3
    event = fake_location["instance"].get_latest_materialization_event(SWEEP_KEY)
    assert event is not None and event.asset_materialization.metadata["ran_this_run"].value == [0]


def test_a_bad_sweep_file_is_a_clear_error(fake_location: dict, tmp_path: Path):
    bad = tmp_path / "sweep.yaml"
    bad.write_text(
        "name: s\nn_trials: 2\nmetric: test.ndcg@10\nparams: {train.batch_size: {type: int, low: 8, high: 16}}\n"
    )
    result = runner.invoke(cli.app, ["sweep", "--config", str(bad)])
    assert result.exit_code == 2 and "validation metric" in result.output
    assert "settings" not in fake_location  # nothing ran
    result = runner.invoke(cli.app, ["sweep", "--config", str(REPO / "configs" / "sweep.yaml"), "--strategy", "bayes"])
    assert result.exit_code != 0 and "grid, random, tpe" in result.output
