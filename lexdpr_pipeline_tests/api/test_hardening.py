"""What issue 11 (items 7–12) found in the HTTP API, each pinned by a test: lone surrogates, streamed body limit, the
OpenAPI schema's limits and status codes, X-Forwarded-For, what /health and malformed requests show, cheap reloads."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lexdpr_pipeline.api.app import RequestGuard, create_app, max_body_bytes
from lexdpr_pipeline.api.server import uvicorn_options
from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.settings import ApiSettings, Settings, load_settings
from lexdpr_pipeline_tests.api.fakes import FakeEngine
from lexdpr_pipeline_tests.api.helpers import API_KEY, FakeClock, Loader, error_code, make_settings
from lexdpr_pipeline_tests.api.servers import raw_exchange, running_server

JSON = {"Content-Type": "application/json"}


def post_raw(client: TestClient, path: str, raw: str | bytes) -> httpx.Response:
    return client.post(path, content=raw.encode("utf-8") if isinstance(raw, str) else raw, headers=JSON)


# 7. well-formed Unicode ---------------------------------------------------------------------------------------------

# JSON text as a client sends it: the escape \ud800 (a lone high surrogate) is valid JSON syntax, and json.loads
# turns it into a str that no UTF-8 encoder (tokenizer, BM25, polars) accepts.
SURROGATE_BODIES = [
    ("/search", '{"query": "불법\\ud800행위", "mode": "dense"}', ["body", "query"], 2),
    ("/search", '{"query": "불법\\ud800행위", "mode": "hybrid"}', ["body", "query"], 2),
    ("/search", '{"query": "\\udc00", "mode": "bm25"}', ["body", "query"], 0),
    ("/search", '{"query": "x", "filters": {"law_ids": ["\\ud800"]}}', ["body", "filters", "law_ids", "0"], 0),
    ("/search", '{"query": "x", "filters": {"law_names": ["민법\\ud800"]}}', ["body", "filters", "law_names", "0"], 2),
    ("/search", '{"query": "x", "filters": {"courts": ["a", "\\udfff"]}}', ["body", "filters", "courts", "1"], 0),
    ("/search", '{"query": "x", "filters": {"case_types": ["\\ud800"]}}', ["body", "filters", "case_types", "0"], 0),
    ("/embed/query", '{"texts": ["ok", "a\\ud800"]}', ["body", "texts", "1"], 1),
    ("/embed/passage", '{"texts": ["\\ud800"]}', ["body", "texts", "0"], 0),
]


@pytest.mark.parametrize(("path", "raw", "loc", "position"), SURROGATE_BODIES)
def test_lone_surrogates_are_a_clear_422(make_client, path: str, raw: str, loc: list[str], position: int) -> None:
    engine = FakeEngine()
    client = make_client(Loader(engine))
    engine.calls.clear()
    response = post_raw(client, path, raw)
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_request"
    error = response.json()["error"]
    assert f"text must be valid Unicode: lone surrogate at position {position}" in error["message"]
    assert error["details"] == [
        {
            "loc": loc,
            "msg": f"text must be valid Unicode: lone surrogate at position {position}",
            "type": "invalid_unicode",
        }
    ]
    assert engine.calls == []  # refused before the engine


def test_surrogates_where_the_body_is_echoed_do_not_break_the_error(make_client) -> None:
    client = make_client()
    unknown_field = post_raw(client, "/search", '{"query": "x", "\\ud800": 1}')  # loc holds the field name
    assert unknown_field.status_code == 422 and error_code(unknown_field) == "invalid_request"
    as_utf8 = post_raw(client, "/search", b'{"query": "\xed\xa0\x80"}')  # a surrogate encoded as (invalid) UTF-8
    assert as_utf8.status_code == 422 and error_code(as_utf8) == "invalid_json"


def test_the_schema_says_texts_must_be_well_formed(make_client) -> None:
    spec = make_client().get("/openapi.json").json()["components"]["schemas"]
    assert "no lone surrogates" in spec["SearchRequest"]["properties"]["query"]["description"]
    assert "no lone surrogates" in spec["EmbedRequest"]["properties"]["texts"]["items"]["description"]


# 8. the body limit while streaming ----------------------------------------------------------------------------------


def test_guard_stops_reading_a_body_at_the_limit() -> None:
    """The middleware alone, with a body of 1000 chunks it pulls one by one: 413 after limit / chunk + 1 chunks."""

    async def app(scope, receive, send) -> None:  # pragma: no cover - must not be reached
        raise AssertionError("the app was called")

    limit, chunk = 100_000, b"x" * 16_384
    pulled: list[int] = []

    async def receive() -> dict:
        pulled.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": len(pulled) < 1000}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    guard = RequestGuard(app, refuse=lambda request: None, max_body=limit)
    scope = {"type": "http", "method": "POST", "path": "/search", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "body_too_large"
    assert len(pulled) == limit // len(chunk) + 1  # 7 of 1000 chunks read


def _counting(app: Callable) -> tuple[Callable, dict[str, int]]:
    """``app`` behind a wrapper that counts the body bytes the server handed it."""
    received = {"bytes": 0}

    async def counting(scope, receive, send) -> None:
        async def counted() -> dict:
            message = await receive()
            received["bytes"] += len(message.get("body", b""))
            return message

        await app(scope, counted if scope["type"] == "http" else receive, send)

    return counting, received


#: How far past the limit the app may have been handed bytes when it answers 413: the guard checks after each
#: receive() message, and one message holds what uvicorn buffered (it pauses reading at its 64 KiB high-water mark)
#: plus one socket read (asyncio reads up to 256 KiB at a time). Which of those the last message holds depends on
#: scheduling, so the bound covers the worst case rather than one chunk.
READ_SLACK = 64 * 1024 + 256 * 1024


def test_chunked_body_over_the_limit_is_413_before_it_ends(tmp_path: Path) -> None:
    """Through a real server: a chunked body without Content-Length that never ends gets its 413 anyway."""
    settings = make_settings(tmp_path)
    limit = max_body_bytes(settings)
    app, received = _counting(create_app(settings, Loader(FakeEngine())))
    chunk = b"x" * 16_384
    head = b"POST /search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2))  # no last chunk
    with running_server(app, **uvicorn_options(settings.api)) as base:
        answer = raw_exchange(base, head + body)  # would wait (and fail at its timeout) for a server that waited
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:200]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "body_too_large"
    assert received["bytes"] <= limit + READ_SLACK


@pytest.mark.parametrize(
    ("api", "status", "code"),
    [({}, 413, "body_too_large"), ({"api_key": API_KEY}, 401, "unauthorized")],  # refused before the body, too
)
def test_a_50mb_streamed_upload_is_cut_short(tmp_path: Path, api: dict, status: int, code: str) -> None:
    settings = make_settings(tmp_path, **api)
    limit = max_body_bytes(settings)
    app, received = _counting(create_app(settings, Loader(FakeEngine())))
    total, chunk = 50 * 1024 * 1024, b"x" * 16_384
    sent = {"bytes": 0}

    def upload():
        while sent["bytes"] < total:
            sent["bytes"] += len(chunk)
            yield chunk

    with running_server(app, **uvicorn_options(settings.api)) as base:
        response = httpx.post(f"{base}/search", content=upload(), headers=JSON, timeout=60)
    assert response.status_code == status and error_code(response) == code
    assert received["bytes"] <= limit + READ_SLACK  # the app stopped reading at the limit, not at 50 MB
    assert sent["bytes"] < total  # and the server hung up instead of taking in the rest


# 9. the schema declares the limits, strict types, every status code -------------------------------------------------


def test_openapi_declares_the_configured_limits(make_client) -> None:
    spec = make_client(max_texts=7, max_chars=333, max_top_k=42).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    search, embed = schemas["SearchRequest"]["properties"], schemas["EmbedRequest"]["properties"]
    assert search["top_k"]["maximum"] == 42 and search["top_k"]["minimum"] == 1
    assert search["top_k"]["type"] == "integer"
    assert search["query"]["maxLength"] == 333 and search["query"]["pattern"]  # non-blank
    assert embed["texts"]["maxItems"] == 7 and embed["texts"]["minItems"] == 1
    assert embed["texts"]["items"]["maxLength"] == 333
    filters = schemas["Filters"]["properties"]
    assert filters["date_from"]["anyOf"][0] == {"type": "string", "format": "date"}
    assert filters["courts"]["anyOf"][0]["items"]["maxLength"] == 333
    assert schemas["SearchRequest"]["additionalProperties"] is False
    # another app, other limits: the schema is built per app
    other = make_client(max_top_k=5).get("/openapi.json").json()
    assert other["components"]["schemas"]["SearchRequest"]["properties"]["top_k"]["maximum"] == 5


def test_openapi_documents_every_status_code(make_client) -> None:
    spec = make_client(api_key=API_KEY, rate_limit_per_minute=60).get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/search", "/embed/query", "/embed/passage"):
        responses = paths[path]["post"]["responses"]
        assert set(responses) == {"200", "400", "401", "413", "415", "422", "429", "500", "503"}, path
        for code in set(responses) - {"200"}:
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }
        assert "Retry-After" in responses["429"]["headers"]
    assert set(paths["/admin/reload"]["post"]["responses"]) == {"200", "400", "401", "413", "429", "500"}
    assert set(paths["/health"]["get"]["responses"]) == {"200", "503"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's own 422 shape is not used


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "filters": {"date_from": 0}}, ["body", "filters", "date_from"]),
        ({"query": "x", "filters": {"date_to": 1700000000}}, ["body", "filters", "date_to"]),
        ({"query": "x", "threshold": "0.5"}, ["body", "threshold"]),
        ({"query": "x", "top_k": "3"}, ["body", "top_k"]),
        ({"query": 3}, ["body", "query"]),
        ({"texts": [1]}, ["body", "texts", "0"]),
    ],
)
def test_types_are_strict(make_client, body: dict, field: list[str]) -> None:
    client = make_client()
    response = client.post("/embed/query" if "texts" in body else "/search", json=body)
    assert response.status_code == 422 and error_code(response) == "invalid_request"
    assert [d["loc"] for d in response.json()["error"]["details"]] == [field]


def test_a_body_that_is_not_json_is_415(make_client) -> None:
    client = make_client()
    form = client.post("/search", content=b"query=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and error_code(form) == "unsupported_media_type"
    untyped = client.post("/search", content=b'{"query": "x"}')  # no Content-Type at all
    assert untyped.status_code == 415 and error_code(untyped) == "unsupported_media_type"
    problem_json = client.post("/search", content=b'{"query": "x"}', headers={"Content-Type": "application/ld+json"})
    assert problem_json.status_code == 200


# 10. X-Forwarded-For only from trusted proxies ----------------------------------------------------------------------


def test_trusted_proxies_setting() -> None:
    assert ApiSettings().trusted_proxies == []
    assert ApiSettings(trusted_proxies="10.0.0.1, 10.1.0.0/16").trusted_proxies == ["10.0.0.1", "10.1.0.0/16"]
    with pytest.raises(ValueError, match="not an IP address"):
        ApiSettings(trusted_proxies=["proxy.example"])
    from_env = load_settings(None, None, {"LEXDPR__API__TRUSTED_PROXIES": "10.0.0.5,10.0.0.6"})
    assert from_env.api.trusted_proxies == ["10.0.0.5", "10.0.0.6"]
    assert uvicorn_options(ApiSettings())["proxy_headers"] is False
    trusted = uvicorn_options(ApiSettings(trusted_proxies=["10.0.0.1", "::1"]))
    assert trusted["proxy_headers"] is True and trusted["forwarded_allow_ips"] == "10.0.0.1,::1"


def _rotating_forwarded_for(tmp_path: Path, **api: object) -> list[int]:
    """Four requests from 127.0.0.1, each claiming another X-Forwarded-For, against a 2-a-minute limit."""
    settings = make_settings(tmp_path, rate_limit_per_minute=2, **api)
    app = create_app(settings, Loader(FakeEngine()), clock=FakeClock())  # the clock stands still: no refill
    with running_server(app, **uvicorn_options(settings.api)) as base:
        return [
            httpx.post(
                f"{base}/search", json={"query": "x"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}, timeout=30
            ).status_code
            for i in range(4)
        ]


def test_forwarded_for_cannot_dodge_the_rate_limit_by_default(tmp_path: Path) -> None:
    assert _rotating_forwarded_for(tmp_path) == [200, 200, 429, 429]  # all one client: 127.0.0.1


def test_forwarded_for_from_a_trusted_proxy_is_the_client(tmp_path: Path) -> None:
    assert _rotating_forwarded_for(tmp_path, trusted_proxies=["127.0.0.1"]) == [200, 200, 200, 200]


def test_api_command_trusts_no_proxy_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from lexdpr_pipeline import cli

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append(kwargs))
    for name in ("LEXDPR_CONFIG", "LEXDPR_API_OVERRIDES"):  # the command sets them for its workers
        monkeypatch.setenv(name, "")
    runner = CliRunner()
    assert runner.invoke(cli.app, ["--set", f"paths.data_dir={tmp_path}", "api"]).exit_code == 0
    assert calls[-1]["proxy_headers"] is False
    args = ["--set", f"paths.data_dir={tmp_path}", "--set", "api.trusted_proxies=[10.0.0.5]", "api"]
    assert runner.invoke(cli.app, args).exit_code == 0
    assert calls[-1]["proxy_headers"] is True and calls[-1]["forwarded_allow_ips"] == "10.0.0.5"


# 11. no paths in /health; malformed requests in the error shape -----------------------------------------------------


def test_health_shows_a_reason_not_a_path(make_client, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pointer = tmp_path / "data" / "indexes" / "CURRENT.json"
    pointer.parent.mkdir(parents=True)
    pointer.write_text("{}", encoding="utf-8")
    loader = Loader(FakeEngine())
    secret_path = str(tmp_path / "data" / "indexes" / "faiss" / "v2" / "index.faiss")
    client = make_client(loader, api_key=API_KEY)
    loader.error = FileNotFoundError(2, "No such file or directory", secret_path)
    pointer.write_text('{"v": 2}', encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="lexdpr_pipeline.api"):
        failed = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert failed.status_code == 500 and error_code(failed) == "reload_failed"
    health = client.get("/health").json()
    error = health["last_reload"]["error"]
    assert error == "a file of the published index is missing (FileNotFoundError; details in the server log)"
    assert str(tmp_path) not in json.dumps(health) and str(tmp_path) not in failed.text
    assert "/" not in json.dumps(health["last_reload"])  # no path at all, relative ones included
    assert secret_path in caplog.text  # the operator still gets the detail


def test_no_index_published_yet_is_said_plainly(make_client) -> None:
    loader = Loader(FakeEngine())
    loader.error = FileNotFoundError(2, "No such file or directory", "/srv/lexdpr/data/indexes/CURRENT.json")
    client = make_client(loader)
    assert client.get("/health").json()["last_reload"]["error"].startswith("no index has been published yet")
    unavailable = client.post("/search", json={"query": "x"})
    assert unavailable.status_code == 503 and "/srv" not in unavailable.text


def test_the_real_loader_says_why_the_published_pointer_is_unusable(tmp_path: Path) -> None:
    """The default loader reads the pointer through the artifact store: no pointer, a pointer that is not JSON and
    one that lacks a field are told apart on /health (without paths)."""
    settings = make_settings(tmp_path)
    pointer = ArtifactStore.from_settings(settings).pointer_path
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/health").json()["last_reload"]["error"].startswith("no index has been published yet")
        pointer.parent.mkdir(parents=True)
        pointer.write_text("{not json", encoding="utf-8")
        client.post("/admin/reload")
        error = client.get("/health").json()["last_reload"]["error"]
        assert error == "the index pointer is not valid JSON (ValueError; details in the server log)"
        pointer.write_text('{"model_path": "/m"}', encoding="utf-8")
        client.post("/admin/reload")
        health = client.get("/health").json()
        assert health["last_reload"]["error"].startswith("the published index is invalid (ValueError")
        assert health["status"] == "unavailable" and str(tmp_path) not in json.dumps(health)


def test_a_body_that_is_not_utf8_is_422_invalid_json(make_client) -> None:
    client = make_client()
    latin1 = post_raw(client, "/search", '{"query": "café"}'.encode("latin-1"))
    assert latin1.status_code == 422 and error_code(latin1) == "invalid_json"
    utf16 = post_raw(client, "/search", '{"query": "x"}'.encode("utf-16"))
    assert utf16.status_code == 422 and error_code(utf16) == "invalid_json"


def test_a_content_length_that_is_not_a_number_is_400(make_client, tmp_path: Path) -> None:
    client = make_client()  # a server that passes it on to the app
    response = client.post("/search", content=b"{}", headers={**JSON, "Content-Length": "abc"})
    assert response.status_code == 400 and error_code(response) == "bad_request"
    # uvicorn refuses it itself, before the app: with lex-dpr's protocol, in the same shape
    settings = make_settings(tmp_path)
    with running_server(create_app(settings, Loader(FakeEngine())), **uvicorn_options(settings.api)) as base:
        answer = raw_exchange(base, b"POST /search HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n{}")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "bad_request"


# 12. cheap no-op reloads, their own rate limit ----------------------------------------------------------------------


def test_reload_of_an_unchanged_pointer_loads_nothing(make_client, tmp_path: Path) -> None:
    pointer = tmp_path / "data" / "indexes" / "CURRENT.json"
    pointer.parent.mkdir(parents=True)
    pointer.write_text('{"index_version": "index-v1"}', encoding="utf-8")
    loader = Loader(FakeEngine("v1"), FakeEngine("v2"))
    client = make_client(loader)
    assert loader.calls == 1
    for _ in range(3):
        same = client.post("/admin/reload")
        assert same.status_code == 200, same.text
        assert same.json()["reloaded"] is False and same.json()["reason"] == "unchanged"
    assert loader.calls == 1  # nothing was loaded
    assert client.get("/health").json()["loads"] == 1
    pointer.write_text('{"index_version": "index-v2"}', encoding="utf-8")
    changed = client.post("/admin/reload").json()
    assert changed["reloaded"] is True and changed["reason"] == "loaded"
    assert changed["health"]["index_version"] == "index-v2" and loader.calls == 2


def test_reload_has_a_rate_limit_of_its_own(make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, rate_limit_per_minute=None, reload_rate_limit_per_minute=2)
    assert [client.post("/admin/reload").status_code for _ in range(3)] == [200, 200, 429]
    limited = client.post("/admin/reload")
    assert error_code(limited) == "rate_limited" and limited.headers["Retry-After"] == "30"
    assert "reloads" in limited.json()["error"]["message"]
    assert client.post("/search", json={"query": "x"}).status_code == 200  # other endpoints are not affected
    clock.now += 30
    assert client.post("/admin/reload").status_code == 200


def test_reload_limit_is_per_client_and_counts_after_the_key(make_client) -> None:
    client = make_client(api_key=API_KEY, rate_limit_per_minute=None, reload_rate_limit_per_minute=1)
    assert client.post("/admin/reload").status_code == 401  # no key: refused before it uses the key's reload
    assert client.post("/admin/reload", headers={"X-API-Key": API_KEY}).status_code == 200
    assert client.post("/admin/reload", headers={"X-API-Key": API_KEY}).status_code == 429


def test_default_settings_limit_reloads() -> None:
    assert Settings().api.reload_rate_limit_per_minute == 6
