"""Statute-reference resolution and the stats aggregator (against the real sample's law index)."""

from __future__ import annotations

from lexdpr_pipeline.citations import (
    ADDENDA,
    ARTICLE_NOT_IN_LAW,
    LAW_NOT_IN_CORPUS,
    RESOLVED,
    UNPARSEABLE,
    CitationStats,
    LawNameIndex,
    parse_statute_refs,
    resolve_statute_refs,
)


def _resolve(text: str, index: LawNameIndex) -> list[tuple[str | None, str, bool]]:
    return [(r.article_id, r.status, r.former) for r in resolve_statute_refs(parse_statute_refs(text), index)]


def test_resolution_statuses(law_index: LawNameIndex) -> None:
    text = (
        "민법 제168조 제2호, 제174조, 민사소송법 제524조의2, 특정범죄가중처벌등에관한법률 제5조의3 제1항, "
        "헌법 제23조, 민법 제9999조, 소송촉진등에관한특례법 부칙 제2항, 건설부고시 제897호"
    )
    assert _resolve(text, law_index) == [
        ("law:001706:168", RESOLVED, False),
        ("law:001706:174", RESOLVED, False),
        (None, ARTICLE_NOT_IN_LAW, False),  # 제524조의2 is gone from the current 민사소송법
        ("law:001676:5-3", RESOLVED, False),
        (None, LAW_NOT_IN_CORPUS, False),  # 대한민국헌법 is not in the 200-law sample
        (None, ARTICLE_NOT_IN_LAW, False),
        (None, ADDENDA, False),
        (None, UNPARSEABLE, False),
    ]


def test_former_versions_resolve_to_the_current_article(law_index: LawNameIndex) -> None:
    text = (
        "구 소득세법(2010. 12. 27. 법률 제10408호로 개정되기 전의 것) 제94조, 구하천법 제12조, "
        "소득세법(구) 제32조, 공직선거및선거부정방지법 제250조"
    )
    assert _resolve(text, law_index) == [
        ("law:001565:94", RESOLVED, True),
        ("law:001836:12", RESOLVED, True),
        ("law:001565:32", RESOLVED, True),
        ("law:001725:250", RESOLVED, True),
    ]


def test_spelling_variants_resolve_alike(law_index: LawNameIndex) -> None:
    ids = {
        r.article_id
        for text in (
            "체육시설의 설치ㆍ이용에 관한 법률 제3조",
            "체육시설의 설치·이용에 관한 법률 제3조",
            "체육시설의설치·이용에관한법률 제3조",
        )
        for r in resolve_statute_refs(parse_statute_refs(text), law_index)
    }
    assert ids == {"law:000820:3"}


def test_citation_stats() -> None:
    stats = CitationStats()
    assert stats.as_dict() == {
        "total": 0,
        "resolved": 0,
        "resolution_rate": 0.0,
        "resolved_former": 0,
        "by_status": {},
    }
    index = LawNameIndex.from_articles([])
    stats.add(resolve_statute_refs(parse_statute_refs("민법 제1조, 부칙 제2조, 제3조"), index))
    assert stats.total == 3 and stats.resolved == 0
    assert stats.as_dict()["by_status"] == {ADDENDA: 2, LAW_NOT_IN_CORPUS: 1}
    assert stats.rate(ADDENDA) == 2 / 3
