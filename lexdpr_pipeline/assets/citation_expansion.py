"""``citation_expansion`` (group ``training_data``): each statute article's citation context — the 판시사항 of the
train-split decisions citing it (:mod:`lexdpr_pipeline.citations.expansion`), with its provenance (``decision_ids``,
``cutoff``). And the ``bm25_index`` variant that indexes it as BM25's second field.

The variant replaces the plain ``bm25_index`` (same key, group ``index``) only when ``index.bm25_expansion_weight``
> 0 (:func:`index_assets`): with the default 0 the graph, the index and its content key are exactly as without the
feature, so nothing downstream goes stale; with a weight, ``bm25_index`` depends on ``citation_expansion`` and
everything that searches it (training negatives, evaluation, the served search) sees the expansion.
"""

import time

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import ArtifactStore, Bm25IndexManifest
from lexdpr_pipeline.assets.common import image_markdown, table_output
from lexdpr_pipeline.assets.search_index import GROUP as INDEX_GROUP
from lexdpr_pipeline.assets.search_index import SEARCH_INDEX_ASSETS, bm25_output
from lexdpr_pipeline.assets.training_data import GROUP as TRAINING_DATA_GROUP
from lexdpr_pipeline.citations import expansion as expansion_lib
from lexdpr_pipeline.citations.expansion import ExpansionConfig
from lexdpr_pipeline.index.publish import build_or_reuse_bm25
from lexdpr_pipeline.pairs.build import split_config
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject
from lexdpr_pipeline.settings import Settings

ASSET_NAME = "citation_expansion"
REPORT_FOLDER = "citation_expansion"  # under data/reports/
HISTOGRAM_FILE = "decisions_per_article.png"


def expansion_config(settings: Settings) -> ExpansionConfig:
    return ExpansionConfig(
        max_decisions=settings.index.expansion_max_decisions,
        max_chars=settings.index.expansion_max_chars,
        include_former=settings.pairs.include_former_citations,
        sources=tuple(settings.index.expansion_sources),
    )


@dg.asset(group_name=TRAINING_DATA_GROUP, code_version="expansion-1", kinds={"polars", "parquet"})
def citation_expansion(
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    precedent_citations: pl.DataFrame,
    raw_precedents: pl.DataFrame,
    merged_corpus: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Per statute article: the 판시사항 of the train-split decisions citing it (most recent first, deduplicated,
    capped: ``index.expansion_max_decisions`` / ``expansion_max_chars``), with ``decision_ids`` and ``cutoff`` as
    provenance. Never valid/test decisions; never part of the passage ``text``."""
    started = time.perf_counter()
    settings = project.settings
    frame, stats = expansion_lib.citation_expansion(
        precedent_citations, raw_precedents, merged_corpus, split_config(settings.pairs), expansion_config(settings)
    )
    histogram = expansion_lib.decisions_per_article(frame, stats.statute_articles)
    png = expansion_lib.plot_decisions_per_article(
        histogram,
        artifacts.store.report_path(REPORT_FOLDER, HISTOGRAM_FILE),
        settings.index.expansion_max_decisions,
    )
    return table_output(
        frame,
        started=started,
        preview_columns=["doc_id", "n_decisions", "n_citing", "decision_ids", "expansion_text"],
        metadata={
            "articles_expanded": dg.MetadataValue.int(stats.articles_expanded),
            "precedents_expanded": dg.MetadataValue.int(stats.precedents_expanded),
            "statute_articles": dg.MetadataValue.int(stats.statute_articles),
            "share_expanded": dg.MetadataValue.float(round(stats.share_expanded, 4)),
            "cutoff": stats.cutoff,
            "stats": dg.MetadataValue.json(stats.as_dict()),
            "decisions_per_article": dg.MetadataValue.json(histogram),
            "histogram": dg.MetadataValue.md(image_markdown("citing decisions per statute article", png)),
            "histogram_path": dg.MetadataValue.path(str(png)),
        },
    )


@dg.asset(name="bm25_index", group_name=INDEX_GROUP, code_version="bm25-expansion-1", kinds={"bm25"})
def bm25_index_with_expansion(
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    merged_corpus: pl.DataFrame,
    citation_expansion: pl.DataFrame,
) -> dg.Output[Bm25IndexManifest]:
    """BM25 over ``merged_corpus`` with a second field, each article's ``citation_expansion`` text: a passage scores
    bm25(text) + ``index.bm25_expansion_weight`` · bm25(expansion). Content-addressed; unchanged inputs reuse it."""
    started = time.perf_counter()
    weight = project.settings.index.bm25_expansion_weight
    expansions = expansion_lib.passage_expansions(merged_corpus, citation_expansion)
    built = build_or_reuse_bm25(merged_corpus, artifacts.store, expansions=expansions, expansion_weight=weight)
    return bm25_output(
        built,
        started,
        expansion_weight=dg.MetadataValue.float(weight),
        passages_with_expansion=dg.MetadataValue.int(sum(1 for text in expansions if text)),
    )


def index_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The ``index`` group's assets, ``bm25_index`` with the expansion field when its weight is > 0."""
    if settings.index.bm25_expansion_weight <= 0:
        return list(SEARCH_INDEX_ASSETS)
    return [bm25_index_with_expansion if a.key == dg.AssetKey("bm25_index") else a for a in SEARCH_INDEX_ASSETS]


def expansion_in_use(settings: Settings, store: ArtifactStore) -> pl.DataFrame | None:
    """The stored ``citation_expansion`` table when BM25 searches with it (index or eval weight > 0), else None —
    for the leak check, which then proves no expansion text comes from a valid/test decision."""
    weights = (settings.index.bm25_expansion_weight, settings.eval.bm25_expansion_weight or 0.0)
    if max(weights) <= 0:
        return None
    if not store.has_table(ASSET_NAME):
        raise ValueError("BM25's citation expansion is on but citation_expansion was never materialized")
    return store.read_table(ASSET_NAME)


CITATION_EXPANSION_ASSETS = [citation_expansion]
