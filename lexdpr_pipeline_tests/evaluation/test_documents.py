"""The "as served" evaluation view: rankings collapsed to one hit per document, relevance by document."""

from __future__ import annotations

import math

import polars as pl

from lexdpr_pipeline.evaluation.documents import document_queries, document_ranking, document_rankings
from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.evaluation.run import BM25, EvalPlan, run_evaluation
from lexdpr_pipeline.evaluation.scoring import evaluate_systems

DOC_OF = {"A#0": "A", "A#1": "A", "A#2": "A", "B#0": "B", "C#0": "C", "C#1": "C", "D#0": "D"}


def _queries() -> EvalQueries:
    # q1: a cited decision A (every passage relevant); q2: a decision's 판결요지 C#1 (C#0, its 판시사항, excluded)
    return EvalQueries(
        "test",
        ["q1", "q2"],
        ["x", "y"],
        ["cross_prec", "prec"],
        {"q1": {"A#0", "A#1", "A#2"}, "q2": {"C#1"}},
        {"q1": set(), "q2": {"C#0"}},
        {"q1": "prec", "q2": "prec"},
    )


def test_a_ranking_collapses_to_its_documents_in_first_appearance_order() -> None:
    assert document_ranking(["B#0", "A#1", "C#1", "A#0", "C#0", "Z"], DOC_OF) == ["B", "A", "C", "Z"]
    collapsed = document_rankings({"s": {"q": ["C#1", "A#2", "C#0"]}}, DOC_OF)
    assert collapsed == {"s": {"q": ["C", "A"]}}


def test_relevance_moves_to_documents_and_exclusions_are_already_applied() -> None:
    docs = document_queries(_queries(), DOC_OF)
    assert docs.relevant == {"q1": {"A"}, "q2": {"C"}}
    assert docs.exclude == {"q1": set(), "q2": set()}
    assert docs.types == ["cross_prec", "prec"] and docs.source_of == {"q1": "prec", "q2": "prec"}


def test_the_document_view_scores_what_the_engine_shows_not_extra_passages_of_one_decision() -> None:
    queries = _queries()
    # Both systems put decision A first and B second in the engine's one-hit-per-document list; the passage view
    # still prefers "many" for filling the top with A's other passages, which the engine never shows.
    systems = {"many": {"q1": ["A#0", "B#0", "A#1", "A#2"]}, "one": {"q1": ["A#0", "B#0", "D#0"]}}
    q1 = EvalQueries("test", ["q1"], ["x"], ["cross_prec"], {"q1": queries.relevant["q1"]}, {"q1": set()}, {})
    q1.source_of = {"q1": "prec"}
    passages, _ = evaluate_systems(systems, q1, (10,))
    documents, _ = evaluate_systems(document_rankings(systems, DOC_OF), document_queries(q1, DOC_OF), (10,))

    def ndcg(table: pl.DataFrame, system: str) -> float:
        return table.filter((pl.col("system") == system) & (pl.col("group") == "all"))["ndcg@10"][0]

    assert ndcg(passages, "many") > ndcg(passages, "one")
    assert math.isclose(ndcg(documents, "many"), 1.0) and math.isclose(ndcg(documents, "one"), 1.0)
    # A relevant document found only at rank 2 is rank 2 in both views when it has one passage.
    late = {"s": {"q1": ["B#0", "A#2"]}}
    doc_late, _ = evaluate_systems(document_rankings(late, DOC_OF), document_queries(q1, DOC_OF), (10,))
    assert math.isclose(ndcg(doc_late, "s"), 1 / math.log2(3))


def test_run_evaluation_reports_the_document_view(mini_splits, mini_corpus, tmp_path) -> None:
    run = run_evaluation({}, mini_splits, mini_corpus, EvalPlan(ks=(1, 10, 100), hybrid=False), progress=False,
                         out_dir=tmp_path)  # fmt: skip
    assert run.document_table is not None
    assert run.document_table.columns == run.table.columns
    key = ["system", "split", "group"]
    assert run.document_table.select(key).sort(key).equals(run.table.select(key).sort(key))
    assert set(run.overall(documents=True)) == set(run.overall())
    # Statute articles are one passage each: heading queries score the same in both views.
    law = pl.col("group") == "type:law"
    assert run.document_table.filter(law).sort(key).equals(run.table.filter(law).sort(key))
    # The cross_prec query's gold decisions 10 and 30 count once each: its document recall@100 is over 2 documents.
    cross = run.document_table.filter((pl.col("group") == "type:cross_prec") & (pl.col("system") == BM25))
    assert cross["recall@100"][0] in (0.0, 0.5, 1.0)
    assert "As served: one hit per document" in run.report.markdown


# what `lex-dpr search` serves without a source filter --------------------------------------------------------------


def _tuning(law: float, prec: float, all_: float):
    from lexdpr_pipeline.evaluation.fusion_tuning import Choice, FusionTuning

    best = {g: Choice("weighted", 60, a, 0.5, 1) for g, a in (("law", law), ("prec", prec), ("all", all_))}
    return FusionTuning({"weighted": best, "rrf": best}, best)


def _no_linking():
    from lexdpr_pipeline.evaluation.link_tuning import LinkChoice, LinkTuning

    off = LinkChoice("off", 0.0, False, None, None, 0, 0)
    return LinkTuning({"law": off, "prec": off, "all": off})


def test_served_rankings_pick_the_choice_by_the_candidates_sources_like_the_engine(mini_corpus) -> None:
    from lexdpr_pipeline.evaluation.link_tuning import doc_passages
    from lexdpr_pipeline.evaluation.run import hybrid_name, served_name, served_rankings

    # Both queries want decision 10's 판결요지. Dense prefers a statute / decision 20, BM25 prefers the answer.
    q = EvalQueries(
        "test",
        ["mixed", "decisions"],
        ["x", "y"],
        ["prec", "prec"],
        {"mixed": {"prec:10#1"}, "decisions": {"prec:10#1"}},
        {"mixed": set(), "decisions": set()},
        {"mixed": "prec", "decisions": "prec"},
    )
    dense = {"mixed": [("law:1:750", 0.9), ("prec:10#1", 0.5)], "decisions": [("prec:20#1", 0.9), ("prec:10#1", 0.5)]}
    bm25 = {"mixed": [("prec:10#1", 9.0), ("law:1:750", 1.0)], "decisions": [("prec:10#1", 9.0), ("prec:20#1", 1.0)]}
    # The prec group trusts BM25 (dense weight 0.1), the all group trusts dense (0.9).
    tuning = _tuning(law=0.9, prec=0.1, all_=0.9)
    linking = {hybrid_name("weighted", "tiny"): _no_linking()}
    doc_of, passages_of = doc_passages(mini_corpus)
    rankings = {"test": {"tiny": dense, BM25: bm25}}
    out = served_rankings(rankings, [q], {"tiny": tuning}, linking, {"test": {}}, doc_of, passages_of, 10)
    served = out["test"][served_name("tiny")]
    # Mixed candidates → the all choice (dense-led): the statute comes first although the answer is a decision.
    assert served["mixed"][0] == "law:1:750"
    # Candidates that are all decisions → the prec choice (BM25-led), as the engine does.
    assert served["decisions"][0] == "prec:10#1"
    assert served_name("tiny") == "served, unfiltered (tiny+bm25)"
