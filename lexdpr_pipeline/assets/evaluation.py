"""Group ``evaluation``: the fine-tuned model vs the zero-shot base model vs BM25, side by side, tracked in MLflow
(:mod:`lexdpr_pipeline.evaluation.tracked`)."""

import time

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, Bm25IndexManifest, TrainedModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS, image_markdown, inline_images, table_output
from lexdpr_pipeline.evaluation.report import headline_metrics
from lexdpr_pipeline.evaluation.tracked import TrackedEvaluation, evaluate_tracked, system_slug
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject

GROUP = "evaluation"
ASSET_NAME = "model_evaluation"
#: Metadata that `lex-dpr eval` prints (named once: the asset writes and the CLI reads these constants).
REPORT_KEY = "report"
REPORT_PATH_KEY = "report_path"
CORPUS_PASSAGES_KEY = "eval_corpus_passages"
RANKS_KEY = "per_query_ranks"
MLFLOW_RUN_URL_KEY = "mlflow_run_url"


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
    artifacts: ArtifactStoreResource,
    trained_model: TrainedModelManifest,
    base_model: BaseModelManifest,
    dataset_splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    bm25_index: Bm25IndexManifest,
) -> dg.Output[pl.DataFrame]:
    started = time.perf_counter()
    settings = project.settings
    result = evaluate_tracked(
        settings.eval,
        settings.tracking,
        trained_model,
        base_model,
        dataset_splits,
        merged_corpus,
        bm25_index,
        artifacts.store,
        tags={"dagster_run_id": context.run_id, "dagster_asset_key": ASSET_NAME},
        log=context.log,
    )
    return table_output(
        result.run.table,
        started=started,
        preview_columns=["system", "split", "group", "n_queries", *headline_metrics(result.run.table)[:4]],
        metadata=evaluation_metadata(result),
    )


def evaluation_metadata(result: TrackedEvaluation) -> dict[str, object]:
    """The metadata (`lex-dpr eval` reads the ``*_KEY`` ones); headline metrics as ``<split>_<metric>_<system>``."""
    run = result.run
    headline = headline_metrics(run.table)[:3]
    metadata: dict[str, object] = {
        "mlflow_run_id": result.mlflow_run_id,
        MLFLOW_RUN_URL_KEY: dg.MetadataValue.url(result.mlflow_url),
        CORPUS_PASSAGES_KEY: dg.MetadataValue.int(run.corpus_size),
        **{f"{split}_queries": dg.MetadataValue.int(n) for split, n in run.queries_per_split.items()},
        "skipped": dg.MetadataValue.json(run.skipped),
        "timings_s": dg.MetadataValue.json({k: round(v, 2) for k, v in run.timings_s.items()}),
        RANKS_KEY: dg.MetadataValue.path(str(run.ranks_path)),
        **{
            f"{split}_{metric}_{system_slug(system)}": dg.MetadataValue.float(round(float(values[metric]), 4))
            for (split, system), values in run.overall().items()
            for metric in headline
        },
    }
    if run.report is not None:
        # The file keeps a relative link to the PNG beside it; Dagster's markdown view needs the image inline.
        metadata[REPORT_KEY] = dg.MetadataValue.md(inline_images(run.report.markdown, run.report.markdown_path.parent))
        metadata[REPORT_PATH_KEY] = dg.MetadataValue.path(str(run.report.markdown_path))
        if run.report.chart_path is not None:
            metadata["chart"] = dg.MetadataValue.md(
                image_markdown("nDCG and recall per query type", run.report.chart_path)
            )
    return metadata


EVALUATION_ASSETS = [model_evaluation]
