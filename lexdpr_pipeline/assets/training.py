"""Group ``models``: the fine-tuned bi-encoder (``trained_model``), tracked in MLflow."""

import hashlib
import json
import time
from functools import partial

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS, image_markdown
from lexdpr_pipeline.evaluation.validation import validate_dense
from lexdpr_pipeline.models.report import plot_training_history
from lexdpr_pipeline.models.training import (
    TRAINING_FILE,
    duplicate_report,
    metrics_callback,
    read_training_metadata,
    train_biencoder,
    training_rows,
)
from lexdpr_pipeline.resources import LexDprProject
from lexdpr_pipeline.settings import TrainSettings, with_overrides
from lexdpr_pipeline.storage import frame_content_hash
from lexdpr_pipeline.tracking import (
    log_artifact_or_path,
    log_metrics,
    log_params,
    start_run,
    tracking_target,
)

GROUP = "models"
#: Metadata: train-split queries of the dataset_splits the model was trained from (the retrain policy's baseline).
TRAIN_QUERIES_KEY = "dataset_train_queries"
# Settings that change how a run goes, not what it produces: they stay out of the model's content key.
_NOT_IN_KEY = {"resume", "device", "logging_steps", "save_total_limit"}


class TrainRunConfig(dg.Config):
    """Run-time overrides (the Dagster UI's launchpad, ``lex-dpr train --set``)."""

    overrides: list[str] = []  # noqa: RUF012 (pydantic copies defaults) — e.g. ["train.learning_rate=1e-5", "train.lora=true"]
    test_run: bool = False  # train a few steps on a small sample, end to end (``lex-dpr smoke-train``)


def effective_train_settings(cfg: TrainSettings, test_run: bool) -> TrainSettings:
    if not (test_run or cfg.test_run):
        return cfg
    return cfg.model_copy(
        update={
            "test_run": True,
            "max_train_queries": min(cfg.max_train_queries or 64, 64),
            "eval_max_queries": min(cfg.eval_max_queries, 20),
            "eval_corpus_max_passages": min(cfg.eval_corpus_max_passages or 300, 300),
            "early_stopping_patience": None,
        }
    )


def model_key(base_hash: str, pairs_version: str, corpus_version: str, cfg: TrainSettings) -> str:
    """Content key of a trained model: what it was trained from and how."""
    args = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
    payload = json.dumps([base_hash, pairs_version, corpus_version, args], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


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
    dataset_splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    base_model: BaseModelManifest,
) -> dg.Output[dict]:
    started = time.perf_counter()
    settings = with_overrides(project.settings, config.overrides)
    cfg = effective_train_settings(settings.train, config.test_run)
    pairs_version = frame_content_hash(dataset_splits)
    corpus_version = frame_content_hash(merged_corpus.select("passage_id", "content_hash"))
    key = model_key(base_model.content_hash, pairs_version, corpus_version, cfg)
    work_dir = project.models_dir / "trained" / key[:20]
    model_dir = work_dir / "model"
    base_target = base_model.load_target()
    metadata: dict = {}
    target = tracking_target(settings)
    if (model_dir / TRAINING_FILE).exists():
        meta = read_training_metadata(model_dir) or {}
        context.log.info(f"a model trained from the same inputs and settings exists: reusing {model_dir}")
        run_id, url, reused = meta.get("mlflow_run_id"), meta.get("mlflow_url"), True
        result_metrics, train_metrics = meta.get("final_validation", {}), meta.get("train_metrics", {})
        duplicates = meta.get("duplicates", {})
    else:
        reused = False
        rows, row_stats = training_rows(dataset_splits, merged_corpus, cfg)
        duplicates = duplicate_report(rows, cfg.batch_size, cfg.seed)
        context.log.info(f"training rows: {row_stats.as_dict()}; duplicates: {duplicates}")
        validate = partial(
            validate_dense,
            splits=dataset_splits,
            merged_corpus=merged_corpus,
            split="valid",
            max_queries=cfg.eval_max_queries,
            corpus_max_passages=cfg.eval_corpus_max_passages,
            seed=settings.eval.seed,
            batch_size=settings.eval.batch_size,
        )
        tags = {
            "dagster_run_id": context.run_id,
            "dagster_asset_key": context.asset_key.to_user_string(),
            "pairs_data_version": pairs_version,
            "model_content_hash": key,
            "lexdpr.kind": "training",
        }
        with start_run(target, run_name=f"train {'test-run ' if cfg.test_run else ''}{key[:8]}", tags=tags) as (
            _run,
            handle,
        ):
            run_id, url = handle.run_id, handle.url
            log_params(
                {
                    "train": cfg.model_dump(mode="json"),
                    "base_model": base_model.name,
                    "base_model_hash": base_model.content_hash,
                    "pairs_data_version": pairs_version,
                    "corpus_version": corpus_version,
                    "train_rows": row_stats.rows,
                    "train_queries": row_stats.queries,
                }
            )
            result = train_biencoder(
                base_target,
                rows,
                row_stats,
                cfg,
                work_dir,
                validate=lambda m: validate(m),
                callbacks=[metrics_callback(lambda metrics, step: log_metrics(metrics, step=step))],
                metadata={
                    "pairs_data_version": pairs_version,
                    "corpus_version": corpus_version,
                    "base_model_hash": base_model.content_hash,
                    "content_key": key,
                    "duplicates": duplicates,
                    "mlflow_run_id": run_id,
                    "mlflow_url": url,
                    "dagster_run_id": context.run_id,
                },
            )
            result_metrics, train_metrics = result.metrics, result.train_metrics
            # At the last step: a metric logged without a step lands at step 0 and its chart jumps back. The
            # trainer's own end-of-training metrics (epoch, train_runtime, …) already came through the callback.
            log_metrics(result_metrics, prefix="final_valid.", step=result.global_step)
            plot = plot_training_history(result.history, project.reports / "training" / f"{key[:20]}.png")
            if plot is not None:
                import mlflow

                mlflow.log_artifact(str(plot), artifact_path="plots")
                metadata["training_curve"] = dg.MetadataValue.md(image_markdown("training curve", plot))
            mlflow_model = log_artifact_or_path(
                model_dir, max_mb=settings.tracking.model_artifact_max_mb, artifact_path="model"
            )
            metadata["mlflow_model"] = mlflow_model
            metadata["resumed_from"] = str(result.resumed_from)
            metadata["global_step"] = dg.MetadataValue.int(result.global_step)
    manifest = {
        "path": str(model_dir),
        "content_hash": key,
        "name": f"lexdpr-{key[:12]}",
        "base_model": base_model.name,
        "template": cfg.template,
        "pairs_data_version": pairs_version,
        "mlflow_run_id": run_id,
        "mlflow_url": url,
        "test_run": cfg.test_run,
    }
    samples_per_s = train_metrics.get("train_samples_per_second")
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(key),
        metadata={
            **metadata,
            "model_path": dg.MetadataValue.path(str(model_dir)),
            "reused_existing": reused,
            TRAIN_QUERIES_KEY: dg.MetadataValue.int(dataset_splits.filter(pl.col("split") == "train").height),
            "mlflow_run_id": str(run_id),
            "mlflow_url": dg.MetadataValue.url(url) if url else "",
            "mlflow_tracking_uri": target.uri,
            "validation": dg.MetadataValue.json(result_metrics),
            "valid_ndcg@10": dg.MetadataValue.float(float(result_metrics.get("ndcg@10", float("nan")))),
            "train_pairs_per_s": dg.MetadataValue.float(float(samples_per_s or 0.0)),
            "train_runtime_s": dg.MetadataValue.float(float(train_metrics.get("train_runtime", 0.0))),
            "duplicates": dg.MetadataValue.json(duplicates),
            "test_run": cfg.test_run,
            "wall_time_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )


TRAINING_ASSETS = [trained_model]
