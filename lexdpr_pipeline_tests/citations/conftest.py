"""Fixtures for the citation tests: the ../shared sample corpus, read once per session, and the indexes built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexdpr_pipeline.citations import CaseNumberIndex, LawNameIndex
from lexdpr_pipeline.sources.mirror import read_precedents, read_statutes
from lexdpr_pipeline.sources.records import Precedent, StatuteArticle
from lexdpr_pipeline_tests.conftest import CORPUS


@pytest.fixture(scope="session")
def corpus(shared_dir: Path) -> Path:
    if not (CORPUS / "legalize-kr").is_dir() or not (CORPUS / "precedent-kr").is_dir():
        pytest.fail(f"the mirror sample is missing under {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def statute_articles(corpus: Path) -> list[StatuteArticle]:
    return read_statutes(corpus, progress=False).records


@pytest.fixture(scope="session")
def precedents(corpus: Path) -> list[Precedent]:
    return read_precedents(corpus, progress=False).records


@pytest.fixture(scope="session")
def law_index(statute_articles: list[StatuteArticle]) -> LawNameIndex:
    return LawNameIndex.from_articles(statute_articles)


@pytest.fixture(scope="session")
def case_index(precedents: list[Precedent]) -> CaseNumberIndex:
    return CaseNumberIndex.from_precedents(precedents)
