"""Group ``corpus``: passages per source and the merged, deduplicated corpus everything is indexed from."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest
from lexdpr_pipeline.assets.common import count_table, table_output
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject
from lexdpr_pipeline.settings import TextSettings
from lexdpr_pipeline.storage import atomic_write_text
from lexdpr_pipeline.text.chunking import TokenCounter, token_counter
from lexdpr_pipeline.text.passages import (
    PassageConfig,
    PassageStats,
    admin_rule_passages,
    merge_corpus,
    precedent_passages,
    statute_passages,
)

GROUP = "corpus"
CODE_VERSION = "passages-1"
PREVIEW = ["passage_id", "title", "n_tokens", "text"]
#: Report file of merged_corpus (under data/reports/corpus/).
MERGED_STATS_FILE = "merged_corpus_stats.json"


def passage_config(text: TextSettings) -> PassageConfig:
    return PassageConfig(
        max_tokens=text.max_tokens,
        overlap=text.overlap,
        min_body_chars=text.min_body_chars,
        prec_body_max_chunks=text.prec_body_max_chunks,
    )


def counter_for(text: TextSettings, base_model: BaseModelManifest) -> TokenCounter:
    """The token counter of ``text.tokenizer`` (``model``: the base model's tokenizer)."""
    path = Path(base_model.path) if base_model.path else None
    return token_counter(text.tokenizer, path)


def _passages(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    base_model: BaseModelManifest,
    build: Callable[[pl.DataFrame, TokenCounter, PassageConfig], tuple[pl.DataFrame, PassageStats]],
    raw: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Build one source's passages with the base model's tokenizer and the standard metadata."""
    started = time.perf_counter()
    text = project.settings.text
    counter = counter_for(text, base_model)
    frame, stats = build(raw, counter, passage_config(text))
    context.log.info(f"{context.asset_key.to_user_string()}: {stats.as_dict()}")
    chunked = frame.filter(pl.col("n_chunks") > 1)["doc_id"].n_unique() if frame.height else 0
    return table_output(
        frame,
        started=started,
        preview_columns=PREVIEW,
        metadata={
            "documents": dg.MetadataValue.int(stats.documents),
            "passages": dg.MetadataValue.int(stats.passages),
            "documents_chunked": dg.MetadataValue.int(chunked),
            "dropped": dg.MetadataValue.json(dict(stats.dropped)),
            "chunks_per_document": dg.MetadataValue.json(stats.as_dict()["chunks_per_doc"]),
            "tokenizer": counter.name,
            "rows_by_section": dg.MetadataValue.md(count_table(frame, "section")),
        },
    )


@dg.asset(group_name=GROUP, code_version=CODE_VERSION, kinds={"polars", "parquet"})
def law_passages(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    raw_statutes: pl.DataFrame,
    base_model: BaseModelManifest,
) -> dg.Output[pl.DataFrame]:
    """Statute articles as passages (``민법 제750조(불법행위의 내용) …``), long ones chunked with overlap."""
    return _passages(context, project, base_model, statute_passages, raw_statutes)


@dg.asset(group_name=GROUP, code_version=CODE_VERSION, kinds={"polars", "parquet"})
def admin_passages(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    raw_admin_rules: pl.DataFrame,
    base_model: BaseModelManifest,
) -> dg.Output[pl.DataFrame]:
    """Administrative-rule articles as passages."""
    return _passages(context, project, base_model, admin_rule_passages, raw_admin_rules)


@dg.asset(group_name=GROUP, code_version=CODE_VERSION, kinds={"polars", "parquet"})
def prec_passages(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    raw_precedents: pl.DataFrame,
    base_model: BaseModelManifest,
) -> dg.Output[pl.DataFrame]:
    """판시사항 and 판결요지 as passages of their own, 판례내용 in overlapping chunks."""
    return _passages(context, project, base_model, precedent_passages, raw_precedents)


@dg.asset(group_name=GROUP, code_version="merged-1", kinds={"polars", "parquet"})
def merged_corpus(
    context: dg.AssetExecutionContext,
    artifacts: ArtifactStoreResource,
    law_passages: pl.DataFrame,
    admin_passages: pl.DataFrame,
    prec_passages: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """All passages, identical texts deduplicated by content hash; dropped ids are kept as ``aliases``."""
    started = time.perf_counter()
    merged, stats = merge_corpus([law_passages, admin_passages, prec_passages])
    atomic_write_text(artifacts.store.report_path(GROUP, MERGED_STATS_FILE), json.dumps(stats, indent=2))
    return table_output(
        merged,
        started=started,
        preview_columns=PREVIEW,
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in stats.items()},
            "passages_by_source": dg.MetadataValue.md(count_table(merged, "source")),
        },
    )


CORPUS_ASSETS = [law_passages, admin_passages, prec_passages, merged_corpus]
