"""The real ``lex-dpr`` entry point against a failing law.go.kr: a wrong key, an unreachable base URL, HTTP 404, a
garbage body, no key at all. Each command must end (a hang only reaches the generous timeout), exit non-zero, say
why in one short line, and leave the key nowhere: not in its output, not in DAGSTER_HOME (run storage, sqlite),
not in the data dir.

Before the fix these commands never exited: Dagster re-raised the user error inside its own ``except`` block, the
chain became cyclic, and Typer's rich traceback printer walked it forever (issue 11, item 1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

pytestmark = pytest.mark.slow  # each case starts the CLI (Dagster and the code location load: ~10 s)

LEX_DPR = Path(sys.executable).parent / "lex-dpr"
KEY = "LexdprProbeKey7Q3Z"  # distinctive: any hit in a file is a leak
TIMEOUT_S = 240  # only a hang gets here: each case takes ~10-20 s

AUTH_FAILURE = (
    '{"result":"사용자 정보 검증에 실패하였습니다.","msg":"OPEN API 호출 시 사용자 검증을 위하여 정확한 '
    '서버장비의 IP주소 및 도메인주소를 등록해 주세요."}'
)  # ../shared/lawgo/reconstructed/errors/auth-failure.json: HTTP 200, for a wrong key and an unregistered IP alike


def _answer(kind: str):
    def handler(request: Request) -> Response:
        if kind == "auth":
            return Response(AUTH_FAILURE.encode(), status=200, content_type="application/json;charset=UTF-8")
        if kind == "404":
            return Response(b"<html><body>Not Found</body></html>", status=404, content_type="text/html")
        return Response(b"\x00\x01 not <xml> nor json \xff\xfe", status=200, content_type="text/xml;charset=UTF-8")

    return handler


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    srv = HTTPServer(host="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


@dataclass
class Outcome:
    code: int
    output: str
    lines: list[str]
    seconds: float


def _lex_dpr(tmp_path: Path, args: list[str], base_url: str | None, *, key: str | None = KEY, **extra: str) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXDPR", "LAW_GO_KR", "DAGSTER", "MLFLOW"))}
    (tmp_path / "mirror").mkdir(exist_ok=True)
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        LEXDPR_DATA_DIR=str(tmp_path / "data"),
        LEXDPR_MIRROR_DIR=str(tmp_path / "mirror"),  # empty: observing it is instant
        LAW_GO_KR_RATE_LIMIT="0",
        LEXDPR__LAWGO__MAX_RETRIES="1",
        LEXDPR__LAWGO__BACKOFF_BASE_S="0",
        LEXDPR__LAWGO__BACKOFF_MAX_S="0",
        LEXDPR__LAWGO__TIMEOUT_S="5",
        COLUMNS="100",
        **extra,
    )
    if key is not None:
        env["LAW_GO_KR_OC"] = key
    if base_url is not None:
        env["LAW_GO_KR_BASE_URL"] = base_url
    started = time.monotonic()
    proc = subprocess.run(
        [str(LEX_DPR), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    output = proc.stdout + proc.stderr
    return Outcome(
        proc.returncode, output, [ln for ln in output.splitlines() if ln.strip()], time.monotonic() - started
    )


def _assert_no_key_anywhere(outcome: Outcome, tmp_path: Path) -> None:
    assert KEY not in outcome.output
    needle = KEY.encode()
    checked = 0
    for path in tmp_path.rglob("*"):  # DAGSTER_HOME (runs.db, event logs, sqlite WAL), raw bodies, quarantine, …
        if path.is_file():
            checked += 1
            assert needle not in path.read_bytes(), f"the key leaked into {path}"
    assert checked > 0


def _assert_short_failure(outcome: Outcome, reason: str) -> str:
    """Exit 1, no traceback, a handful of lines, exactly one ``run …: FAILED — step: reason`` line."""
    assert outcome.code == 1, outcome.output
    assert "Traceback" not in outcome.output and "Stack Trace" not in outcome.output, outcome.output
    assert len(outcome.lines) <= 10, outcome.output
    failed = [ln for ln in outcome.lines if " FAILED — " in ln]
    assert len(failed) == 1, outcome.output
    assert re.match(r"run [0-9a-f-]{36}: FAILED — raw_\w+: ", failed[0]), failed[0]
    assert reason in failed[0], failed[0]
    assert len(failed[0]) <= 450
    return failed[0]


CRAWL = ["crawl-precedents", "--limit", "3"]
INGEST = ["materialize", "--select", "group:ingest", "--source", "api", "--limit", "3"]


@pytest.mark.parametrize("args", [CRAWL, INGEST], ids=["crawl-precedents", "materialize-ingest"])
def test_wrong_key(args: list[str], server: HTTPServer, tmp_path: Path) -> None:
    server.clear()
    server.expect_request(re.compile(r"/DRF/.*")).respond_with_handler(_answer("auth"))
    outcome = _lex_dpr(tmp_path, args, server.url_for("/DRF"))
    line = _assert_short_failure(outcome, "law.go.kr rejected the request: user verification failed")
    assert "사용자 정보 검증에 실패하였습니다" in line
    if args is INGEST:
        assert line.endswith("(+2 more failed steps)")  # statutes, admin rules and precedents all failed
    _assert_no_key_anywhere(outcome, tmp_path)


def test_unreachable_base_url(tmp_path: Path) -> None:
    outcome = _lex_dpr(tmp_path, CRAWL, "http://127.0.0.1:1")
    _assert_short_failure(outcome, "law.go.kr did not answer properly (connection failed")
    _assert_no_key_anywhere(outcome, tmp_path)


def test_http_404(server: HTTPServer, tmp_path: Path) -> None:
    server.clear()
    server.expect_request(re.compile(r"/.*")).respond_with_handler(_answer("404"))
    outcome = _lex_dpr(tmp_path, INGEST, server.url_for("/nothing-here"))
    _assert_short_failure(outcome, "law.go.kr answered HTTP 404")
    _assert_no_key_anywhere(outcome, tmp_path)


def test_garbage_body(server: HTTPServer, tmp_path: Path) -> None:
    server.clear()
    server.expect_request(re.compile(r"/DRF/.*")).respond_with_handler(_answer("garbage"))
    outcome = _lex_dpr(tmp_path, CRAWL, server.url_for("/DRF"))
    _assert_short_failure(outcome, "law.go.kr returned a body that cannot be used")
    _assert_no_key_anywhere(outcome, tmp_path)


@pytest.mark.parametrize(
    ("args", "extra"),
    [(CRAWL, {}), (["materialize", "--select", "group:ingest", "--limit", "3"], {"LEXDPR_INGEST_SOURCE": "api"})],
    ids=["crawl-precedents", "ingest-source-api"],
)
def test_missing_key(args: list[str], extra: dict[str, str], tmp_path: Path) -> None:
    outcome = _lex_dpr(tmp_path, args, "http://127.0.0.1:1", key=None, **extra)
    assert outcome.code == 2, outcome.output  # a configuration error, found before any run starts
    assert "Traceback" not in outcome.output
    assert outcome.lines[-1].startswith("the law.go.kr API needs an OC key: set LAW_GO_KR_OC"), outcome.output
    assert len(outcome.lines) <= 2, outcome.output  # (materialize prints DAGSTER_HOME first)


def test_a_failed_completeness_check_fails_the_command(shared_dir: Path, tmp_path: Path) -> None:
    """Every step succeeds but one of six decisions stays truncated (17 % missing > ingest.max_missing_share):
    the crawl keeps what it got, and the command still says so in one line and exits 1."""
    from lexdpr_pipeline_tests.fake_lawgo import DrfCorpus, FakeLawGo, serve

    fake = FakeLawGo(DrfCorpus.load(shared_dir / "lawgo"), oc=KEY)
    newest = fake.listed["prec"][-1]  # the listing is sorted newest first by 선고일자; any listed key will do
    for key in fake.listed["prec"]:
        fake.always[("prec", key)] = "truncated-utf8" if key == newest else "ok"
    with serve(fake):
        outcome = _lex_dpr(tmp_path, ["crawl-precedents", "--limit", "6"], fake.base_url)
    assert outcome.code == 1, outcome.output
    assert "Traceback" not in outcome.output, outcome.output  # (the crawl's own warnings and progress come before)
    failed = [ln for ln in outcome.lines if "check FAILED — " in ln]
    assert len(failed) == 1 and "raw_precedents:raw_precedents_completeness" in failed[0], outcome.output
    assert "1 of 6 wanted documents missing" in failed[0] and outcome.lines[-1] == failed[0], outcome.output
    assert any(" success in " in ln for ln in outcome.lines), outcome.output  # the run itself succeeded
    _assert_no_key_anywhere(outcome, tmp_path)
