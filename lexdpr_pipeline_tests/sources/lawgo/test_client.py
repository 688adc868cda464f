"""LawGoClient against the local DRF replay server: retries, typed errors, rate limit, OC secrecy."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import pytest

from lexdpr_pipeline.sources.lawgo.client import DEFAULT_USER_AGENT, LawGoClient
from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoAuthError,
    LawGoHTTPError,
    LawGoMaintenanceError,
    LawGoNotFoundError,
    LawGoTransientError,
)
from lexdpr_pipeline.sources.lawgo.parsers import parse_law_body, parse_listing, parse_prec_body
from lexdpr_pipeline_tests.sources.lawgo.conftest import FAKE_OC, FakeDrf, SleepRecorder

MakeClient = Callable[..., LawGoClient]


def test_fetch_returns_the_body_and_no_key(drf: FakeDrf, make_client: MakeClient) -> None:
    client = make_client()
    response = client.fetch("law", MST="2839")
    assert response.status == 200 and response.body == drf.corpus.law_bodies["2839"]
    assert response.content_type.startswith("text/xml")
    assert response.url_without_oc == f"{drf.base_url}/lawService.do?target=law&type=XML&MST=2839"
    assert response.params_without_oc == {"target": "law", "type": "XML", "MST": "2839"}
    assert FAKE_OC not in repr(response) and response.elapsed >= 0 and response.fetched_at.endswith("+00:00")
    assert drf.requests[0][1]["OC"] == FAKE_OC  # the key does reach the server
    assert parse_law_body(response.body, "XML", response.url_without_oc)[0].law_mst == "2839"


def test_search_sends_paging_and_parses(drf: FakeDrf, make_client: MakeClient) -> None:
    response = make_client().search("prec", page=2, display=4, fmt="JSON", sort="ddes")
    assert drf.searches()[0] == {
        "OC": FAKE_OC,
        "target": "prec",
        "type": "JSON",
        "page": "2",
        "display": "4",
        "sort": "ddes",
    }
    listing = parse_listing(response.body, "JSON", "prec")
    assert (listing.total_count, listing.page, len(listing.rows)) == (6, 2, 2)
    assert FAKE_OC.encode() in response.body  # the server echoes it in 판례상세링크 …
    assert all(FAKE_OC not in v for row in listing.rows for v in row.values())  # … the parser strips it


def test_middot_echo_in_a_listing_parses(make_client: MakeClient) -> None:
    response = make_client().search("law", page=1, query="교통·에너지")
    assert b"&middot;" in response.body  # not well-formed XML as served
    assert parse_listing(response.body, "XML", "law").total_count == 6


def test_500_then_success_is_retried(drf: FakeDrf, make_client: MakeClient, sleeps: SleepRecorder) -> None:
    drf.faults[("prec", "80866")] = ["500", "500", "ok"]
    response = make_client(jitter=lambda: 1.0).fetch("prec", ID="80866")
    assert parse_prec_body(response.body, "XML", "r").case_no == "2000도1743"
    assert drf.fetched() == ["80866"] * 3
    assert sleeps.calls == [0.5, 1.0]  # full jitter at its upper bound: base * 2**attempt


def test_backoff_is_capped_and_retries_run_out(drf: FakeDrf, make_client: MakeClient, sleeps: SleepRecorder) -> None:
    drf.faults[("prec", "80866")] = ["500"] * 10
    client = make_client(max_retries=4, backoff_base_s=1.0, backoff_max_s=3.0, jitter=lambda: 1.0)
    with pytest.raises(LawGoTransientError, match="HTTP 500") as info:
        client.fetch("prec", ID="80866")
    assert info.value.retryable and len(drf.fetched()) == 5
    assert sleeps.calls == [1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_within_bounds(drf: FakeDrf, make_client: MakeClient, sleeps: SleepRecorder) -> None:
    drf.faults[("prec", "80866")] = ["500", "500", "500"]
    make_client(max_retries=3).fetch("prec", ID="80866")
    assert len(sleeps.calls) == 3
    assert all(0 <= s <= 0.5 * 2**i for i, s in enumerate(sleeps.calls))


def test_retry_after_is_honoured(drf: FakeDrf, make_client: MakeClient, sleeps: SleepRecorder) -> None:
    drf.faults[("prec", "80866")] = ["503"]
    make_client(jitter=lambda: 0.0).fetch("prec", ID="80866")
    assert sleeps.calls == [2.0]


def test_timeout_is_retried(drf: FakeDrf, make_client: MakeClient) -> None:
    drf.slow_s = 1.0
    drf.faults[("prec", "191295")] = ["timeout", "ok"]
    response = make_client(timeout=0.3).fetch("prec", ID="191295")
    assert b"<PrecService>" in response.body and drf.fetched() == ["191295", "191295"]


def test_timeouts_that_persist_raise(drf: FakeDrf, make_client: MakeClient) -> None:
    drf.slow_s = 0.4
    drf.faults[("prec", "191295")] = ["timeout", "timeout"]
    with pytest.raises(LawGoTransientError, match=r"no answer within 0\.1s") as info:
        make_client(timeout=0.1, max_retries=1).fetch("prec", ID="191295")
    assert FAKE_OC not in str(info.value) and "ID=191295" in str(info.value)


def test_maintenance_page_then_success(drf: FakeDrf, make_client: MakeClient) -> None:
    drf.faults[("law", "search")] = ["maintenance", "ok"]
    response = make_client().search("law", page=1)
    assert parse_listing(response.body, "XML", "law").total_count == 6 and len(drf.searches()) == 2


def test_maintenance_that_persists_raises(drf: FakeDrf, make_client: MakeClient) -> None:
    drf.faults[("law", "search")] = ["maintenance"] * 3
    with pytest.raises(LawGoMaintenanceError, match="시스템 점검 안내") as info:
        make_client(max_retries=2).search("law", page=1)
    assert info.value.retryable and "Retry later" in str(info.value)


def test_empty_body_is_retried(drf: FakeDrf, make_client: MakeClient) -> None:
    drf.faults[("law", "2840")] = ["empty", "ok"]
    assert make_client().fetch("law", MST="2840").body == drf.corpus.law_bodies["2840"]


def test_auth_failure_is_raised_at_once_with_advice(drf: FakeDrf, make_client: MakeClient) -> None:
    drf.faults[("law", "2839")] = ["auth"]
    with pytest.raises(LawGoAuthError) as info:
        make_client().fetch("law", MST="2839")
    message = str(info.value)
    assert "open.law.go.kr" in message and "LAW_GO_KR_OC" in message and "IP" in message
    assert FAKE_OC not in message and not info.value.retryable and len(drf.fetched()) == 1


def test_a_wrong_key_gets_the_auth_error(drf: FakeDrf, make_client: MakeClient) -> None:
    with pytest.raises(LawGoAuthError) as info:
        make_client(oc="WRONGKEY99").search("prec", page=1)
    assert "WRONGKEY99" not in str(info.value) and len(drf.searches()) == 1


def test_no_match_is_not_found_and_not_retried(drf: FakeDrf, make_client: MakeClient) -> None:
    with pytest.raises(LawGoNotFoundError, match="일치하는 판례가 없습니다"):
        make_client().fetch("prec", ID="999", fmt="JSON")
    with pytest.raises(LawGoNotFoundError, match="행정규칙일련번호"):
        make_client().fetch("admrul", ID="36934")  # a 행정규칙ID, not a 일련번호
    assert drf.fetched() == ["999", "36934"]


def test_other_4xx_is_an_http_error(drf: FakeDrf, make_client: MakeClient) -> None:
    drf.faults[("law", "2839")] = ["403"]
    with pytest.raises(LawGoHTTPError, match="HTTP 403") as info:
        make_client().fetch("law", MST="2839")
    assert info.value.status == 403 and len(drf.fetched()) == 1


def test_connection_failure_is_transient_and_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="lexdpr_pipeline")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    sleeps = SleepRecorder()
    client = LawGoClient(oc=FAKE_OC, base_url=f"http://127.0.0.1:{port}/DRF", max_retries=2, sleep=sleeps)
    with pytest.raises(LawGoTransientError, match="connection failed") as info:
        client.fetch("law", MST="1")
    assert len(sleeps.calls) == 2
    assert FAKE_OC not in str(info.value) and info.value.__cause__ is None and info.value.__context__ is None
    ours = list(caplog.records)  # the fake server logs nothing: every record is ours (or urllib3's)
    assert any(r.name.startswith("urllib3") for r in ours)
    assert all(FAKE_OC not in r.getMessage() for r in ours)


def test_rate_limit_spaces_request_starts(drf: FakeDrf, make_client: MakeClient) -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    client = make_client(rate_limit_per_s=4.0, sleep=sleep, clock=lambda: now[0])
    for mst in ("2839", "2840", "2841"):
        client.fetch("law", MST=mst)
    assert waits == [0.25, 0.25]


def test_client_identity_and_secrecy(drf: FakeDrf, make_client: MakeClient) -> None:
    client = make_client()
    assert FAKE_OC not in repr(client) and "oc='***'" in repr(client)
    assert client.session.headers["User-Agent"] == DEFAULT_USER_AGENT
    assert "LexDPR/" in DEFAULT_USER_AGENT
    with pytest.raises(LawGoAuthError, match="LAW_GO_KR_OC"):
        LawGoClient(oc="  ")
    with pytest.raises(ValueError, match="constructor"):
        client.fetch("law", OC="other", MST="1")
    with pytest.raises(ValueError, match="display"):
        client.search("law", page=1, display=101)
