"""Group ``sweeps``: hyperparameter sweeps (Optuna + MLflow) as the ``sweep_job``.

A sweep runs for an hour or more, so it is deliberately *not* part of the asset graph that ``--select '*'``,
``lex-dpr refresh`` and the downstream-refresh sensor materialize: ``sweep_job`` is an op job. Its op reads the stored
``dataset_splits``, ``merged_corpus`` and ``base_model`` from the artifact store and records its summary as a
materialization of the asset ``hyperparameter_sweep`` (declared here, group ``sweeps``), so the UI shows the best
parameters, the trials table and the plots on that asset's page. Launch it from the UI (Jobs → sweep_job) or with
``lex-dpr sweep --config configs/sweep.yaml``.
"""

from enum import Enum

import dagster as dg

from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS, image_markdown
from lexdpr_pipeline.resources import LexDprProject
from lexdpr_pipeline.settings import with_overrides
from lexdpr_pipeline.sweeps.runner import SweepResult
from lexdpr_pipeline.sweeps.space import load_spec
from lexdpr_pipeline.sweeps.stored import INPUTS as INPUTS  # what a sweep reads: `lex-dpr sweep` makes missing ones
from lexdpr_pipeline.sweeps.stored import run_stored_sweep, sweep_data_version

GROUP = "sweeps"
CODE_VERSION = "hyperparameter-sweep-1"
SWEEP_KEY = dg.AssetKey("hyperparameter_sweep")
# dagster's tags for a reported materialization's data and code version (what dg.Output(data_version=…) records)
DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"
#: Metadata of hyperparameter_sweep that `lex-dpr sweep` prints (named once: the op writes and the CLI reads these).
SUMMARY_KEY = "summary"
TRIALS_TABLE_KEY = "trials_table"
BEST_CONFIG_KEY = "best_config"
SWEEP_DIR_KEY = "sweep_dir"
MLFLOW_URL_KEY = "mlflow_url"


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


@dg.op(
    name="hyperparameter_sweep",
    out=dg.Out(dg.Nothing),
    required_resource_keys={"project", "artifacts"},
    tags={"kind": "optuna", **MODEL_STEP_TAGS},
    description="Run or resume the sweep in sweep_file on dataset_splits / merged_corpus / base_model; report it "
    "as a materialization of hyperparameter_sweep.",
)
def hyperparameter_sweep_op(context: dg.OpExecutionContext, config: SweepRunConfig):
    project: LexDprProject = context.resources.project
    try:
        spec = load_spec(config.sweep_file).with_budget(
            config.n_trials, config.timeout_s, config.strategy.value if config.strategy else None
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    result = run_stored_sweep(
        spec,
        with_overrides(project.settings, config.overrides),
        context.resources.artifacts.store,
        tags={"dagster_run_id": context.run_id, "dagster_job": context.job_name},
        log=context.log,
    )
    context.log_event(
        dg.AssetMaterialization(
            asset_key=SWEEP_KEY,
            description=f"sweep {result.name}",
            metadata=sweep_metadata(result),
            tags={DATA_VERSION_TAG: sweep_data_version(result), CODE_VERSION_TAG: CODE_VERSION},
        )
    )


def _float(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(float("nan") if value is None else value)


def sweep_metadata(result: SweepResult) -> dict[str, object]:
    """The metadata of a hyperparameter_sweep materialization (`lex-dpr sweep` prints the ``*_KEY`` ones)."""
    plots = "\n\n".join(image_markdown(name, path) for name, path in result.plots.items())
    return {
        SUMMARY_KEY: dg.MetadataValue.md(result.summary_markdown()),
        "best_value": _float(result.best_value),
        "baseline_value": _float(result.baseline_value),
        "best_trial": dg.MetadataValue.int(-1 if result.best_trial is None else result.best_trial),
        "best_params": dg.MetadataValue.json(result.best_params),
        "best_adjustments": dg.MetadataValue.json(result.best_adjustments),
        "best_overrides": dg.MetadataValue.json(result.best_overrides()),
        BEST_CONFIG_KEY: dg.MetadataValue.path(str(result.best_config or "")),
        "trials": dg.MetadataValue.json(result.counts),
        "ran_this_run": dg.MetadataValue.json(result.ran_now),
        TRIALS_TABLE_KEY: dg.MetadataValue.md(result.table_markdown),
        "plots": dg.MetadataValue.md(plots or "_(no plot yet)_"),
        "importances": dg.MetadataValue.json(result.importances or {}),
        "sweep_name": result.name,
        "strategy": result.strategy,
        "objective": f"valid.{result.metric} ({result.direction})",
        SWEEP_DIR_KEY: dg.MetadataValue.path(str(result.sweep_dir)),
        "optuna_storage": result.storage_url,
        "mlflow_parent_run_id": result.mlflow_parent_run_id,
        MLFLOW_URL_KEY: dg.MetadataValue.url(result.mlflow_url) if result.mlflow_url else "",
        "mlflow_tracking_uri": result.tracking_uri,
        "notes": dg.MetadataValue.json(result.notes),
        "wall_time_s": dg.MetadataValue.float(result.wall_time_s),
    }


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
