"""Group ``evaluation``: the fine-tuned model vs the zero-shot base model vs BM25, side by side, tracked in MLflow."""

import re
import time
from functools import partial

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, TrainedModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS, image_markdown, inline_images, table_output
from lexdpr_pipeline.evaluation.report import headline_metrics
from lexdpr_pipeline.evaluation.run import BASE, FINE_TUNED, EvalPlan, EvalRun, run_evaluation
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import CACHE_DIR, EmbeddingCache
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.resources import LexDprProject
from lexdpr_pipeline.storage import frame_content_hash
from lexdpr_pipeline.tracking import log_artifact_or_path, log_metrics, log_params, start_run, tracking_target

GROUP = "evaluation"
ASSET_NAME = "model_evaluation"


def system_slug(system: str) -> str:
    """``base (zero-shot)`` → ``base_zero-shot``: what MLflow metric names and metadata keys allow."""
    return re.sub(r"[^0-9A-Za-z_\-.:/ ]", "", system).strip().replace(" ", "_")


def _headline_metadata(run: EvalRun) -> dict[str, dg.MetadataValue]:
    metrics = headline_metrics(run.table)[:3]
    return {
        f"{split}_{metric}_{system_slug(system)}": dg.MetadataValue.float(round(float(values[metric]), 4))
        for (split, system), values in run.overall().items()
        for metric in metrics
    }


@dg.asset(
    group_name=GROUP,
    code_version="evaluation-2",
    kinds={"polars", "mlflow"},
    op_tags=MODEL_STEP_TAGS,
    description="nDCG/recall/MRR/accuracy@k of the fine-tuned model, the zero-shot base model and BM25 on the "
    "valid/test queries (overall, per query type, per source), with a report and an MLflow run.",
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    trained_model: TrainedModelManifest,
    base_model: BaseModelManifest,
    dataset_splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    bm25_index: dict,
) -> dg.Output[pl.DataFrame]:
    started = time.perf_counter()
    settings = project.settings
    es = settings.eval
    plan = EvalPlan.from_settings(es)
    # Loaders, so only one model is in memory at a time; the full BM25 index only when it matches the corpus.
    models = {FINE_TUNED: partial(BiEncoder.load, trained_model.path)}
    # The passage_embeddings asset's per-model caches: passages are encoded once per model version, so the
    # zero-shot base is not re-encoded by every evaluation and the embeddings asset reuses what evaluation encoded.
    cache_root = project.data / "embeddings" / CACHE_DIR
    caches = {FINE_TUNED: EmbeddingCache(cache_root, trained_model.content_hash)}
    if es.compare_base:
        models[BASE] = partial(BiEncoder.load, base_model.load_target())
        caches[BASE] = EmbeddingCache(cache_root, base_model.content_hash)
    full_bm25 = None
    if bm25_index.get("passages") == merged_corpus.height:
        full_bm25 = partial(BM25Index.load, bm25_index["path"])
    tags = {
        "dagster_run_id": context.run_id,
        "dagster_asset_key": ASSET_NAME,
        "model_content_hash": trained_model.content_hash,
        "base_model_content_hash": base_model.content_hash,
        "pairs_data_version": frame_content_hash(dataset_splits),
    }
    with start_run(tracking_target(settings), run_name="evaluation", tags=tags) as (_, handle):
        log_params(
            {
                **es.model_dump(mode="json"),
                "trained_model": trained_model.name,
                "base_model": base_model.name,
            }
        )
        run = run_evaluation(
            models,
            dataset_splits,
            merged_corpus,
            plan,
            bm25=es.compare_bm25,
            full_bm25=full_bm25,
            out_dir=project.reports / GROUP,
            notes={"fine-tuned model": trained_model.name, "base model": base_model.name},
            embedding_caches=caches if es.embedding_cache else None,
        )
        log_params({"eval_corpus_passages": run.corpus_size})
        for (split, system), values in run.overall().items():
            log_metrics(values, prefix=f"{split}.{system_slug(system)}.")
        paths = [run.report.markdown_path, run.report.chart_path, run.ranks_path] if run.report else [run.ranks_path]
        for path in filter(None, paths):
            log_artifact_or_path(path, max_mb=settings.tracking.model_artifact_max_mb, artifact_path=GROUP)
    context.log.info(f"evaluation: corpus {run.corpus_size} passages, queries {run.queries_per_split}")
    metadata: dict[str, object] = {
        "mlflow_run_id": handle.run_id,
        "mlflow_run_url": dg.MetadataValue.url(handle.url),
        "eval_corpus_passages": dg.MetadataValue.int(run.corpus_size),
        **{f"{split}_queries": dg.MetadataValue.int(n) for split, n in run.queries_per_split.items()},
        "skipped": dg.MetadataValue.json(run.skipped),
        "timings_s": dg.MetadataValue.json({k: round(v, 2) for k, v in run.timings_s.items()}),
        "per_query_ranks": dg.MetadataValue.path(str(run.ranks_path)),
        **_headline_metadata(run),
    }
    if run.report is not None:
        # The file keeps a relative link to the PNG beside it; Dagster's markdown view needs the image inline.
        metadata["report"] = dg.MetadataValue.md(inline_images(run.report.markdown, run.report.markdown_path.parent))
        metadata["report_path"] = dg.MetadataValue.path(str(run.report.markdown_path))
        if run.report.chart_path is not None:
            metadata["chart"] = dg.MetadataValue.md(
                image_markdown("nDCG and recall per query type", run.report.chart_path)
            )
    return table_output(
        run.table,
        started=started,
        preview_columns=["system", "split", "group", "n_queries", *headline_metrics(run.table)[:4]],
        metadata=metadata,
    )


EVALUATION_ASSETS = [model_evaluation]
