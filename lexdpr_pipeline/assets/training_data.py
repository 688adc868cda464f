"""Group ``training_data``: citations, query→passage pairs with BM25 hard negatives, splits, checks, report."""

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest
from lexdpr_pipeline.assets.common import count_table, image_markdown, inline_images, table_output
from lexdpr_pipeline.assets.corpus import counter_for
from lexdpr_pipeline.citations.table import citation_table
from lexdpr_pipeline.index.bm25 import BM25Index, BM25Params
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.pairs import checks
from lexdpr_pipeline.pairs.negatives import mine_bm25_negatives, mine_dense_negatives
from lexdpr_pipeline.pairs.queries import QueryConfig, build_queries
from lexdpr_pipeline.pairs.report import write_pairs_report
from lexdpr_pipeline.pairs.splits import SplitConfig, assign_splits, split_sizes
from lexdpr_pipeline.resources import LexDprProject
from lexdpr_pipeline.settings import PairsSettings
from lexdpr_pipeline.text.chunking import token_counter_name
from lexdpr_pipeline.text.korean import KoreanTokenizer

GROUP = "training_data"
INDEX_GROUP = "index"


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


def _index_key(frame: pl.DataFrame, extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for pid, text in frame.select("passage_id", "text").iter_rows():
        h.update(pid.encode())
        h.update(b"\0")
        h.update(text.encode())
        h.update(b"\1")
    return h.hexdigest()


@dg.asset(group_name=INDEX_GROUP, code_version="bm25-1", kinds={"bm25"})
def bm25_index(
    context: dg.AssetExecutionContext, project: LexDprProject, merged_corpus: pl.DataFrame
) -> dg.Output[dict]:
    """BM25 over ``merged_corpus`` with Korean morphological tokens (kiwipiepy; article references and case
    numbers kept whole), stored at a content-addressed folder; an unchanged corpus reuses the stored index."""
    started = time.perf_counter()
    tokenizer, params = KoreanTokenizer(), BM25Params()
    key = _index_key(merged_corpus, json.dumps([tokenizer.signature(), repr(params)], sort_keys=True))
    path = project.data / "indexes" / "bm25" / key[:20]
    reused = (path / "lexdpr_bm25.json").exists()
    if not reused:
        ids, texts = merged_corpus["passage_id"].to_list(), merged_corpus["text"].to_list()
        BM25Index.build(ids, texts, tokenizer=tokenizer, params=params, progress=True).save(path)
    manifest = {"path": str(path), "passages": merged_corpus.height, "content_hash": key}
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(key),
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "passages": dg.MetadataValue.int(merged_corpus.height),
            "reused_existing": reused,
            "wall_time_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )


def query_config(p: PairsSettings) -> QueryConfig:
    return QueryConfig(
        query_types=tuple(p.query_types),
        split_numbered_holdings=p.split_numbered_holdings,
        include_former_citations=p.include_former_citations,
    )


def split_config(p: PairsSettings) -> SplitConfig:
    return SplitConfig(
        mode=p.split_mode,
        train_digits=tuple(p.train_digits),
        valid_digits=tuple(p.valid_digits),
        test_digits=tuple(p.test_digits),
        valid_from=dt.date.fromisoformat(p.valid_from) if p.split_mode == "temporal" else None,
        test_from=dt.date.fromisoformat(p.test_from) if p.split_mode == "temporal" else None,
    )


def _cap(pairs: pl.DataFrame, max_queries: int | None) -> pl.DataFrame:
    """A deterministic sample (by a hash of the query id) when the run is capped, e.g. for demos."""
    if max_queries is None or pairs.height <= max_queries:
        return pairs
    return pairs.sort(pl.col("query_id").hash(seed=7)).head(max_queries).sort("query_id")


@dg.asset(group_name=GROUP, code_version="pairs-1", kinds={"polars", "parquet"})
def training_pairs(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    raw_statutes: pl.DataFrame,
    raw_admin_rules: pl.DataFrame,
    raw_precedents: pl.DataFrame,
    precedent_citations: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    bm25_index: dict,
    base_model: BaseModelManifest,
) -> dg.Output[pl.DataFrame]:
    """One row per query: type, text, citation-linked positives and BM25 hard negatives."""
    started = time.perf_counter()
    p = project.settings.pairs
    pairs, qstats = build_queries(
        raw_statutes, raw_admin_rules, raw_precedents, precedent_citations, merged_corpus, query_config(p)
    )
    pairs = _cap(pairs, p.max_queries)
    if p.negative_miner == "dense":
        model = BiEncoder.load(base_model.load_target())
        pairs, nstats = mine_dense_negatives(
            pairs,
            merged_corpus,
            model,
            per_query=p.negatives_per_query,
            range_max=p.dense_range_max,
            relative_margin=p.dense_relative_margin,
        )
    else:
        index = BM25Index.load(bm25_index["path"])
        pairs, nstats = mine_bm25_negatives(
            pairs, merged_corpus, index, per_query=p.negatives_per_query, candidates=p.bm25_candidates
        )
    counter = counter_for(project, base_model)
    pairs = pairs.with_columns(
        pl.Series("query_n_tokens", [len(s) for s in counter.spans_many(pairs["query_text"].to_list())], pl.Int32)
    )
    if nstats.short_rows:
        context.log.warning(f"{nstats.short_rows} queries have fewer than {p.negatives_per_query} hard negatives")
    return table_output(
        pairs,
        started=started,
        preview_columns=["query_id", "query_type", "query_text", "positive_ids", "negative_ids"],
        metadata={
            "queries_by_type": dg.MetadataValue.md(count_table(pairs, "query_type")),
            "skipped": dg.MetadataValue.json(qstats.as_dict()["skipped"]),
            "hard_negatives": dg.MetadataValue.json(nstats.as_dict()),
            "short_negative_rows": dg.MetadataValue.int(nstats.short_rows),
            "negative_miner": p.negative_miner,
        },
    )


@dg.asset(group_name=GROUP, code_version="splits-1", kinds={"polars", "parquet"})
def dataset_splits(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    training_pairs: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    precedent_citations: pl.DataFrame,
    base_model: BaseModelManifest,
) -> dg.Output[pl.DataFrame]:
    """Train/valid/test (``digit`` or ``temporal`` mode), every decision's queries in one split; plus the report."""
    started = time.perf_counter()
    splits = assign_splits(training_pairs, split_config(project.settings.pairs))
    model_path = Path(base_model.path) if base_model.path else None
    report = write_pairs_report(
        splits,
        merged_corpus,
        precedent_citations,
        project.reports / GROUP,
        project.settings,
        token_counter_name(project.settings.text.tokenizer, model_path),
    )
    images = "\n\n".join(image_markdown(name, path) for name, path in report.images.items())
    return table_output(
        splits,
        started=started,
        preview_columns=["query_id", "query_type", "split", "query_text"],
        metadata={
            **{f"{k}_queries": dg.MetadataValue.int(v) for k, v in split_sizes(splits).items()},
            "report": dg.MetadataValue.md(inline_images(report.markdown, report.markdown_path.parent)),
            "report_path": dg.MetadataValue.path(str(report.markdown_path)),
            "plots": dg.MetadataValue.md(images),
            "summary": dg.MetadataValue.json(report.summary),
        },
    )


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
INDEX_ASSETS = [bm25_index]
TRAINING_DATA_CHECKS = [
    ids_exist_in_corpus,
    no_positive_among_negatives,
    no_document_spans_splits,
    every_split_non_empty,
    minimum_pair_count,
]
