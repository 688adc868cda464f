"""Group ``training_data``: citations, query→passage pairs with BM25 hard negatives, splits, checks, report."""

import time

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, Bm25IndexManifest
from lexdpr_pipeline.assets.common import count_table, image_markdown, inline_images, table_output
from lexdpr_pipeline.citations.table import citation_table
from lexdpr_pipeline.pairs import checks
from lexdpr_pipeline.pairs.build import TrainingPairs, build_training_pairs, report_args, split_config
from lexdpr_pipeline.pairs.report import PairsReport, report_dir, write_pairs_report
from lexdpr_pipeline.pairs.splits import assign_splits, split_sizes
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject

GROUP = "training_data"


@dg.asset(group_name=GROUP, code_version="citations-1", kinds={"polars", "parquet"})
def precedent_citations(
    context: dg.AssetExecutionContext, raw_statutes: pl.DataFrame, raw_precedents: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """Every 참조조문 / 참조판례 of every decision, parsed and resolved to ``law:`` / ``prec:`` ids (or a reason)."""
    started = time.perf_counter()
    frame, stats = citation_table(raw_statutes, raw_precedents)
    context.log.info(f"citations: {stats}")
    return table_output(
        frame,
        started=started,
        preview_columns=["prec_id", "kind", "raw", "status", "target_id"],
        metadata={
            "statute_citations": dg.MetadataValue.json(stats["statute"]),
            "case_citations": dg.MetadataValue.json(stats["case"]),
            "statute_resolution_rate": dg.MetadataValue.float(stats["statute"]["resolution_rate"]),
            "case_resolution_rate": dg.MetadataValue.float(stats["case"]["resolution_rate"]),
        },
    )


@dg.asset(group_name=GROUP, code_version="pairs-2", kinds={"polars", "parquet"})
def training_pairs(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    raw_statutes: pl.DataFrame,
    raw_admin_rules: pl.DataFrame,
    raw_precedents: pl.DataFrame,
    precedent_citations: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    bm25_index: Bm25IndexManifest,
    base_model: BaseModelManifest,
) -> dg.Output[pl.DataFrame]:
    """One row per query: type, text, citation-linked positives and hard negatives (BM25 or dense), with the
    likely false negatives (cited / co-citing documents, near duplicates, other passages of a positive) removed
    and counted per rule."""
    started = time.perf_counter()
    settings = project.settings
    built = build_training_pairs(
        raw_statutes,
        raw_admin_rules,
        raw_precedents,
        precedent_citations,
        merged_corpus,
        settings.pairs,
        settings.text,
        base_model,
        bm25_index,
        log=context.log,
    )
    return table_output(
        built.pairs,
        started=started,
        preview_columns=["query_id", "query_type", "query_text", "positive_ids", "negative_ids"],
        metadata=pairs_metadata(built, settings.pairs.negative_miner),
    )


def pairs_metadata(built: TrainingPairs, negative_miner: str) -> dict[str, object]:
    """Queries per type, what query building skipped, and the hard negatives (``short_negative_rows``: fewer than
    wanted; ``negatives_removed_by_rule``: mined candidates each false-negative rule removed, per query type)."""
    return {
        "negatives_removed_by_rule": dg.MetadataValue.md(built.negative_stats.removed_markdown()),
        "queries_by_type": dg.MetadataValue.md(count_table(built.pairs, "query_type")),
        "skipped": dg.MetadataValue.json(built.query_stats.as_dict()["skipped"]),
        "hard_negatives": dg.MetadataValue.json(built.negative_stats.as_dict()),
        "short_negative_rows": dg.MetadataValue.int(built.negative_stats.short_rows),
        "negative_miner": negative_miner,
    }


@dg.asset(group_name=GROUP, code_version="splits-2", kinds={"polars", "parquet"})
def dataset_splits(
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    training_pairs: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    precedent_citations: pl.DataFrame,
    base_model: BaseModelManifest,
) -> dg.Output[pl.DataFrame]:
    """Train/valid/test (``digit`` or ``temporal`` mode), every decision's queries in one split; plus the report."""
    started = time.perf_counter()
    settings = project.settings
    splits = assign_splits(training_pairs, split_config(settings.pairs))
    report = write_pairs_report(
        splits,
        merged_corpus,
        precedent_citations,
        report_dir(artifacts.store),
        pairs=settings.pairs,
        train=settings.train,
        **report_args(settings.text, base_model),
    )
    return table_output(
        splits,
        started=started,
        preview_columns=["query_id", "query_type", "split", "query_text"],
        metadata=splits_metadata(splits, report),
    )


def splits_metadata(splits: pl.DataFrame, report: PairsReport) -> dict[str, dg.MetadataValue]:
    """Queries per split (``train_queries`` drives the retrain policy) and the pairs report, images inline."""
    images = "\n\n".join(image_markdown(name, path) for name, path in report.images.items())
    return {
        **{f"{k}_queries": dg.MetadataValue.int(v) for k, v in split_sizes(splits).items()},
        "report": dg.MetadataValue.md(inline_images(report.markdown, report.markdown_path.parent)),
        "report_path": dg.MetadataValue.path(str(report.markdown_path)),
        "plots": dg.MetadataValue.md(images),
        "summary": dg.MetadataValue.json(report.summary),
    }


def _result(result: checks.CheckResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.description,
        metadata={"failures": result.failures, "examples": dg.MetadataValue.json(result.examples)},
    )


@dg.asset_check(
    asset=dataset_splits,
    blocking=True,
    additional_ins={"merged_corpus": dg.AssetIn("merged_corpus")},
    description="Every positive and negative id exists in merged_corpus (the original validate_dataset).",
)
def ids_exist_in_corpus(dataset_splits: pl.DataFrame, merged_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    return _result(checks.ids_exist(dataset_splits, set(merged_corpus["passage_id"])))


@dg.asset_check(asset=dataset_splits, blocking=True, description="No positive appears among its own negatives.")
def no_positive_among_negatives(dataset_splits: pl.DataFrame) -> dg.AssetCheckResult:
    return _result(checks.no_positive_in_negatives(dataset_splits))


@dg.asset_check(asset=dataset_splits, blocking=True, description="No precedent's queries span two splits.")
def no_document_spans_splits(dataset_splits: pl.DataFrame) -> dg.AssetCheckResult:
    return _result(checks.no_group_spans_splits(dataset_splits))


@dg.asset_check(asset=dataset_splits, blocking=True, description="train, valid and test are all non-empty.")
def every_split_non_empty(dataset_splits: pl.DataFrame) -> dg.AssetCheckResult:
    return _result(checks.splits_non_empty(dataset_splits))


@dg.asset_check(asset=dataset_splits, blocking=True, description="At least pairs.min_pairs training pairs.")
def minimum_pair_count(project: LexDprProject, dataset_splits: pl.DataFrame) -> dg.AssetCheckResult:
    return _result(checks.minimum_pairs(dataset_splits, project.settings.pairs.min_pairs))


TRAINING_DATA_ASSETS = [precedent_citations, training_pairs, dataset_splits]
TRAINING_DATA_CHECKS = [
    ids_exist_in_corpus,
    no_positive_among_negatives,
    no_document_spans_splits,
    every_split_non_empty,
    minimum_pair_count,
]
