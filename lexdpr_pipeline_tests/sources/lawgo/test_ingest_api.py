"""``ingest_records`` with ``ingest.source=api`` against the fake law.go.kr server: the client comes from the caller's
factory (with the run's ``lawgo`` section), the crawl's numbers and warnings, and scrubbed skips."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lexdpr_pipeline.settings import IngestSettings, LawGoSettings
from lexdpr_pipeline.sources.ingest import ingest_records
from lexdpr_pipeline.sources.lawgo.client import LawGoClient
from lexdpr_pipeline_tests.sources.lawgo.conftest import FAKE_OC, FakeDrf


def test_an_api_ingest_crawls_with_the_factory_client(
    drf: FakeDrf, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drf.always[("prec", "80866")] = "truncated"
    lawgo = LawGoSettings(base_url=drf.base_url, rate_limit_per_s=0, detail_parse_retries=1, backoff_base_s=0.01)
    asked: list[LawGoSettings] = []

    def factory(cfg: LawGoSettings) -> LawGoClient:
        asked.append(cfg)
        return LawGoClient.from_settings(cfg, oc=FAKE_OC)

    with caplog.at_level(logging.INFO, logger="lexdpr_pipeline.sources.ingest"):
        result = ingest_records(
            "prec",
            IngestSettings(source="api"),
            lawgo,
            client_factory=factory,
            raw_dir=tmp_path / "raw",
            mirror_dir=tmp_path / "no-mirror",  # not read for source=api
            progress=False,
        )
    assert asked == [lawgo]  # the run's lawgo section reached the client
    assert result.source == "api" and result.mirror_root is None and result.crawl is not None
    assert result.frame.height == 5 and set(result.frame["source"]) == {"api"}
    assert result.crawl.missing == ["80866"] and result.crawl.wanted == 6 and result.crawl.refetched == 1
    assert (tmp_path / "raw" / "prec" / "quarantine").is_dir()
    assert [s.ref for s in result.skipped if "80866" in s.ref] and FAKE_OC not in repr(result.skipped)
    assert "prec: listed 6, " in caplog.text and "quarantined 1" in caplog.text
    assert "1 of 6 documents still missing after 1 re-fetches each" in caplog.text and "80866" in caplog.text
