"""The HTTP API over a fake engine: every endpoint, bad inputs, auth, rate limiting, hot swap."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lexdpr_pipeline_tests.api.fakes import DIM, FakeEngine
from lexdpr_pipeline_tests.api.helpers import API_KEY, FakeClock, Loader, error_code

# endpoints ---------------------------------------------------------------------------------------------------------


def test_health_reports_versions_and_counts(make_client) -> None:
    client = make_client()
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["model_version"] == "model-v1" and body["index_version"] == "index-v1"
    assert body["passages"] == 3 and body["passages_by_source"] == {"law": 2, "prec": 1}
    assert body["loaded_at"] and body["loads"] == 1
    assert body["last_reload"]["ok"] is True and body["last_reload"]["reason"] == "startup"


@pytest.mark.parametrize(
    ("path", "salt", "method"),
    [("/embed/query", "query", "embed_queries"), ("/embed/passage", "passage", "embed_passages")],
)
def test_embed(make_client, path: str, salt: str, method: str) -> None:
    client = make_client()
    response = client.post(path, json={"texts": ["민법 제750조", "불법행위"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == salt and body["dim"] == DIM and body["count"] == 2 and body["model_version"] == "model-v1"
    matrix = np.asarray(body["embeddings"], dtype=np.float32)
    assert matrix.shape == (2, DIM)
    expected = getattr(FakeEngine(), method)(["민법 제750조", "불법행위"])
    np.testing.assert_allclose(matrix, expected, rtol=1e-6)  # the right encoder, rows in order


def test_search_passes_options_and_returns_hits(make_client) -> None:
    engine = FakeEngine()
    client = make_client(Loader(engine))
    response = client.post("/search", json={"query": "손해배상", "top_k": 2, "mode": "bm25", "threshold": 0.1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["rank"] for r in body["results"]] == [1, 2]
    assert body["results"][0]["doc_id"] == "law:001:750" and body["results"][0]["passage_id"] == "law:001:750#0"
    assert body["results"][0]["score"] >= body["results"][1]["score"]
    assert body["index_version"] == "index-v1" and body["model_version"] == "model-v1" and body["mode"] == "bm25"
    assert body["took_ms"] >= 0
    assert engine.calls[-1] == {"query": "손해배상", "top_k": 2, "mode": "bm25", "filters": None, "threshold": 0.1}


def test_search_defaults(make_client) -> None:
    engine = FakeEngine()
    client = make_client(Loader(engine))
    body = client.post("/search", json={"query": "손해배상"}).json()
    assert engine.calls[-1]["top_k"] == 10 and engine.calls[-1]["mode"] is None
    assert body["mode"] == "hybrid"  # search.mode default


def test_openapi_and_docs_served(make_client) -> None:
    client = make_client(api_key=API_KEY)
    spec = client.get("/openapi.json").json()
    assert {"/health", "/search", "/embed/query", "/embed/passage", "/admin/reload"} <= set(spec["paths"])
    assert "X-API-Key" in json.dumps(spec["components"]["securitySchemes"])
    assert client.get("/docs").status_code == 200
    # without a key the schema does not claim one is needed (nor a 401)
    open_spec = make_client().get("/openapi.json").json()
    assert "securitySchemes" not in open_spec.get("components", {})
    assert "401" not in open_spec["paths"]["/search"]["post"]["responses"]


# bad input ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/search", b'{"query": "x"', "invalid_json"),
        ("/search", b"not json at all", "invalid_json"),
        ("/search", b"[1, 2]", "invalid_request"),
        ("/search", b"", "invalid_request"),
        ("/search", {"query": 5}, "invalid_request"),
        ("/search", {"query": "x", "top_k": "ten"}, "invalid_request"),
        ("/search", {"query": "x", "top_k": 1.5}, "invalid_request"),
        ("/search", {"query": "x", "top_k": True}, "invalid_request"),
        ("/search", {"query": "x", "top_k": 0}, "invalid_request"),
        ("/search", {"query": "x", "mode": "fuzzy"}, "invalid_request"),
        ("/search", {"query": "x", "topk": 3}, "invalid_request"),  # unknown field
        ("/search", {"query": "   "}, "invalid_request"),
        ("/search", {"top_k": 3}, "invalid_request"),
        ("/search", {"query": "x", "filters": {"sources": ["blog"]}}, "invalid_request"),
        ("/search", {"query": "x", "filters": {"date_from": "2020-13-01"}}, "invalid_request"),
        ("/search", {"query": "x", "filters": {"date_from": 0}}, "invalid_request"),  # not a Unix timestamp
        ("/search", {"query": "x", "filters": {"date_from": "2020-01-01T00:00:00"}}, "invalid_request"),
        ("/search", {"query": "x", "filters": {"courts": "대법원"}}, "invalid_request"),
        ("/search", {"query": "x", "threshold": "0.5"}, "invalid_request"),
        ("/search", {"query": "x", "threshold": True}, "invalid_request"),
        ("/search", {"query": "x", "mode": None, "top_k": None}, "invalid_request"),
        ("/search", {"query": "\u3000\t"}, "invalid_request"),
        ("/search", {"query": "x", "filters": "law"}, "invalid_request"),
        ("/search", {"query": "x", "top_k": 21}, "top_k_too_large"),
        ("/search", {"query": "가" * 51}, "text_too_long"),
        ("/embed/query", {"texts": ["a"] * 5}, "too_many_texts"),
        ("/embed/passage", {"texts": ["ok", "가" * 51]}, "text_too_long"),
        ("/search", b'{"query": "x", "threshold": NaN}', "invalid_request"),
        ("/embed/query", {"texts": "one text"}, "invalid_request"),
        ("/embed/query", {"texts": [1, 2]}, "invalid_request"),
        ("/embed/query", {"texts": []}, "invalid_request"),
        ("/embed/passage", {"text": ["a"]}, "invalid_request"),
    ],
)
def test_invalid_requests_are_422(make_client, path: str, body: object, code: str) -> None:
    client = make_client()
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    if code != "invalid_json" and body:
        assert response.json()["error"]["details"]


def test_an_empty_date_range_finds_nothing(make_client) -> None:
    engine = FakeEngine()
    client = make_client(Loader(engine))
    engine.calls.clear()
    response = client.post(
        "/search", json={"query": "x", "filters": {"date_from": "2021-01-01", "date_to": "2020-01-01"}}
    )
    assert response.status_code == 200 and response.json()["results"] == []
    assert engine.calls == []  # nothing to ask the engine


def test_validation_errors_do_not_echo_input(make_client) -> None:
    client = make_client()
    response = client.post("/embed/query", json={"texts": [123456789], "extra": "ECHO-ME"})
    assert response.status_code == 422
    assert "ECHO-ME" not in response.text and "123456789" not in response.text


def test_limits(make_client) -> None:
    client = make_client()  # max_texts=4, max_chars=50, max_top_k=20: declared in the schema, so a 422
    too_long = client.post("/embed/passage", json={"texts": ["ok", "가" * 51]})
    assert too_long.status_code == 422 and error_code(too_long) == "text_too_long"
    assert "texts.1" in too_long.json()["error"]["message"]  # names the text
    at_limit = client.post("/embed/query", json={"texts": ["가" * 50] * 4})
    assert at_limit.status_code == 200
    assert client.post("/search", json={"query": "가" * 50, "top_k": 20}).status_code == 200
    huge = client.post("/search", content=b"x", headers={"Content-Length": str(10**9)})
    assert huge.status_code == 413 and error_code(huge) == "body_too_large"


def test_unknown_path_and_method_have_the_error_shape(make_client) -> None:
    client = make_client()
    missing = client.get("/nope")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    wrong = client.get("/search")
    assert wrong.status_code == 405 and error_code(wrong) == "method_not_allowed"


def test_engine_errors(make_client) -> None:
    client = make_client(Loader(FakeEngine(fail_on="BOOM")))
    response = client.post("/search", json={"query": "BOOM"})
    assert response.status_code == 500 and error_code(response) == "internal_error"
    assert "BOOM" not in response.text  # internals stay in the server log
    assert response.json()["error"]["message"].endswith(f"(request id {response.headers['X-Request-ID']})")
    assert client.post("/search", json={"query": "fine"}).status_code == 200  # and the server goes on


# auth --------------------------------------------------------------------------------------------------------------


def test_api_key_required_when_set(make_client) -> None:
    client = make_client(api_key=API_KEY)
    for path, body in [("/search", {"query": "x"}), ("/embed/query", {"texts": ["x"]}), ("/admin/reload", None)]:
        missing = client.post(path, json=body)
        assert missing.status_code == 401 and error_code(missing) == "unauthorized", path
        wrong = client.post(path, json=body, headers={"X-API-Key": API_KEY + "x"})
        assert wrong.status_code == 401, path
        assert client.post(path, json=body, headers={"X-API-Key": API_KEY}).status_code == 200, path
    # checked before the body: an unauthenticated caller learns nothing about its body
    assert client.post("/search", content=b"{bad json").status_code == 401
    # health and the API docs stay open
    assert client.get("/health").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


def test_no_key_needed_when_unset(make_client) -> None:
    client = make_client()
    assert client.post("/search", json={"query": "x"}).status_code == 200
    assert client.post("/search", json={"query": "x"}, headers={"X-API-Key": "anything"}).status_code == 200


def test_request_log_has_latency_but_no_secrets(make_client, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(api_key=API_KEY)
    with caplog.at_level(logging.INFO, logger="lexdpr_pipeline.api"):
        client.post("/search?token=abc", json={"query": "개인정보 질의"}, headers={"X-API-Key": API_KEY})
    lines = [r.getMessage() for r in caplog.records if r.name == "lexdpr_pipeline.api.app"]
    line = next(ln for ln in lines if "POST /search" in ln)
    assert " 200 " in line and "ms" in line
    text = "\n".join(lines)
    assert API_KEY not in text and "token=abc" not in text and "개인정보" not in text


# rate limiting -----------------------------------------------------------------------------------------------------


def test_rate_limit_429_with_retry_after_and_refill(make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, rate_limit_per_minute=3)
    for _ in range(3):
        assert client.post("/search", json={"query": "x"}).status_code == 200
    limited = client.post("/search", json={"query": "x"})
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    assert limited.headers["Retry-After"] == "20"  # 3/minute: one token every 20 s
    assert client.get("/health").status_code == 200  # health is never limited
    clock.now += 20
    assert client.post("/search", json={"query": "x"}).status_code == 200
    assert client.post("/search", json={"query": "x"}).status_code == 429


def test_rate_limit_per_api_key_and_for_bad_keys(make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, rate_limit_per_minute=2, api_key=API_KEY)
    # guessing keys uses up the address's bucket …
    assert client.post("/search", json={"query": "x"}, headers={"X-API-Key": "guess1"}).status_code == 401
    assert client.post("/search", json={"query": "x"}, headers={"X-API-Key": "guess2"}).status_code == 401
    assert client.post("/search", json={"query": "x"}, headers={"X-API-Key": "guess3"}).status_code == 429
    # … while the key holder (same address here) has a bucket of its own
    good = {"X-API-Key": API_KEY}
    assert client.post("/search", json={"query": "x"}, headers=good).status_code == 200
    assert client.post("/search", json={"query": "x"}, headers=good).status_code == 200
    assert client.post("/search", json={"query": "x"}, headers=good).status_code == 429


# hot swap ----------------------------------------------------------------------------------------------------------


def _pointer(tmp_path: Path, version: str) -> Path:
    path = tmp_path / "data" / "indexes" / "CURRENT.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"index_version": f"index-{version}"}), encoding="utf-8")
    return path


def test_pointer_change_swaps_engine(make_client, tmp_path: Path) -> None:
    _pointer(tmp_path, "v1")
    loader = Loader(FakeEngine("v1"), FakeEngine("v2"))
    client = make_client(loader)
    holder = client.app.state.holder
    assert holder.check() is None  # pointer unchanged: no reload
    assert loader.calls == 1
    _pointer(tmp_path, "v2")
    result = holder.check()
    assert result is not None and result.ok
    body = client.get("/health").json()
    assert body["index_version"] == "index-v2" and body["loads"] == 2 and body["status"] == "ok"
    assert client.post("/search", json={"query": "x"}).json()["index_version"] == "index-v2"


def test_failed_reload_keeps_old_engine(make_client, tmp_path: Path) -> None:
    _pointer(tmp_path, "v1")
    loader = Loader(FakeEngine("v1"), FakeEngine("v2"))
    client = make_client(loader)
    holder = client.app.state.holder
    loader.error = FileNotFoundError("faiss index missing")
    _pointer(tmp_path, "v2")
    assert holder.check().ok is False
    assert holder.check() is None  # a broken pointer is tried once, not on every check
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded" and body["index_version"] == "index-v1"
    assert body["last_reload"]["error"].startswith("a file of the published index is missing (FileNotFoundError")
    assert client.post("/search", json={"query": "x"}).json()["index_version"] == "index-v1"
    failed = client.post("/admin/reload")
    assert failed.status_code == 500 and error_code(failed) == "reload_failed"
    assert client.post("/search", json={"query": "x"}).status_code == 200
    loader.error = None  # fixed: an admin reload brings the new index in
    reloaded = client.post("/admin/reload")
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["health"]["index_version"] == "index-v2"
    assert client.get("/health").json()["status"] == "ok"


def test_request_in_flight_keeps_its_engine(make_client, tmp_path: Path) -> None:
    old, new = FakeEngine("v1"), FakeEngine("v2")
    client = make_client(Loader(old, new))
    old.gate = threading.Event()  # the next search on the old engine waits for it
    old.entered.clear()  # (set by the warm-up search at load)
    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(client.post("/search", json={"query": "x"}).json()))
    thread.start()
    assert old.entered.wait(30)  # the request is inside the old engine
    assert client.post("/admin/reload").json()["health"]["index_version"] == "index-v2"
    old.gate.set()
    thread.join(30)
    assert answer["index_version"] == "index-v1" and len(answer["results"]) == 3  # finished on the old engine
    assert client.post("/search", json={"query": "x"}).json()["index_version"] == "index-v2"


def test_engine_is_warmed_up_and_one_that_cannot_search_is_not_swapped_in(make_client, tmp_path: Path) -> None:
    good, broken = FakeEngine("v1"), FakeEngine("v2", fail_on="손해배상")
    client = make_client(Loader(good, broken))
    assert good.calls and good.calls[0]["top_k"] == 1  # searched once before serving
    failed = client.post("/admin/reload")
    assert failed.status_code == 500 and "index-v1" in failed.json()["error"]["message"]  # still serving v1
    assert broken.calls  # the new engine was tried …
    assert client.get("/health").json()["index_version"] == "index-v1"  # … and not swapped in


def test_background_watcher_picks_up_new_pointer(make_client, tmp_path: Path) -> None:
    _pointer(tmp_path, "v1")
    client = make_client(Loader(FakeEngine("v1"), FakeEngine("v2")), reload_check_s=0.05)
    _pointer(tmp_path, "v2")
    deadline = time.monotonic() + 30
    while client.get("/health").json()["index_version"] != "index-v2":
        assert time.monotonic() < deadline, "the watcher never swapped the engine"
        time.sleep(0.05)


def test_no_engine_at_start_is_503_until_one_loads(make_client, tmp_path: Path) -> None:
    loader = Loader(FakeEngine("v1"))
    loader.error = FileNotFoundError("no data/indexes/CURRENT.json")
    client = make_client(loader)
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    unavailable = client.post("/search", json={"query": "x"})
    assert unavailable.status_code == 503 and error_code(unavailable) == "engine_unavailable"
    assert client.post("/embed/query", json={"texts": ["x"]}).status_code == 503
    loader.error = None
    _pointer(tmp_path, "v1")  # the index gets published
    assert client.app.state.holder.check().ok
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/search", json={"query": "x"}).status_code == 200
