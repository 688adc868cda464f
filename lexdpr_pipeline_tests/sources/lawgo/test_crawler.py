"""crawl() through the local DRF replay server: storage layout, resume after a kill, incremental refresh,
quarantine, and that the OC key is never written or logged."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

from lexdpr_pipeline.settings import IngestSettings
from lexdpr_pipeline.sources.lawgo import crawler as crawler_module
from lexdpr_pipeline.sources.lawgo.client import LawGoClient, RawResponse
from lexdpr_pipeline.sources.lawgo.crawler import crawl, rebuild_records
from lexdpr_pipeline.sources.lawgo.errors import LawGoAuthError, LawGoTransientError
from lexdpr_pipeline.sources.lawgo.parsers import parse_law_body
from lexdpr_pipeline.sources.records import Precedent, StatuteArticle, to_frame
from lexdpr_pipeline_tests.sources.lawgo.conftest import FAKE_OC, FakeDrf

MakeClient = Callable[..., LawGoClient]


class KilledAfter:
    """Wraps a client and raises KeyboardInterrupt (a ^C / kill) on the (n+1)-th body fetch."""

    def __init__(self, client: LawGoClient, n: int) -> None:
        self._client, self._left = client, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def fetch(self, target: str, **kwargs: Any) -> RawResponse:
        if self._left == 0:
            raise KeyboardInterrupt
        self._left -= 1
        return self._client.fetch(target, **kwargs)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_law_crawl_stores_bodies_and_sidecars(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    result = crawl(make_client(), "law", tmp_path, progress=False)
    assert (result.listed, result.fetched, result.reused, result.not_found) == (6, 6, 0, 0)
    assert result.quarantined == [] and result.wall_s > 0
    bodies = tmp_path / "law" / "bodies"
    assert sorted(p.name for p in bodies.glob("*.xml")) == sorted(f"{m}.xml" for m in drf.listed["law"])
    for mst in drf.listed["law"]:
        assert (bodies / f"{mst}.xml").read_bytes() == drf.corpus.law_bodies[mst]  # verbatim
        meta = json.loads((bodies / f"{mst}.meta.json").read_text(encoding="utf-8"))
        assert meta["url"] == f"{drf.base_url}/lawService.do?target=law&type=XML&MST={mst}"
        assert meta["params"] == {"target": "law", "type": "XML", "MST": mst} and meta["status"] == 200
        assert meta["listing_row"]["법령일련번호"] == mst and not meta["oc_redacted"]
        assert "OC=" not in meta["listing_row"]["법령상세링크"] and len(meta["sha256"]) == 64
    # 2839/2840/2841 are three versions of 001322: only the latest (1975) gives records
    by_law = {r.law_id: r.law_mst for r in result.records}
    assert by_law["001322"] == "2841" and "005359" not in by_law  # 31205 has no articles
    expected = [
        r
        for mst in ("2841", "20194", "24144")
        for r in parse_law_body(drf.corpus.law_bodies[mst], "XML", meta["url"].replace("31205", mst), mst=mst)
    ]
    assert sorted(r.article_id for r in result.records) == sorted(r.article_id for r in expected)
    assert len({r.article_id for r in result.records}) == len(result.records)
    assert to_frame(result.records, StatuteArticle).height == len(result.records)
    state = json.loads((tmp_path / "law" / "state.json").read_text(encoding="utf-8"))
    assert state["last_complete_date"] and state["last_run"]["complete"] and state["last_run"]["fetched"] == 6


def test_crawl_killed_midway_resumes_to_the_same_records(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    drf.listed["law"] = ["2839", "2840", "2841", "20194", "24144", "285207", "285421", "48974"]
    reference = crawl(make_client(), "law", tmp_path / "fresh", progress=False)
    drf.requests.clear()

    with pytest.raises(KeyboardInterrupt):
        crawl(KilledAfter(make_client(), 3), "law", tmp_path / "killed", progress=False)  # type: ignore[arg-type]
    bodies = tmp_path / "killed" / "law" / "bodies"
    on_disk = sorted(p.stem for p in bodies.glob("*.xml"))
    assert len(on_disk) == 3 and not (tmp_path / "killed" / "law" / "state.json").exists()
    assert not [p for p in bodies.iterdir() if p.name.startswith(".")]  # no half-written files
    drf.requests.clear()

    resumed = crawl(make_client(), "law", tmp_path / "killed", progress=False)
    assert sorted(drf.fetched()) == sorted(set(drf.listed["law"]) - set(on_disk))  # only the missing bodies
    assert (resumed.fetched, resumed.reused) == (5, 3)
    assert resumed.records == reference.records  # same records, same order, no loss, no duplicates


def test_incremental_law_refresh_fetches_only_new_msts(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    drf.listed["law"] = ["2839", "20194", "24144"]
    first = crawl(make_client(), "law", tmp_path, progress=False)
    drf.requests.clear()

    again = crawl(make_client(), "law", tmp_path, progress=False)
    assert (again.fetched, again.reused, drf.fetched()) == (0, 3, [])
    assert again.records == first.records

    drf.listed["law"] = ["2840", "20194", "24144"]  # 001322 was amended: its MST changed
    changed = crawl(make_client(), "law", tmp_path, progress=False)
    assert drf.fetched() == ["2840"] and (changed.fetched, changed.reused) == (1, 2)
    assert {r.law_mst for r in changed.records if r.law_id == "001322"} == {"2840"}
    assert "ancYd" not in drf.searches()[-1]  # law refreshes list everything


def test_incremental_precedent_refresh_uses_the_state_date(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path
) -> None:
    first = crawl(make_client(), "prec", tmp_path, progress=False)
    assert first.fetched == 6 and len(first.records) == 6
    assert "prncYd" not in drf.searches()[0]
    state_path = tmp_path / "prec" / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8"))
    state["last_complete_date"] = "2001-03-01"  # pretend the last complete crawl ran then
    state_path.write_text(json.dumps(state), encoding="utf-8")
    drf.requests.clear()

    refresh = crawl(make_client(), "prec", tmp_path, progress=False)
    assert drf.searches()[0]["prncYd"].startswith("20010130~")  # 30 days of overlap by default
    assert (refresh.listed, refresh.fetched, refresh.reused) == (3, 0, 3)  # 2001.03.23, 2001.09.04, 2001.12.27
    assert refresh.records == first.records  # rebuilt from every body on disk, not just the listed ones
    assert json.loads(state_path.read_text(encoding="utf-8"))["last_complete_date"] > "2001-03-01"

    full = crawl(make_client(), "prec", tmp_path, incremental=False, progress=False)
    assert "prncYd" not in drf.searches()[-1] and full.listed == 6 and full.fetched == 0


def test_explicit_dates_paging_and_max_items(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    monkeypatch.setattr(crawler_module, "PAGE_SIZE", 2)
    result = crawl(
        make_client(), "prec", tmp_path, since=dt.date(2000, 1, 1), until=dt.date(2000, 12, 31), progress=False
    )
    searches = drf.searches()
    assert [s["page"] for s in searches] == ["1", "2"] and searches[0]["prncYd"] == "20000101~20001231"
    assert searches[0]["sort"] == "ddes" and searches[0]["display"] == "2"
    assert sorted(drf.fetched()) == ["212243", "229173", "229759"]  # the three decisions of 2000
    assert [p.decision_date.year for p in result.records] == [2000, 2000, 2000]

    capped = crawl(make_client(), "prec", tmp_path / "capped", ingest=IngestSettings(max_items=3), progress=False)
    assert capped.listed == 3 and capped.fetched == 3
    state = json.loads((tmp_path / "capped" / "prec" / "state.json").read_text(encoding="utf-8"))
    assert state["last_complete_date"] is None and state["last_run"]["complete"] is False  # a cut listing


def test_bad_bodies_are_quarantined_and_retried_later(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    drf.faults[("prec", "80866")] = ["malformed"] * 3  # bad on the first fetch and on both re-fetches
    drf.faults[("prec", "191295")] = ["truncated"] * 3
    drf.faults[("prec", "229173")] = ["notfound"]
    result = crawl(make_client(), "prec", tmp_path, progress=False)
    assert (result.fetched, len(result.quarantined), result.not_found) == (3, 2, 1)
    assert result.missing == ["80866", "191295"] and result.refetched == 4 and result.wanted == 6
    assert drf.fetched().count("191295") == 3 and drf.fetched().count("229173") == 1  # not-found: no re-fetch
    assert sorted(r.prec_id for r in result.records) == ["prec:191847", "prec:212243", "prec:229759"]
    quarantine = tmp_path / "prec" / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == [
        "191295.reason.json",
        "191295.xml",
        "80866.reason.json",
        "80866.xml",
    ]
    reason = json.loads((quarantine / "191295.reason.json").read_text(encoding="utf-8"))
    assert "truncated" in reason["reason"] and reason["url"].endswith("ID=191295")
    assert {s.reason.split(" ")[0] for s in result.quarantined} == {"XML"}
    assert not (tmp_path / "prec" / "bodies" / "80866.xml").exists()
    assert result.skipped[0].ref == "prec:229173" and result.skipped[0].reason.startswith("not found")

    drf.requests.clear()
    healed = crawl(make_client(), "prec", tmp_path, progress=False)  # the server is fine again
    assert "prncYd" in drf.searches()[0] and healed.listed == 0  # incremental: today's decisions only …
    assert sorted(drf.fetched()) == ["191295", "229173", "80866"] and healed.quarantined == []  # … plus retries
    assert len(healed.records) == 6 and not list(quarantine.iterdir())


def test_a_stored_body_that_no_longer_parses_is_moved_to_quarantine(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path
) -> None:
    crawl(make_client(), "prec", tmp_path, progress=False)
    stored = tmp_path / "prec" / "bodies" / "229759.xml"
    stored.write_bytes(stored.read_bytes()[:1000])
    records, quarantined, not_found, _empty = rebuild_records(tmp_path / "prec", "prec")
    assert len(records) == 5 and not_found == 0 and len(quarantined) == 1
    assert not stored.exists() and (tmp_path / "prec" / "quarantine" / "229759.xml").exists()
    reason = json.loads((tmp_path / "prec" / "quarantine" / "229759.reason.json").read_text(encoding="utf-8"))
    assert reason["moved_from"] == "bodies/229759.xml" and "truncated" in reason["reason"]


def test_transient_failures_are_retried_inside_a_crawl(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    drf.faults[("prec", "search")] = ["maintenance"]
    drf.faults[("prec", "80866")] = ["500", "timeout"]
    drf.slow_s = 1.0
    result = crawl(make_client(timeout=0.4), "prec", tmp_path, progress=False)
    assert len(result.records) == 6 and result.quarantined == []
    assert drf.fetched().count("80866") == 3


def test_auth_failure_aborts_the_crawl(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    drf.faults[("prec", "191847")] = ["auth"]
    with pytest.raises(LawGoAuthError):
        crawl(make_client(), "prec", tmp_path, progress=False)
    assert not (tmp_path / "prec" / "bodies" / "191847.xml").exists()
    assert not (tmp_path / "prec" / "state.json").exists()
    drf.faults[("prec", "search")] = ["500"] * 9
    with pytest.raises(LawGoTransientError):
        crawl(make_client(max_retries=2), "prec", tmp_path / "down", progress=False)


def test_admin_rule_crawl(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    # admin-rule bodies are the hand-built fixtures (no real body exists)
    result = crawl(make_client(), "admrul", tmp_path, progress=False)
    assert (result.listed, result.fetched, len(result.quarantined)) == (3, 3, 0)
    assert {r.rule_id for r in result.records} == {"36934", "36936"}  # 36935 is attachment-only
    assert sorted((tmp_path / "admrul" / "bodies").glob("*.xml"))[0].name == "2100000271110.xml"


def test_json_crawl_gives_the_same_records(drf: FakeDrf, make_client: MakeClient, tmp_path: Path) -> None:
    from_xml = crawl(make_client(), "prec", tmp_path / "xml", progress=False)
    from_json = crawl(make_client(), "prec", tmp_path / "json", ingest=IngestSettings(fmt="JSON"), progress=False)
    assert sorted(p.name for p in (tmp_path / "json" / "prec" / "bodies").iterdir())[:2] == [
        "191295.json",
        "191295.meta.json",
    ]

    def strip_ref(records: list[Precedent]) -> list[tuple]:
        return [tuple(getattr(r, f) for f in r.__slots__ if f != "source_ref") for r in records]

    assert strip_ref(from_json.records) == strip_ref(from_xml.records)
    assert all("type=JSON" in r.source_ref for r in from_json.records)


def test_the_key_is_never_written_or_logged(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="lexdpr_pipeline")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    drf.faults[("prec", "80866")] = ["500", "maintenance"]
    drf.faults[("prec", "191295")] = ["malformed"] * 3
    drf.faults[("law", "2840")] = ["notfound"]
    drf.faults[("law", "2839")] = ["timeout"]
    drf.slow_s = 1.0
    client = make_client(timeout=0.4)
    for target in ("law", "prec", "admrul"):
        crawl(client, target, tmp_path, progress=False)  # type: ignore[arg-type]
    crawl(client, "prec", tmp_path / "json", ingest=IngestSettings(fmt="JSON"), progress=False)

    files = _files(tmp_path)
    assert len(files) > 30 and any(p.parent.name == "quarantine" for p in files)
    secret = FAKE_OC.encode()
    assert [p for p in files if secret in p.read_bytes() or secret.lower() in p.read_bytes().lower()] == []
    # What our code (and urllib3, which logs each request line with its query) logged; the fake server logs nothing.
    ours = list(caplog.records)
    assert any('"GET /DRF/lawService.do?' in r.getMessage() for r in ours if r.name.startswith("urllib3"))
    assert any(r.levelno == logging.WARNING for r in ours) and any(r.levelno == logging.DEBUG for r in ours)
    leaked = [r.getMessage() for r in ours if FAKE_OC in r.getMessage() or FAKE_OC in str(r.args)]
    assert leaked == []


def test_html_only_precedents_are_skipped_not_fetched(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = {**drf.corpus.prec_rows["191847"], "데이터출처명": "국세법령정보시스템"}
    monkeypatch.setitem(drf.corpus.prec_rows, "191847", row)
    result = crawl(make_client(), "prec", tmp_path, progress=False)
    assert "191847" not in drf.fetched() and len(result.records) == 5 and result.listed == 6
    assert [(s.ref, "HTML only" in s.reason) for s in result.skipped] == [("prec:191847", True)]


def test_zero_max_items_lists_nothing_and_keeps_the_state_date(
    drf: FakeDrf, make_client: MakeClient, tmp_path: Path
) -> None:
    with pytest.raises(pydantic.ValidationError):
        IngestSettings(max_items=0)  # the settings refuse it; the crawler's own guard still holds
    result = crawl(make_client(), "prec", tmp_path, ingest=IngestSettings.model_construct(max_items=0), progress=False)
    assert (result.listed, result.fetched, drf.requests) == (0, 0, [])
    assert json.loads((tmp_path / "prec" / "state.json").read_text(encoding="utf-8"))["last_complete_date"] is None


def test_a_body_without_articles_is_reported_not_dropped(shared_dir: Path, tmp_path: Path) -> None:
    # 31205 is a real recorded decree whose whole text sits in one 전문 row: it yields no article records.
    bodies = tmp_path / "law" / "bodies"
    bodies.mkdir(parents=True)
    for mst in ("31205", "20194"):
        (bodies / f"{mst}.xml").write_bytes(
            (shared_dir / "lawgo" / "recorded" / "law-detail-xml" / f"{mst}.xml").read_bytes()
        )
    records, quarantined, not_found, empty = rebuild_records(tmp_path / "law", "law")
    assert records and quarantined == [] and not_found == 0
    assert [s.ref for s in empty] == ["law:31205"] and "no articles" in empty[0].reason
