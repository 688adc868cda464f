"""A small real slice of the corpus (two short laws + three precedents), built with the library's own passage
functions from ``../shared/corpus`` (read in place), for the index and search tests."""

from __future__ import annotations

from functools import cache

import polars as pl

from lexdpr_pipeline.sources.mirror.frontmatter import read_markdown
from lexdpr_pipeline.sources.mirror.precedents import parse_precedent_markdown
from lexdpr_pipeline.sources.mirror.statutes import parse_statute_markdown
from lexdpr_pipeline.sources.records import Precedent, StatuteArticle, to_frame
from lexdpr_pipeline.text.chunking import WhitespaceTokenCounter
from lexdpr_pipeline.text.passages import (
    PassageConfig,
    content_hash,
    merge_corpus,
    precedent_passages,
    statute_passages,
)
from lexdpr_pipeline_tests.conftest import CORPUS

LAWS = ("국가배상법", "가등기담보등에관한법률")
PRECEDENTS = ("2000다11317", "2000다11560", "2000다11850")  # 민사/대법원
CONFIG = PassageConfig(max_tokens=64, overlap=8, prec_body_max_chunks=2)


@cache
def _slice() -> pl.DataFrame:
    articles: list[StatuteArticle] = []
    for law in LAWS:
        path = CORPUS / "legalize-kr" / "kr" / law / "법률.md"
        articles += parse_statute_markdown(read_markdown(path), f"kr/{law}/법률.md")
    precs: list[Precedent] = []
    for case in PRECEDENTS:
        path = CORPUS / "precedent-kr" / "민사" / "대법원" / f"{case}.md"
        precs.append(parse_precedent_markdown(read_markdown(path), f"민사/대법원/{case}.md"))
    counter = WhitespaceTokenCounter()
    laws, _ = statute_passages(to_frame(articles, StatuteArticle), counter, CONFIG)
    cases, _ = precedent_passages(to_frame(precs, Precedent), counter, CONFIG)
    merged, _ = merge_corpus([laws, cases])
    return merged


def corpus_slice() -> pl.DataFrame:
    """The merged slice (PASSAGE_SCHEMA + aliases), sorted by passage id."""
    return _slice().clone()


def with_changed_law(corpus: pl.DataFrame, law_name: str, suffix: str = " (개정)") -> pl.DataFrame:
    """``corpus`` with every passage of one law re-worded (new text, new content hash)."""
    hit = pl.col("law_name") == law_name
    changed = corpus.with_columns(pl.when(hit).then(pl.col("text") + suffix).otherwise(pl.col("text")).alias("text"))
    return changed.with_columns(
        pl.when(hit)
        .then(pl.col("text").map_elements(content_hash, return_dtype=pl.String))
        .otherwise(pl.col("content_hash"))
        .alias("content_hash")
    )
