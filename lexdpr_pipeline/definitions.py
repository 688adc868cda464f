"""The Dagster code location: ``[tool.dagster]`` in pyproject and workspace.yaml point ``dagster dev``,
``dagster asset materialize -m lexdpr_pipeline.definitions`` and ``dagster-graphql -m`` here.

Nothing is built on import: Dagster finds the :func:`code_location` loader (``@dg.definitions``) and calls it, and
the CLI calls :func:`build_definitions` itself, once per command, with the settings of its ``--config``/``--set``.
``from lexdpr_pipeline.definitions import defs`` still works (built on first use, from the effective settings).
"""

from __future__ import annotations

import dagster as dg

from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS
from lexdpr_pipeline.assets.corpus import CORPUS_ASSETS
from lexdpr_pipeline.assets.encoder_export import ENCODER_EXPORT_ASSETS, ENCODER_EXPORT_CHECKS
from lexdpr_pipeline.assets.evaluation import EVALUATION_ASSETS
from lexdpr_pipeline.assets.ingest import INGEST_ASSETS, INGEST_CHECKS, SOURCE_ASSETS
from lexdpr_pipeline.assets.models import MODEL_ASSETS
from lexdpr_pipeline.assets.search_index import SEARCH_INDEX_ASSETS, SEARCH_INDEX_CHECKS
from lexdpr_pipeline.assets.sweeps import SWEEP_ASSETS, SWEEP_JOBS
from lexdpr_pipeline.assets.training import TRAINING_ASSETS
from lexdpr_pipeline.assets.training_data import TRAINING_DATA_ASSETS, TRAINING_DATA_CHECKS
from lexdpr_pipeline.jobs import downstream_refresh_job, ingest_job, observe_sources_job, retrain_job
from lexdpr_pipeline.logging_setup import configure_logging
from lexdpr_pipeline.resources import project_resources
from lexdpr_pipeline.schedules import (
    corpus_refresh_schedule,
    refresh_downstream_after_ingest,
    retrain_policy_sensor,
    retrain_schedule,
)
from lexdpr_pipeline.settings import Settings, load_settings


def run_executor(model_step_concurrency: int, max_concurrent: int | None = None) -> dg.ExecutorDefinition:
    """Multiprocess, as Dagster's default (``max_concurrent`` None: one step per CPU), but at most
    ``model_step_concurrency`` torch steps at once per run: ``dagster asset materialize --select '*'`` would otherwise
    start training and embedding side by side, and each already uses every core."""
    limits = [{"key": key, "value": value, "limit": model_step_concurrency} for key, value in MODEL_STEP_TAGS.items()]
    config: dict = {"tag_concurrency_limits": limits}
    if max_concurrent is not None:
        config["max_concurrent"] = max_concurrent
    return dg.multiprocess_executor.configured(config, name="lexdpr_multiprocess")


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    configure_logging(
        settings.logging.level,
        settings.logging.json_format,
        settings.logging.file,
        secrets=[settings.lawgo.oc.get_secret_value()] if settings.lawgo.oc else [],
    )
    schedule = settings.schedule
    schedules = [corpus_refresh_schedule(schedule.refresh_cron, schedule.timezone)]
    if schedule.retrain_cron:
        schedules.append(retrain_schedule(schedule.retrain_cron, schedule.timezone))
    return dg.Definitions(
        assets=[
            *SOURCE_ASSETS,
            *INGEST_ASSETS,
            *MODEL_ASSETS,
            *CORPUS_ASSETS,
            *TRAINING_DATA_ASSETS,
            *TRAINING_ASSETS,
            *EVALUATION_ASSETS,
            *ENCODER_EXPORT_ASSETS,
            *SEARCH_INDEX_ASSETS,
            *SWEEP_ASSETS,  # declared only: sweep_job reports it, '*' never runs a sweep
        ],
        asset_checks=[*INGEST_CHECKS, *TRAINING_DATA_CHECKS, *ENCODER_EXPORT_CHECKS, *SEARCH_INDEX_CHECKS],
        executor=run_executor(settings.schedule.model_step_concurrency),
        jobs=[ingest_job, downstream_refresh_job, retrain_job, observe_sources_job, *SWEEP_JOBS],
        schedules=schedules,
        sensors=[refresh_downstream_after_ingest, retrain_policy_sensor(schedule.retrain_min_growth)],
        resources=project_resources(settings),
    )


@dg.definitions
def code_location() -> dg.Definitions:
    """What Dagster's tools load: the definitions of the effective settings (``LEXDPR_CONFIG``, ./lexdpr.yaml,
    the environment), built when Dagster asks for them."""
    return build_definitions()


_defs: dg.Definitions | None = None


def __getattr__(name: str) -> dg.Definitions:
    """``defs``: the definitions of the effective settings, built on first access and kept (tests, scripts)."""
    global _defs
    if name != "defs":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _defs is None:
        _defs = build_definitions()
    return _defs
