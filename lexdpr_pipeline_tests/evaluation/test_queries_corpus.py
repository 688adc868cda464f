"""Eval queries (sampling, relevance, exclusion of the query's own decision) and the eval corpus."""

from __future__ import annotations

import polars as pl

from lexdpr_pipeline.evaluation.corpus import eval_corpus
from lexdpr_pipeline.evaluation.queries import eval_queries, stratified_sample
from lexdpr_pipeline_tests.evaluation.conftest import query, splits_frame


def test_exclusion_is_the_source_decision_minus_positives(mini_splits, mini_corpus) -> None:
    q = eval_queries(mini_splits, mini_corpus, "test")
    assert q.ids == sorted(q.ids) and len(q) == 5
    # cross_law from prec:10: every passage of prec:10 is left out.
    assert q.exclude["q:cross_law:10"] == {"prec:10#0", "prec:10#1", "prec:10#2"}
    # prec: the positive (its own 판결요지) is never excluded; its 판시사항 (the query text) and body are.
    assert q.exclude["q:prec:10"] == {"prec:10#0", "prec:10#2"}
    assert q.exclude["q:cross_prec:20"] == {"prec:20#0", "prec:20#1", "prec:20#2"}
    assert q.exclude["q:law:1:750"] == set()  # heading queries exclude nothing
    assert q.relevant["q:cross_prec:20"] == {"prec:10#1", "prec:30#1"}
    assert q.source_of == {
        "q:cross_law:10": "law",
        "q:cross_prec:20": "prec",
        "q:law:1:103": "law",
        "q:law:1:750": "law",
        "q:prec:10": "prec",
    }
    off = eval_queries(mini_splits, mini_corpus, "test", exclude_query_document=False)
    assert all(not e for e in off.exclude.values())


def test_positives_missing_from_corpus_are_counted_not_silent(mini_splits, mini_corpus) -> None:
    extra = splits_frame(
        [
            query("q:x", "law", "없는 조문", ["law:9:1"], "law:9:1", None, "test"),
            query("q:y", "law", "반쯤 있는 조문", ["law:9:2", "law:1:750"], "law:9:2", None, "test"),
        ]
    )
    q = eval_queries(pl.concat([mini_splits, extra]), mini_corpus, "test")
    assert "q:x" not in q.ids and q.relevant["q:y"] == {"law:1:750"}
    assert q.skipped == {
        "query without a positive in the corpus": 1,
        "positive not in corpus (dropped from relevant)": 2,
    }


def test_stratified_sample_is_proportional_seeded_and_keeps_every_type() -> None:
    rows = [query(f"q:law:{i:03d}", "law", "t", ["law:1:1"], "g", None, "test") for i in range(90)]
    rows += [query(f"q:prec:{i:03d}", "prec", "t", ["prec:1#1"], "g", None, "test") for i in range(9)]
    rows += [query("q:cross_prec:1", "cross_prec", "t", ["prec:1#1"], "g", None, "test")]
    frame = splits_frame(rows)
    a = stratified_sample(frame, 20, seed=5)
    assert a.height == 20
    counts = dict(a.group_by("query_type").len().iter_rows())
    assert counts == {"law": 18, "prec": 1, "cross_prec": 1}  # 18 : 1.8 : 0.2, at least 1 each
    assert a.equals(stratified_sample(frame.reverse(), 20, seed=5))  # input order does not matter
    assert not a.equals(stratified_sample(frame, 20, seed=6))
    assert stratified_sample(frame, None, seed=5).height == 100


def test_eval_corpus_keeps_positives_caps_size_and_is_seeded(mini_splits, mini_corpus) -> None:
    queries = [eval_queries(mini_splits, mini_corpus, s) for s in ("valid", "test")]
    positives = queries[0].all_relevant() | queries[1].all_relevant()
    assert eval_corpus(mini_corpus, queries, None) is mini_corpus
    small = eval_corpus(mini_corpus, queries, 12, seed=1)
    assert small.height == 12
    assert positives <= set(small["passage_id"])
    assert small.equals(eval_corpus(mini_corpus.reverse(), queries, 12, seed=1))
    others = [set(eval_corpus(mini_corpus, queries, 12, seed=s)["passage_id"]) - positives for s in range(5)]
    assert len({frozenset(o) for o in others}) > 1  # the non-positive sample depends on the seed
    tiny = eval_corpus(mini_corpus, queries, 3, seed=1)  # fewer than the positives: all positives, nothing else
    assert set(tiny["passage_id"]) == positives
