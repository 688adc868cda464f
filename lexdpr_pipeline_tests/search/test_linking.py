"""Query-side citation linking: the odd citation forms, unresolvable references, the fusion, the engine and the API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from lexdpr_pipeline.api.app import create_app
from lexdpr_pipeline.artifacts import FusionParams
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import embed_corpus
from lexdpr_pipeline.index.faiss_index import DenseIndex, IndexSpec
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.search.engine import SearchEngine, SearchFilters
from lexdpr_pipeline.search.linking import LinkedRef, QueryLinker, apply_links, matched_references, reference_only
from lexdpr_pipeline.settings import SearchSettings, Settings
from lexdpr_pipeline_tests.api.tiny_index import build_tiny_index
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice

# (법령ID, 법령명, article keys); 민법 제752조 was deduplicated into 제751조 (its id is in 751's aliases)
LAWS = [
    ("001706", "민법", ["3", "13-2", "390", "750", "751"]),
    ("001565", "소득세법", ["3-2", "89", "94"]),
    ("003956", "소득세법 시행령", ["3", "154"]),
    ("000001", "대한민국헌법", ["10", "11"]),
]
DECISIONS = [
    (100, "2008다12345", "대법원", dt.date(2009, 1, 15)),
    (200, "2009두1234", "대법원", dt.date(2010, 3, 2)),
    (300, "2010나5555", "서울고등법원", dt.date(2011, 1, 1)),
    (301, "2010나5555", "부산고등법원", dt.date(2011, 6, 1)),
]


def _frame() -> pl.DataFrame:
    rows = []
    for law_id, name, keys in LAWS:
        for key in keys:
            doc = f"law:{law_id}:{key}"
            aliases = ["law:001706:752"] if doc == "law:001706:751" else None
            rows.append(
                {"passage_id": doc, "doc_id": doc, "source": "law", "chunk_index": 0, "law_id": law_id,
                 "law_name": name, "law_kind": "법률", "article_key": key, "effective_date": dt.date(2024, 1, 1),
                 "court": None, "case_no": None, "decision_date": None, "aliases": aliases}
            )  # fmt: skip
    for serial, case_no, court, date in DECISIONS:
        for chunk in (0, 1):
            rows.append(
                {"passage_id": f"prec:{serial}#{chunk}", "doc_id": f"prec:{serial}", "source": "prec",
                 "chunk_index": chunk, "law_id": None, "law_name": None, "law_kind": None, "article_key": None,
                 "effective_date": None, "court": court, "case_no": case_no, "decision_date": date, "aliases": None}
            )  # fmt: skip
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def linker() -> QueryLinker:
    return QueryLinker.from_corpus(_frame())


def _one(linker: QueryLinker, query: str) -> LinkedRef:
    refs = linker.link(query)
    assert len(refs) == 1, refs
    return refs[0]


@pytest.mark.parametrize(
    ("query", "text", "doc"),
    [
        ("민법 제750조", "민법 제750조", "law:001706:750"),
        ("민법 750조", "민법 750조", "law:001706:750"),
        ("불법행위에 관한 민법 제750조의 요건", "민법 제750조", "law:001706:750"),  # prose before the law name
        ("민법 제13조의2에서 정한 요건", "민법 제13조의2", "law:001706:13-2"),  # 조의N → N-M, no case number "13조의2"
        ("헌법 제10조의 행복추구권", "헌법 제10조", "law:000001:10"),  # the short name of 대한민국헌법
        ("소득세법 시행령 제154조 제1항", "소득세법 시행령 제154조 제1항", "law:003956:154"),
        ("민법에 의하면 제750조", "민법에 의하면 제750조", "law:001706:750"),  # a law named a few words earlier
        ("민법 제752조", "민법 제752조", "law:001706:751"),  # deduplicated article → the document that kept it
        ("2008다12345", "2008다12345", "prec:100"),
        ("대법원 2009. 1. 15. 선고 2008다12345 판결의 취지", "대법원 2009. 1. 15. 선고 2008다12345 판결", "prec:100"),
        ("부산고등법원 2011. 6. 1. 선고 2010나5555 판결", "부산고등법원 2011. 6. 1. 선고 2010나5555 판결", "prec:301"),
    ],
)
def test_references_resolve_to_corpus_documents(linker: QueryLinker, query: str, text: str, doc: str) -> None:
    ref = _one(linker, query)
    assert (ref.text, ref.doc_ids, ref.status) == (text, (doc,), "resolved")
    assert query[ref.start : ref.end] == ref.text
    assert ref.kind == ("case" if doc.startswith("prec:") else "article")


def test_same_law_follows_the_last_named_law(linker: QueryLinker) -> None:
    refs = linker.link("불법행위에 관한 민법 제750조와 같은 법 제751조 제1항의 관계")
    assert [(r.text, r.doc_ids) for r in refs] == [
        ("민법 제750조", ("law:001706:750",)),
        ("같은 법 제751조 제1항", ("law:001706:751",)),
    ]
    refs = linker.link("소득세법 제94조, 같은 법 시행령 제154조, 동법 제89조")
    assert [r.doc_ids for r in refs] == [("law:001565:94",), ("law:003956:154",), ("law:001565:89",)]
    # the last named law may be one named without an article
    refs = linker.link("소득세법상 양도소득의 범위와 같은 법 제89조")
    assert [(r.kind, r.text, r.doc_ids[:1]) for r in refs] == [
        ("law_name", "소득세법", ("law:001565:3-2",)),
        ("article", "같은 법 제89조", ("law:001565:89",)),
    ]
    # bare articles after a comma stay with their law
    refs = linker.link("민법 제13조의2 및 제3조 제1항, 제390조")
    assert [r.doc_ids for r in refs] == [("law:001706:13-2",), ("law:001706:3",), ("law:001706:390",)]


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("구 소득세법(2010. 12. 27. 법률 제10408호로 개정되기 전의 것) 제94조 제1항 제1호의 양도",
         "구 소득세법(2010. 12. 27. 법률 제10408호로 개정되기 전의 것) 제94조 제1항 제1호"),
        ("양도소득세 부과처분에서 구 소득세법 제94조의 적용", "구 소득세법 제94조"),
    ],
)  # fmt: skip
def test_former_laws_resolve_to_the_current_article(linker: QueryLinker, query: str, text: str) -> None:
    ref = _one(linker, query)
    assert (ref.text, ref.doc_ids, ref.former) == (text, ("law:001565:94",), True)


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("난민법 제2조", "law_not_in_corpus", "난민법"),  # 민법 must not match inside 난민법
        ("민법 제9999조", "article_not_in_law", "9999"),
        ("2099다1 판결", "not_in_corpus", "2099다1"),
        ("같은 법 제3조", "no_antecedent", "같은 법"),
        ("민법 부칙 제2조", "addenda", "부칙"),
        ("1억 원과 2조 원의 손해", "unparseable", "no law"),
    ],
)
def test_unresolvable_references_are_reported_with_a_reason(
    linker: QueryLinker, query: str, status: str, reason: str
) -> None:
    ref = _one(linker, query)
    assert ref.doc_ids == () and not ref.resolved
    assert ref.status == status and reason in (ref.reason or "")


def test_law_names_without_an_article(linker: QueryLinker) -> None:
    ref = _one(linker, "소득세법상 양도소득의 범위")
    assert (ref.kind, ref.text) == ("law_name", "소득세법")
    assert ref.doc_ids == ("law:001565:3-2", "law:001565:89", "law:001565:94")  # every article, in article order
    assert linker.link("헌법재판소 2009헌마123 결정")[0].kind == "case"  # 헌법재판소 is no mention of 헌법
    assert [r.kind for r in linker.link("헌법재판소 2009헌마123 결정")] == ["case"]
    assert linker.link("소득세법 시행규칙의 위임") == []  # a subordinate the corpus lacks is not 소득세법
    assert linker.link("불법행위로 인한 손해배상") == []


# fusion ---------------------------------------------------------------------------------------------------------------


def _ref(kind: str, *docs: str, text: str = "ref") -> LinkedRef:
    return LinkedRef(text, 0, len(text), kind, docs, "resolved")


RANKED = ["a", "b", "c", "d"]
SCORES = [0.9, 0.7, 0.5, 0.1]


def test_off_and_unresolved_links_change_nothing() -> None:
    links = [_ref("article", "c"), _ref("case", "x")]
    assert apply_links(RANKED, SCORES, links, "off", 1.0) == list(zip(RANKED, SCORES, strict=True))
    unresolved = [LinkedRef("민법 제9999조", 0, 9, "article", (), "article_not_in_law", "why")]
    for mode in ("boost", "list"):
        assert apply_links(RANKED, SCORES, unresolved, mode, 1.0) == list(zip(RANKED, SCORES, strict=True))
    with pytest.raises(ValueError, match="unknown"):
        apply_links(RANKED, SCORES, links, "first", 1.0)


def test_boost_puts_cited_documents_first() -> None:
    out = apply_links(RANKED, SCORES, [_ref("article", "c"), _ref("case", "x")], "boost", 1.0)
    # normalized over [0.1, 0.9]: c 0.5 + 1 → 1.5, x (not retrieved) 0 + 1 → 1.0 ties a (1.0): the cited one first
    assert [d for d, _ in out] == ["c", "x", "a", "b", "d"]
    assert [s for _, s in out] == pytest.approx([0.1 + 1.5 * 0.8, 0.1 + 0.8, 0.9, 0.7, 0.1])
    weak = apply_links(RANKED, SCORES, [_ref("article", "d")], "boost", 0.5)  # d: 0 + 0.5 ties c: cited first
    assert [d for d, _ in weak] == ["a", "b", "d", "c"]
    assert apply_links([], [], [_ref("case", "x")], "boost", 1.0) == [("x", 1.0)]


def test_list_mode_fuses_the_cited_documents_by_rrf() -> None:
    out = dict(apply_links(RANKED, SCORES, [_ref("case", "x"), _ref("article", "c")], "list", 2.0, rrf_k=10))
    # link list: c (retrieved, rank 3) before x (not retrieved)
    assert out == pytest.approx({"a": 1 / 11, "b": 1 / 12, "c": 1 / 13 + 2 / 11, "d": 1 / 14, "x": 2 / 12})
    assert [d for d, _ in apply_links(RANKED, SCORES, [_ref("case", "x")], "list", 1.0, rrf_k=10)][:2] == ["x", "a"]


def test_law_names_only_boost_retrieved_articles_when_allowed() -> None:
    links = [_ref("law_name", "d", "c", "zz", text="소득세법")]
    assert apply_links(RANKED, SCORES, links, "boost", 1.0) == list(zip(RANKED, SCORES, strict=True))
    out = apply_links(RANKED, SCORES, links, "boost", 1.0, law_names=True)
    assert [d for d, _ in out] == ["c", "a", "b", "d"]  # c 0.5 + 0.5, d 0 + 0.5; zz is never added
    listed = [d for d, _ in apply_links(RANKED, SCORES, links, "list", 1.0, law_names=True, rrf_k=0)]
    assert listed == ["c", "a", "d", "b"] and "zz" not in listed
    assert matched_references(links) == {}
    assert matched_references(links, law_names=True)["c"] == "소득세법"


# the engine ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    corpus = corpus_slice()
    model = BiEncoder.load(tiny_model_dir)
    root = tmp_path_factory.mktemp("emb")
    embs = embed_corpus(corpus, model, model_version="tiny", root=root, progress=False, use_cache=False).embeddings
    return (
        corpus,
        model,
        DenseIndex.build(embs, IndexSpec()),
        BM25Index.build(corpus["passage_id"].to_list(), corpus["text"].to_list()),
    )


def _engine(parts, **settings) -> SearchEngine:
    corpus, model, dense, bm25 = parts
    return SearchEngine(corpus, model=model, dense=dense, bm25=bm25, settings=SearchSettings(**settings))


def _reference_queries(corpus: pl.DataFrame) -> list[tuple[str, str]]:
    prec = corpus.filter(pl.col("case_no") == "2000다11560")["doc_id"][0]
    law_id = corpus.filter(pl.col("law_name") == "국가배상법")["law_id"][0]
    return [
        ("국가배상법 제3조의2", f"law:{law_id}:3-2"),
        ("국가배상법 9조", f"law:{law_id}:9"),
        ("2000다11560", prec),
    ]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_a_reference_only_query_returns_that_document_first(parts, mode: str) -> None:
    corpus = parts[0]
    boost, listed, off = _engine(parts), _engine(parts, citation_linking="list"), _engine(parts, citation_linking="off")
    assert boost.settings.citation_linking == "boost"  # the default
    moved = 0
    for query, doc in _reference_queries(corpus):
        for engine in (boost, listed):
            hits = engine.search(query, top_k=5, mode=mode)
            assert hits[0].doc_id == doc and hits[0].matched_reference == query
            assert hits[0].to_dict()["matched_reference"] == query
            assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
            assert all(h.matched_reference is None for h in hits[1:])
            first = corpus.filter(pl.col("doc_id") == doc).sort("chunk_index")["passage_id"][0]
            if (
                hits[0].dense_score is None and hits[0].bm25_score is None
            ):  # no retriever returned it: its first passage
                assert hits[0].passage_id == first
        plain = off.search(query, top_k=5, mode=mode)
        assert all(h.matched_reference is None for h in plain)
        moved += not plain or plain[0].doc_id != doc
    assert moved > 0  # without linking the cited document is not always first: the test would notice


def _stored(choice: dict) -> FusionParams:
    """Stored choices (as model_evaluation writes them) with ``choice`` as the linking of every mode and group."""
    groups = ("law", "prec", "all")
    fusion = {g: {"fusion": "rrf", "rrf_k": 60, "dense_weight": 0.5} for g in groups}
    linking = {m: {g: dict(choice) for g in groups} for m in ("dense", "bm25", "rrf", "weighted")}
    return FusionParams(model_version="v", by_source=fusion, linking=linking)


@pytest.mark.parametrize(
    "stored", [{"citation_linking": "off"}, {"citation_linking": "boost", "link_weight": 0.01}], ids=["off", "light"]
)
@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_auto_linking_still_puts_the_document_a_bare_reference_asks_for_first(parts, mode: str, stored: dict) -> None:
    choice = {"citation_linking": "off", "link_weight": 1.0, "link_law_names": False, **stored}
    auto = _engine(parts, citation_linking="auto", fusion="auto")
    auto.fusion_params = _stored(choice)
    off = _engine(parts, citation_linking="off")
    corpus = parts[0]
    moved = 0
    for query, doc in _reference_queries(corpus):
        assert reference_only(query, auto.linker.link(query))
        hits = auto.search(query, top_k=5, mode=mode)
        assert hits[0].doc_id == doc and hits[0].matched_reference == query
        plain = off.search(query, top_k=5, mode=mode)
        moved += not plain or plain[0].doc_id != doc
    assert moved > 0  # the stored choice alone would not put every one first: the rule is what does
    # A query that describes an issue around its reference keeps the stored choice (here: unchanged by "off").
    law_id = corpus.filter(pl.col("law_name") == "국가배상법")["law_id"][0]
    described = "공무원의 직무상 불법행위로 인한 국가배상법 제2조의 손해배상 책임"
    refs = auto.linker.link(described)
    assert any(f"law:{law_id}:2" in r.doc_ids for r in refs) and not reference_only(described, refs)
    if choice["citation_linking"] == "off":
        assert [h.doc_id for h in auto.search(described, top_k=8, mode=mode)] == [
            h.doc_id for h in off.search(described, top_k=8, mode=mode)
        ]


def test_reference_only_reads_the_text_around_the_references() -> None:
    def ref(query: str, text: str, doc: str = "law:1:750") -> list[LinkedRef]:
        start = query.find(text)
        return [LinkedRef(text, start, start + len(text), "article", (doc,), "resolved")]

    assert reference_only("민법 750조", ref("민법 750조", "민법 750조"))
    assert reference_only("민법 제750조 제1항", ref("민법 제750조 제1항", "민법 제750조"))
    case = "대법원 2009. 1. 15. 선고 2008다12345 판결"
    assert reference_only(case, ref(case, "2008다12345", "prec:1"))
    assert not reference_only("불법행위에 관한 민법 제750조", ref("불법행위에 관한 민법 제750조", "민법 제750조"))
    assert not reference_only("민법 제750조의 해석", ref("민법 제750조의 해석", "민법 제750조"))
    unresolved = [LinkedRef("민법 제9999조", 0, 9, "article", (), "article_not_in_law")]
    assert not reference_only("민법 제9999조", unresolved)
    assert not reference_only("민법", [LinkedRef("민법", 0, 2, "law_name", ("law:1:1",), "resolved")])


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_off_and_queries_without_references_are_unchanged(parts, mode: str) -> None:
    off, boost = _engine(parts, citation_linking="off"), _engine(parts)
    query = "공무원의 직무상 불법행위로 인한 손해배상 책임"
    assert boost.linker.link(query) == []
    assert [h.to_dict() for h in boost.search(query, top_k=8, mode=mode)] == [
        h.to_dict() for h in off.search(query, top_k=8, mode=mode)
    ]
    # off: a reference query ranks exactly as the retrievers do (BM25 collapsed by document, by hand)
    corpus, _model, _dense, bm25 = parts
    if mode == "bm25":
        doc_of = dict(zip(corpus["passage_id"], corpus["doc_id"], strict=True))
        best: dict[str, float] = {}
        for pid, score in sorted(bm25.search("국가배상법 제3조의2", 100), key=lambda kv: (-kv[1], kv[0])):
            best.setdefault(doc_of[pid], score)
        hits = off.search("국가배상법 제3조의2", top_k=5, mode="bm25")
        assert [h.doc_id for h in hits] == list(best)[:5]
        assert [h.score for h in hits] == pytest.approx(list(best.values())[:5])


def test_linked_documents_respect_the_filters(parts) -> None:
    engine = _engine(parts)
    hits = engine.search("국가배상법 제3조의2", top_k=5, mode="bm25", filters=SearchFilters(sources=["prec"]))
    assert {h.source for h in hits} <= {"prec"} and all(h.matched_reference is None for h in hits)


# the API --------------------------------------------------------------------------------------------------------------


def test_api_hits_carry_the_matched_reference(tmp_path: Path, tiny_model_dir: Path) -> None:
    build_tiny_index(tmp_path, tiny_model_dir, "v1")
    settings = Settings.model_validate(
        {"paths": {"data_dir": str(tmp_path)}, "api": {"reload_check_s": 0, "rate_limit_per_minute": None}}
    )
    with TestClient(create_app(settings)) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Hit"]["properties"]
        assert "matched_reference" in schema
        for query, doc in (("민법 제751조", "law:001706:751"), ("2019다12345", "prec:100001")):
            body = client.post("/search", json={"query": query, "mode": "dense", "top_k": 3}).json()
            assert body["results"][0]["doc_id"] == doc
            assert [r["matched_reference"] for r in body["results"]] == [query, None, None]
