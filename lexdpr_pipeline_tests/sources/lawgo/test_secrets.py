"""The OC key never leaves the client, whatever a server echoes back (issue 11, item 2).

Unit tests of the one scrubbing function, then crawls against the fake server in every echo shape — the request's
query string (key included) in a plain-text body, a URL-encoded body, a JSON body, the auth envelope, an HTML title,
an XML failure envelope, a no-match body, an HTTP reason phrase, a 500 body — on a listing page and on a document,
and real Dagster runs of the ingest asset whose DAGSTER_HOME (sqlite run history, compute logs) and data dir are
grepped byte by byte.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from lexdpr_pipeline.logging_setup import (
    SecretRedactingFilter,
    register_secret,
    scrub_secrets,
    scrub_secrets_bytes,
)
from lexdpr_pipeline.sources.lawgo.client import LawGoClient
from lexdpr_pipeline.sources.lawgo.crawler import crawl
from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoAuthError,
    LawGoError,
    LawGoHTTPError,
    LawGoMaintenanceError,
    LawGoMalformedResponseError,
    LawGoNotFoundError,
    LawGoTransientError,
    detect_error_body,
)
from lexdpr_pipeline.sources.lawgo.normalize import preview, redact_oc_bytes
from lexdpr_pipeline_tests.fake_lawgo import ECHO_FAULTS, DrfCorpus, FakeLawGo, serve
from lexdpr_pipeline_tests.sources.lawgo.conftest import SleepRecorder
from lexdpr_pipeline_tests.sources.lawgo.dagster_run import run_ingest

PLAIN_OC = "SeCrEtOC-4711"
MAIL_OC = "SeCrEt.OC@4711"  # an e-mail id with "@": sent, and echoed, as %40
OCS = [PLAIN_OC, MAIL_OC]
#: echo shapes whose error text reaches a message (the others are only in a body: 500s, a no-match)
SHOWN = {"echo-text", "echo-urlencoded", "echo-json", "echo-auth", "echo-title", "echo-envelope", "echo-reason"}


def key_forms(oc: str) -> set[bytes]:
    """Every spelling of ``oc`` a leak could take, lower-cased (compared against lower-cased haystacks)."""
    once = quote(oc, safe="")
    return {f.lower().encode() for f in (oc, once, quote_plus(oc), quote(once, safe=""))}


def leaks(oc: str, haystack: bytes | str) -> list[bytes]:
    data = (haystack.encode("utf-8", "replace") if isinstance(haystack, str) else haystack).lower()
    return [form for form in key_forms(oc) if form in data]


def files_with_key(oc: str, roots: Iterable[Path]) -> list[str]:
    return [
        f"{path}: {leaks(oc, path.read_bytes())}"
        for root in roots
        for path in sorted(Path(root).rglob("*"))
        if path.is_file() and leaks(oc, path.read_bytes())
    ]


def exception_texts(exc: BaseException) -> list[str]:
    """str/repr of ``exc`` and of everything chained to it, and the formatted traceback."""
    texts, seen = ["".join(traceback.format_exception(exc))], set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts += [str(e), repr(e), *(str(a) for a in e.args), str(getattr(e, "url", ""))]
        texts.append(str(getattr(e, "reason", "")))
        todo += [e.__cause__, e.__context__]
    return texts


# --- the scrubbing function ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /DRF/lawSearch.do?OC=abc&target=prec", "GET /DRF/lawSearch.do?OC=***&target=prec"),
        ("oc=abc&x=1", "oc=***&x=1"),
        ("q=OC%3Dabc%26target%3Dprec", "q=OC%3D***%26target%3Dprec"),
        ("%4FC=abc&x", "%4FC=***&x"),
        ("%4f%43%3dabc%26x", "%4f%43%3d***%26x"),
        ("OC%253Dabc%2526x", "OC%253D***%2526x"),
        ("OC\\u003dabc\\u0026x=1", "OC\\u003d***\\u0026x=1"),
        ('{"OC": "abc", "x": 1}', '{"OC": "***", "x": 1}'),
        ("<req><OC>abc</OC></req>", "<req><OC>***</OC></req>"),
        (
            "<title>Request rejected: OC=abc&amp;target=prec</title>",
            "<title>Request rejected: OC=***&amp;target=prec</title>",
        ),
        ("(OC=a%40b.c&target=prec)", "(OC=***&target=prec)"),
        ("no key here: OCR=1, DOC=2, PROTOCOL=x", "no key here: OCR=1, DOC=2, PROTOCOL=x"),
    ],
)
def test_scrub_masks_the_oc_parameter_in_any_form(text: str, expected: str) -> None:
    assert scrub_secrets(text) == expected
    assert scrub_secrets_bytes(text.encode()) == expected.encode()


@pytest.mark.parametrize("oc", OCS)
def test_scrub_masks_a_registered_key_in_any_spelling(oc: str) -> None:
    register_secret(oc)
    once = quote(oc, safe="")
    every_byte = "".join(f"%{b:02X}" for b in oc.encode())
    for form in {oc, oc.lower(), oc.upper(), once, quote_plus(oc), quote(once, safe=""), every_byte}:
        text = f"user verification failed for {form} (retry)"
        assert scrub_secrets(text) == "user verification failed for *** (retry)", form
    assert scrub_secrets_bytes(f"key={once};".encode()) == b"key=***;"
    assert redact_oc_bytes(f"<a>/x?OC={once}&amp;ID=1</a> {oc}".encode())[0] == b"<a>/x?ID=1</a> ***"
    # a message cut for length is scrubbed before the cut: no prefix of the key survives
    assert oc[:4].lower() not in preview("x" * 30 + oc, 40).lower()
    assert oc[:4].lower() not in LawGoMalformedResponseError(f"got {'y' * 200}{oc}").reason.lower()


@pytest.mark.parametrize(
    "make",
    [
        lambda m: LawGoAuthError(m, url=f"http://x/?{m}"),
        lambda m: LawGoNotFoundError(m, url=m),
        lambda m: LawGoMaintenanceError(m, url=m),
        lambda m: LawGoTransientError(m, url=m),
        lambda m: LawGoMalformedResponseError(m, url=m),
        lambda m: LawGoHTTPError(400, m, url=m),
        lambda m: LawGoError(m, url=m),
    ],
)
def test_every_lawgo_error_scrubs_its_message(make: Callable[[str], LawGoError]) -> None:
    register_secret(PLAIN_OC)
    exc = make(f"Bad Request OC=someone_else&target=prec and {PLAIN_OC}")
    texts = exception_texts(exc)
    assert not [t for t in texts if "someone_else" in t or leaks(PLAIN_OC, t)]
    assert "OC=***" in str(exc)


def test_error_bodies_echoing_the_request_give_scrubbed_errors() -> None:
    # an unregistered key: only the OC= parameter tells it apart
    query = "OC=other.user%40mail&target=prec&type=XML&ID=1"
    html = f"<!DOCTYPE html><html><head><title>Request rejected: {query}</title></head></html>".encode()
    auth = ('{"result":"사용자 정보 검증에 실패하였습니다. (' + query + ')","msg":"IP주소"}').encode()
    envelope = f"<law><result>실패 {query}</result><msg>bad</msg></law>".encode()
    errors = [detect_error_body(body) for body in (html, auth, envelope)]
    assert [type(e) for e in errors] == [LawGoMaintenanceError, LawGoAuthError, LawGoMalformedResponseError]
    assert all("other.user" not in str(e) and "OC=***" in str(e) for e in errors)


def test_the_log_filter_scrubs_messages_and_tracebacks() -> None:
    register_secret(PLAIN_OC)
    try:
        raise RuntimeError(f"boom ?OC={PLAIN_OC}&x=1")
    except RuntimeError:
        record = logging.LogRecord("lexdpr_pipeline.t", logging.ERROR, __file__, 1, "key %s", (PLAIN_OC,), None)
        record.exc_info = sys.exc_info()
    SecretRedactingFilter().filter(record)
    assert record.getMessage() == "key ***"
    assert PLAIN_OC not in logging.Formatter().format(record)


# --- crawls against a server that echoes the request --------------------------------------------------------------


@pytest.fixture(params=OCS, ids=["plain-key", "mail-key"])
def echo_server(request: pytest.FixtureRequest, drf_corpus: DrfCorpus) -> FakeLawGo:
    with serve(FakeLawGo(drf_corpus, oc=request.param)) as fake:
        yield fake


@pytest.mark.parametrize("place", ["listing", "document"])
@pytest.mark.parametrize("shape", ECHO_FAULTS)
def test_no_echo_shape_leaks_the_key_from_a_crawl(
    echo_server: FakeLawGo, shape: str, place: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, oc = echo_server, echo_server.oc
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="lexdpr_pipeline")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    fake.always[("prec", "search" if place == "listing" else "80866")] = shape
    client = LawGoClient(
        oc=oc, base_url=fake.base_url, timeout=5, max_retries=2, rate_limit_per_s=0, sleep=SleepRecorder()
    )
    surfaces: list[str] = []
    try:
        result = crawl(client, "prec", tmp_path, progress=False)
        surfaces += [f"{s.ref} {s.reason}" for s in [*result.quarantined, *result.skipped]]
    except LawGoError as exc:
        surfaces += exception_texts(exc)
    finally:
        client.close()
    served = [args for _, args in fake.requests]
    assert served and all(args["OC"] == oc for args in served)  # the key did reach the server, echoed back
    surfaces += [r.getMessage() for r in caplog.records] + [r.exc_text or "" for r in caplog.records]
    assert [s for s in surfaces if leaks(oc, s)] == []
    assert files_with_key(oc, [tmp_path]) == []
    files = "".join(p.read_text("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file())
    if shape in SHOWN:  # the echo did reach a message or a file, masked
        assert any("***" in s for s in surfaces) or "***" in files


@pytest.mark.parametrize("shape", ECHO_FAULTS)
def test_no_echo_shape_leaks_the_key_into_dagster(
    shape: str,
    drf_corpus: DrfCorpus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    no_lexdpr_handlers: None,
) -> None:
    """A real run of raw_precedents: the echo on the first listing answer and on every answer for one document."""
    with serve(FakeLawGo(drf_corpus, oc=MAIL_OC)) as fake:
        fake.faults[("prec", "search")] = [shape]
        fake.always[("prec", "80866")] = shape
        run = run_ingest(tmp_path, monkeypatch, fake)
    assert len(fake.requests) >= 1
    out, err = capfd.readouterr()
    assert leaks(MAIL_OC, out + err) == []
    assert (run.home / "history" / "runs").is_dir() and list(run.home.rglob("compute_logs/*"))
    assert files_with_key(MAIL_OC, [run.home, run.data, tmp_path]) == []
    if not run.success:  # the failure, and its reason, are in the run history — masked
        failure = run.result.get_step_failure_events()[0].step_failure_data.error
        assert failure is not None and "law.go.kr" in (failure.message + str(failure.cause))
