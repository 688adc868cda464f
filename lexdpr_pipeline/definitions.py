"""The Dagster code location: ``[tool.dagster]`` in pyproject and workspace.yaml point ``dagster dev``,
``dagster asset materialize -m lexdpr_pipeline.definitions`` and ``dagster-graphql -m`` here.

Nothing is built on import: Dagster finds the :func:`code_location` loader (``@dg.definitions``) and calls it, and
the CLI calls :func:`build_definitions` itself, once per command, with the settings of its ``--config``/``--set``.
``from lexdpr_pipeline.definitions import defs`` still works (built on first use, from the effective settings).
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from lexdpr_pipeline.assets.citation_expansion import CITATION_EXPANSION_ASSETS, index_assets
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS
from lexdpr_pipeline.assets.corpus import CORPUS_ASSETS
from lexdpr_pipeline.assets.encoder_export import ENCODER_EXPORT_ASSETS, ENCODER_EXPORT_CHECKS
from lexdpr_pipeline.assets.evaluation import EVALUATION_ASSETS, EVALUATION_CHECKS
from lexdpr_pipeline.assets.ingest import INGEST_ASSETS, INGEST_CHECKS, SOURCE_ASSETS
from lexdpr_pipeline.assets.models import MODEL_ASSETS
from lexdpr_pipeline.assets.search_index import SEARCH_INDEX_CHECKS
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


def model_step_names(assets: Iterable[object], jobs: Iterable[object] = ()) -> list[str]:
    """The ops tagged :data:`MODEL_STEP_TAGS` (torch steps): of the executable assets and of the op jobs (the sweep;
    asset jobs add no op of their own)."""
    ops = [op for job in jobs if isinstance(job, dg.JobDefinition) for op in job.graph.iterate_op_defs()]
    for a in assets:
        if isinstance(a, dg.AssetsDefinition) and a.is_executable:
            ops.extend(a.node_def.iterate_op_defs())
    return sorted({op.name for op in ops if all(op.tags.get(k) == v for k, v in MODEL_STEP_TAGS.items())})


def gpu_step_k8s_config(gpus: int | None, image: str | None = None) -> dict:
    """dagster-k8s' user-defined config (what a ``dagster-k8s/config`` tag holds) for one model step's pod: ``gpus``
    nvidia.com/gpu requested and limited (Kubernetes wants both equal), a toleration for GPU nodes tainted
    ``nvidia.com/gpu``, and ``image`` (a CUDA torch build) instead of the code location's. Empty: nothing to add."""
    config: dict = {}
    if gpus:
        amount = {"nvidia.com/gpu": str(gpus)}
        config["container_config"] = {"resources": {"requests": dict(amount), "limits": dict(amount)}}
        toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        config["pod_spec_config"] = {"tolerations": [toleration]}
    if image:
        config.setdefault("container_config", {})["image"] = image
    return config


def model_step_k8s_config(step_names: Iterable[str], gpus: int | None, image: str | None = None) -> dict[str, dict]:
    """``per_step_k8s_config`` of the k8s executor: :func:`gpu_step_k8s_config` for each model step, by op name.

    The model steps' resources go here, not into a ``dagster-k8s/config`` op tag: op tags are fixed when the asset
    modules are imported, before the settings are known, and dagster-k8s merges this map over the tags' config."""
    config = gpu_step_k8s_config(gpus, image)
    return {name: config for name in step_names} if config else {}


def k8s_executor(
    model_step_concurrency: int, per_step_k8s_config: dict[str, dict] | None = None
) -> dg.ExecutorDefinition:
    """dagster-k8s' ``k8s_job_executor`` (every step its own Kubernetes job, run by the K8sRunLauncher's pod) with
    the same limit on concurrent model steps as :func:`run_executor`."""
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as exc:
        raise RuntimeError(
            "schedule.executor=k8s needs dagster-k8s, the release of the installed dagster "
            f"({dg.__version__}; libraries are 0.<minor+16>.<patch>): pip install -c constraints.txt '.[k8s]'"
        ) from exc
    limits = [{"key": key, "value": value, "limit": model_step_concurrency} for key, value in MODEL_STEP_TAGS.items()]
    config: dict = {"tag_concurrency_limits": limits}
    if per_step_k8s_config:
        config["per_step_k8s_config"] = per_step_k8s_config
    return k8s_job_executor.configured(config, name="lexdpr_k8s")


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
    assets = [
        *SOURCE_ASSETS,
        *INGEST_ASSETS,
        *MODEL_ASSETS,
        *CORPUS_ASSETS,
        *TRAINING_DATA_ASSETS,
        *CITATION_EXPANSION_ASSETS,
        *TRAINING_ASSETS,
        *EVALUATION_ASSETS,
        *ENCODER_EXPORT_ASSETS,
        *index_assets(settings),  # bm25_index with the citation expansion when index.bm25_expansion_weight > 0
        *SWEEP_ASSETS,  # declared only: sweep_job reports it, '*' never runs a sweep
    ]
    jobs = [ingest_job, downstream_refresh_job, retrain_job, observe_sources_job, *SWEEP_JOBS]
    if schedule.executor == "k8s":
        per_step = model_step_k8s_config(
            model_step_names(assets, jobs), schedule.gpu_per_model_step, schedule.model_step_image
        )
        executor = k8s_executor(schedule.model_step_concurrency, per_step)
    else:
        executor = run_executor(schedule.model_step_concurrency)
    return dg.Definitions(
        assets=assets,
        asset_checks=[
            *INGEST_CHECKS,
            *TRAINING_DATA_CHECKS,
            *EVALUATION_CHECKS,
            *ENCODER_EXPORT_CHECKS,
            *SEARCH_INDEX_CHECKS,
        ],
        executor=executor,
        jobs=jobs,
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
