"""Query citation linking inside the evaluation: the passage mapping of the engine's document step, the choice on
valid only, the "+ linking" systems and their report, the stored choice and the engine's ``citation_linking: auto``."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from lexdpr_pipeline.artifacts import FusionParams
from lexdpr_pipeline.evaluation.link_tuning import (
    DEFAULT_CANDIDATE,
    OFF,
    LinkCandidate,
    doc_passages,
    link_grid,
    link_ranking,
    linked_name,
    query_links,
    tune_linking,
)
from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.evaluation.run import BM25, EvalPlan, run_evaluation
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.search.engine import SearchEngine
from lexdpr_pipeline.search.linking import LinkedRef, QueryLinker, apply_links
from lexdpr_pipeline.settings import SearchSettings
from lexdpr_pipeline_tests.evaluation.conftest import splits_frame
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice

MINBEOP = "001706"
# Article bodies without the law's name or number: a query citing "민법 제750조" shares no term with its article.
ARTICLES = {
    "750": "고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 배상할 책임이 있다.",
    "751": "타인의 신체, 자유 또는 명예를 해하거나 정신상고통을 가한 자는 재산 이외의 손해에도 책임이 있다.",
    "103": "선량한 풍속 기타 사회질서에 위반한 사항을 내용으로 하는 법률행위는 무효로 한다.",
    "390": "채무자가 채무의 내용에 좇은 이행을 하지 아니한 때에는 채권자는 손해배상을 청구할 수 있다.",
}
# Decisions: (serial, case number, [판시사항, 판결요지, body]); their words are what the queries' words match.
DECISIONS = [
    (10, "2008다12345", ["교통사고 피해자의 위자료 산정 기준", "교통사고 위자료 산정 기준 판단", "교통사고 사건 경위"]),
    (20, "2009다2222", ["도박 채무 약정의 효력 판단", "도박 채무 약정은 효력 없음", "도박 자금 대여 경위"]),
    (30, "2010다3333", ["의료 과오 손해배상 위자료", "의료 과오 위자료 산정", "의료 사건 경위"]),
    (40, "2011다4444", ["교통사고 보험금 청구 사건", "보험금 지급 범위", "보험 사건 경위"]),
]


def _corpus() -> pl.DataFrame:
    rows = []
    for key, text in ARTICLES.items():
        doc = f"law:{MINBEOP}:{key}"
        rows.append(
            {"passage_id": doc, "doc_id": doc, "source": "law", "chunk_index": 0, "text": text, "law_id": MINBEOP,
             "law_name": "민법", "law_kind": "법률", "article_key": key, "effective_date": dt.date(2024, 1, 1),
             "court": None, "case_no": None, "decision_date": None, "content_hash": doc}
        )  # fmt: skip
    for serial, case_no, texts in DECISIONS:
        for k, text in enumerate(texts):
            rows.append(
                {"passage_id": f"prec:{serial}#{k}", "doc_id": f"prec:{serial}", "source": "prec", "chunk_index": k,
                 "text": text, "law_id": None, "law_name": None, "law_kind": None, "article_key": None,
                 "effective_date": None, "court": "대법원", "case_no": case_no,
                 "decision_date": dt.date(2010, 1, 1), "content_hash": f"prec:{serial}#{k}"}
            )  # fmt: skip
    return pl.DataFrame(rows).with_columns(pl.lit(None, pl.List(pl.String)).alias("aliases"))


def _row(qid: str, qtype: str, text: str, positives: list[str], own: int, split: str) -> dict:
    return {
        "query_id": qid, "query_type": qtype, "query_text": text, "group_id": f"prec:{own}", "group_date": None,
        "query_passage_id": f"prec:{own}#0", "positive_ids": positives,
        "positive_doc_ids": sorted({p.split("#")[0] for p in positives}), "former_citation": False, "split": split,
        "negative_ids": [],
    }  # fmt: skip


VALID = [  # each cites the article that answers it (and BM25 finds only decisions)
    _row("q:v1", "cross_law", "교통사고 위자료 산정과 민법 제750조", [f"law:{MINBEOP}:750"], 10, "valid"),
    _row("q:v2", "cross_law", "의료 과오 위자료와 민법 제751조", [f"law:{MINBEOP}:751"], 30, "valid"),
    _row("q:v3", "cross_prec", "의료 과오 손해배상 위자료", ["prec:10#0", "prec:10#1"], 30, "valid"),
]
TEST_LAW = _row("q:t1", "cross_law", "도박 채무 약정의 효력과 민법 제103조", [f"law:{MINBEOP}:103"], 20, "test")


def _splits(test_rows: list[dict]) -> pl.DataFrame:
    return splits_frame([*VALID, *test_rows])


def _evaluate(test_rows: list[dict]):
    corpus = _corpus()
    plan = EvalPlan(ks=(1, 10), hybrid=False)
    return run_evaluation({}, _splits(test_rows), corpus, plan, progress=False)


# the passage mapping ------------------------------------------------------------------------------------------------


def _mapping_fixture():
    doc_of = {"A#0": "A", "A#1": "A", "B#0": "B", "C#0": "C", "C#1": "C", "D#0": "D", "D#1": "D", "E#0": "E"}
    passages = {"A": ["A#0", "A#1"], "B": ["B#0"], "C": ["C#0", "C#1"], "D": ["D#0", "D#1"], "E": ["E#0"]}
    ranked = [("A#0", 0.9), ("B#0", 0.8), ("A#1", 0.7), ("C#1", 0.6), ("E#0", 0.1)]
    return doc_of, passages, ranked


def _ref(kind: str, *docs: str) -> LinkedRef:
    return LinkedRef("민법 제1조", 0, 6, kind, tuple(docs), "resolved")


def test_off_and_unlinked_queries_keep_their_ranking() -> None:
    doc_of, passages, ranked = _mapping_fixture()
    ids = [p for p, _ in ranked]
    assert link_ranking(ranked, [_ref("article", "C")], OFF, doc_of, passages) == ids
    assert link_ranking(ranked, [], DEFAULT_CANDIDATE, doc_of, passages) == ids
    unresolved = [LinkedRef("민법 제9999조", 0, 9, "article", (), "article_not_in_law")]
    assert link_ranking(ranked, unresolved, LinkCandidate("list", 2.0), doc_of, passages, depth=3) == ids[:3]
    # a law name counts only with law_names
    assert link_ranking(ranked, [_ref("law_name", "C")], DEFAULT_CANDIDATE, doc_of, passages) == ids


def test_a_cited_document_moves_as_a_block_of_its_passages_like_the_engine() -> None:
    doc_of, passages, ranked = _mapping_fixture()
    refs = [_ref("article", "C"), _ref("case", "D")]
    out = link_ranking(ranked, refs, DEFAULT_CANDIDATE, doc_of, passages, exclude={"D#1"})
    # The engine's document order: apply_links on the collapsed documents (A, B, C, E) …
    engine = [d for d, _ in apply_links(["A", "B", "C", "E"], [0.9, 0.8, 0.6, 0.1], refs, "boost", 1.0)]
    assert engine == ["C", "D", "A", "B", "E"]
    # … expanded: C's retrieved passage then its other one, D's passages minus the excluded one, then the rest in
    # their own order (A's two passages stay around B as retrieved).
    assert out == ["C#1", "C#0", "D#0", "A#0", "B#0", "A#1", "E#0"]
    assert link_ranking(ranked, refs, DEFAULT_CANDIDATE, doc_of, passages, exclude={"D#1"}, depth=4) == out[:4]
    # list mode, weight 0.5: C (link rank 1) gains 0.5/61 and passes A; D (not retrieved) enters below the top
    listed = link_ranking(ranked, refs, LinkCandidate("list", 0.5), doc_of, passages)
    assert listed[:3] == ["C#1", "C#0", "A#0"] and listed.index("D#0") > listed.index("B#0")
    # law names: a retrieved article of the named law moves up with its retrieved passages only
    named = link_ranking(ranked, [_ref("law_name", "C", "Z")], LinkCandidate("boost", 1.0, True), doc_of, passages)
    assert named == ["C#1", "A#0", "B#0", "A#1", "E#0"]


def test_links_never_reach_the_querys_own_decision() -> None:
    corpus = _corpus()
    linker = QueryLinker.from_corpus(corpus)
    _, passages = doc_passages(corpus)
    queries = EvalQueries(
        "test",
        ["q"],
        ["2009다2222 판결과 2008다12345 판결"],  # cites its own decision (20) and another one (10)
        ["cross_prec"],
        {"q": {"prec:10#0"}},
        {"q": {"prec:20#0", "prec:20#1", "prec:20#2"}},  # its own decision: excluded
        {"q": "prec"},
    )
    links = query_links(linker, queries, passages)
    docs = [d for r in links["q"] for d in r.doc_ids]
    assert docs == ["prec:10"]
    assert {d for r in linker.link(queries.texts[0]) for d in r.doc_ids} == {"prec:10", "prec:20"}  # unrestricted
    out = link_ranking([], links["q"], DEFAULT_CANDIDATE, {}, passages, exclude=queries.exclude["q"])
    assert out == ["prec:10#0", "prec:10#1", "prec:10#2"]


# the choice on valid ----------------------------------------------------------------------------------------------


def test_the_grid_prefers_the_engine_default_then_off_and_law_names_last() -> None:
    grid = link_grid()
    assert grid[:2] == [DEFAULT_CANDIDATE, OFF] and len(grid) == 13
    assert {(c.mode, c.weight) for c in grid if c.mode != "off"} == {
        (m, w) for m in ("boost", "list") for w in (0.5, 1.0, 2.0)
    }
    assert all(c.law_names for c in grid[7:]) and not any(c.law_names for c in grid[:7])


def test_linking_raises_the_cited_article_to_rank_one_and_the_choice_is_made_on_valid_only() -> None:
    run = _evaluate([TEST_LAW])
    assert set(run.linking) == {BM25} and run.linked_parts == {linked_name(BM25): BM25}
    ranks = run.per_query.filter(pl.col("query_id") == "q:t1")
    first = dict(zip(ranks["system"], ranks["first_relevant_rank"], strict=True))
    assert first[BM25] != 1  # BM25 alone does not find the article (no shared term) …
    assert first[linked_name(BM25)] == 1  # … the citation puts it first
    law = run.linking[BM25].by_group["law"]
    assert law.citation_linking != "off" and law.valid_score == pytest.approx(1.0) and law.n_linked == 2
    assert law.valid_score_off < 0.5 and run.linking[BM25].chosen_on == "valid"
    test_all = run.table.filter((pl.col("split") == "test") & (pl.col("group") == "all"))
    score = dict(zip(test_all["system"], test_all["ndcg@10"], strict=True))
    assert score[linked_name(BM25)] == pytest.approx(1.0) and score[BM25] < 1.0
    shares = run.link_shares.filter((pl.col("split") == "valid") & (pl.col("query_type") == "cross_law"))
    assert shares["linked_share"].to_list() == [1.0]

    # Another test split — one where linking would hurt (it cites an article that is not the answer) — changes
    # nothing that was chosen …
    misleading = _row("q:t2", "cross_law", "도박 채무 약정의 효력과 민법 제390조", [f"law:{MINBEOP}:103"], 20, "test")
    other = _evaluate([misleading])
    assert other.linking[BM25].by_group == run.linking[BM25].by_group
    # … while valid evidence does: when valid's citations point away from the answers, linking is switched off.
    bad_valid = [
        _row("q:v1", "cross_law", "교통사고 위자료 산정 민법 제390조", ["prec:10#1"], 30, "valid"),
        _row("q:v2", "cross_law", "의료 과오 위자료 민법 제390조", ["prec:30#1"], 10, "valid"),
    ]
    corpus = _corpus()
    flipped = run_evaluation(
        {}, splits_frame([*bad_valid, TEST_LAW]), corpus, EvalPlan(ks=(1, 10), hybrid=False), progress=False
    )
    assert flipped.linking[BM25].by_group["law"].citation_linking == "off"


def test_tune_linking_reads_only_the_valid_split() -> None:
    doc_of, passages, ranked = _mapping_fixture()

    def queries(split: str) -> EvalQueries:
        return EvalQueries(split, ["q"], ["x"], ["cross_prec"], {"q": {"C#0", "C#1"}}, {"q": set()}, {"q": "prec"})

    links = {"valid": {"q": [_ref("case", "C")]}, "test": {"q": [_ref("case", "E")]}}
    qs = {"valid": queries("valid"), "test": queries("test")}
    tuned = tune_linking({"valid": {"q": ranked}, "test": {"q": ranked}}, qs, links, doc_of, passages)
    assert tuned.by_group["prec"].citation_linking == "boost" and tuned.by_group["prec"].valid_score == 1.0
    alone = tune_linking({"valid": {"q": ranked}}, {"valid": qs["valid"]}, {"valid": links["valid"]}, doc_of, passages)
    assert alone.by_group == tuned.by_group
    no_valid = tune_linking({"test": {"q": ranked}}, {"test": qs["test"]}, links, doc_of, passages)
    assert no_valid.chosen_on.startswith("defaults") and no_valid.by_group["all"].valid_score is None
    assert no_valid.by_group["all"].candidate == DEFAULT_CANDIDATE


def test_the_all_group_never_trades_one_source_for_the_other() -> None:
    # Two statute-answer queries gain from their cited article C; one precedent-answer query cites the same article
    # but asks for decision A, which linking pushes from rank 1 to rank 2.
    doc_of, passages, ranked = _mapping_fixture()
    ids = ["law1", "law2", "prec"]
    q = EvalQueries(
        "valid",
        ids,
        ["x", "y", "z"],
        ["cross_law", "cross_law", "prec"],
        {"law1": {"C#0", "C#1"}, "law2": {"C#0", "C#1"}, "prec": {"A#0", "A#1"}},
        {i: set() for i in ids},
        {"law1": "law", "law2": "law", "prec": "prec"},
    )
    links = {"valid": {i: [_ref("article", "C")] for i in ids}}
    tuned = tune_linking({"valid": {i: ranked for i in ids}}, {"valid": q}, links, doc_of, passages)
    # Per source group: statute answers take the boost, precedent answers turn it off …
    assert tuned.by_group["law"].citation_linking != "off" and tuned.by_group["prec"].citation_linking == "off"
    # … and the mixed-list choice, though the boost wins on the mean over all three, keeps the precedent answer.
    chosen = tuned.by_group["all"]
    assert chosen.citation_linking == "off" and chosen.valid_score == chosen.valid_score_off
    boost = LinkCandidate("boost", 1.0)
    loose = tune_linking({"valid": {i: ranked for i in ids}}, {"valid": q}, links, doc_of, passages, candidates=[boost])
    assert loose.by_group["all"].valid_score > chosen.valid_score  # what the cap gives up: a better overall mean


def test_the_report_shows_linking_per_query_type(tmp_path) -> None:
    corpus = _corpus()
    run = run_evaluation(
        {}, _splits([TEST_LAW]), corpus, EvalPlan(ks=(1, 10), hybrid=False), out_dir=tmp_path, progress=False
    )
    md = run.report.markdown
    assert "### Query citation linking, chosen on valid" in md
    assert f"### With vs without linking: {BM25} (test, per query type)" in md
    row = next(line for line in md.splitlines() if line.startswith("| cross_law | 1 |"))
    assert "1.0000" in row and "+" in row  # share with a resolved link 1.0, a positive gain
    assert f"| {linked_name(BM25)} |" in md


# the stored choice and the engine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slice_engine_parts():
    corpus = corpus_slice()
    return corpus, BM25Index.build(corpus["passage_id"].to_list(), corpus["text"].to_list())


def _engine(parts, params: FusionParams | None, **settings) -> SearchEngine:
    corpus, bm25 = parts
    engine = SearchEngine(corpus, model=None, dense=None, bm25=bm25, settings=SearchSettings(mode="bm25", **settings))
    engine.fusion_params = params
    return engine


def _params(mode: str, how: str, weight: float = 1.0) -> FusionParams:
    choice = {"citation_linking": how, "link_weight": weight, "link_law_names": False, "link_rrf_k": 60}
    return FusionParams("mv", {}, linking={mode: {"all": choice}})


def test_the_engine_uses_the_linking_chosen_on_valid_when_auto(slice_engine_parts) -> None:
    corpus = slice_engine_parts[0]
    law_id = corpus.filter(pl.col("law_name") == "국가배상법")["law_id"][0]
    # A query that describes something around its reference (a bare reference always gets its document first).
    query, doc = "공무원 사건에서 국가배상법 9조 적용 여부", f"law:{law_id}:9"
    off = _engine(slice_engine_parts, None, citation_linking="off").search(query, top_k=5)
    assert not off or off[0].doc_id != doc  # without linking it is not first: the assertions below can fail

    chosen_off = _engine(slice_engine_parts, _params("bm25", "off"), citation_linking="auto").search(query, top_k=5)
    assert [h.to_dict() for h in chosen_off] == [h.to_dict() for h in off]
    bare = _engine(slice_engine_parts, _params("bm25", "off"), citation_linking="auto").search(
        "국가배상법 9조", top_k=5
    )
    assert bare[0].doc_id == doc and bare[0].matched_reference == "국가배상법 9조"
    chosen_boost = _engine(slice_engine_parts, _params("bm25", "boost"), citation_linking="auto").search(query, top_k=5)
    assert chosen_boost[0].doc_id == doc and chosen_boost[0].matched_reference == "국가배상법 9조"
    # a choice stored for another mode does not apply to bm25: nothing chosen → the boost default
    other_mode = _engine(slice_engine_parts, _params("dense", "off"), citation_linking="auto").search(query, top_k=5)
    assert other_mode[0].doc_id == doc
    assert _engine(slice_engine_parts, None, citation_linking="auto").search(query, top_k=5)[0].doc_id == doc


def test_fusion_params_keep_the_linking_and_older_files_still_read(tmp_path) -> None:
    params = _params("rrf", "list", 0.5)
    path = params.write(tmp_path / "fusion.json")
    assert FusionParams.read(path).linking == params.linking
    old = FusionParams.from_dict({"model_version": "mv", "by_source": {}})
    assert old.linking == {}
