"""A small real slice for the pairs tests, built once per session: 민법 (제750조 on) and 가사소송법 from a copied
mirror slice, the first 60 decisions of the precedent mirror, their citations, passages, merged corpus and queries.

The BM25 index over the merged slice (~740 passages; Kiwi tokenizes ~150/s) is also built once and shared."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.citations.table import citation_table
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.pairs.queries import QueryConfig, QueryStats, build_queries
from lexdpr_pipeline.sources.mirror import read_precedents, read_statutes
from lexdpr_pipeline.sources.records import ADMIN_RULE_SCHEMA, Precedent, StatuteArticle, to_frame
from lexdpr_pipeline.text.chunking import WhitespaceTokenCounter
from lexdpr_pipeline.text.passages import PassageConfig, merge_corpus, precedent_passages, statute_passages
from lexdpr_pipeline_tests.conftest import CORPUS

SLICE_LAWS = ("민법", "가사소송법")
N_PRECEDENTS = 60  # the first files in path order: 가사/대법원/…
PASSAGES = PassageConfig(max_tokens=128, overlap=16, prec_body_max_chunks=2)


@dataclass(frozen=True)
class RealSlice:
    statutes: pl.DataFrame
    admin_rules: pl.DataFrame
    precedents: pl.DataFrame
    citations: pl.DataFrame
    citation_stats: dict
    merged: pl.DataFrame
    pairs: pl.DataFrame
    query_stats: QueryStats


@pytest.fixture(scope="session")
def real_slice(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> RealSlice:
    kr = tmp_path_factory.mktemp("pairs-mirror") / "legalize-kr" / "kr"
    for law in SLICE_LAWS:
        shutil.copytree(CORPUS / "legalize-kr" / "kr" / law, kr / law)
    statutes = to_frame(read_statutes(kr.parents[1], progress=False).records, StatuteArticle)
    statutes = statutes.filter((pl.col("law_name") != "민법") | (pl.col("article_no") >= 750))
    precedents = to_frame(read_precedents(CORPUS, max_files=N_PRECEDENTS, progress=False).records, Precedent)
    citations, citation_stats = citation_table(statutes, precedents)
    counter = WhitespaceTokenCounter()
    law, _ = statute_passages(statutes, counter, PASSAGES)
    prec, _ = precedent_passages(precedents, counter, PASSAGES)
    merged, _ = merge_corpus([law, prec])
    admin = pl.DataFrame(schema=ADMIN_RULE_SCHEMA)
    pairs, stats = build_queries(statutes, admin, precedents, citations, merged, QueryConfig())
    return RealSlice(statutes, admin, precedents, citations, citation_stats, merged, pairs, stats)


@pytest.fixture(scope="session")
def real_bm25(real_slice: RealSlice) -> BM25Index:
    merged = real_slice.merged
    return BM25Index.build(merged["passage_id"].to_list(), merged["text"].to_list())
