"""The ``make_client`` fixture: an app over a fake engine (lifespan run), closed after the test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lexdpr_pipeline.api.app import create_app
from lexdpr_pipeline_tests.api.fakes import FakeEngine
from lexdpr_pipeline_tests.api.helpers import Loader, make_settings


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    opened: list[TestClient] = []

    def make(loader: Callable | None = None, clock: Callable[[], float] = time.monotonic, **api: object) -> TestClient:
        app = create_app(make_settings(tmp_path, **api), loader or Loader(FakeEngine()), clock=clock)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()  # runs the lifespan: the engine is loaded here
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
