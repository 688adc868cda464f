"""Case-citation parsing and case-number indexing, table-driven on real 참조판례 strings from ../shared/corpus."""

from __future__ import annotations

import datetime as dt

import pytest

from lexdpr_pipeline.citations import (
    CaseNumberIndex,
    CaseRef,
    normalize_case_no,
    parse_case_refs,
    resolve_case_refs,
    split_case_numbers,
)
from lexdpr_pipeline.sources.records import Precedent


def fmt(ref: CaseRef) -> str:
    """``court date case_no kind[ 전원][ [groups]]`` with ``?`` for what is missing."""
    s = f"{ref.court or '?'} {ref.date.isoformat() if ref.date else '?'} {ref.case_no or '?'} {ref.kind or '?'}"
    if ref.en_banc:
        s += " 전원"
    if ref.groups:
        s += " [" + ",".join(map(str, ref.groups)) + "]"
    return s


# Copied from 참조판례 fields of the sample corpus (some are a leading part of one).
REAL_CASES = [
    pytest.param(
        "대법원 1997. 2. 25. 선고 96다43607 판결(공1997상, 878)",
        ["대법원 1997-02-25 96다43607 판결"],
        id="basic",
    ),
    pytest.param(
        "대법원 2002. 9. 27. 선고 2002다22212 판결",
        ["대법원 2002-09-27 2002다22212 판결"],
        id="plain",
    ),
    pytest.param(
        "대법원 1999. 4. 15. 선고 96다24897 전원합의체 판결(공1999상, 884)",
        ["대법원 1999-04-15 96다24897 판결 전원"],
        id="en-banc",
    ),
    pytest.param(
        (
            "[1] 대법원 1973. 11. 6.자 73모70 결정(공1973, 7561), 대법원 2005. 9. 9. 선고 2005도3782 판결 / [2] "
            "대법원 1981. 11. 24. 선고 81도2422 판결(공1982, 89)"
        ),
        [
            "대법원 1973-11-06 73모70 결정 [1]",
            "대법원 2005-09-09 2005도3782 판결 [1]",
            "대법원 1981-11-24 81도2422 판결 [2]",
        ],
        id="decision-ja-and-groups",
    ),
    pytest.param(
        (
            "[1][2] 대법원 2017. 12. 5. 선고 2015다1277 판결(공2018상, 36) / [1] 대법원 2011. 6. 23. 선고 "
            "2007다63089, 63096 전원합의체 판결(공2011하, 1440), 대법원 2014. 1. 16. 선고 2012다95301 판결, 대법원 "
            "2015. 11. 26. 선고 2015다19063 판결 / [2] 대법원 2015. 7. 9. 선고 2014다85391 판결(공2015하, 1132), "
            "대법원 2016. 2. 18. 선고 2015다23246 판결 / [3] 대법원 2014. 3. 13. 선고 2013다213823, 213830 판결"
        ),
        [
            "대법원 2017-12-05 2015다1277 판결 [1,2]",
            "대법원 2011-06-23 2007다63089 판결 전원 [1]",
            "대법원 2011-06-23 2007다63096 판결 전원 [1]",
            "대법원 2014-01-16 2012다95301 판결 [1]",
            "대법원 2015-11-26 2015다19063 판결 [1]",
            "대법원 2015-07-09 2014다85391 판결 [2]",
            "대법원 2016-02-18 2015다23246 판결 [2]",
            "대법원 2014-03-13 2013다213823 판결 [3]",
            "대법원 2014-03-13 2013다213830 판결 [3]",
        ],
        id="multi-groups-bare-numbers",
    ),
    pytest.param(
        (
            "가. 대법원 1991. 7. 23. 선고 90다10803 판결(공1991,2216), 1991. 8. 13. 선고 91다7798 판결(공1991,2338), "
            "1992. 9. 25. 선고 91다45929 판결(공1992,2987)"
        ),
        [
            "대법원 1991-07-23 90다10803 판결 [1]",
            "대법원 1991-08-13 91다7798 판결 [1]",
            "대법원 1992-09-25 91다45929 판결 [1]",
        ],
        id="court-carries-forward",
    ),
    pytest.param(
        (
            "[ 1]         헌법재판소 1995. 11. 30. 선고 94헌바40, 95헌바13 결정(관보 제13193호 제46면) /[3]         "
            "대법원 1995. 6. 13. 선고 95누580 판결(공1995하, 2425)"
        ),
        [
            "헌법재판소 1995-11-30 94헌바40 결정 [1]",
            "헌법재판소 1995-11-30 95헌바13 결정 [1]",
            "대법원 1995-06-13 95누580 판결 [3]",
        ],
        id="constitutional-court-spaced-marker",
    ),
    pytest.param(
        "대법원 1963.8.31고지, 63그28 결정, ",
        ["대법원 1963-08-31 63그28 결정"],
        id="gozi-comma",
    ),
    pytest.param(
        "대법원 1982.5.11 선고, 81누319 판결",
        ["대법원 1982-05-11 81누319 판결"],
        id="seongo-comma",
    ),
    pytest.param(
        (
            "1970.3.24. 선고 70도156 판결(판례카아드 5985호 판결요지집 형법 제332조(5)1345면),         1974.3.26. "
            "선고 74도400 판결(판례카아드 10708호, 대법원판결집 22①형40 판결요지집 형사소송법 제326조(10)1465면, "
            "법원공보 486호7785면)"
        ),
        ["? 1970-03-24 70도156 판결", "? 1974-03-26 74도400 판결"],
        id="no-court-nested-notes",
    ),
    pytest.param(
        "대법원 1984.12.26. 선고 84다카1763 판결(공1985,248), 1987.4.14. 선고 86다카11판결(공1987,783)",
        ["대법원 1984-12-26 84다카1763 판결", "대법원 1987-04-14 86다카11 판결"],
        id="kind-glued",
    ),
    pytest.param(
        "［1］ 대법원 2001. 12. 11. 선고 2001다33604 판결(공2002상, 256)",
        ["대법원 2001-12-11 2001다33604 판결 [1]"],
        id="fullwidth-marker",
    ),
    pytest.param(
        (
            "대법원 2019. 7. 4. 선고 2014다41681 판결, 대법원 2020. 8. 20. 선고 2019다14110, 14127, 14134, 14141 "
            "판결(공2020하, 1776)"
        ),
        [
            "대법원 2019-07-04 2014다41681 판결",
            "대법원 2020-08-20 2019다14110 판결",
            "대법원 2020-08-20 2019다14127 판결",
            "대법원 2020-08-20 2019다14134 판결",
            "대법원 2020-08-20 2019다14141 판결",
        ],
        id="four-numbers",
    ),
    pytest.param(
        "대법원 1955.9.8. 선고 민상 제8호 판결",
        ["대법원 1955-09-08 ? 판결"],
        id="number-unreadable",
    ),
    pytest.param(
        (
            "대법원 2008. 10. 23. 선고 2008도3423 판결(공2008하, 1637), 대법원 2016. 12. 29. 선고 2014두39357 판결, "
            "헌법재판소 2008. 4. 24. 선고 2005헌마373 전원재판부 결정(헌공139, 602)"
        ),
        [
            "대법원 2008-10-23 2008도3423 판결",
            "대법원 2016-12-29 2014두39357 판결",
            "헌법재판소 2008-04-24 2005헌마373 결정 전원",
        ],
        id="mixed-courts",
    ),
    pytest.param(
        (
            "대법원 1967. 9. 5. 선고 67도959 판결, 대법원 1981. 10. 27. 선고 81도1370 판결(공1981, 14516), 대법원 "
            "1981. 10. 27. 선고 81도1370 판결(공1981, 14516)"
        ),
        ["대법원 1967-09-05 67도959 판결", "대법원 1981-10-27 81도1370 판결"],
        id="duplicate-dropped",
    ),
    pytest.param(
        "대법원 1983.7.12. 선고 82다카1792·1793,82다708·709 판결",
        [
            "대법원 1983-07-12 82다카1792 판결",
            "대법원 1983-07-12 82다카1793 판결",
            "대법원 1983-07-12 82다708 판결",
            "대법원 1983-07-12 82다709 판결",
        ],
        id="middle-dot-numbers",
    ),
    pytest.param(
        "대법원 1962.1.29 결정 1961행항13",
        ["대법원 1962-01-29 1961행항13 결정"],
        id="kind-before-number",
    ),
]


@pytest.mark.parametrize(("text", "expected"), REAL_CASES)
def test_real_case_citations(text: str, expected: list[str]) -> None:
    assert [fmt(r) for r in parse_case_refs(text)] == expected


def test_full_fields_and_raw() -> None:
    assert parse_case_refs("[1] 대법원 2011. 6. 23. 선고 2007다63089, 63096 전원합의체 판결(공2011하, 1440)") == [
        CaseRef(
            "대법원",
            dt.date(2011, 6, 23),
            n,
            "판결",
            True,
            (1,),
            "대법원 2011. 6. 23. 선고 2007다63089, 63096 전원합의체 판결",
        )
        for n in ("2007다63089", "2007다63096")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("대법원 1992. 2. 11. 선고 91다41118 판결(공1992, 1046)", ["대법원 1992-02-11 91다41118 판결"]),
        (
            "대법원 1992. 2. 11. 선고 91다41118, 91다41125 판결",
            ["대법원 1992-02-11 91다41118 판결", "대법원 1992-02-11 91다41125 판결"],
        ),
        ("대법원 1995. 5. 23. 선고 94다23500 전원합의체 판결", ["대법원 1995-05-23 94다23500 판결 전원"]),
        ("대법원 2012. 5. 24.자 2012마121 결정", ["대법원 2012-05-24 2012마121 결정"]),
        ("서울고법 1990. 1. 1. 선고 89나1234 판결", ["서울고법 1990-01-01 89나1234 판결"]),
        ("대법원 1999. 2. 30. 선고 98다1 판결", ["대법원 ? 98다1 판결"]),  # impossible date
        ("91 다 41118", ["? ? 91다41118 ?"]),
        ("", []),
        ("[1]", []),
        ("공1992, 1046", []),
    ],
)
def test_synthetic_variants(text: str, expected: list[str]) -> None:
    assert [fmt(r) for r in parse_case_refs(text)] == expected


@pytest.mark.parametrize(
    ("case_no", "expected"),
    [
        ("2000므1493", ["2000므1493"]),
        ("2000므1257(본소), 1264(반소)", ["2000므1257", "2000므1264"]),
        ("92드74249(본소),93드41543(반소)", ["92드74249", "93드41543"]),
        ("2013다14972,14989,14996,15005", ["2013다14972", "2013다14989", "2013다14996", "2013다15005"]),
        ("2019다298222, 2019다298239", ["2019다298222", "2019다298239"]),
        ("2000도1234, 2000전도56", ["2000도1234", "2000전도56"]),
        ("4285민상169 내지 177", ["4285민상169", "4285민상177"]),
        ("89다카25912", ["89다카25912"]),
        ("", []),
    ],
)
def test_split_case_numbers(case_no: str, expected: list[str]) -> None:
    assert split_case_numbers(case_no) == expected


def test_normalize_case_no() -> None:
    assert normalize_case_no(" 91 다\t41118 ") == "91다41118"


def _precedent(serial: str, case_no: str, court: str = "대법원", date: dt.date | None = None) -> Precedent:
    return Precedent(
        prec_id=f"prec:{serial}",
        serial_no=serial,
        case_no=case_no,
        case_name="",
        court=court,
        court_level="대법원" if court == "대법원" else "하급심",
        case_type="민사",
        decision_date=date,
        judgment_type="",
        holdings="",
        summary="",
        ref_articles="",
        ref_cases="",
        body="",
        source="mirror",
        source_ref="",
    )


def test_case_index_and_resolution() -> None:
    index = CaseNumberIndex.from_precedents(
        [
            _precedent("1", "2000므1257(본소), 1264(반소)", date=dt.date(2001, 5, 24)),
            _precedent("2", "2019가합1", court="서울중앙지방법원", date=dt.date(2019, 5, 1)),
            _precedent("3", "2019가합1", court="부산지방법원", date=dt.date(2019, 8, 1)),
        ]
    )
    assert len(index) == 3
    refs = parse_case_refs(
        "대법원 2001. 5. 24. 선고 2000므1264 판결, 부산지방법원 2019. 8. 1. 선고 2019가합1 판결, "
        "대법원 1990. 1. 1. 선고 89다1 판결, 대법원 1955.9.8. 선고 민상 제8호 판결"
    )
    got = [(r.ref.case_no, r.prec_id, r.status) for r in resolve_case_refs(refs, index)]
    assert got == [
        ("2000므1264", "prec:1", "resolved"),
        ("2019가합1", "prec:3", "resolved"),  # the date and court pick the right one of two
        ("89다1", None, "not_in_corpus"),
        ("", None, "unparseable"),
    ]
