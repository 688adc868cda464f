"""Run one ingest asset for real: the project's definitions, a persistent DAGSTER_HOME (sqlite run history, compute
logs) and the fake law.go.kr server — in-process, as ``lex-dpr crawl-precedents`` does."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lexdpr_pipeline_tests.conftest import REPO_ROOT
from lexdpr_pipeline_tests.fake_lawgo import FakeLawGo

#: Fast client settings for runs against the fake server (the rest are the project defaults).
FAST_ENV = {
    "LAW_GO_KR_RATE_LIMIT": "0",
    "LEXDPR__LAWGO__MAX_RETRIES": "2",
    "LEXDPR__LAWGO__BACKOFF_BASE_S": "0.01",
    "LEXDPR__LAWGO__BACKOFF_MAX_S": "0.05",
    "LEXDPR__LAWGO__TIMEOUT_S": "5",
}
#: The ingest run config's override that crawls the API.
API = ["ingest.source=api"]


@dataclass
class IngestRun:
    success: bool
    result: dg.ExecuteInProcessResult
    home: Path
    data: Path
    metadata: dict[str, Any]  # the materialization's metadata values ({} when the asset failed)
    checks: dict[str, dg.AssetCheckEvaluation]
    warnings: list[str]  # WARNING (and above) messages of the run's event log


def run_ingest(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeLawGo | None,
    *,
    asset: str = "raw_precedents",
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> IngestRun:
    """Materialize ``asset`` once (run config ``{"overrides": API}`` unless given) with ``tmp_path/home`` as
    DAGSTER_HOME and ``tmp_path/data`` as the data dir; the key is ``fake.oc``."""
    from lexdpr_pipeline.definitions import build_definitions
    from lexdpr_pipeline.settings import load_settings

    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.chdir(tmp_path)  # no ./lexdpr.yaml or .env of the repo
    monkeypatch.delenv("LEXDPR_CONFIG", raising=False)
    values = {"DAGSTER_HOME": str(home), "LEXDPR_DATA_DIR": str(data), **FAST_ENV, **(env or {})}
    if fake is not None:
        values |= {"LAW_GO_KR_OC": fake.oc, "LAW_GO_KR_BASE_URL": fake.base_url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(load_settings())
    key = dg.AssetKey(asset)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[key],
            run_config={"ops": {asset: {"config": config if config is not None else {"overrides": API}}}},
            raise_on_error=False,
        )
        event = instance.get_latest_materialization_event(key)
        warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level >= logging.WARNING]
    metadata: dict[str, Any] = {}
    if result.success and event is not None and event.asset_materialization is not None:
        metadata = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return IngestRun(result.success, result, home, data, metadata, checks, warnings)
