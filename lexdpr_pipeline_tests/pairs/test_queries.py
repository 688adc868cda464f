"""build_queries: heading, prec, cross_law and cross_prec queries with citation-linked positives."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest

from lexdpr_pipeline.citations.table import CITATION_SCHEMA, citation_table
from lexdpr_pipeline.pairs.queries import (
    PAIR_SCHEMA,
    QUERY_TYPES,
    CorpusView,
    QueryConfig,
    QueryStats,
    build_queries,
    numbered_parts,
)
from lexdpr_pipeline.sources.mirror import parse_precedent_markdown
from lexdpr_pipeline.sources.mirror.frontmatter import read_markdown
from lexdpr_pipeline.sources.records import ADMIN_RULE_SCHEMA, Precedent, StatuteArticle, to_frame
from lexdpr_pipeline.text.chunking import WhitespaceTokenCounter
from lexdpr_pipeline.text.passages import (
    PassageConfig,
    duplicate_groups,
    merge_corpus,
    precedent_passages,
    statute_passages,
)
from lexdpr_pipeline_tests.conftest import CORPUS
from lexdpr_pipeline_tests.pairs.conftest import RealSlice

CIVIL, CRIMINAL = "001706", "001692"


def statute(
    law_id: str, law_name: str, no: int, *, title: str = "", text: str, deleted: bool = False
) -> StatuteArticle:
    return StatuteArticle(
        article_id=f"law:{law_id}:{no}",
        law_id=law_id,
        law_mst="1",
        law_name=law_name,
        law_kind="법률",
        ministry="법무부",
        promulgation_date=dt.date(2020, 1, 1),
        promulgation_no="1",
        effective_date=dt.date(2020, 7, 1),
        status="시행",
        article_no=no,
        article_branch=0,
        article_key=str(no),
        article_title=title,
        headings=[],
        text=text,
        is_deleted=deleted,
        source="mirror",
        source_ref="x",
    )


def precedent(serial: int, holdings: str, summary: str = "", body: str = "", *, date: dt.date | None) -> Precedent:
    return Precedent(
        prec_id=f"prec:{serial}",
        serial_no=str(serial),
        case_no=f"2019다{serial}",
        case_name="손해배상(기)",
        court="대법원",
        court_level="대법원",
        case_type="민사",
        decision_date=date,
        judgment_type="판결",
        holdings=holdings,
        summary=summary,
        ref_articles="",
        ref_cases="",
        body=body,
        source="mirror",
        source_ref="x",
    )


def cite(prec: int, kind: str, groups: list[int], target: str | None, *, former: bool = False) -> dict[str, Any]:
    status = "resolved" if target else ("law_not_in_corpus" if kind == "statute" else "not_in_corpus")
    return {
        "prec_id": f"prec:{prec}",
        "kind": kind,
        "groups": groups,
        "raw": target or "?",
        "status": status,
        "target_id": target,
        "former": former,
    }


LONG_751 = " ".join(f"재산{i}" for i in range(30)) + " 배상할 책임이 있다."
P1_HOLDINGS = "[1] 불법행위의 성립 요건\n      [2] 위자료의   산정 기준"
P2_HOLDINGS = "사용자책임의   범위"
STATUTES = [
    statute(
        CIVIL, "민법", 750, title="불법행위의 내용", text="고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는"
    ),
    statute(CIVIL, "민법", 751, title="재산 이외의 손해의 배상", text=LONG_751),  # chunked (max_tokens=16)
    statute(CIVIL, "민법", 752, text="타인의 생명을 해한 자는 재산상의 손해없는 경우에도 손해배상의 책임이 있다."),
    statute(CIVIL, "민법", 753, text="삭제 <2000.1.1>", deleted=True),
    statute(CIVIL, "민법", 754, title="심신상실자의 책임", text="삭제 <2000.1.1>", deleted=True),
    statute(CRIMINAL, "형법", 1, title="범죄의 성립과 처벌", text="범죄의 성립과 처벌은 행위 시의 법률에 따른다."),
]
PRECEDENTS = [
    precedent(
        1001, P1_HOLDINGS, "[1] 요지 첫째 부분이다. [2] 요지 둘째 부분이다.", "일 본문", date=dt.date(2020, 5, 1)
    ),
    precedent(1002, P2_HOLDINGS, "", "사용자 본문 이유", date=dt.date(2019, 3, 3)),
    precedent(1003, "짧음", "요지만 있는 판결이다.", "삼 본문", date=dt.date(2018, 1, 1)),
    precedent(1004, P1_HOLDINGS, "다른 요지 내용이다.", "사 본문", date=dt.date(2021, 1, 1)),  # 판시사항 = prec:1001's
    precedent(1005, P2_HOLDINGS, "", "사용자 본문 이유", date=dt.date(2019, 3, 3)),  # a full copy of prec:1002
]
CITATIONS = [
    cite(1001, "statute", [1], f"law:{CIVIL}:750"),
    cite(1001, "statute", [2], f"law:{CIVIL}:751"),
    cite(1001, "statute", [2], f"law:{CIVIL}:750"),
    cite(1001, "statute", [], f"law:{CRIMINAL}:1"),  # unnumbered: applies to every part
    cite(1001, "statute", [1], None),  # unresolved: ignored
    cite(1001, "case", [1], "prec:1002"),
    cite(1001, "case", [1], "prec:1005"),  # prec:1005 only lives on as prec:1002's passages
    cite(1001, "case", [2], "prec:1001"),  # cites itself
    cite(1002, "statute", [], f"law:{CIVIL}:750", former=True),
    cite(1002, "statute", [], f"law:{CIVIL}:753"),  # deleted article: not in the corpus
    cite(1004, "statute", [1], f"law:{CIVIL}:750"),
    cite(1004, "statute", [3], f"law:{CIVIL}:751"),  # [3] is not a part of its 판시사항
]


@dataclass(frozen=True)
class World:
    statutes: pl.DataFrame
    precedents: pl.DataFrame
    citations: pl.DataFrame
    merged: pl.DataFrame

    def build(self, **config: Any) -> tuple[pl.DataFrame, QueryStats]:
        admin = pl.DataFrame(schema=ADMIN_RULE_SCHEMA)
        return build_queries(self.statutes, admin, self.precedents, self.citations, self.merged, QueryConfig(**config))


@pytest.fixture(scope="module")
def world() -> World:
    statutes = to_frame(STATUTES, StatuteArticle)
    precedents = to_frame(PRECEDENTS, Precedent)
    config = PassageConfig(max_tokens=16, overlap=2)
    law, _ = statute_passages(statutes, WhitespaceTokenCounter(), config)
    prec, _ = precedent_passages(precedents, WhitespaceTokenCounter(), config)
    merged, _ = merge_corpus([law, prec])
    citations = pl.DataFrame(CITATIONS, schema=CITATION_SCHEMA)
    return World(statutes, precedents, citations, merged)


def by_id(pairs: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["query_id"]: row for row in pairs.iter_rows(named=True)}


def chunks_751(world: World) -> list[str]:
    pids = world.merged.filter(pl.col("doc_id") == f"law:{CIVIL}:751").sort("chunk_index")["passage_id"].to_list()
    assert len(pids) >= 2
    return pids


def test_all_query_types(world: World) -> None:
    pairs, stats = world.build()
    assert pairs.schema == PAIR_SCHEMA
    rows = by_id(pairs)
    assert sorted(rows) == [
        "q:cross_law:1001:1",
        "q:cross_law:1001:2",
        "q:cross_law:1002",
        "q:cross_law:1004",
        "q:cross_prec:1001:1",
        "q:law:001692:1",
        "q:law:001706:750",
        "q:law:001706:751",
        "q:prec:1001",
        "q:prec:1004",
    ]
    assert pairs["query_id"].to_list() == sorted(rows)
    assert stats.queries == {"law": 3, "admrul": 0, "prec": 2, "cross_law": 4, "cross_prec": 1}
    assert stats.skipped == {
        "law: article without title": 2,
        "law: article not in corpus (deleted/stub)": 1,
        "precedent without 판시사항": 1,
        "prec: no 판결요지 passage (missing, or same text as 판시사항)": 2,
        "cross_law: no resolved citation": 1,
        "cross_law: cited target not in corpus (deleted/stub)": 1,
        "cross_prec: no resolved citation": 3,
        "cross_prec: query with no target in corpus": 1,
    }


def test_law_heading_queries(world: World) -> None:
    rows = by_id(world.build(query_types=("law",))[0])
    q = rows["q:law:001706:750"]
    assert q["query_text"] == "민법 불법행위의 내용"
    assert (q["positive_ids"], q["positive_doc_ids"]) == (["law:001706:750"], ["law:001706:750"])
    assert (q["group_id"], q["group_date"], q["query_passage_id"]) == ("law:001706:750", None, None)
    assert q["query_type"] == "law" and q["former_citation"] is False
    q = rows["q:law:001706:751"]
    assert q["query_text"] == "민법 재산 이외의 손해의 배상"
    assert sorted(q["positive_ids"]) == sorted(chunks_751(world)) and q["positive_doc_ids"] == ["law:001706:751"]
    assert rows["q:law:001692:1"]["query_text"] == "형법 범죄의 성립과 처벌"
    # untitled (752, 753) and deleted (754) articles give no query
    assert not {"q:law:001706:752", "q:law:001706:753", "q:law:001706:754"} & set(rows)


def test_prec_query_targets_the_same_decisions_summary(world: World) -> None:
    rows = by_id(world.build(query_types=("prec",))[0])
    assert set(rows) == {"q:prec:1001", "q:prec:1004"}
    q = rows["q:prec:1001"]
    assert q["query_text"] == "[1] 불법행위의 성립 요건 [2] 위자료의 산정 기준"  # whitespace collapsed
    summary = world.merged.filter((pl.col("doc_id") == "prec:1001") & (pl.col("section") == "summary"))
    assert q["positive_ids"] == summary.sort("chunk_index")["passage_id"].to_list() == ["prec:1001#1"]
    assert q["positive_doc_ids"] == ["prec:1001"] and q["group_id"] == "prec:1001"
    assert q["query_passage_id"] == "prec:1001#0" and q["group_date"] == dt.date(2020, 5, 1)
    # prec:1004's 판시사항 was deduplicated into prec:1001#0: the query passage is the one that stands for it.
    assert rows["q:prec:1004"]["query_passage_id"] == "prec:1001#0"
    assert rows["q:prec:1004"]["positive_ids"] == ["prec:1004#1"]


def test_cross_law_numbered_holdings(world: World) -> None:
    rows = by_id(world.build(query_types=("cross_law",))[0])
    one, two = rows["q:cross_law:1001:1"], rows["q:cross_law:1001:2"]
    assert one["query_text"] == "불법행위의 성립 요건"
    assert two["query_text"] == "위자료의 산정 기준"
    # the unnumbered 형법 citation joins every part; the unresolved one is ignored
    assert one["positive_doc_ids"] == ["law:001692:1", "law:001706:750"]
    assert one["positive_ids"] == ["law:001692:1", "law:001706:750"]
    assert two["positive_doc_ids"] == ["law:001692:1", "law:001706:750", "law:001706:751"]
    assert sorted(two["positive_ids"]) == sorted(["law:001692:1", "law:001706:750", *chunks_751(world)])
    for q in (one, two):
        assert (q["group_id"], q["query_passage_id"], q["former_citation"]) == ("prec:1001", "prec:1001#0", False)
        assert q["group_date"] == dt.date(2020, 5, 1)
    # prec:1004 cites a group [3] its 판시사항 does not have: one query over the whole text and all citations
    q = rows["q:cross_law:1004"]
    assert q["query_text"] == "[1] 불법행위의 성립 요건 [2] 위자료의 산정 기준"
    assert q["positive_doc_ids"] == ["law:001706:750", "law:001706:751"]
    assert q["query_passage_id"] == "prec:1001#0"


def test_cross_law_unnumbered_former_and_missing_targets(world: World) -> None:
    pairs, stats = world.build(query_types=("cross_law",))
    q = by_id(pairs)["q:cross_law:1002"]
    assert q["query_text"] == "사용자책임의 범위"
    assert q["positive_doc_ids"] == ["law:001706:750"]  # 753 is deleted: counted, not a positive
    assert q["former_citation"] is True
    assert stats.skipped["cross_law: cited target not in corpus (deleted/stub)"] == 1


def test_include_former_citations_false(world: World) -> None:
    pairs, stats = world.build(include_former_citations=False)
    rows = by_id(pairs)
    assert "q:cross_law:1002" not in rows  # its only other citation is a deleted article
    assert stats.skipped["cross_law: query with no target in corpus"] == 1
    assert not pairs["former_citation"].any()


def test_split_numbered_holdings_false(world: World) -> None:
    rows = by_id(world.build(query_types=("cross_law",), split_numbered_holdings=False)[0])
    assert "q:cross_law:1001:1" not in rows
    q = rows["q:cross_law:1001"]
    assert q["query_text"] == "[1] 불법행위의 성립 요건 [2] 위자료의 산정 기준"
    assert q["positive_doc_ids"] == ["law:001692:1", "law:001706:750", "law:001706:751"]


def test_cross_prec_excludes_self_citation_and_follows_aliases(world: World) -> None:
    pairs, stats = world.build(query_types=("cross_prec",))
    rows = by_id(pairs)
    assert set(rows) == {"q:cross_prec:1001:1"}  # part [2] only cited the decision itself
    assert stats.skipped["cross_prec: query with no target in corpus"] == 1
    q = rows["q:cross_prec:1001:1"]
    assert q["positive_doc_ids"] == ["prec:1002", "prec:1005"]
    prec_1002 = world.merged.filter(pl.col("doc_id") == "prec:1002")["passage_id"].to_list()
    # prec:1005 was deduplicated away entirely; its stand-in (a passage of prec:1002) is listed once
    assert sorted(q["positive_ids"]) == sorted(prec_1002)
    assert len(q["positive_ids"]) == len(set(q["positive_ids"]))
    assert "prec:1001" not in q["positive_doc_ids"]


@pytest.mark.parametrize("only", QUERY_TYPES)
def test_query_types_toggle(world: World, only: str) -> None:
    everything = world.build()[0]
    pairs, stats = world.build(query_types=(only,))
    assert set(pairs["query_type"]) <= {only}
    assert pairs.height == everything.filter(pl.col("query_type") == only).height
    assert set(stats.queries) <= {only}
    assert by_id(pairs) == by_id(everything.filter(pl.col("query_type") == only))


def test_unknown_query_type_raises() -> None:
    with pytest.raises(ValueError, match="unknown query types"):
        QueryConfig(query_types=("law", "statute"))


def test_min_query_chars(world: World) -> None:
    pairs, stats = world.build(query_types=("prec",), min_query_chars=2)
    assert "q:prec:1003" in set(pairs["query_id"])  # "짧음" is now long enough
    assert "precedent without 판시사항" not in stats.skipped


def test_duplicate_precedent_rows_raise(world: World) -> None:
    twice = pl.concat([world.precedents, world.precedents.filter(pl.col("prec_id") == "prec:1001")])
    admin = pl.DataFrame(schema=ADMIN_RULE_SCHEMA)
    with pytest.raises(ValueError, match="duplicate query ids"):
        build_queries(world.statutes, admin, twice, world.citations, world.merged, QueryConfig())


def test_group_and_id_invariants(world: World) -> None:
    pairs, _ = world.build()
    groups = duplicate_groups(world.merged)
    for q in pairs.iter_rows(named=True):
        source = q["query_id"].removeprefix("q:")
        if q["query_type"] == "law":
            assert q["group_id"] == source and q["positive_doc_ids"] == [source]
        else:
            serial = source.removeprefix(f"{q['query_type']}:").split(":")[0]
            # The decision itself, or the canonical one of its companions (linked by a deduplicated passage).
            assert q["group_id"] == groups.get(f"prec:{serial}", f"prec:{serial}")
    linked = {doc for doc, canon in groups.items() if doc != canon}
    assert linked, "the synthetic world should hold at least one pair of companion decisions"
    for doc in linked:  # companions' queries share one group, hence one split
        assert set(pairs.filter(pl.col("group_id") == groups[doc])["group_id"]) == {groups[doc]}


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("[1] A 이다 [2] B 이다", {1: "A 이다", 2: "B 이다"}),
        ("[ 1 ] A\n  [2]\nB ", {1: "A", 2: "B"}),
        ("  [1] A [1] again [3] C", {1: "A", 3: "C"}),
        ("[1] A [2] [3] C", {1: "A", 3: "C"}),  # an empty part is dropped
        ("서론 [1] A [2] B", {}),  # numbers must lead
        ("가. A 나. B", {1: "A", 2: "B"}),  # older decisions letter their parts, like their 참조조문
        ("가. A 다. B 나. C", {1: "A 다. B", 2: "C"}),  # letters only count in sequence
        ("가. 하나뿐", {}),
        ("이 사건은 다. 라고 끝난다", {}),
        ("번호 없는 판시사항", {}),
        ("", {}),
    ],
)
def test_numbered_parts(text: str, parts: dict[int, str]) -> None:
    assert numbered_parts(text) == parts


def test_corpus_view(world: World) -> None:
    view = CorpusView(world.merged)
    assert view.passages_of("law:001706:750") == ["law:001706:750"]
    assert view.passages_of("prec:1005") == ["prec:1002#0"]  # a fully deduplicated decision → its stand-in
    assert view.passages_of("law:001706:753") == []
    assert view.resolve_passage("prec:1004#0") == "prec:1001#0"
    assert view.resolve_passage("prec:1001#0") == "prec:1001#0"
    assert view.resolve_passage("prec:9999#0") is None
    assert view.section_passages[("prec:1001", "summary")] == ["prec:1001#1"]


# --- the real slice -----------------------------------------------------------------------------------------------


def test_real_slice_invariants(real_slice: RealSlice) -> None:
    pairs, merged = real_slice.pairs, real_slice.merged
    stats = real_slice.query_stats
    assert pairs["query_id"].n_unique() == pairs.height
    counts = dict(pairs.group_by("query_type").len().iter_rows())
    assert counts == {k: v for k, v in stats.queries.items() if v}
    assert counts["law"] > 300 and counts["prec"] > 30 and counts["cross_law"] > 30 and counts["cross_prec"] >= 1
    ids = set(merged["passage_id"])
    docs_of = dict(merged.select("passage_id", "doc_id").iter_rows())
    for q in pairs.iter_rows(named=True):
        assert q["positive_ids"] and set(q["positive_ids"]) <= ids
        assert len(q["positive_ids"]) == len(set(q["positive_ids"]))
        assert q["query_text"] == " ".join(q["query_text"].split()) and len(q["query_text"]) >= 4
        if q["query_type"] == "law":
            assert q["group_id"] == q["positive_doc_ids"][0] == q["query_id"].removeprefix("q:")
            assert q["group_date"] is None
            continue
        assert q["group_id"].startswith("prec:") and q["group_date"] is not None
        assert q["query_passage_id"] in ids
        if q["query_type"] == "prec":
            assert {docs_of[p] for p in q["positive_ids"]} == {q["group_id"]}
        else:
            assert q["group_id"] not in q["positive_doc_ids"]
            assert q["group_id"] not in {docs_of[p] for p in q["positive_ids"]}


def test_real_numbered_decision(real_slice: RealSlice) -> None:
    """대법원 2014. 7. 24. 선고 2012므806: [1] cites 민법 866, 869, 878 and [2] cites 776, 865, 878."""
    rows = by_id(real_slice.pairs.filter(pl.col("group_id") == "prec:175106"))
    assert {"q:cross_law:175106:1", "q:cross_law:175106:2", "q:prec:175106"} <= set(rows)
    holdings = real_slice.precedents.filter(pl.col("prec_id") == "prec:175106")["holdings"][0]
    parts = numbered_parts(holdings)
    one, two = rows["q:cross_law:175106:1"], rows["q:cross_law:175106:2"]
    assert one["query_text"] == " ".join(parts[1].split()) and one["query_text"].startswith("당시의 민법 규정에")
    assert two["query_text"] == " ".join(parts[2].split()) and two["query_text"].startswith("여성인 甲과")
    assert one["positive_doc_ids"] == ["law:001706:866", "law:001706:869", "law:001706:878"]
    assert two["positive_doc_ids"] == ["law:001706:776", "law:001706:865", "law:001706:878"]
    assert one["group_date"] == dt.date(2014, 7, 24)
    summary = real_slice.merged.filter((pl.col("doc_id") == "prec:175106") & (pl.col("section") == "summary"))
    assert rows["q:prec:175106"]["positive_ids"] == summary.sort("chunk_index")["passage_id"].to_list()


def test_real_former_citation(real_slice: RealSlice) -> None:
    """2000므1493 [2] cites 민법 제874조 both as in force and as 구 민법(1990. 1. 13. 개정 전): flagged former."""
    admin = real_slice.admin_rules
    args = (real_slice.statutes, admin, real_slice.precedents, real_slice.citations, real_slice.merged)
    with_former = by_id(build_queries(*args, QueryConfig(query_types=("cross_law",)))[0])
    without = by_id(build_queries(*args, QueryConfig(query_types=("cross_law",), include_former_citations=False))[0])
    assert with_former["q:cross_law:80559:2"]["former_citation"] is True
    assert without["q:cross_law:80559:2"]["former_citation"] is False
    assert "law:001706:874" in without["q:cross_law:80559:2"]["positive_doc_ids"]
    assert with_former["q:cross_law:80559:1"]["former_citation"] is False
    assert sum(q["former_citation"] for q in without.values()) == 0


def test_real_decision_with_item_markers_in_citations(real_slice: RealSlice) -> None:
    """대법원 95므694: [1] 민법 812, 813 (호적법 is not in the corpus) / [2] 민사소송법 228, 가사소송법 제2조."""
    path = CORPUS / "precedent-kr" / "가사" / "대법원" / "95므694.md"
    decision = to_frame([parse_precedent_markdown(read_markdown(path), "가사/대법원/95므694.md")], Precedent)
    citations, _ = citation_table(real_slice.statutes, decision)
    merged = real_slice.merged
    pairs, _ = build_queries(
        real_slice.statutes,
        real_slice.admin_rules,
        decision,
        citations,
        merged,
        QueryConfig(query_types=("cross_law",)),
    )
    rows = by_id(pairs)
    assert rows["q:cross_law:112799:1"]["positive_doc_ids"] == ["law:001706:812", "law:001706:813"]
