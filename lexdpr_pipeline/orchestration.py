"""Running the graph from code (the CLI's engine): a persistent instance, source observation, staleness.

Dagster's own CLI cannot select assets by stale status; this module asks the instance directly, the same
question the UI's "Materialize stale and missing" button asks.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

from lexdpr_pipeline.jobs import OBSERVE_JOB_NAME
from lexdpr_pipeline.settings import Settings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_FALLBACK_INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def ensure_dagster_home(settings: Settings) -> Path:
    """Use ``$DAGSTER_HOME`` if set, else ``{data_dir}/dagster_home`` (created, with the project's dagster.yaml).

    This is what makes history, and therefore staleness, survive between CLI runs.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        template = PROJECT_ROOT / "dagster.yaml"
        if template.exists():
            shutil.copyfile(template, target)
        else:
            target.write_text(_FALLBACK_INSTANCE_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass(frozen=True)
class AssetState:
    key: dg.AssetKey
    status: str  # MISSING | STALE | FRESH
    causes: tuple[str, ...]

    @property
    def needs_run(self) -> bool:
        return self.status in {"MISSING", "STALE"}


def _toposorted(defs: dg.Definitions) -> list[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    wanted = set(graph.materializable_asset_keys)
    return [k for level in graph.toposorted_asset_keys_by_level for k in sorted(level) if k in wanted]


def asset_states(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[AssetState]:
    """Stale status of every materializable asset, in dependency order, with human-readable causes."""
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    states = []
    for key in _toposorted(defs):
        status = resolver.get_status(key)
        causes: tuple[str, ...] = ()
        if status == StaleStatus.STALE:
            causes = tuple(
                f"{c.reason}" + (f" ({c.dependency.asset_key.to_user_string()})" if c.dependency else "")
                for c in resolver.get_stale_causes(key)
            )
        elif status == StaleStatus.MISSING:
            causes = ("never materialized",)
        states.append(AssetState(key, status.value, causes))
    return states


def observe_sources(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Record a fresh observation (content fingerprint) of every observable source asset."""
    job = defs.resolve_job_def(OBSERVE_JOB_NAME)
    job.execute_in_process(instance=instance, tags={"lexdpr/trigger": "observe"})


def materialize(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    keys: Sequence[dg.AssetKey],
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize ``keys`` (and only those) in one run recorded in ``instance``."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance, asset_selection=list(keys), run_config=dict(run_config or {}), tags=dict(tags or {})
    )


def ops_config(asset_names: Iterable[str], config: Mapping[str, Any]) -> dict[str, Any]:
    """Run config that gives the same op config to each named asset (skipping empty values)."""
    clean = {k: v for k, v in config.items() if v is not None}
    return {"ops": {name: {"config": clean} for name in asset_names}} if clean else {}


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any]:
    """Plain values of the latest materialization's metadata (rows, wall_time_s, …); ``{}`` if never materialized."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {name: getattr(value, "value", value) for name, value in event.asset_materialization.metadata.items()}
