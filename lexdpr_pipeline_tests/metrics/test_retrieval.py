import math

import pytest

from lexdpr_pipeline.metrics.retrieval import evaluate_rankings, query_metrics


def test_hand_computed_case() -> None:
    # relevant = {a, c}; ranking: x a y c
    m = query_metrics(["x", "a", "y", "c"], {"a", "c"}, ks=(1, 2, 4))
    assert m["accuracy@1"] == 0 and m["accuracy@2"] == 1
    assert m["precision@2"] == 0.5 and m["precision@4"] == 0.5
    assert m["recall@2"] == 0.5 and m["recall@4"] == 1.0
    assert m["mrr@1"] == 0 and m["mrr@4"] == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@4"] == pytest.approx(dcg / idcg)
    assert m["map@4"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / idcg)


def test_perfect_and_empty_rankings() -> None:
    perfect = query_metrics(["a", "b"], {"a", "b"}, ks=(2,))
    assert all(v == 1.0 for k, v in perfect.items() if not k.startswith("precision")) and perfect["precision@2"] == 1
    nothing = query_metrics([], {"a"}, ks=(10,))
    assert all(v == 0.0 for v in nothing.values())


def test_evaluate_means_and_skips() -> None:
    res = evaluate_rankings({"q1": ["a", "b"], "q2": ["b", "a", "a"]}, {"q1": {"a"}, "q2": {"a"}, "q3": set()}, ks=(1,))
    assert res.skipped_no_relevant == 1 and res.n_queries == 2
    assert res.metrics["mrr@1"] == 0.5 and res.metrics["accuracy@1"] == 0.5
    with pytest.raises(ValueError):
        query_metrics(["a"], set())


def test_matches_sentence_transformers_evaluator() -> None:
    """Same numbers as sentence-transformers' InformationRetrievalEvaluator on the same rankings."""
    import numpy as np
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    rng = np.random.default_rng(0)
    corpus = {f"d{i}": f"doc {i}" for i in range(30)}
    queries = {f"q{i}": f"query {i}" for i in range(12)}
    relevant = {q: {f"d{j}" for j in rng.choice(30, size=rng.integers(1, 4), replace=False)} for q in queries}
    scores = {q: rng.random(30) for q in queries}
    ks = (1, 3, 5, 10)
    ev = InformationRetrievalEvaluator(
        queries, corpus, relevant, accuracy_at_k=ks, precision_recall_at_k=ks, mrr_at_k=ks, ndcg_at_k=ks, map_at_k=ks
    )
    ids = list(corpus)
    st_hits = [[{"corpus_id": ids[j], "score": float(scores[q][j])} for j in np.argsort(-scores[q])] for q in queries]
    ev.queries_ids = list(queries)
    theirs = ev.compute_metrics(st_hits)
    ours = evaluate_rankings({q: [ids[j] for j in np.argsort(-scores[q])] for q in queries}, relevant, ks).metrics
    pairs = {"accuracy": "accuracy@k", "precision": "precision@k", "recall": "recall@k", "mrr": "mrr@k"}
    pairs |= {"ndcg": "ndcg@k", "map": "map@k"}
    for ours_name, their_name in pairs.items():
        for k in ks:
            assert ours[f"{ours_name}@{k}"] == pytest.approx(theirs[their_name][k]), (ours_name, k)
