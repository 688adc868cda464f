"""Shared pieces of the API tests over a fake engine: settings, a loader, a clock, the error-shape check."""

from __future__ import annotations

from pathlib import Path

from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline_tests.api.fakes import FakeEngine

API_KEY = "s3cret-key-for-tests"


def make_settings(tmp_path: Path, **api: object) -> Settings:
    base = {"rate_limit_per_minute": None, "reload_check_s": 0, "max_texts": 4, "max_chars": 50, "max_top_k": 20}
    return Settings.model_validate({"paths": {"data_dir": str(tmp_path / "data")}, "api": {**base, **api}})


class Loader:
    """Returns the engines it is given, in turn (the last one again when they run out); raises when told to."""

    def __init__(self, *engines: FakeEngine) -> None:
        self.engines = list(engines)
        self.calls = 0
        self.error: Exception | None = None

    def __call__(self) -> FakeEngine:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.engines.pop(0) if len(self.engines) > 1 else self.engines[0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def error_code(response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return body["error"]["code"]
