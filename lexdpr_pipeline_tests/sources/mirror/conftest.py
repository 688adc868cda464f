"""Fixtures for the mirror-reader tests: the ../shared sample mirrors, each read once per session."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from lexdpr_pipeline.sources.mirror import read_precedents, read_statutes
from lexdpr_pipeline.sources.records import Precedent, ReadResult, StatuteArticle

T = TypeVar("T")


@dataclass(frozen=True)
class TimedRead(Generic[T]):
    result: ReadResult[T]
    seconds: float


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    """``../shared/corpus``: the legalize-kr (200 statute files) and precedent-kr (8,000 decisions) samples."""
    corpus = shared_dir / "corpus"
    if not (corpus / "legalize-kr" / "kr").is_dir() or not (corpus / "precedent-kr").is_dir():
        pytest.fail(f"the mirror sample is missing under {corpus}")
    return corpus


@pytest.fixture(scope="session")
def statute_mirror(corpus_dir: Path) -> Path:
    return corpus_dir / "legalize-kr"


@pytest.fixture(scope="session")
def precedent_mirror(corpus_dir: Path) -> Path:
    return corpus_dir / "precedent-kr"


@pytest.fixture(scope="session")
def statutes_read(statute_mirror: Path) -> TimedRead[StatuteArticle]:
    started = time.perf_counter()
    result = read_statutes(statute_mirror, progress=False)
    return TimedRead(result, time.perf_counter() - started)


@pytest.fixture(scope="session")
def precedents_read(precedent_mirror: Path) -> TimedRead[Precedent]:
    started = time.perf_counter()
    result = read_precedents(precedent_mirror, progress=False)
    return TimedRead(result, time.perf_counter() - started)
