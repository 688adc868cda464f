"""Group ``sweeps``: hyperparameter sweeps (Optuna + MLflow) as the ``sweep_job``.

A sweep runs for an hour or more, so it is deliberately *not* part of the asset graph that ``--select '*'``,
``lex-dpr refresh`` and the downstream-refresh sensor materialize: ``sweep_job`` is an op job. Its op reads
``dataset_splits``, ``merged_corpus`` and ``base_model`` through the IO manager and records its summary as a
materialization of the asset ``hyperparameter_sweep`` (declared here, group ``sweeps``), so the UI shows the best
parameters, the trials table and the plots on that asset's page. Launch it from the UI (Jobs → sweep_job) or with
``lex-dpr sweep --config configs/sweep.yaml``.
"""

import hashlib
from enum import Enum

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS, image_markdown
from lexdpr_pipeline.resources import LexDprProject
from lexdpr_pipeline.settings import with_overrides
from lexdpr_pipeline.storage import frame_content_hash, sha256_file
from lexdpr_pipeline.sweeps.runner import run_sweep
from lexdpr_pipeline.sweeps.space import load_spec

GROUP = "sweeps"
CODE_VERSION = "hyperparameter-sweep-1"
SWEEP_KEY = dg.AssetKey("hyperparameter_sweep")
# dagster's tags for a reported materialization's data and code version (what dg.Output(data_version=…) records)
DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"


class SweepStrategy(Enum):
    grid = "grid"
    random = "random"
    tpe = "tpe"


class SweepRunConfig(dg.Config):
    """Run config of ``sweep_job`` (the launchpad, ``lex-dpr sweep``)."""

    sweep_file: str = "configs/sweep.yaml"  # the sweep YAML; relative paths from the working directory
    n_trials: int | None = None  # overrides the file's budget (total trials, counting stored ones)
    timeout_s: float | None = None  # overrides the file's wall-time budget (this run)
    strategy: SweepStrategy | None = None  # overrides the file's strategy
    overrides: list[str] = []  # noqa: RUF012 (pydantic copies defaults) — settings overrides, e.g. ["train.device=cpu"]


hyperparameter_sweep = dg.AssetSpec(
    SWEEP_KEY,
    group_name=GROUP,
    code_version=CODE_VERSION,
    kinds={"optuna", "mlflow"},
    description="The latest hyperparameter sweep (launch sweep_job): best parameters and value, trials table, "
    "plots, MLflow parent run, and data/sweeps/<name>/best.yaml for `lex-dpr --config … train`. Reads "
    "dataset_splits, merged_corpus and base_model; scored on the valid split only.",
)


#: What a sweep reads; loaded with the project's IO manager, as an asset's inputs would be.
INPUTS = ("dataset_splits", "merged_corpus", "base_model")


@dg.op(
    name="hyperparameter_sweep",
    out=dg.Out(dg.Nothing),
    required_resource_keys={"project", "io_manager"},
    tags={"kind": "optuna", **MODEL_STEP_TAGS},
    description="Run or resume the sweep in sweep_file on dataset_splits / merged_corpus / base_model; report it "
    "as a materialization of hyperparameter_sweep.",
)
def hyperparameter_sweep_op(context: dg.OpExecutionContext, config: SweepRunConfig):
    project: LexDprProject = context.resources.project
    loaded = {
        name: context.resources.io_manager.load_input(dg.build_input_context(asset_key=dg.AssetKey(name)))
        for name in INPUTS
    }
    dataset_splits: pl.DataFrame = loaded["dataset_splits"]
    merged_corpus: pl.DataFrame = loaded["merged_corpus"]
    base_model = BaseModelManifest.from_dict(loaded["base_model"])
    try:
        spec = load_spec(config.sweep_file).with_budget(
            config.n_trials, config.timeout_s, config.strategy.value if config.strategy else None
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    settings = with_overrides(project.settings, config.overrides)
    context.log.info(f"sweep {spec.name}: {spec.strategy.value}, budget {spec.n_trials} trials / {spec.timeout_s} s")
    result = run_sweep(
        spec,
        settings,
        dataset_splits,
        merged_corpus,
        base_model.load_target(),
        tags={
            "dagster_run_id": context.run_id,
            "dagster_job": context.job_name,
            "base_model_hash": base_model.content_hash,
            "pairs_data_version": frame_content_hash(dataset_splits),
        },
    )
    digest = hashlib.sha256(frame_content_hash(result.trials).encode())
    if result.best_config is not None:
        digest.update(sha256_file(result.best_config).encode())
    plots = "\n\n".join(image_markdown(name, path) for name, path in result.plots.items())
    metadata = {
        "summary": dg.MetadataValue.md(result.summary_markdown()),
        "best_value": dg.MetadataValue.float(float("nan") if result.best_value is None else result.best_value),
        "baseline_value": dg.MetadataValue.float(
            float("nan") if result.baseline_value is None else result.baseline_value
        ),
        "best_trial": dg.MetadataValue.int(-1 if result.best_trial is None else result.best_trial),
        "best_params": dg.MetadataValue.json(result.best_params),
        "best_adjustments": dg.MetadataValue.json(result.best_adjustments),
        "best_overrides": dg.MetadataValue.json(result.best_overrides()),
        "best_config": dg.MetadataValue.path(str(result.best_config or "")),
        "trials": dg.MetadataValue.json(result.counts),
        "ran_this_run": dg.MetadataValue.json(result.ran_now),
        "trials_table": dg.MetadataValue.md(result.table_markdown),
        "plots": dg.MetadataValue.md(plots or "_(no plot yet)_"),
        "importances": dg.MetadataValue.json(result.importances or {}),
        "sweep_name": result.name,
        "strategy": result.strategy,
        "objective": f"valid.{result.metric} ({result.direction})",
        "sweep_dir": dg.MetadataValue.path(str(result.sweep_dir)),
        "optuna_storage": result.storage_url,
        "mlflow_parent_run_id": result.mlflow_parent_run_id,
        "mlflow_url": dg.MetadataValue.url(result.mlflow_url) if result.mlflow_url else "",
        "mlflow_tracking_uri": result.tracking_uri,
        "notes": dg.MetadataValue.json(result.notes),
        "wall_time_s": dg.MetadataValue.float(result.wall_time_s),
    }
    context.log_event(
        dg.AssetMaterialization(
            asset_key=SWEEP_KEY,
            description=f"sweep {result.name}",
            metadata=metadata,
            tags={DATA_VERSION_TAG: digest.hexdigest(), CODE_VERSION_TAG: CODE_VERSION},
        )
    )


@dg.job(
    name="sweep_job",
    description="Hyperparameter sweep (Optuna + MLflow) over train.* settings; scored on the valid split. Not part "
    "of '*': launch it on purpose (`lex-dpr sweep`). Config: sweep_file, n_trials, timeout_s, strategy, overrides.",
    tags={"lexdpr/kind": "sweep"},
)
def sweep_job():
    hyperparameter_sweep_op()


SWEEP_ASSETS = [hyperparameter_sweep]
SWEEP_JOBS = [sweep_job]
