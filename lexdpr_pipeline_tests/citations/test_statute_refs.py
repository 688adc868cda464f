"""Statute-citation parsing, table-driven on real 참조조문 strings from ../shared/corpus/precedent-kr."""

from __future__ import annotations

import pytest

from lexdpr_pipeline.citations import ISSUE_ADDENDA, ISSUE_UNPARSEABLE, StatuteRef, parse_statute_refs


def fmt(ref: StatuteRef) -> str:
    """A compact, exact rendering: ``[구 ]law key[ N항][ N호][ X목][ !issue][ [groups]]``."""
    s = f"{'구 ' if ref.former else ''}{ref.law_name or '?'} {ref.article_key}"
    if ref.paragraph is not None:
        s += f" {ref.paragraph}항"
    if ref.item is not None:
        s += f" {ref.item}호"
    if ref.subitem is not None:
        s += f" {ref.subitem}목"
    if ref.issue:
        s += f" !{ref.issue}"
    if ref.groups:
        s += " [" + ",".join(map(str, ref.groups)) + "]"
    return s


# Every string below is copied verbatim from a 참조조문 field of the sample corpus (some are a leading part of one).
REAL_CASES = [
    pytest.param(
        "민법 제411조,         산업재해보상보험법 제6조제19조제27조의2제29조",
        [
            "민법 411",
            "산업재해보상보험법 6",
            "산업재해보상보험법 19",
            "산업재해보상보험법 27-2",
            "산업재해보상보험법 29",
        ],
        id="carry-forward-no-separators",
    ),
    pytest.param(
        (
            "[1] 기간제 및 단시간근로자 보호 등에 관한 법률 제4조 제1항 제6호, 제2항, 기간제 및 단시간근로자 보호 "
            "등에 관한 법률 시행령 제3조 제3항 제1호, 초ㆍ중등교육법 제22조, 초ㆍ중등교육법 시행령 제42조 제1항, "
            "제5항 / [2] 기간제 및 단시간근로자 보호 등에 관한 법률 제4조 제1항"
        ),
        [
            "기간제및단시간근로자보호등에관한법률 4 1항 6호 [1]",
            "기간제및단시간근로자보호등에관한법률 4 2항 [1]",
            "기간제및단시간근로자보호등에관한법률시행령 3 3항 1호 [1]",
            "초·중등교육법 22 [1]",
            "초·중등교육법시행령 42 1항 [1]",
            "초·중등교육법시행령 42 5항 [1]",
            "기간제및단시간근로자보호등에관한법률 4 1항 [2]",
        ],
        id="groups-paragraph-siblings-decree-dots",
    ),
    pytest.param(
        "수도법 제3조 제5호, 제17호, 제25호, 제71조 제1항, 택지개발촉진법 제2조 제4호, 주택법 제2조 제12호",
        ["수도법 3 5호", "수도법 3 17호", "수도법 3 25호", "수도법 71 1항", "택지개발촉진법 2 4호", "주택법 2 12호"],
        id="items-siblings",
    ),
    pytest.param(
        (
            "독점규제 및 공정거래에 관한 법률 제28조 제1항, 제55조의3 제5항, 독점규제 및 공정거래에 관한 법률 시행령 "
            "제61조 제1항 [별표 2] 제2호 (가)목"
        ),
        [
            "독점규제및공정거래에관한법률 28 1항",
            "독점규제및공정거래에관한법률 55-3 5항",
            "독점규제및공정거래에관한법률시행령 61 1항",
        ],
        id="appendix-modifiers-ignored",
    ),
    pytest.param(
        (
            "구 국토의 계획 및 이용에 관한 법률(2011. 4. 14. 법률 제10599호로 개정되기 전의 것) 제2조 제6호 (라)목, "
            "제30조, 제88조, 구 국토의 계획 및 이용에 관한 법률 시행령(2013. 3. 23. 대통령령 제24443호로 개정되기 "
            "전의 것) 제2조 제1항 제4호, 제3항, 구 도시계획시설의 결정·구조 및 설치기준에 관한 규칙(2011. 11. 1. "
            "국토해양부령 제394호로 개정되기 전의 것) 제99조(현행 도시·군계획시설의 결정·구조 및 설치기준에 관한 "
            "규칙 제99조 참조), 체육시설의 설치·이용에 관한 법률 제3조, 체육시설의 설치·이용에 관한 법률 시행령 "
            "제2조 [별표 1]"
        ),
        [
            "구 국토의계획및이용에관한법률 2 6호 라목",
            "구 국토의계획및이용에관한법률 30",
            "구 국토의계획및이용에관한법률 88",
            "구 국토의계획및이용에관한법률시행령 2 1항 4호",
            "구 국토의계획및이용에관한법률시행령 2 3항",
            "구 도시계획시설의결정·구조및설치기준에관한규칙 99",
            "체육시설의설치·이용에관한법률 3",
            "체육시설의설치·이용에관한법률시행령 2",
        ],
        id="former-notes-subitem",
    ),
    pytest.param(
        (
            "가.나. 공유수면매립법 제6조 / 나. 같은 법 제4조, 행정소송법 제4조   / 다. 광업법 제87조, 제88조, "
            "제89조, 토지수용법 제14조, 제27조"
        ),
        [
            "공유수면매립법 6 [1,2]",
            "공유수면매립법 4 [2]",
            "행정소송법 4 [2]",
            "광업법 87 [3]",
            "광업법 88 [3]",
            "광업법 89 [3]",
            "토지수용법 14 [3]",
            "토지수용법 27 [3]",
        ],
        id="korean-labels-same-law",
    ),
    pytest.param(
        "민사소송법 제160조, \n        농지개혁법 제6조 제1항 제7호, \n        동법시행규칙 제12조",
        ["민사소송법 160", "농지개혁법 6 1항 7호", "농지개혁법시행규칙 12"],
        id="dongbeop-rule",
    ),
    pytest.param(
        "보험업법 제19조, \n        같은법시행령 제14조 제5항",
        ["보험업법 19", "보험업법시행령 14 5항"],
        id="same-law-decree",
    ),
    pytest.param(
        "집회및시위에관한법률 제2조,         같은법률 제6조,         제22조",
        ["집회및시위에관한법률 2", "집회및시위에관한법률 6", "집회및시위에관한법률 22"],
        id="same-law-beopryul",
    ),
    pytest.param(
        (
            "제5차 신용장통일규칙 제13조 c항, 제15조,\n\n        약관의규제에관한법률 제15조\n,\n\n        동 시행령 "
            "제3조 제3호"
        ),
        [
            "제5차신용장통일규칙 13",
            "제5차신용장통일규칙 15",
            "약관의규제에관한법률 15",
            "약관의규제에관한법률시행령 3 3호",
        ],
        id="dong-space-decree",
    ),
    pytest.param(
        "민사소송법 제396조 ,\n제399조 ,  소송촉진등에관한특례법 부칙 제2항\n, 동법시행규칙 부칙 제2조",
        [
            "민사소송법 396",
            "민사소송법 399",
            "소송촉진등에관한특례법 0 2항 !addenda",
            "소송촉진등에관한특례법시행규칙 2 !addenda",
        ],
        id="addenda-old-and-new",
    ),
    pytest.param(
        (
            "[1] 헌법 제23조 제3항, 제37조 제2항, 제95조, 공익사업을 위한 토지 등의 취득 및 보상에 관한 법률 제77조 "
            "제4항, 공익사업을 위한 토지 등의 취득 및 보상에 관한 법률 시행규칙 제48조 제2항 제1호 / [2] 헌법 제13조 "
            "제2항, 공익사업을 위한 토지 등의 취득 및 보상에 관한 법률 시행규칙 제48조 제2항 제1호, 부칙(2013. 4. "
            "25.) 제4조 제1항"
        ),
        [
            "헌법 23 3항 [1]",
            "헌법 37 2항 [1]",
            "헌법 95 [1]",
            "공익사업을위한토지등의취득및보상에관한법률 77 4항 [1]",
            "공익사업을위한토지등의취득및보상에관한법률시행규칙 48 2항 1호 [1]",
            "헌법 13 2항 [2]",
            "공익사업을위한토지등의취득및보상에관한법률시행규칙 48 2항 1호 [2]",
            "공익사업을위한토지등의취득및보상에관한법률시행규칙 4 1항 !addenda [2]",
        ],
        id="addenda-after-carried-law",
    ),
    pytest.param(
        (
            "형법 제1조 제2항, \n        구 상호저축은행법(2007. 7. 19. 법률 8522호로 개정되기 전의 것) 제12조 "
            "제1항, \n        제2항, \n        제39조 제3항 제4의2호, \n        제39조의2, \n        상호저축은행법 "
            "제12조 제1항 내지 \n        제3항, \n        제39조 제3항 제4의2호, \n        제39조의2"
        ),
        [
            "형법 1 2항",
            "구 상호저축은행법 12 1항",
            "구 상호저축은행법 12 2항",
            "구 상호저축은행법 39 3항 4의2호",
            "구 상호저축은행법 39-2",
            "상호저축은행법 12 1항",
            "상호저축은행법 12 2항",
            "상호저축은행법 12 3항",
            "상호저축은행법 39 3항 4의2호",
            "상호저축은행법 39-2",
        ],
        id="paragraph-range",
    ),
    pytest.param(
        (
            "[2] \n        구 상속세 및 증여세법(2002. 12. 18. 법률 제6780호로 개정되기 전의 것) 제60조 내지 \n      "
            "  제65조"
        ),
        [
            "구 상속세및증여세법 60 [2]",
            "구 상속세및증여세법 61 [2]",
            "구 상속세및증여세법 62 [2]",
            "구 상속세및증여세법 63 [2]",
            "구 상속세및증여세법 64 [2]",
            "구 상속세및증여세법 65 [2]",
        ],
        id="article-range",
    ),
    pytest.param(
        (
            "[1] 소액사건심판법 제3조 제2호 / [2] 구 대한민국헌법(1980. 10. 27. 헌법 제9호로 전부 개정되기 전의 것) "
            "제53조(현행 삭제), 구 국가안전과 공공질서의 수호를 위한 대통령긴급조치(1975. 5. 13. 대통령긴급조치 "
            "제9호, 1979. 12. 8. 대통령공고 제67호로 해제), 민법 제750조"
        ),
        ["소액사건심판법 3 2호 [1]", "구 대한민국헌법 53 [2]", "? 0 !unparseable [2]", "민법 750 [2]"],
        id="constitution-former-emergency-decree",
    ),
    pytest.param(
        "귀속재산처리법 제11조 2항, 제15조, 제27조, 제29조",
        ["귀속재산처리법 11 2항", "귀속재산처리법 15", "귀속재산처리법 27", "귀속재산처리법 29"],
        id="bare-paragraph-no-je",
    ),
    pytest.param(
        (
            "예산회계법 96조, \n        \n        \n        동법시행령 159조, \n        \n        \n        "
            "신원보증법 제6조, 재무부회계관계공무원 재정보증규정 10조\n, \n        \n        \n        신원보증법 6조"
        ),
        [
            "예산회계법 96",
            "예산회계법시행령 159",
            "신원보증법 6",
            "재무부회계관계공무원재정보증규정 10",
            "신원보증법 6",
        ],
        id="article-without-je",
    ),
    pytest.param(
        "건축법 제42조의 3",
        ["건축법 42-3"],
        id="branch-with-space",
    ),
    pytest.param(
        "［1］ 민법 제262조, 제271조 제1항, 제704조 / ［2］ 민법 제103조［명의신탁］, 제271조 제1항, 제704조",
        ["민법 262 [1]", "민법 271 1항 [1]", "민법 704 [1]", "민법 103 [2]", "민법 271 1항 [2]", "민법 704 [2]"],
        id="fullwidth-brackets",
    ),
    pytest.param(
        "[1][2][3] 도로교통법 제41조, 제107조의2, 형사소송법 제307조",
        ["도로교통법 41 [1,2,3]", "도로교통법 107-2 [1,2,3]", "형사소송법 307 [1,2,3]"],
        id="multi-group-marker",
    ),
    pytest.param(
        "구하천법 제12조 단서, \n        동법 시행령 제8조의2, 건설부고시 제897호, \n        하천법 제3조",
        ["구하천법 12", "구하천법시행령 8-2", "? 0 !unparseable", "하천법 3"],
        id="gu-without-space-and-notice",
    ),
    pytest.param(
        "(구)하천법 제35조\n, \n        제62조",
        ["구 하천법 35", "구 하천법 62"],
        id="paren-gu-prefix",
    ),
    pytest.param(
        "소득세법(구) 제32조",
        ["구 소득세법 32"],
        id="paren-gu-suffix",
    ),
    pytest.param(
        (
            "물품의일시수입을위한일시수입통관증서에관한관세협약 제1조 나, 제4조 제1항 전단, 제5조, 제6조 제1항, "
            "제7조 제1, 2항, 제8조 제1, 2항, 제9조 / 나. \n        국세기본법 제15조"
        ),
        [
            "물품의일시수입을위한일시수입통관증서에관한관세협약 1",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 4 1항",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 5",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 6 1항",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 7 1항",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 7 2항",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 8 1항",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 8 2항",
            "물품의일시수입을위한일시수입통관증서에관한관세협약 9",
            "국세기본법 15 [2]",
        ],
        id="paragraph-list",
    ),
    pytest.param(
        "행정소송법 제2조,         제19조, 도로교통법시행규칙 별표 16",
        ["행정소송법 2", "행정소송법 19", "? 0 !unparseable"],
        id="appendix-without-article",
    ),
    pytest.param(
        (
            "[3] 여신전문금융업법 제24조의2 제1항, 제2항, 구 여신전문금융업법 시행령(2012. 10. 9. 대통령령 "
            "제24136호로 개정되기 전의 것) 제7조의3 제1항 [별표 1의3] 제1호 (가)목, (나)목, (마)목, 제2항"
        ),
        ["여신전문금융업법 24-2 1항 [3]", "여신전문금융업법 24-2 2항 [3]", "구 여신전문금융업법시행령 7-3 1항 [3]"],
        id="appendix-subitems",
    ),
    pytest.param(
        (
            "[1] \n\n        헌법 제29조 제1항 단서\n/ [2] \n\n        헌법 제29조 제1항 본문\n, \n\n        "
            "국가배상법 제2조 제1항 본문\n, \n\n        제2항"
        ),
        ["헌법 29 1항 [1]", "헌법 29 1항 [2]", "국가배상법 2 1항 [2]", "국가배상법 2 2항 [2]"],
        id="qualifiers-dropped",
    ),
    pytest.param(
        "국가배상법 제2조 제1항, 구 사방사업법(2011. 7. 14. 법률 제10844호로 개정되기 전의 것), 제2조 제2호, 제3조",
        ["국가배상법 2 1항", "구 사방사업법 2 2호", "구 사방사업법 3"],
        id="former-law-comma-before-articles",
    ),
    pytest.param(
        (
            "부가가치세법 제16조 제1항 제4호, 제17조 제2항 제1호의2, 구 부가가치세법시행령(1999. 12. 31. 대통령령 "
            "제16661호로 개정되기 전의 것) 제60조 제2항 제2호"
        ),
        ["부가가치세법 16 1항 4호", "부가가치세법 17 2항 1의2호", "구 부가가치세법시행령 60 2항 2호"],
        id="item-branch",
    ),
    pytest.param(
        "[1] 특정범죄가중처벌등에관한법률 제5조의3 제1항, 도로교통법 제50조 제1항",
        ["특정범죄가중처벌등에관한법률 5-3 1항 [1]", "도로교통법 50 1항 [1]"],
        id="no-space-law-name",
    ),
    pytest.param(
        "민법 제186조, 부동산등기법 제26조, 제75조, 부동산등기법시행규칙 제113조, 민사소송법 제226조 「소의 제기」",
        ["민법 186", "부동산등기법 26", "부동산등기법 75", "부동산등기법시행규칙 113", "민사소송법 226"],
        id="quoted-note",
    ),
    pytest.param(
        "[1] 행정소송법 제35조 / [2] 행정소송법 제20조, 제27조[행정소송재판일반], 제35조",
        ["행정소송법 35 [1]", "행정소송법 20 [2]", "행정소송법 27 [2]", "행정소송법 35 [2]"],
        id="bracket-notes",
    ),
    pytest.param(
        (
            "가.소득세법 제5조, 동법시행령 (1988.8.25. 대통령령 제12509호로 개정되기 전후의 것) 제15조 제1항, "
            "동법시행령 부칙 (1988.8.25.) 제3항나. 부동산등기법 제40조 제2항, 민사소송법 제187조, 제261조"
        ),
        [
            "소득세법 5 [1]",
            "소득세법시행령 15 1항 [1]",
            "소득세법시행령 0 3항 !addenda [1]",
            "부동산등기법 40 2항 [2]",
            "민사소송법 187 [2]",
            "민사소송법 261 [2]",
        ],
        id="labels-mid-segment-addenda",
    ),
    pytest.param(
        "［1］ 민법 제750조, 제751조, 형법 제310조 / ［2］ 민법 제750조, 제751조, 헌법 제21조 제4항",
        ["민법 750 [1]", "민법 751 [1]", "형법 310 [1]", "민법 750 [2]", "민법 751 [2]", "헌법 21 4항 [2]"],
        id="fullwidth-groups-constitution",
    ),
    pytest.param(
        (
            "[1] 구 군법무관임용법(2000. 12. 26. 법률 제6291호 군법무관임용 등에 관한 법률로 전문 개정되기 전의 것) "
            "제5조 제3항(현행 군법무관임용 등에 관한 법률 제6조 참조), 국가배상법 제2조 제1항"
        ),
        ["구 군법무관임용법 5 3항 [1]", "국가배상법 2 1항 [1]"],
        id="former-law-renamed-note",
    ),
    pytest.param(
        "소송촉진 등에 관한 특례법 제3조 제1항, 소송촉진 등에 관한 특례법 제3조 제1항 본문의 법정이율에 관한 규정",
        ["소송촉진등에관한특례법 3 1항", "소송촉진등에관한특례법 3 1항"],
        id="prose-after-article",
    ),
    pytest.param(
        "지방세법 제112조 제2항, \n        같은법시행령 제84조의4 제1항",
        ["지방세법 112 2항", "지방세법시행령 84-4 1항"],
        id="same-law-decree-2",
    ),
    pytest.param(
        "[1] 제40조 제1항 제1호, 제42조, 제47조, 제57조 제1항, 제2항, 제81조 제1항, 제3항, 의료법 제33조 제2항",
        [
            "? 40 1항 1호 !unparseable [1]",
            "? 42 !unparseable [1]",
            "? 47 !unparseable [1]",
            "? 57 1항 !unparseable [1]",
            "? 57 2항 !unparseable [1]",
            "? 81 1항 !unparseable [1]",
            "? 81 3항 !unparseable [1]",
            "의료법 33 2항 [1]",
        ],
        id="no-law-before-article",
    ),
    pytest.param(
        "가.\n \n        민법 제186조「명의신탁」 / 나. \n        제557조",
        ["민법 186 [1]", "민법 557 [2]"],
        id="corner-quoted-note-carry",
    ),
]


@pytest.mark.parametrize(("text", "expected"), REAL_CASES)
def test_real_citation_strings(text: str, expected: list[str]) -> None:
    assert [fmt(r) for r in parse_statute_refs(text)] == expected


def test_full_reference_fields_and_raw() -> None:
    refs = parse_statute_refs("구 소득세법(2010. 12. 27. 법률 제10408호로 개정되기 전의 것) 제94조 제1항 제3호, 제2항")
    assert refs == [
        StatuteRef(
            law_name="소득세법",
            article_no=94,
            paragraph=1,
            item="3",
            former=True,
            raw="구 소득세법(2010. 12. 27. 법률 제10408호로 개정되기 전의 것) 제94조 제1항 제3호",
        ),
        StatuteRef(law_name="소득세법", article_no=94, paragraph=2, former=True, raw="제2항"),
    ]


def test_raw_is_a_substring_of_the_input() -> None:
    text = REAL_CASES[4].values[0]
    for ref in parse_statute_refs(text):
        assert ref.raw and ref.raw in text


def test_readme_example_law_name_carries_forward() -> None:
    assert [fmt(r) for r in parse_statute_refs("민법 제168조 제2호, 제174조, 민사소송법 제524조의2")] == [
        "민법 168 2호",
        "민법 174",
        "민사소송법 524-2",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("형법 제3조 ~ 제5조", ["형법 3", "형법 4", "형법 5"]),
        ("형법 제3조부터 제5조까지", ["형법 3", "형법 4", "형법 5"]),
        ("형법 제3조 내지 제5조", ["형법 3", "형법 4", "형법 5"]),
        ("형법 제1조 내지 제100조", ["형법 1", "형법 100"]),  # too wide to expand: the two ends only
        ("민법 제14조의2 내지 제14조의4", ["민법 14-2", "민법 14-3", "민법 14-4"]),
        ("민법 제1조 / 형법 제2조", ["민법 1", "형법 2"]),
        ("「민법」 제750조", ["민법 750"]),
        ("대한민국헌법 제10조, 헌법 제11조", ["대한민국헌법 10", "헌법 11"]),
        ("아동ㆍ청소년의 성보호에 관한 법률 제2조", ["아동·청소년의성보호에관한법률 2"]),
        ("아동・청소년의 성보호에 관한 법률 제2조", ["아동·청소년의성보호에관한법률 2"]),
        (
            "근로기준법 제19조, 같은 법 시행령 제5조, 같은 법 제6조",
            ["근로기준법 19", "근로기준법시행령 5", "근로기준법 6"],
        ),
        ("같은 법 제6조", ["? 6 !unparseable"]),
        ("", []),
        ("   ", []),
        ("[1]", []),
        ("가. ", []),
    ],
)
def test_synthetic_variants(text: str, expected: list[str]) -> None:
    assert [fmt(r) for r in parse_statute_refs(text)] == expected


def test_issue_constants() -> None:
    refs = parse_statute_refs("소송촉진등에관한특례법 부칙 제2항, 건설부고시 제897호")
    assert [r.issue for r in refs] == [ISSUE_ADDENDA, ISSUE_UNPARSEABLE]
    assert refs[0].group is None


def test_groups_and_group_property() -> None:
    refs = parse_statute_refs("[1][2] 민법 제1조 / [3] 민법 제2조")
    assert [(r.groups, r.group) for r in refs] == [((1, 2), 1), ((3,), 3)]


def test_letter_item_marker_inside_a_bracket_group_keeps_the_group() -> None:
    # 95므694: with [1]/[2] numbering, "가." after 제1항 is a 목 label, not a new group.
    refs = parse_statute_refs(
        "[1] 민법 제812조, 제813조 / [2] 민사소송법 제228조, 가사소송법 제2조 제1항 가. (2) 제1호"
    )
    by_law = {(r.law_name, r.article_no): r.groups for r in refs if r.issue is None}
    assert by_law[("민법", 812)] == (1,) and by_law[("민법", 813)] == (1,)
    assert by_law[("민사소송법", 228)] == (2,) and by_law[("가사소송법", 2)] == (2,)
    # Without bracket numbering, letter labels still number the groups.
    lettered = parse_statute_refs("가. 민법 제750조 나. 민법 제751조")
    assert [(r.article_no, r.groups) for r in lettered] == [(750, (1,)), (751, (2,))]
