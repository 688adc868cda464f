"""The search engine on a real corpus slice with the tiny model: modes, fusion, collapse, filters, threshold."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import embed_corpus
from lexdpr_pipeline.index.faiss_index import DenseIndex, IndexSpec
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.search import fusion
from lexdpr_pipeline.search.engine import SearchEngine, SearchFilters, load_engine
from lexdpr_pipeline.settings import SearchSettings, load_settings
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice

LAW = "국가배상법"
QUERY = "공무원의 직무상 불법행위로 인한 손해배상 책임"


@pytest.fixture(scope="module")
def parts(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    corpus = corpus_slice()
    model = BiEncoder.load(tiny_model_dir)
    root = tmp_path_factory.mktemp("emb")
    embs = embed_corpus(corpus, model, model_version="tiny", root=root, progress=False, use_cache=False).embeddings
    dense = DenseIndex.build(embs, IndexSpec())
    bm25 = BM25Index.build(corpus["passage_id"].to_list(), corpus["text"].to_list())
    return corpus, model, dense, bm25


def _engine(parts, **settings) -> SearchEngine:
    corpus, model, dense, bm25 = parts
    return SearchEngine(
        corpus, model=model, dense=dense, bm25=bm25, settings=SearchSettings(**settings), versions={"x": 1}
    )


@pytest.fixture(scope="module")
def engine(parts) -> SearchEngine:
    return _engine(parts)


def _manual(parts, engine: SearchEngine, query: str, fused: str, top_k: int) -> list[tuple[str, str, float]]:
    """Hybrid search done by hand: both retrievers' full candidate lists, fusion, then best passage per doc."""
    corpus, _model, dense, bm25 = parts
    dense_hits = dense.search(engine.embed_queries([query]), 100)[0]
    bm25_hits = bm25.search(query, 100)
    if fused == "rrf":
        scores = fusion.rrf([[p for p, _ in dense_hits], [p for p, _ in bm25_hits]], k=60)
    else:
        scores = fusion.weighted(dict(dense_hits), dict(bm25_hits), 0.5)
    doc_of = dict(zip(corpus["passage_id"], corpus["doc_id"], strict=True))
    best: dict[str, tuple[str, float]] = {}
    for pid, score in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
        best.setdefault(doc_of[pid], (pid, score))
    return [(doc, pid, score) for doc, (pid, score) in list(best.items())[:top_k]]


def test_rrf_and_weighted_fusion_on_hand_cases() -> None:
    fused = fusion.rrf([["a", "b", "c"], ["c", "a"]], k=60)
    assert fused == pytest.approx({"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61})
    weighted = fusion.weighted({"a": 0.9, "b": 0.5, "c": 0.1}, {"a": 2.0, "d": 10.0}, dense_weight=0.25)
    assert weighted == pytest.approx({"a": 0.25, "b": 0.125, "c": 0.0, "d": 0.75})
    assert fusion.minmax({"x": 3.0, "y": 3.0}) == {"x": 1.0, "y": 1.0}
    with pytest.raises(ValueError):
        fusion.weighted({}, {}, dense_weight=1.5)


@pytest.mark.parametrize("fused", ["rrf", "weighted"])
def test_hybrid_equals_fusion_then_collapse_by_hand(parts, fused: str) -> None:
    engine = _engine(parts, fusion=fused)
    hits = engine.search(QUERY, top_k=8, mode="hybrid")
    expected = _manual(parts, engine, QUERY, fused, 8)
    assert [(h.doc_id, h.passage_id) for h in hits] == [(d, p) for d, p, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, _, s in expected])
    assert [h.rank for h in hits] == list(range(1, 9))
    assert any(h.dense_score is not None and h.bm25_score is not None for h in hits)


def test_chunks_collapse_to_their_document_with_the_best_passage(parts, engine: SearchEngine) -> None:
    corpus, _model, _dense, _bm25 = parts
    hits = engine.search(QUERY, top_k=50, mode="dense")
    assert len({h.doc_id for h in hits}) == len(hits) == corpus["doc_id"].n_unique()
    qvec = engine.embed_queries([QUERY])[0]
    cosine = engine.embed_passages(corpus["text"].to_list()) @ qvec
    frame = corpus.select("doc_id", "passage_id").with_columns(pl.Series("cos", cosine))
    for hit in hits:
        doc = frame.filter(pl.col("doc_id") == hit.doc_id).sort("cos", descending=True)
        assert hit.passage_id == doc["passage_id"][0]
        assert hit.score == pytest.approx(doc["cos"][0], abs=1e-4) and hit.dense_score == hit.score
        assert hit.bm25_score is None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_mode_finds_an_exact_passage_text_first(parts, engine: SearchEngine) -> None:
    corpus = parts[0]
    row = corpus.filter(pl.col("law_name") == LAW).row(3, named=True)
    # the text starts with its own citation ("국가배상법 제11조(…)"): without citation linking the score is BM25's
    hits = _engine(parts, citation_linking="off").search(row["text"], mode="bm25", top_k=5)
    assert hits[0].passage_id == row["passage_id"] and hits[0].doc_id == row["doc_id"]
    assert hits[0].score == hits[0].bm25_score and hits[0].dense_score is None
    linked = engine.search(row["text"], mode="bm25", top_k=5)[0]
    assert linked.doc_id == row["doc_id"] and linked.matched_reference is not None


def test_filters(parts, engine: SearchEngine) -> None:
    corpus = parts[0]
    prec = engine.search(QUERY, top_k=50, filters=SearchFilters(sources=["prec"]))
    assert prec and {h.source for h in prec} == {"prec"}
    law = engine.search(QUERY, top_k=50, mode="dense", filters=SearchFilters(law_names=[LAW]))
    assert {h.metadata["law_name"] for h in law} == {LAW}
    assert len(law) == corpus.filter(pl.col("law_name") == LAW)["doc_id"].n_unique()
    law_id = law[0].metadata["law_id"]
    assert {h.metadata["law_id"] for h in engine.search(QUERY, filters=SearchFilters(law_ids=[law_id]))} == {law_id}
    civil = engine.search(QUERY, top_k=50, mode="dense", filters=SearchFilters(courts=["대법원"], case_types=["민사"]))
    assert {h.doc_id for h in civil} == set(corpus.filter(pl.col("source") == "prec")["doc_id"])
    dated = engine.search(
        QUERY,
        top_k=50,
        mode="dense",
        filters=SearchFilters(date_from=dt.date(2000, 6, 1), date_to=dt.date(2001, 12, 31)),
    )
    dates = corpus.filter(pl.col("doc_id").is_in([h.doc_id for h in dated]))
    assert (
        dated and dates["decision_date"].min() >= dt.date(2000, 6, 1) and dates["source"].unique().to_list() == ["prec"]
    )
    recent = engine.search(QUERY, top_k=50, mode="dense", filters=SearchFilters(date_from=dt.date(2020, 1, 1)))
    assert {h.metadata["law_name"] for h in recent} == {LAW}  # in force from 2025; the other law from 2017
    assert engine.search(QUERY, filters=SearchFilters(sources=["admrul"])) == []
    unfiltered = [h.doc_id for h in engine.search(QUERY, top_k=20)]
    assert [h.doc_id for h in engine.search(QUERY, top_k=20, filters=SearchFilters(sources=[]))] == unfiltered
    with pytest.raises(ValueError, match="unknown sources"):
        engine.search(QUERY, filters=SearchFilters(sources=["statute"]))
    with pytest.raises(ValueError, match="after"):
        engine.search(QUERY, filters=SearchFilters(date_from=dt.date(2020, 1, 2), date_to=dt.date(2020, 1, 1)))


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_few_candidates_widen_until_top_k_documents(parts, mode: str) -> None:
    small, big = _engine(parts, candidates=1), _engine(parts, candidates=500)
    for filters in (None, SearchFilters(sources=["prec"])):
        few = small.search(QUERY, top_k=6, mode=mode, filters=filters)
        many = big.search(QUERY, top_k=6, mode=mode, filters=filters)
        assert len(few) == len(many) > 0
        if mode != "hybrid":  # fused scores depend on the candidate depth; single-retriever scores do not
            assert [(h.doc_id, round(h.score, 5)) for h in few] == [(h.doc_id, round(h.score, 5)) for h in many]


def test_threshold_applies_to_the_final_score(engine: SearchEngine) -> None:
    hits = engine.search(QUERY, top_k=10, mode="dense")
    cut = hits[3].score
    kept = engine.search(QUERY, top_k=10, mode="dense", threshold=cut)
    assert [h.doc_id for h in kept] == [h.doc_id for h in hits if h.score >= cut]
    assert [h.rank for h in kept] == list(range(1, len(kept) + 1))
    assert engine.search(QUERY, mode="hybrid", threshold=1.0) == []  # RRF scores are at most 2/61


def test_search_many_equals_search_per_query(engine: SearchEngine) -> None:
    queries = [QUERY, "가등기담보권의 실행", "소멸시효", "담보목적물의 평가액"]
    for mode in ("dense", "bm25", "hybrid"):
        many = engine.search_many(queries, top_k=5, mode=mode, filters=SearchFilters(sources=["law", "prec"]))
        single = [engine.search(q, top_k=5, mode=mode, filters=SearchFilters(sources=["law", "prec"])) for q in queries]
        assert [[(h.doc_id, h.passage_id) for h in r] for r in many] == [
            [(h.doc_id, h.passage_id) for h in r] for r in single
        ]
        for a, b in zip(many, single, strict=True):
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_hits_carry_snippet_metadata_and_serialize(parts) -> None:
    corpus = parts[0]
    engine = _engine(parts, snippet_chars=30)
    hit = engine.search(QUERY, top_k=1, filters=SearchFilters(sources=["prec"]))[0]
    text = corpus.filter(pl.col("passage_id") == hit.passage_id)["text"][0]
    assert hit.snippet == text[:30]
    data = json.loads(json.dumps(hit.to_dict()))
    assert data["metadata"]["decision_date"] == hit.metadata["decision_date"].isoformat()
    assert data["metadata"]["court"] == "대법원" and data["title"].startswith("대법원")


def test_modes_available_and_bad_requests(parts) -> None:
    corpus, model, dense, bm25 = parts
    dense_only = SearchEngine(corpus, model=model, dense=dense, bm25=None, settings=SearchSettings())
    assert dense_only.modes == ["dense"] and dense_only.default_mode == "dense"
    assert dense_only.search(QUERY)[0].bm25_score is None
    with pytest.raises(ValueError, match="not available"):
        dense_only.search(QUERY, mode="bm25")
    bm25_only = SearchEngine(corpus, model=None, dense=None, bm25=bm25, settings=SearchSettings())
    assert bm25_only.default_mode == "bm25" and bm25_only.search("가등기담보")
    with pytest.raises(ValueError, match="no model"):
        bm25_only.embed_queries(["x"])
    engine = _engine(parts)
    with pytest.raises(ValueError, match="non-empty"):
        engine.search("   ")
    with pytest.raises(ValueError, match="unknown mode"):
        engine.search(QUERY, mode="sparse")
    with pytest.raises(ValueError, match="top_k"):
        engine.search(QUERY, top_k=0)


def test_versions_and_stale_index_passages(parts) -> None:
    corpus, model, dense, bm25 = parts
    engine = _engine(parts)
    versions = engine.versions
    assert versions["passages"] == corpus.height and versions["faiss_type"] == "flat" and versions["x"] == 1
    assert versions["by_source"] == dict(corpus.group_by("source").len().iter_rows())
    # An index built before the corpus lost a law: its passages are counted and never returned.
    smaller = corpus.filter(pl.col("law_name").ne(LAW).fill_null(True))
    stale = SearchEngine(smaller, model=model, dense=dense, bm25=bm25, settings=SearchSettings())
    n_law = corpus.height - smaller.height
    assert stale.versions["stale_passages"] == 2 * n_law
    for mode in ("dense", "bm25", "hybrid"):
        assert all(h.metadata["law_name"] != LAW for h in stale.search(QUERY, top_k=50, mode=mode))


def test_load_engine_without_a_pointer_says_what_to_do(tmp_path: Path) -> None:
    settings = load_settings(overrides=[f"paths.data_dir={tmp_path}"], environ={})
    with pytest.raises(FileNotFoundError, match="faiss_index"):
        load_engine(settings)
