"""Group ``evaluation``: the fine-tuned model vs the zero-shot base model vs BM25 vs their hybrids, side by side,
tracked in MLflow (:mod:`lexdpr_pipeline.evaluation.tracked`); and the blocking leak check on ``dataset_splits``
(:mod:`lexdpr_pipeline.evaluation.leakage`)."""

import time

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, Bm25IndexManifest, TrainedModelManifest
from lexdpr_pipeline.assets.citation_expansion import expansion_in_use
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS, image_markdown, inline_images, table_output
from lexdpr_pipeline.assets.training_data import dataset_splits as dataset_splits_asset
from lexdpr_pipeline.evaluation.forgetting import forgetting
from lexdpr_pipeline.evaluation.leakage import heldout_leaks
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
CORPUS_KEY = "eval_corpus"  # whole | sampled, with the passage count
FUSION_KEY = "fusion_chosen_on_valid"
HYBRID_BELOW_KEY = "hybrid_below_parts_test"


@dg.asset(
    group_name=GROUP,
    code_version="evaluation-3",
    kinds={"polars", "mlflow"},
    op_tags=MODEL_STEP_TAGS,
    description="nDCG/recall/MRR/accuracy@k of the fine-tuned model, the zero-shot base model, BM25 and their "
    "hybrids (fusion chosen on valid per source, stored for search.fusion auto) on the valid/test queries (overall, "
    "per query type, per source), with a report and an MLflow run.",
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
        CORPUS_KEY: run.corpus_label,
        **{f"{split}_queries": dg.MetadataValue.int(n) for split, n in run.queries_per_split.items()},
        "skipped": dg.MetadataValue.json(run.skipped),
        "timings_s": dg.MetadataValue.json({k: round(v, 2) for k, v in run.timings_s.items()}),
        RANKS_KEY: dg.MetadataValue.path(str(run.ranks_path)),
        **{
            f"{split}_{metric}_{system_slug(system)}": dg.MetadataValue.float(round(float(values[metric]), 4))
            for (split, system), values in run.overall().items()
            for metric in headline
        },
        **{  # the same systems as served, one hit per document (evaluation.documents)
            f"{split}_documents_ndcg@10_{system_slug(system)}": dg.MetadataValue.float(round(float(v["ndcg@10"]), 4))
            for (split, system), v in run.overall(documents=True).items()
            if "ndcg@10" in v
        },
    }
    if result.fusion_params:
        metadata[FUSION_KEY] = dg.MetadataValue.json(
            {system: {"model_version": p.model_version, **p.by_source} for system, p in result.fusion_params.items()}
        )
    if run.hybrid_check is not None:
        metadata[HYBRID_BELOW_KEY] = dg.MetadataValue.json(run.hybrid_below_parts("test"))
    if run.report is not None:
        # The file keeps a relative link to the PNG beside it; Dagster's markdown view needs the image inline.
        metadata[REPORT_KEY] = dg.MetadataValue.md(inline_images(run.report.markdown, run.report.markdown_path.parent))
        metadata[REPORT_PATH_KEY] = dg.MetadataValue.path(str(run.report.markdown_path))
        if run.report.chart_path is not None:
            metadata["chart"] = dg.MetadataValue.md(
                image_markdown("nDCG and recall per query type", run.report.chart_path)
            )
    return metadata


@dg.asset_check(
    asset=dataset_splits_asset,
    blocking=True,
    additional_ins={"merged_corpus": dg.AssetIn("merged_corpus")},
    description="No train query or positive comes from a valid/test decision, and evaluation excludes each query's "
    "own decision (eval.exclude_query_document). Blocks (ERROR) with the temporal split; with the digit split, "
    "whose test decisions share training's period and are cited by training decisions, it warns. With BM25's "
    "citation expansion in use, no expansion text comes from a valid/test decision either.",
)
def no_heldout_decision_in_training(
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    dataset_splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
) -> dg.AssetCheckResult:
    settings = project.settings
    result, counts = heldout_leaks(
        dataset_splits,
        merged_corpus,
        exclude_query_document=settings.eval.exclude_query_document,
        expansion=expansion_in_use(settings, artifacts.store),
    )
    temporal = settings.pairs.split_mode == "temporal"
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if temporal else dg.AssetCheckSeverity.WARN,
        description=result.description,
        metadata={
            "failures": result.failures,
            "examples": dg.MetadataValue.json(result.examples),
            "split_mode": settings.pairs.split_mode,
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
        },
    )


@dg.asset_check(
    asset=model_evaluation,
    blocking=True,
    description="The fine-tuned model keeps the zero-shot base's quality where training says nothing: its valid "
    "nDCG@10 is at least (1 - eval.max_drop_vs_base) of the base's on every query type and source. Valid only; "
    "an ERROR that fails the run with eval.forgetting_blocks (configs/full.yaml), else a warning.",
)
def fine_tuned_keeps_the_base_on_valid(project: LexDprProject, model_evaluation: pl.DataFrame) -> dg.AssetCheckResult:
    max_drop, blocks = project.settings.eval.max_drop_vs_base, project.settings.eval.forgetting_blocks
    if max_drop is None:
        return dg.AssetCheckResult(passed=True, description="off (eval.max_drop_vs_base: null)")
    result = forgetting(model_evaluation, max_drop)
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if blocks else dg.AssetCheckSeverity.WARN,
        description=result.description,
        metadata={"failures": result.failures, "examples": dg.MetadataValue.json(result.examples)},
    )


EVALUATION_ASSETS = [model_evaluation]
EVALUATION_CHECKS = [no_heldout_decision_in_training, fine_tuned_keeps_the_base_on_valid]
