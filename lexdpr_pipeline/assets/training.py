"""Group ``models``: the fine-tuned bi-encoder (``trained_model``), tracked in MLflow (:mod:`models.tracked`)."""

import time

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, TrainedModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS, image_markdown
from lexdpr_pipeline.models.tracked import TrackedTraining, effective_train_settings, train_tracked
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject
from lexdpr_pipeline.settings import with_overrides

GROUP = "models"
#: Metadata: train-split queries of the dataset_splits the model was trained from (the retrain policy's baseline).
TRAIN_QUERIES_KEY = "dataset_train_queries"
#: Metadata that `lex-dpr train` prints (named once: the asset writes and the CLI reads these constants).
MODEL_PATH_KEY = "model_path"
REUSED_KEY = "reused_existing"
MLFLOW_URL_KEY = "mlflow_url"
MLFLOW_URI_KEY = "mlflow_tracking_uri"
VALID_NDCG_KEY = "valid_ndcg@10"
PAIRS_PER_S_KEY = "train_pairs_per_s"


class TrainRunConfig(dg.Config):
    """Run-time overrides (the Dagster UI's launchpad, ``lex-dpr train --set``)."""

    overrides: list[str] = []  # noqa: RUF012 (pydantic copies defaults) — e.g. ["train.learning_rate=1e-5", "train.lora=true"]
    test_run: bool = False  # train a few steps on a small sample, end to end (``lex-dpr smoke-train``)


@dg.asset(
    group_name=GROUP,
    code_version="trained-model-1",
    kinds={"pytorch", "mlflow"},
    op_tags=MODEL_STEP_TAGS,
    description="The fine-tuned bi-encoder (sentence-transformers folder + lexdpr_training.json) at a content-"
    "addressed path under data/models/trained/, as a manifest {path, content_hash, …}. Each training: an MLflow run.",
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainRunConfig,
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    dataset_splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    base_model: BaseModelManifest,
) -> dg.Output[TrainedModelManifest]:
    started = time.perf_counter()
    settings = with_overrides(project.settings, config.overrides)
    result = train_tracked(
        effective_train_settings(settings.train, config.test_run),
        settings.eval,
        settings.tracking,
        dataset_splits,
        merged_corpus,
        base_model,
        artifacts.store,
        tags={"dagster_run_id": context.run_id, "dagster_asset_key": context.asset_key.to_user_string()},
        log=context.log,
    )
    return dg.Output(
        result.manifest,
        data_version=dg.DataVersion(result.manifest.content_hash),
        metadata=training_metadata(result, dataset_splits, time.perf_counter() - started),
    )


def training_metadata(result: TrackedTraining, dataset_splits: pl.DataFrame, wall_time_s: float) -> dict:
    """The asset's metadata (the CLI, the retrain sensor and the README read these keys)."""
    metrics, train_metrics = result.metrics, result.train_metrics
    trained_now: dict = {}
    if not result.reused:
        trained_now = {
            "mlflow_model": result.mlflow_model,
            "resumed_from": str(result.resumed_from),
            "global_step": dg.MetadataValue.int(int(result.global_step or 0)),
        }
        if result.curve is not None:
            trained_now["training_curve"] = dg.MetadataValue.md(image_markdown("training curve", result.curve))
    return {
        **trained_now,
        MODEL_PATH_KEY: dg.MetadataValue.path(str(result.model_dir)),
        REUSED_KEY: result.reused,
        TRAIN_QUERIES_KEY: dg.MetadataValue.int(dataset_splits.filter(pl.col("split") == "train").height),
        "mlflow_run_id": str(result.mlflow_run_id),
        MLFLOW_URL_KEY: dg.MetadataValue.url(result.mlflow_url) if result.mlflow_url else "",
        MLFLOW_URI_KEY: result.tracking_uri,
        "validation": dg.MetadataValue.json(metrics),
        VALID_NDCG_KEY: dg.MetadataValue.float(float(metrics.get("ndcg@10", float("nan")))),
        PAIRS_PER_S_KEY: dg.MetadataValue.float(float(train_metrics.get("train_samples_per_second") or 0.0)),
        "train_runtime_s": dg.MetadataValue.float(float(train_metrics.get("train_runtime", 0.0))),
        "duplicates": dg.MetadataValue.json(result.duplicates),
        "test_run": result.manifest.test_run,
        "wall_time_s": dg.MetadataValue.float(round(wall_time_s, 3)),
    }


TRAINING_ASSETS = [trained_model]
