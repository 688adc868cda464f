"""MLflow runs link to the Dagster run that made them when the Dagster UI is known (``LEXDPR_DAGSTER_UI``)."""

from __future__ import annotations

from pathlib import Path

import mlflow

from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline.tracking import start_run, tracking_target


def _settings(tmp_path: Path, *overrides: str, environ: dict[str, str] | None = None):
    return load_settings(
        overrides=[f"paths.data_dir={tmp_path}", f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *overrides],
        environ=environ or {},
    )


def test_dagster_ui_from_the_environment_or_the_setting(tmp_path: Path) -> None:
    env = {"LEXDPR_DAGSTER_UI": "http://dagster.internal:3000"}
    assert tracking_target(_settings(tmp_path), environ={}).dagster_ui is None
    # The named variable reaches the setting (what a Dagster run sees) and is read directly as a fallback.
    assert _settings(tmp_path, environ=env).tracking.dagster_ui == "http://dagster.internal:3000"
    assert tracking_target(_settings(tmp_path), environ=env).dagster_ui == "http://dagster.internal:3000"
    target = tracking_target(_settings(tmp_path, "tracking.dagster_ui=http://127.0.0.1:3000/"), environ=env)
    assert target.dagster_run_url("abc") == "http://127.0.0.1:3000/runs/abc"


def test_run_links_to_its_dagster_run(tmp_path: Path) -> None:
    target = tracking_target(_settings(tmp_path, "tracking.dagster_ui=http://127.0.0.1:3000"), environ={})
    tags = {"dagster_run_id": "1f2e-run", "dagster_asset_key": "model_evaluation"}
    with start_run(target, run_name="linked", tags=tags) as (_, handle):
        pass
    run = mlflow.MlflowClient(target.uri).get_run(handle.run_id)
    assert run.data.tags["dagster_run_id"] == "1f2e-run"  # the plain id stays
    assert run.data.tags["dagster_run_url"] == "http://127.0.0.1:3000/runs/1f2e-run"
    note = run.data.tags["mlflow.note.content"]  # the run's description: markdown in the MLflow UI
    assert note.startswith("Dagster run [1f2e-run](http://127.0.0.1:3000/runs/1f2e-run)") and "model_evaluation" in note


def test_no_link_without_a_dagster_ui_or_a_dagster_run(tmp_path: Path) -> None:
    plain = tracking_target(_settings(tmp_path), environ={})
    with start_run(plain, run_name="unlinked", tags={"dagster_run_id": "r1"}) as (_, first):
        pass
    linked = tracking_target(_settings(tmp_path, "tracking.dagster_ui=http://127.0.0.1:3000"), environ={})
    with start_run(linked, run_name="cli", tags={"lexdpr.kind": "training"}) as (_, second):
        pass
    client = mlflow.MlflowClient(plain.uri)
    for run_id in (first.run_id, second.run_id):
        tags = client.get_run(run_id).data.tags
        assert "dagster_run_url" not in tags and "mlflow.note.content" not in tags
