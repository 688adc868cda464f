"""Fixtures for the law.go.kr source tests: the fake DRF server of :mod:`lexdpr_pipeline_tests.fake_lawgo` over
``../shared/lawgo``.

``drf`` is a :class:`~lexdpr_pipeline_tests.fake_lawgo.FakeLawGo` served on 127.0.0.1: tests script faults per request
(``drf.faults[(target, key)] = ["500", "ok"]``, ``drf.always[…]``, ``drf.fault_at[n]``) and change what is listed.

Bodies served: the 64 *recorded* law XML bodies; the 6 *reconstructed* precedent bodies (rebuilt from mirror
records in the documented PrecService shape, not recorded); the hand-built admin-rule fixtures of
``fixtures/admrul`` (no real admin-rule body exists; see ``fixtures/README.md``); synthetic precedents on demand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lexdpr_pipeline.sources.lawgo.client import LawGoClient
from lexdpr_pipeline_tests.fake_lawgo import (
    ADMRUL_FIXTURES,
    AUTH_FAILURE,
    DEFAULT_LAWS,
    FAKE_OC,
    MAINTENANCE_PAGE,
    DrfCorpus,
    FakeLawGo,
    serve,
)

FIXTURES = Path(__file__).parent / "fixtures"
FakeDrf = FakeLawGo  # the name the tests use

__all__ = [
    "ADMRUL_FIXTURES",
    "AUTH_FAILURE",
    "DEFAULT_LAWS",
    "FAKE_OC",
    "FIXTURES",
    "MAINTENANCE_PAGE",
    "DrfCorpus",
    "FakeDrf",
    "SleepRecorder",
]


@pytest.fixture(scope="session")
def lawgo_dir(shared_dir: Path) -> Path:
    return shared_dir / "lawgo"


@pytest.fixture(scope="session")
def drf_corpus(lawgo_dir: Path) -> DrfCorpus:
    return DrfCorpus.load(lawgo_dir)


@pytest.fixture
def drf(drf_corpus: DrfCorpus) -> Iterator[FakeDrf]:
    """A fresh fake server (its own copy of the corpus, no faults) for each test."""
    with serve(FakeLawGo(drf_corpus)) as fake:
        yield fake


@dataclass
class SleepRecorder:
    """A no-op ``sleep`` that remembers what it was asked to wait."""

    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(drf: FakeDrf, sleeps: SleepRecorder) -> Callable[..., LawGoClient]:
    """A client on the fake server with fast, recorded backoff; keyword arguments override the defaults."""
    clients: list[LawGoClient] = []

    def make(**overrides: Any) -> LawGoClient:
        options: dict[str, Any] = {
            "oc": FAKE_OC,
            "base_url": drf.base_url,
            "timeout": 5.0,
            "max_retries": 3,
            "backoff_base_s": 0.5,
            "backoff_max_s": 4.0,
            "rate_limit_per_s": 0.0,
            "sleep": sleeps,
        }
        options.update(overrides)
        client = LawGoClient(**options)
        clients.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in clients:
        client.close()


@pytest.fixture
def no_lexdpr_handlers() -> Iterator[None]:
    """build_definitions() attaches a StreamHandler to pytest's captured stderr; drop it after the test (a later
    test's log line would otherwise hit a closed file)."""
    yield
    logger = logging.getLogger("lexdpr_pipeline")
    for handler in [h for h in logger.handlers if getattr(h, "_lexdpr_handler", False)]:
        logger.removeHandler(handler)
        handler.close()
