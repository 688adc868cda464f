"""Dense and BM25 rankings: exclusions respected, positives kept, depth kept; BM25 finds an exact match first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.evaluation.corpus import eval_corpus
from lexdpr_pipeline.evaluation.queries import EvalQueries, eval_queries
from lexdpr_pipeline.evaluation.retrievers import bm25_index_for, bm25_rankings, dense_rankings
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline_tests.evaluation.conftest import TEXTS


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path) -> BiEncoder:
    return BiEncoder.load(tiny_model_dir)


@pytest.fixture(scope="module")
def mini_bm25(mini_corpus: pl.DataFrame) -> BM25Index:
    return bm25_index_for(mini_corpus, progress=False)


def _check(queries: EvalQueries, rankings: dict[str, list[str]], depth: int) -> None:
    for qid in queries.ids:
        ranked = rankings[qid]
        assert not set(ranked) & queries.exclude[qid], qid
        assert len(ranked) == len(set(ranked)) <= depth


def test_dense_drops_the_query_document_and_keeps_depth(tiny_model, mini_splits, mini_corpus) -> None:
    queries = eval_queries(mini_splits, mini_corpus, "test")
    depth = mini_corpus.height  # everything that is not excluded must be ranked
    rankings, vecs = dense_rankings(tiny_model, queries, mini_corpus, depth, batch_size=8, progress=False)
    _check(queries, rankings, depth)
    for qid in queries.ids:
        assert len(rankings[qid]) == depth - len(queries.exclude[qid])
        assert queries.relevant[qid] <= set(rankings[qid])  # positives are never excluded
    assert vecs.shape[0] == mini_corpus.height and vecs.dtype == np.float32
    # Depth is kept after exclusions: a 3-deep ranking of a query that loses 3 passages still has 3 entries.
    short, _ = dense_rankings(tiny_model, queries, mini_corpus, 3, progress=False, passage_vecs=vecs)
    assert all(len(r) == 3 for r in short.values())
    again, _ = dense_rankings(tiny_model, queries, mini_corpus, depth, progress=False, passage_vecs=vecs)
    assert again == rankings
    with pytest.raises(ValueError, match="passage vectors"):
        dense_rankings(tiny_model, queries, mini_corpus, 3, progress=False, passage_vecs=vecs[:4])


def test_bm25_drops_the_query_document(mini_bm25, mini_splits, mini_corpus) -> None:
    queries = eval_queries(mini_splits, mini_corpus, "test")
    rankings = bm25_rankings(mini_bm25, queries, depth=10)
    _check(queries, rankings, 10)
    # Without exclusion the query's own 판시사항 (the same text) is BM25's first hit.
    plain = eval_queries(mini_splits, mini_corpus, "test", exclude_query_document=False)
    assert bm25_rankings(mini_bm25, plain, depth=10)["q:cross_law:10"][0] == "prec:10#0"
    assert rankings["q:cross_law:10"][0] != "prec:10#0"


def test_bm25_ranks_an_exact_match_first(mini_bm25) -> None:
    """Better than random (which would put the one relevant passage of 20 at rank 1 one time in 20)."""
    pids = ["law:1:103", "prec:20#1", "prec:43#0"]
    queries = EvalQueries(
        "test",
        [f"q{i}" for i in range(3)],
        [TEXTS[p] for p in pids],
        ["law", "prec", "prec"],
        {f"q{i}": {p} for i, p in enumerate(pids)},
        {f"q{i}": set() for i in range(3)},
        {f"q{i}": p.split(":")[0] for i, p in enumerate(pids)},
    )
    rankings = bm25_rankings(mini_bm25, queries, depth=5)
    assert [rankings[f"q{i}"][0] for i in range(3)] == pids


def test_bm25_index_reused_only_for_the_same_passages(mini_bm25, mini_splits, mini_corpus) -> None:
    assert bm25_index_for(mini_corpus, mini_bm25) is mini_bm25
    sample = eval_corpus(mini_corpus, [eval_queries(mini_splits, mini_corpus, "test")], 10, seed=0)
    built = bm25_index_for(sample, mini_bm25, progress=False)
    assert built is not mini_bm25 and sorted(built.ids) == sorted(sample["passage_id"])
