"""evaluate_systems on a hand-made case with known ranks."""

from __future__ import annotations

import math

import pytest

from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.evaluation.scoring import evaluate_systems


@pytest.fixture
def queries() -> EvalQueries:
    return EvalQueries(
        split="test",
        ids=["q1", "q2", "q3"],
        texts=["a", "b", "c"],
        types=["law", "prec", "prec"],
        relevant={"q1": {"law:1:1"}, "q2": {"prec:2#1", "prec:3#1"}, "q3": {"prec:4#1"}},
        exclude={"q1": set(), "q2": set(), "q3": set()},
        source_of={"q1": "law", "q2": "prec", "q3": "prec"},
    )


def test_known_ranks_give_known_metrics(queries: EvalQueries) -> None:
    rankings = {
        "q1": ["law:1:1", "x"],  # rank 1
        "q2": ["x", "prec:2#1", "y"],  # one of two relevant, at rank 2
        "q3": ["x", "y"],  # not found
    }
    table, per_query = evaluate_systems({"dense": rankings, "empty": {}}, queries, ks=(1, 10))
    assert table.columns[:4] == ["system", "split", "group", "n_queries"]
    assert {"ndcg@10", "recall@10", "mrr@10", "accuracy@1"} <= set(table.columns)
    row = {(r["system"], r["group"]): r for r in table.iter_rows(named=True)}
    assert set(row) == {
        (s, g) for s in ("dense", "empty") for g in ("all", "type:law", "type:prec", "source:law", "source:prec")
    }
    q2_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert row["dense", "type:law"]["ndcg@10"] == pytest.approx(1.0)
    assert row["dense", "type:prec"]["ndcg@10"] == pytest.approx(q2_ndcg / 2)
    assert row["dense", "type:prec"]["recall@10"] == pytest.approx(0.25)
    assert row["dense", "all"]["recall@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert row["dense", "all"]["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert row["dense", "all"]["accuracy@1"] == pytest.approx(1 / 3)
    assert row["dense", "source:prec"]["n_queries"] == 2 and row["dense", "all"]["n_queries"] == 3
    assert row["empty", "all"]["ndcg@10"] == 0.0
    ranks = {r["query_id"]: r for r in per_query.filter(system="dense").iter_rows(named=True)}
    assert [ranks[q]["first_relevant_rank"] for q in ("q1", "q2", "q3")] == [1, 2, None]
    assert ranks["q2"]["top_ids"] == ["x", "prec:2#1", "y"] and ranks["q2"]["n_relevant"] == 2
    assert ranks["q2"]["ndcg@10"] == pytest.approx(q2_ndcg) and ranks["q2"]["recall@100"] == pytest.approx(0.5)
    assert set(per_query["split"]) == {"test"} and per_query.height == 6
