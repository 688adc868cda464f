"""Issue 11 items 3, 4 and 6 against the fake law.go.kr server: listing pages that do not parse, truncated
documents re-fetched within the run (and the completeness check), and the overlap of incremental windows."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest

from lexdpr_pipeline.orchestration import failure_reason
from lexdpr_pipeline.settings import LawGoSettings, load_settings
from lexdpr_pipeline.sources.lawgo import crawler as crawler_module
from lexdpr_pipeline.sources.lawgo.client import LawGoClient
from lexdpr_pipeline.sources.lawgo.crawler import crawl
from lexdpr_pipeline.sources.lawgo.errors import LawGoHTTPError, LawGoMalformedResponseError
from lexdpr_pipeline.sources.lawgo.parsers import parse_prec_body
from lexdpr_pipeline.storage import sha256_bytes
from lexdpr_pipeline_tests.conftest import CORPUS
from lexdpr_pipeline_tests.sources.lawgo.conftest import FAKE_OC, FakeDrf, SleepRecorder
from lexdpr_pipeline_tests.sources.lawgo.dagster_run import API, run_ingest

MakeClient = Callable[..., LawGoClient]


def _quarantine(root: Path) -> list[str]:
    folder = root / "prec" / "quarantine"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- item 3: listing pages ----------------------------------------------------------------------------------------


def test_a_listing_page_that_does_not_parse_is_fetched_again(
    drf: FakeDrf, make_client: MakeClient, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    drf.faults[("prec", "search")] = ["truncated", "truncated-utf8", "garbage"]  # then fine
    result = crawl(make_client(max_retries=3), "prec", tmp_path, progress=False)
    assert len(result.records) == 6 and result.missing == [] and len(drf.searches()) == 4
    assert len(sleeps.calls) == 3  # the client's backoff between the attempts
    assert _quarantine(tmp_path) == []


@pytest.mark.parametrize(
    ("fault", "reason"), [("truncated", "XML not well-formed"), ("truncated-utf8", "not valid UTF-8")]
)
def test_a_listing_page_that_never_parses_is_quarantined_and_stops_the_crawl(
    drf: FakeDrf,
    make_client: MakeClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    reason: str,
) -> None:
    monkeypatch.setattr(crawler_module, "PAGE_SIZE", 2)
    drf.always[("prec", "search:2")] = fault
    with pytest.raises(LawGoMalformedResponseError) as info:
        crawl(make_client(max_retries=2), "prec", tmp_path, progress=False)
    kept = tmp_path / "prec" / "quarantine" / "listing-page-2.xml"
    message = str(info.value)
    assert info.value.quarantined == str(kept) and str(kept) in message and "kept in quarantine" in message
    assert "listing page 2 still does not parse after 3 attempts" in message and reason in message
    assert [s["page"] for s in drf.searches()] == ["1", "2", "2", "2"]
    assert _quarantine(tmp_path) == ["listing-page-2.reason.json", "listing-page-2.xml"]
    body = kept.read_bytes()
    assert b"<PrecSearch>" in body and FAKE_OC.encode() not in body  # what the server sent, key removed
    info_json = json.loads((kept.parent / "listing-page-2.reason.json").read_text(encoding="utf-8"))
    assert info_json["attempts"] == 3 and reason in info_json["reason"] and info_json["sha256"] == sha256_bytes(body)
    assert info_json["url"].endswith("page=2&display=2&sort=ddes") and "OC" not in info_json["url"]
    assert not (tmp_path / "prec" / "state.json").exists()  # the crawl did not complete

    del drf.always[("prec", "search:2")]  # the server is fine again: the rerun completes and clears the page
    assert len(crawl(make_client(), "prec", tmp_path, progress=False).records) == 6
    assert _quarantine(tmp_path) == []


def test_a_parse_error_claims_a_quarantined_copy_only_when_there_is_one() -> None:
    with pytest.raises(LawGoMalformedResponseError) as info:
        parse_prec_body(b"<?xml version='1.0'?><PrecService><a>", "XML", "ref")
    assert "quarantine" not in str(info.value) and info.value.quarantined is None
    kept = LawGoMalformedResponseError("cut", quarantined="/q/listing-page-1.xml")
    first_sentence = str(kept).split(". ")[0]  # what a one-line summary keeps
    assert first_sentence == (
        "law.go.kr returned a body that cannot be used (kept in quarantine as /q/listing-page-1.xml): cut"
    )


# --- item 4: truncated documents ----------------------------------------------------------------------------------


def test_a_document_truncated_once_is_recovered_in_the_same_run(
    drf: FakeDrf, make_client: MakeClient, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    drf.faults[("prec", "80866")] = ["truncated"]
    drf.faults[("prec", "229759")] = ["truncated-utf8", "truncated:3000"]
    result = crawl(make_client(), "prec", tmp_path, progress=False)
    assert len(result.records) == 6 and result.missing == [] and result.quarantined == []
    assert result.refetched == 3 and result.fetched == 6 and len(sleeps.calls) == 3
    assert drf.fetched().count("80866") == 2 and drf.fetched().count("229759") == 3
    assert _quarantine(tmp_path) == []


def test_a_document_that_stays_truncated_is_quarantined_and_counted(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path
) -> None:
    drf.always[("prec", "80866")] = "truncated-utf8"
    result = crawl(make_client(), "prec", tmp_path, progress=False, lawgo=LawGoSettings(detail_parse_retries=1))
    assert drf.fetched().count("80866") == 2  # the first fetch and one re-fetch
    assert result.missing == ["80866"] and result.wanted == 6 and result.missing_share == pytest.approx(1 / 6)
    assert len(result.records) == 5 and [s.ref.endswith("80866.xml") for s in result.quarantined] == [True]
    reason = json.loads((tmp_path / "prec" / "quarantine" / "80866.reason.json").read_text(encoding="utf-8"))
    assert reason["attempts"] == 2 and "not valid UTF-8" in reason["reason"]
    state = json.loads((tmp_path / "prec" / "state.json").read_text(encoding="utf-8"))
    assert state["last_run"]["missing"] == ["80866"]

    again = crawl(make_client(), "prec", tmp_path, progress=False, lawgo=LawGoSettings(detail_parse_retries=0))
    assert drf.fetched().count("80866") == 3 and again.missing == ["80866"]  # retried once more, next run

    del drf.always[("prec", "80866")]
    healed = crawl(make_client(), "prec", tmp_path, progress=False)
    assert healed.missing == [] and len(healed.records) == 6 and _quarantine(tmp_path) == []


def test_the_completeness_check_fails_above_the_missing_share(
    drf: FakeDrf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_lexdpr_handlers: None
) -> None:
    drf.always[("prec", "80866")] = "truncated"
    run = run_ingest(tmp_path / "strict", monkeypatch, drf)  # default ingest.max_missing_share: 1%
    assert run.success  # the asset materializes what it has …
    assert run.metadata["missing"] == 1 and run.metadata["missing_ids"] == ["80866"] and run.metadata["wanted"] == 6
    assert run.metadata["rows"] == 5 and run.metadata["api_refetched"] == 2
    check = run.checks["raw_precedents_completeness"]
    assert not check.passed and check.severity.value == "ERROR"  # … and its check fails
    assert "1 of 6 wanted documents missing" in (check.description or "") and "80866" in (check.description or "")
    assert any("1 of 6 documents still missing" in m and "80866" in m for m in run.warnings)

    lenient = run_ingest(tmp_path / "lenient", monkeypatch, drf, env={"LEXDPR__INGEST__MAX_MISSING_SHARE": "0.2"})
    assert lenient.checks["raw_precedents_completeness"].passed


def test_the_ingest_run_config_overrides_ingest_and_lawgo_settings_only(
    drf: FakeDrf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_lexdpr_handlers: None
) -> None:
    drf.always[("prec", "80866")] = "truncated"
    overrides = [*API, "lawgo.detail_parse_retries=0", "ingest.max_missing_share=0.2", "ingest.max_items=6"]
    run = run_ingest(tmp_path / "ok", monkeypatch, drf, config={"overrides": overrides})
    assert run.success and run.metadata["source"] == "api"
    assert (
        drf.fetched().count("80866") == 1 and run.metadata["api_refetched"] == 0
    )  # the lawgo override reached the crawl
    assert run.metadata["max_missing_share"] == 0.2 and run.checks["raw_precedents_completeness"].passed

    bad = run_ingest(tmp_path / "bad", monkeypatch, drf, config={"overrides": [*API, "train.epochs=2"]})
    assert not bad.success
    reason = failure_reason(bad.result)
    assert "bad ingest run config" in reason and "ingest.*, lawgo.* only" in reason and "train.epochs=2" in reason


def test_the_completeness_check_passes_for_the_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_lexdpr_handlers: None
) -> None:
    src = sorted((CORPUS / "precedent-kr" / "민사" / "대법원").glob("*.md"))[:2]
    dest = tmp_path / "mirror" / "precedent-kr" / "민사" / "대법원"
    dest.mkdir(parents=True)
    for path in src:
        shutil.copy(path, dest / path.name)
    run = run_ingest(tmp_path, monkeypatch, None, config={}, env={"LEXDPR_MIRROR_DIR": str(tmp_path / "mirror")})
    assert run.success and run.metadata["source"] == "mirror" and run.metadata["rows"] == 2
    check = run.checks["raw_precedents_completeness"]
    assert check.passed and "source=mirror" in (check.description or "")


def test_a_document_answering_404_is_skipped_but_a_403_stops_the_crawl(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path
) -> None:
    drf.always[("prec", "80866")] = "404"  # the listing works: this concerns one document
    result = crawl(make_client(), "prec", tmp_path, progress=False)
    assert len(result.records) == 5 and result.not_found == 1 and result.missing == []
    assert [(s.ref, s.reason.split(":")[0]) for s in result.skipped] == [("prec:80866", "HTTP 404")]
    state = json.loads((tmp_path / "prec" / "state.json").read_text(encoding="utf-8"))
    assert list(state["not_found"]) == ["80866"]  # retried on the next run
    drf.always[("prec", "80866")] = "403"
    with pytest.raises(LawGoHTTPError, match="HTTP 403"):
        crawl(make_client(), "prec", tmp_path, progress=False)


# --- item 6: incremental windows ----------------------------------------------------------------------------------


def test_the_incremental_window_overlaps_the_last_crawl(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    first = crawl(make_client(), "prec", tmp_path / "a", progress=False)
    assert len(first.records) == 6
    state_path = tmp_path / "a" / "prec" / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8"))
    state["last_complete_date"] = "2002-01-10"  # the last complete crawl ran on 10 Jan 2002 …
    state_path.write_text(json.dumps(state), encoding="utf-8")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    late = drf.publish_precedent(3000001, dt.date(2002, 1, 5))  # … and a decision of 5 Jan was published after it
    drf.requests.clear()

    found = crawl(make_client(), "prec", tmp_path / "a", progress=False)  # default: 30 days of overlap
    assert drf.searches()[0]["prncYd"].startswith("20011211~") and found.since == dt.date(2001, 12, 11)
    assert drf.fetched() == [late] and (found.listed, found.reused, found.fetched) == (2, 1, 1)
    assert f"prec:{late}" in {r.prec_id for r in found.records} and len(found.records) == 7
    drf.requests.clear()

    missed = crawl(
        make_client(), "prec", tmp_path / "b", progress=False, lawgo=LawGoSettings(incremental_overlap_days=0)
    )
    assert drf.searches()[0]["prncYd"].startswith("20020110~") and drf.fetched() == []
    assert f"prec:{late}" not in {r.prec_id for r in missed.records} and len(missed.records) == 6


def test_window_and_retry_settings_are_validated() -> None:
    settings = load_settings(environ={"LEXDPR__LAWGO__INCREMENTAL_OVERLAP_DAYS": "7"})
    assert settings.lawgo.incremental_overlap_days == 7 and settings.lawgo.detail_parse_retries == 2
    assert settings.ingest.max_missing_share == 0.01
    for name, value in [
        ("LEXDPR__LAWGO__INCREMENTAL_OVERLAP_DAYS", "-1"),
        ("LEXDPR__LAWGO__DETAIL_PARSE_RETRIES", "-1"),
        ("LEXDPR__INGEST__MAX_MISSING_SHARE", "1.5"),
    ]:
        with pytest.raises(pydantic.ValidationError):
            load_settings(environ={name: value})
