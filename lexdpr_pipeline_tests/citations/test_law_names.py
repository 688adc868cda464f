"""Law-name normalization and the name → 법령ID index."""

from __future__ import annotations

import datetime as dt

import pytest

from lexdpr_pipeline.citations import LawNameIndex, normalize_law_name
from lexdpr_pipeline.sources.ids import statute_article_id
from lexdpr_pipeline.sources.records import StatuteArticle


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("특정범죄 가중처벌 등에 관한 법률", "특정범죄가중처벌등에관한법률"),
        ("특정범죄가중처벌등에관한법률", "특정범죄가중처벌등에관한법률"),
        ("초ㆍ중등교육법", "초·중등교육법"),  # U+318D
        ("초·중등교육법", "초·중등교육법"),  # U+00B7
        ("초・중등교육법", "초·중등교육법"),  # U+30FB
        ("초‧중등교육법", "초·중등교육법"),  # U+2027
        ("「민법」", "민법"),
        (" 근로기준법\n 시행령 ", "근로기준법시행령"),
        ("", ""),
    ],
)
def test_normalize_law_name(name: str, expected: str) -> None:
    assert normalize_law_name(name) == expected


def _article(law_id: str, name: str, n: int, m: int = 0, promulgated: dt.date | None = None) -> StatuteArticle:
    return StatuteArticle(
        article_id=statute_article_id(law_id, n, m),
        law_id=law_id,
        law_mst="1",
        law_name=name,
        law_kind="법률",
        ministry="",
        promulgation_date=promulgated,
        promulgation_no="",
        effective_date=None,
        status="시행",
        article_no=n,
        article_branch=m,
        article_key=f"{n}-{m}" if m else str(n),
        article_title="",
        headings=[],
        text="",
        is_deleted=False,
        source="mirror",
        source_ref="",
    )


def test_index_spellings_aliases_and_clashes() -> None:
    index = LawNameIndex.from_articles(
        [
            _article("001676", "특정범죄 가중처벌 등에 관한 법률", 5, 3),
            _article("000001", "대한민국헌법", 10),
            _article("001725", "공직선거법", 250),
            # two laws of one name: the most recently promulgated wins, whatever the order
            _article("009999", "민사소송법", 1, promulgated=dt.date(2026, 3, 17)),
            _article("000100", "민사소송법", 1, promulgated=dt.date(1945, 1, 1)),
        ]
    )
    assert len(index) == 3 + 1
    law = index.lookup("특정범죄가중처벌등에관한법률")
    assert law is not None and law.law_id == "001676" and law.article_keys == frozenset({"5-3"})
    assert index.find("헌법") == (index.lookup("대한민국헌법"), False)
    assert index.find("공직선거및선거부정방지법") == (index.lookup("공직선거법"), True)  # renamed: former version
    assert index.find("구민사소송법") == (index.lookup("민사소송법"), True)  # "구" written without the space
    assert index.lookup("민사소송법").law_id == "009999"  # type: ignore[union-attr]
    assert index.find("상법") == (None, False)
    assert "민사소송법" in index and "상법" not in index


def test_index_from_real_corpus(law_index: LawNameIndex) -> None:
    assert len(law_index) == 200
    civil = law_index.lookup("민법")
    assert civil is not None and civil.law_id == "001706" and "750" in civil.article_keys
    assert law_index.lookup("특정범죄가중처벌등에관한법률") is law_index.lookup("특정범죄 가중처벌 등에 관한 법률")
    assert law_index.lookup("체육시설의 설치·이용에 관한 법률") is not None  # the corpus spells it with ㆍ
    assert law_index.lookup("기간제 및 단시간근로자 보호 등에 관한 법률 시행령") is None  # not in the sample
    assert law_index.lookup("근로기준법 시행령") is not law_index.lookup("근로기준법")
