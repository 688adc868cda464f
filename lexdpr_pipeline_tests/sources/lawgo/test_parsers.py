"""Parsers and normalization on the real (recorded) and reconstructed DRF bodies in ../shared/lawgo."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoAuthError,
    LawGoMaintenanceError,
    LawGoMalformedResponseError,
    LawGoNotFoundError,
)
from lexdpr_pipeline.sources.lawgo.normalize import (
    as_list,
    element_to_obj,
    fix_xml_quirks,
    load_body,
    parse_xml,
    strip_oc,
    text_of,
)
from lexdpr_pipeline.sources.lawgo.parsers import (
    parse_admrul_body,
    parse_law_body,
    parse_listing,
    parse_prec_body,
)
from lexdpr_pipeline_tests.conftest import SHARED
from lexdpr_pipeline_tests.sources.lawgo.conftest import ADMRUL_FIXTURES

SHARED_LAWGO = SHARED / "lawgo"  # ../shared beside the repo root, read in place
LAW_XML_FILES = sorted((SHARED_LAWGO / "recorded" / "law-detail-xml").glob("*.xml"))
LAW_JSON_FILES = sorted((SHARED_LAWGO / "recorded" / "law-detail-json").glob("*.json"))
# Reconstructed (rebuilt from mirror records in the documented PrecService shape), NOT recorded API responses.
PREC_SERIALS = sorted(p.stem for p in (SHARED_LAWGO / "reconstructed" / "prec-detail").glob("*.json"))
ARTICLE_ROW = re.compile(r"<조문여부>\s*조문\s*</조문여부>")


def _law(lawgo_dir: Path, mst: str) -> bytes:
    return (lawgo_dir / "recorded" / "law-detail-xml" / f"{mst}.xml").read_bytes()


# --- statutes: recorded XML -----------------------------------------------------------------------------------------


def test_recorded_law_files_are_there() -> None:
    assert len(LAW_XML_FILES) == 64 and len(LAW_JSON_FILES) == 3 and len(PREC_SERIALS) == 6


@pytest.mark.parametrize("path", LAW_XML_FILES, ids=lambda p: p.stem)
def test_every_recorded_law_xml_parses(path: Path) -> None:
    raw = path.read_bytes()
    expected = len(ARTICLE_ROW.findall(raw.decode("utf-8")))  # counted independently of the parser
    records = parse_law_body(raw, "XML", f"recorded/{path.name}", mst=path.stem)
    assert len(records) == expected
    ids = [r.article_id for r in records]
    assert len(set(ids)) == len(ids)
    assert {r.law_mst for r in records} <= {path.stem}
    for r in records:
        assert r.article_id == f"law:{r.law_id}:{r.article_key}"
        assert r.source == "api" and r.law_name and r.law_kind and r.promulgation_date is not None
        assert r.is_deleted or r.text.strip(), r.article_id
        assert "<img" not in r.text and "\t" not in r.text and "  " not in r.text


def test_law_article_details(lawgo_dir: Path) -> None:
    records = parse_law_body(_law(lawgo_dir, "285139"), "XML", "https://x/DRF/lawService.do?target=law&MST=285139")
    by_key = {r.article_key: r for r in records}
    first = by_key["1"]
    assert first.law_id == "010005" and first.law_mst == "285139"  # MST from source_ref when not given
    assert first.law_name == "산림자원의 조성 및 관리에 관한 법률" and first.law_kind == "법률"
    assert first.ministry == "산림청" and first.status == "시행"  # same vocabulary as the mirror's 상태
    assert first.promulgation_date == dt.date(2026, 3, 31) and first.promulgation_no == "21506"
    assert first.article_title == "목적" and first.headings == ["제1장 총칙 <개정 2007.12.21>"]
    assert first.text.startswith("이 법은 산림자원의 조성과 관리를 통하여") and not first.text.startswith("제1조")
    branch = by_key["1-2"]
    assert (branch.article_no, branch.article_branch, branch.article_id) == (1, 2, "law:010005:1-2")
    definitions = by_key["2"].text.splitlines()
    assert definitions[1].startswith('1. "산림"이란') and definitions[2].startswith("가. 집단적으로")
    assert "4. 삭제 <2020.6.9>" in definitions  # a deleted 호 stays a line; the article is not deleted
    deleted = by_key["20"]
    assert deleted.is_deleted and deleted.text == "삭제 <2020.6.9>" and deleted.article_title == ""
    # a new 장 replaces the previous 장 and its 절
    assert by_key["16"].headings == [
        "제2장 산림자원의 조성과 육성 <개정 2007.12.21>",
        "제3절 산림용 종묘(種苗) 생산 등 <개정 2007.12.21>",
    ]
    chapters = [r.headings for r in records if r.headings and r.headings[0].startswith("제3장")]
    assert chapters and all(not h[-1].startswith("제3절 산림용") for h in chapters)


def test_old_law_titles_come_from_the_hangul_text(lawgo_dir: Path) -> None:
    records = parse_law_body(_law(lawgo_dir, "2839"), "XML", "r", mst="2839")
    assert [r.article_title for r in records[:3]] == ["목적", "정의", "원호재산의 증여"]  # 조문제목 is hanja
    assert records[1].text.splitlines()[0].startswith("①이 법에서")


def test_vacated_article_number_is_flagged_deleted(lawgo_dir: Path) -> None:
    # 관세법 시행령 제192조의4 reads only "제192조의4" (moved to 제192조의7); it must not look like live text.
    record = next(r for r in parse_law_body(_law(lawgo_dir, "285309"), "XML", "r") if r.article_key == "192-4")
    assert record.text == "" and record.is_deleted


def test_article_less_laws_and_the_constitution_preamble(lawgo_dir: Path) -> None:
    for mst in ("285307", "31205", "37067"):  # only a 전문 text row with 조문번호 0
        assert parse_law_body(_law(lawgo_dir, mst), "XML", "r") == []
    constitution = parse_law_body(_law(lawgo_dir, "53081"), "XML", "r")
    assert constitution[0].article_key == "1" and constitution[0].ministry == ""
    assert constitution[0].headings == ["제1장 총강"]
    assert not any("유구한 역사" in h for r in constitution for h in r.headings)


# --- statutes: recorded JSON (JO= single-article answers) ---------------------------------------------------------


def test_recorded_law_json_bodies_parse(lawgo_dir: Path) -> None:
    folder = lawgo_dir / "recorded" / "law-detail-json"
    ita = parse_law_body((folder / "ita_12.json").read_bytes(), "JSON", "ita")
    assert [r.article_id for r in ita] == ["law:001565:12"]
    (article,) = ita
    assert article.article_title == "비과세소득" and article.law_name == "소득세법"
    assert article.headings == [
        "제2장 거주자의 종합소득 및 퇴직소득에 대한 납세의무 <개정 2009.12.31>",
        "제1절 비과세 <개정 2009.12.31>",
    ]
    lines = article.text.splitlines()
    assert lines[0].startswith("다음 각 호의 소득에 대해서는")
    assert "1. 「공익신탁법」에 따른 공익신탁의 이익" in lines
    assert any(line.startswith("1) 근로자(사용자와") for line in lines)  # a 목내용 given as nested lists
    assert "[전문개정 2009.12.31]" not in article.text  # 조문참고자료 is not article text
    vat = parse_law_body((folder / "vat_46_raw.json").read_bytes(), "JSON", "vat")
    assert [(r.article_id, r.headings) for r in vat] == [("law:001571:46", ["제4절 세액공제"])]
    assert vat[0].text.startswith("① 제1호에 해당하는 사업자가") and "가. 삭제 <2020.12.22>" in vat[0].text
    ngs = parse_law_body((folder / "ngs_41.json").read_bytes(), "JSON", "ngs")
    assert ngs[0].article_title == "압류금지 재산" and ngs[0].ministry == "재정경제부"
    assert ngs[0].text.splitlines()[1].startswith("1. 체납자 또는")


def test_law_xml_and_json_renderings_give_the_same_records(lawgo_dir: Path) -> None:
    # No recorded XML/JSON pair exists for one law, so render a recorded XML body the way the JSON API does
    # (element_to_obj) and check the parser treats both shapes alike.
    raw = _law(lawgo_dir, "285207")
    as_json = json.dumps({"법령": element_to_obj(parse_xml(raw))}, ensure_ascii=False).encode()
    assert parse_law_body(raw, "XML", "r", mst="285207") == parse_law_body(as_json, "JSON", "r", mst="285207")


# --- precedents (reconstructed bodies) ----------------------------------------------------------------------------


@pytest.mark.parametrize("serial", PREC_SERIALS)
def test_reconstructed_precedents_parse_alike_in_both_formats(lawgo_dir: Path, serial: str) -> None:
    # These 6 bodies are reconstructed from mirror records in the documented shape, not recorded responses.
    folder = lawgo_dir / "reconstructed" / "prec-detail"
    from_xml = parse_prec_body((folder / f"{serial}.xml").read_bytes(), "XML", "ref")
    from_json = parse_prec_body((folder / f"{serial}.json").read_bytes(), "JSON", "ref")
    assert from_xml == from_json
    assert from_xml.prec_id == f"prec:{serial}" and from_xml.serial_no == serial
    assert from_xml.decision_date is not None and from_xml.case_no and from_xml.court
    assert "<br" not in from_xml.body and "\n" in from_xml.body and from_xml.body == from_xml.body.strip("\n")


def test_precedent_fields(lawgo_dir: Path) -> None:
    folder = lawgo_dir / "reconstructed" / "prec-detail"
    p = parse_prec_body((folder / "80866.xml").read_bytes(), "XML", "ref")
    assert (p.case_no, p.case_name, p.court, p.court_level) == ("2000도1743", "업무상횡령", "대법원", "대법원")
    assert (p.case_type, p.judgment_type, p.decision_date) == ("형사", "판결", dt.date(2001, 9, 4))
    assert p.holdings.splitlines()[1].startswith("[2] 불법영득의사의")
    assert p.ref_articles == "[1] 형사소송법 제313조 / [2] 형법 제355조 제1항, 형사소송법 제307조, 제308조"
    assert p.body.splitlines()[:2] == ["【피 고 인】 피고인", "【상 고 인】   검사"]
    lower = parse_prec_body((folder / "212243.json").read_bytes(), "JSON", "ref")
    assert (lower.court, lower.court_level, lower.case_type) == ("서울행정법원", "하급심", "일반행정")


def test_precedent_unknown_court_code_and_html() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><PrecService><판례정보일련번호>7</판례정보일련번호>'
        "<사건번호>2020가합1</사건번호><법원종류코드></법원종류코드><선고일자>20200230</선고일자>"
        "<판례내용><![CDATA[<p>첫 줄<br/>둘째 <b>줄</b>&nbsp;끝</p>]]></판례내용></PrecService>"
    ).encode()
    p = parse_prec_body(body, "XML", "ref")
    assert p.court_level == "미분류" and p.decision_date is None  # 2020-02-30 does not exist
    assert p.body == "첫 줄\n둘째 줄\xa0끝" and p.holdings == ""


# --- listings -----------------------------------------------------------------------------------------------------


def test_recorded_law_listing(lawgo_dir: Path) -> None:
    listing = parse_listing(
        (lawgo_dir / "recorded" / "law-search-xml" / "san-an-search.xml").read_bytes(), "XML", "law"
    )
    assert (listing.total_count, listing.page, len(listing.rows)) == (3, 1, 3)
    assert [r["법령일련번호"] for r in listing.rows] == ["276853", "284771", "271485"]
    assert listing.rows[1]["법령명한글"] == "산업안전보건법 시행령" and listing.rows[0]["id"] == "1"
    for row in listing.rows:
        assert "OC=" not in row["법령상세링크"] and "jyj29617" not in json.dumps(row, ensure_ascii=False)
        assert row["법령상세링크"].startswith("/DRF/lawService.do?target=law&MST=")


def test_reconstructed_precedent_listing_in_both_formats(lawgo_dir: Path) -> None:
    folder = lawgo_dir / "reconstructed" / "prec-search"
    from_xml = parse_listing((folder / "page1.xml").read_bytes(), "XML", "prec")
    from_json = parse_listing((folder / "page1.json").read_bytes(), "JSON", "prec")
    assert from_xml == from_json and from_xml.total_count == 6 and len(from_xml.rows) == 6
    assert "·" in from_xml.rows[2]["사건명"]
    assert all("OC=" not in r["판례상세링크"] for r in from_xml.rows)


def test_empty_listing(lawgo_dir: Path) -> None:
    listing = parse_listing(
        (lawgo_dir / "reconstructed" / "errors" / "empty-law-search.xml").read_bytes(), "XML", "law"
    )
    assert (listing.total_count, listing.rows) == (0, [])
    single = '{"AdmRulSearch": {"totalCnt": "1", "page": "1", "admrul": {"id": "1", "행정규칙일련번호": "5"}}}'.encode()
    assert parse_listing(single, "JSON", "admrul").rows == [{"id": "1", "행정규칙일련번호": "5"}]


# --- error bodies -------------------------------------------------------------------------------------------------


def test_error_bodies_raise_typed_errors(lawgo_dir: Path) -> None:
    errors = lawgo_dir / "reconstructed" / "errors"
    with pytest.raises(LawGoAuthError, match=r"open\.law\.go\.kr"):
        parse_prec_body((errors / "auth-failure.json").read_bytes(), "JSON", "ref")
    with pytest.raises(LawGoNotFoundError, match="일치하는 행정규칙이 없습니다"):
        parse_admrul_body((errors / "no-match-admrul.xml").read_bytes(), "XML", "ref")
    with pytest.raises(LawGoNotFoundError):
        parse_prec_body((errors / "no-match-prec.json").read_bytes(), "JSON", "ref")
    with pytest.raises(LawGoNotFoundError):
        parse_prec_body(b"{}", "JSON", "ref")
    with pytest.raises(LawGoMaintenanceError):
        parse_law_body("<!DOCTYPE html><html><body>점검 중</body></html>".encode(), "XML", "ref")
    with pytest.raises(LawGoAuthError):  # the synthetic XML envelope some projects use
        parse_listing("<law><result>실패</result><msg>사용자 인증에 실패하였습니다</msg></law>".encode(), "XML", "law")


@pytest.mark.parametrize(
    ("body", "fmt", "reason"),
    [
        (b"", "XML", "empty body"),
        ("<?xml version='1.0'?><PrecService><판례정보일련번호>1</판례".encode(), "XML", "not well-formed"),
        (b"<PrecService><a></b></PrecService>", "XML", "not well-formed"),
        ('{"PrecService": {"판례정보일련번호": "1", '.encode(), "JSON", "JSON not parseable"),
        (b"<LawSearch><totalCnt>0</totalCnt></LawSearch>", "XML", "root is <LawSearch>"),
        ("<PrecService><사건명>x</사건명></PrecService>".encode(), "XML", "no numeric 판례정보일련번호"),
        (b'{"PrecService": {}, "extra": 1}', "JSON", "one key"),
        ("<PrecService>한".encode()[:-1], "XML", "not valid UTF-8"),
    ],
)
def test_malformed_bodies_raise_with_a_reason(body: bytes, fmt: str, reason: str) -> None:
    with pytest.raises(LawGoMalformedResponseError) as info:
        parse_prec_body(body, fmt, "ref")  # type: ignore[arg-type]
    assert reason in info.value.reason


def test_truncated_recorded_law_body_is_malformed(lawgo_dir: Path) -> None:
    raw = _law(lawgo_dir, "285421")
    with pytest.raises(LawGoMalformedResponseError, match="truncated"):
        parse_law_body(raw[: len(raw) // 2], "XML", "ref")
    with pytest.raises(LawGoMalformedResponseError, match="법령ID"):
        parse_law_body("<법령><기본정보><법령명_한글>x</법령명_한글></기본정보></법령>".encode(), "XML", "ref")


# --- XML quirks and the one-shape helpers -------------------------------------------------------------------------


def test_xml_quirks_are_fixed_before_parsing() -> None:
    body = (
        '\ufeff\n<?xml version="1.0" encoding="UTF-8"?>\n<PrecSearch><target>prec</target>'
        "<키워드>폭력행위&middot;공갈 &amp; 기타</키워드><totalCnt>1</totalCnt><page>1</page>"
        '<prec id="1"><판례일련번호>229759</판례일련번호><사건번호>2000도102</사건번호 >'
        "<사건명><![CDATA[A & B <c> &middot;]]></사건명><법원명>대법원\x0b</법원명>"
        "<판례상세링크>/DRF/lawService.do?OC=SECRETOC123&target=prec&ID=229759</판례상세링크></prec></PrecSearch>"
    ).encode()
    with pytest.raises(ET.ParseError):
        ET.fromstring(body)  # what a strict parser makes of the raw body
    root, content = load_body(body, "XML")
    assert root == "PrecSearch" and content["키워드"] == "폭력행위·공갈 & 기타"
    row = parse_listing(body, "XML", "prec").rows[0]
    assert row["사건번호"] == "2000도102"  # "</사건번호 >" closed the element
    assert row["사건명"] == "A & B <c> &middot;"  # CDATA content is never touched
    assert row["법원명"] == "대법원"
    assert row["판례상세링크"] == "/DRF/lawService.do?target=prec&ID=229759"  # bare & fixed, OC stripped


def test_fix_xml_quirks_leaves_valid_markup_alone() -> None:
    text = '<a x="1">&lt;b&gt; &#183; &amp;<![CDATA[&middot; </y >]]></a>'
    assert fix_xml_quirks(text) == text
    assert fix_xml_quirks("<a>&LT;&bogus;</a >") == "<a>&lt;&amp;bogus;</a>"


def test_json_entities_resolve_like_xml() -> None:
    _, content = load_body(b'{"X": {"a": "A&middot;B", "u": "?a=1&para=2&copy=3"}}', "JSON")
    assert content == {"a": "A·B", "u": "?a=1&para=2&copy=3"}  # URLs keep their parameters


def test_as_list_and_text_of() -> None:
    assert as_list(None) == [] and as_list("") == [] and as_list({"a": 1}) == [{"a": 1}] and as_list([1, 2]) == [1, 2]
    assert text_of(None) == "" and text_of({"content": "법률", "법종구분코드": "A0002"}) == "법률"
    assert text_of([["가. 첫째", "  1) 둘째"]]) == "가. 첫째\n  1) 둘째" and text_of(12) == "12"
    assert text_of({"no": "content"}) == ""


def test_element_to_obj_matches_the_json_shape() -> None:
    elem = ET.fromstring(
        '<법령 법령키="k"><기본정보><법종구분 법종구분코드="A0002">법률</법종구분></기본정보>'
        '<조문><조문단위 조문키="1"><항><항번호>①</항번호></항><항><항번호>②</항번호></항></조문단위></조문></법령>'
    )
    assert element_to_obj(elem) == {
        "법령키": "k",
        "기본정보": {"법종구분": {"content": "법률", "법종구분코드": "A0002"}},
        "조문": {"조문단위": {"조문키": "1", "항": [{"항번호": "①"}, {"항번호": "②"}]}},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/DRF/lawService.do?OC=jyj29617&target=law&MST=276853", "/DRF/lawService.do?target=law&MST=276853"),
        ("/DRF/lawService.do?target=law&OC=abc&MST=1", "/DRF/lawService.do?target=law&MST=1"),
        ("/DRF/lawSearch.do?target=law&OC=abc", "/DRF/lawSearch.do?target=law"),
        ("/DRF/lawSearch.do?OC=abc", "/DRF/lawSearch.do"),
        ("<a>/x?OC=k&amp;target=law</a>", "<a>/x?target=law</a>"),
        ("no key here: OCR=1, DOC=2", "no key here: OCR=1, DOC=2"),
        ("two: ?oc=a&x=1 and ?OC=b", "two: ?x=1 and "),
    ],
)
def test_strip_oc(text: str, expected: str) -> None:
    assert strip_oc(text) == expected


# --- administrative rules (hand-built fixtures: no real admin-rule body exists) -----------------------------------


def _admrul(serial: str, fmt: str) -> bytes:
    return (ADMRUL_FIXTURES / f"{serial}.{fmt.lower()}").read_bytes()


def test_admin_rule_articles_and_headings() -> None:
    records = parse_admrul_body(_admrul("2100000271110", "XML"), "XML", "ref")
    assert [r.article_id for r in records] == [
        "admrul:36934:1",
        "admrul:36934:2",
        "admrul:36934:2-2",
        "admrul:36934:3",
        "admrul:36934:4",
        "admrul:36934:5",
    ]  # the 부칙's 제1조(시행일) is not an article
    first, definitions, branch, deleted, fourth, fifth = records
    assert (first.rule_id, first.rule_serial, first.rule_kind) == ("36934", "2100000271110", "훈령")
    assert (first.rule_name, first.ministry, first.issue_no) == (
        "개인정보 처리 업무 지침",
        "개인정보보호위원회",
        "제123호",
    )
    assert first.issue_date == dt.date(2025, 3, 1) and first.effective_date == dt.date(2025, 3, 15)
    assert first.article_title == "목적" and first.headings == ["제1장 총칙"] and not first.is_deleted
    assert definitions.text.splitlines()[1] == '1. "처리자"란 업무를 목적으로 개인정보를 처리하는 자를 말한다.'
    assert (branch.article_no, branch.article_branch, branch.article_key, branch.article_title) == (
        2,
        2,
        "2-2",
        "적용 범위",
    )
    assert branch.text.startswith("① 이 지침은")
    assert deleted.is_deleted and deleted.text == "삭제 <2024.12.31>" and deleted.article_title == ""
    assert deleted.headings == ["제2장 개인정보의 처리", "제1절 수집"] == fourth.headings
    assert fifth.headings == ["제3장 보칙"]  # the new 장 dropped 제1절


@pytest.mark.parametrize("serial", ["2100000271110", "2100000271111", "2100000271112"])
def test_admin_rule_xml_and_json_agree(serial: str) -> None:
    assert parse_admrul_body(_admrul(serial, "XML"), "XML", "r") == parse_admrul_body(
        _admrul(serial, "JSON"), "JSON", "r"
    )


def test_attachment_only_and_single_article_rules() -> None:
    assert parse_admrul_body(_admrul("2100000271111", "JSON"), "JSON", "r") == []  # 조문형식여부=N
    (only,) = parse_admrul_body(_admrul("2100000271112", "JSON"), "JSON", "r")  # 조문내용 is a plain string
    assert only.article_id == "admrul:36936:1" and only.article_title == "회의의 공개"
    with pytest.raises(LawGoMalformedResponseError, match="행정규칙기본정보"):
        parse_admrul_body("<AdmRulService><조문내용>제1조 x</조문내용></AdmRulService>".encode(), "XML", "r")


def test_admin_rule_heading_and_article_in_one_element_and_a_trailing_addendum() -> None:
    body = (
        "<AdmRulService><행정규칙기본정보><행정규칙ID>9</행정규칙ID><조문형식여부>Y</조문형식여부></행정규칙기본정보>"
        "<조문내용><![CDATA[제1장 총칙\n제1조(목적) 목적을 정한다.]]></조문내용>"
        "<조문내용><![CDATA[별표 참조]]></조문내용>"
        "<조문내용><![CDATA[부칙 <제1호, 2024.1.1>]]></조문내용>"
        "<조문내용><![CDATA[제1조(시행일) 이 고시는 발령한 날부터 시행한다.]]></조문내용>"
        "</AdmRulService>"
    ).encode()
    (article,) = parse_admrul_body(body, "XML", "r")
    assert (article.article_id, article.headings, article.text) == ("admrul:9:1", ["제1장 총칙"], "목적을 정한다.")
