"""A small, real training set for model tests: 민법 articles from ../shared, heading queries, digit splits.

Queries are ``{법령명} {조문제목}`` (as the pairs stage builds statute queries), positives their article, hard negatives
the neighbouring articles, and every fifth query shares its positive with another query (a citing-decision stand-in)
so in-batch duplicates exist as they do in the real data.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lexdpr_pipeline.pairs.queries import PAIR_SCHEMA
from lexdpr_pipeline.sources.mirror.statutes import parse_statute_markdown
from lexdpr_pipeline.text.passages import PASSAGE_SCHEMA

CIVIL_CODE = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "legalize-kr" / "kr" / "민법" / "법률.md"


def tiny_training_set(n_articles: int = 80) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(dataset_splits, merged_corpus) frames in the pipeline's schemas."""
    articles = [
        a
        for a in parse_statute_markdown(CIVIL_CODE.read_text(encoding="utf-8"), str(CIVIL_CODE))
        if not a.is_deleted and a.article_title and a.text
    ][:n_articles]
    corpus_rows = []
    for a in articles:
        row = {name: None for name in PASSAGE_SCHEMA.names()}
        row.update(
            passage_id=a.article_id,
            doc_id=a.article_id,
            source="law",
            section="article",
            chunk_index=0,
            n_chunks=1,
            title=f"{a.law_name} 제{a.article_no}조({a.article_title})",
            text=f"{a.law_name} 제{a.article_no}조({a.article_title}) {a.text}"[:400],
            n_tokens=len(a.text.split()),
            law_id=a.law_id,
            law_name=a.law_name,
            law_kind=a.law_kind,
            article_key=a.article_key,
            effective_date=a.effective_date,
            content_hash=str(hash(a.text)),
        )
        corpus_rows.append(row)
    corpus = pl.DataFrame(corpus_rows, schema=PASSAGE_SCHEMA)
    ids = corpus["passage_id"].to_list()
    pairs = []
    for i, a in enumerate(articles):
        pos = ids[i]
        negs = [ids[(i + k) % len(ids)] for k in (1, 2, 3)]
        texts = [f"{a.law_name} {a.article_title}"]
        if i % 5 == 0:  # a second query on the same article: an in-batch duplicate positive
            texts.append(f"{a.article_title}에 관한 규정")
        for j, text in enumerate(texts):
            pairs.append(
                {
                    "query_id": f"q:{i}:{j}",
                    "query_type": "law" if j == 0 else "cross_law",
                    "query_text": text,
                    "group_id": pos,
                    "group_date": None,
                    "query_passage_id": None,
                    "positive_ids": [pos],
                    "positive_doc_ids": [pos],
                    "former_citation": False,
                    "negative_ids": negs,
                    "split": "train" if i % 10 < 7 else ("valid" if i % 10 < 9 else "test"),
                }
            )
    schema = {**dict(PAIR_SCHEMA), "negative_ids": pl.List(pl.String()), "split": pl.String()}
    return pl.DataFrame(pairs, schema=schema), corpus
