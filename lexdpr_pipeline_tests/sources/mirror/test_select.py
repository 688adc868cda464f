"""Choosing mirror files by name (``ingest.mirror_include``): laws, case numbers, paths, globs."""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path

import pytest

from lexdpr_pipeline.sources.mirror import read_precedents, read_statutes
from lexdpr_pipeline.sources.mirror.select import path_matches, unmatched_patterns


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("kr/민법/법률.md", "민법", True),  # a law: its folder
        ("kr/민법시행법/법률.md", "민법", False),  # whole names only
        ("kr/가등기담보등에관한법률/법률.md", "가등기담보 등에 관한 법률", True),  # spaces as the law is spelt
        ("kr/건축법/시행령.md", "kr/건축법/시행령", True),  # a path, with or without .md
        ("kr/건축법/시행령.md", "kr/건축법", True),  # a folder prefix
        ("kr/건축법/법률.md", "kr/건축법/시행령.md", False),
        ("kr/건축법/시행령.md", "kr/*/시행령.md", True),  # a glob over the relative path
        ("kr/건축법/법률.md", "kr/*/시행령.md", False),
        ("민사/대법원/2021다210195.md", "2021다210195", True),  # a case number: the file name
        ("민사/대법원/2021다2101950.md", "2021다210195", False),
        ("민사/대법원/2021다210195.md", "민사/대법원", True),
        ("민사/하급심/2021가합1.md", "민사/대법원", False),
        ("민사/대법원/2021다210195.md", "민사/대법원/2021다*", True),
        (unicodedata.normalize("NFD", "kr/민법/법률.md"), "민법", True),  # NFD names (macOS checkouts)
        ("kr/민법/법률.md", "", False),
    ],
)
def test_path_matches(path: str, pattern: str, expected: bool) -> None:
    assert path_matches(path, pattern) is expected


def test_unmatched_patterns_names_the_typos() -> None:
    paths = ["kr/민법/법률.md", "민사/대법원/2021다210195.md"]
    assert unmatched_patterns(paths, ["민법", "2021다210195", "밈법", "kr/*/없음.md"]) == ["밈법", "kr/*/없음.md"]


def test_read_statutes_keeps_the_included_laws_then_max_files(statute_mirror: Path) -> None:
    include = ["민법", "가등기담보 등에 관한 법률", "2021다210195"]  # a case number matches no statute: ignored
    result = read_statutes(statute_mirror, include=include, progress=False)
    assert {a.law_name for a in result.records} == {"민법", "가등기담보 등에 관한 법률"}
    assert any(a.article_key == "750" and a.law_name == "민법" for a in result.records)
    assert not result.skipped
    first = read_statutes(statute_mirror, include=include, max_files=1, progress=False)
    assert {a.law_name for a in first.records} == {"가등기담보 등에 관한 법률"}  # sorted paths: 가… before 민법


def test_read_precedents_keeps_the_included_decisions(precedent_mirror: Path) -> None:
    include = ["2021다210195", "2013므2441", "민법"]
    result = read_precedents(precedent_mirror, include=include, progress=False)
    assert sorted(p.case_no for p in result.records) == ["2013므2441", "2021다210195"]
    assert {p.source_ref for p in result.records} == {"가사/대법원/2013므2441.md", "민사/대법원/2021다210195.md"}


def test_an_include_that_selects_nothing_is_a_warning(precedent_mirror: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = read_precedents(precedent_mirror, include=["2099다1"], progress=False)
    assert result.records == [] and not result.skipped
    assert "selects no file" in caplog.text and "2099다1" in caplog.text
