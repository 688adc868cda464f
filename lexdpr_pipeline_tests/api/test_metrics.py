"""``GET /metrics`` (Prometheus) and gzip responses, over the fake engine; once over ``lex-dpr api --workers 2``."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lexdpr_pipeline.api.metrics import UNMATCHED
from lexdpr_pipeline_tests.api.fakes import FakeEngine
from lexdpr_pipeline_tests.api.helpers import API_KEY, Loader, error_code
from lexdpr_pipeline_tests.api.servers import free_port
from lexdpr_pipeline_tests.api.tiny_index import build_tiny_index

REPO = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, tuple(sorted(labels.items()))))


def scrape(client) -> dict:  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def requests_by_label(scraped: dict) -> dict[tuple[str, str, str], float]:
    out = {}
    for (name, labels), val in scraped.items():
        if name == "lexdpr_http_requests_total":
            d = dict(labels)
            out[(d["method"], d["route"], d["status"])] = val
    return out


def test_requests_are_counted_by_route_template_and_status(make_client) -> None:
    client = make_client()
    for _ in range(3):
        assert client.post("/search", json={"query": "손해배상"}).status_code == 200
    for _ in range(2):
        assert client.post("/search", json={"query": " "}).status_code == 422
    assert client.get("/health").status_code == 200
    assert client.get("/no/such/thing/42").status_code == 404
    assert client.get("/search").status_code == 405  # a wrong method still names the route

    scraped = scrape(client)
    assert requests_by_label(scraped) == {
        ("POST", "/search", "200"): 3,
        ("POST", "/search", "422"): 2,
        ("GET", "/health", "200"): 1,
        ("GET", UNMATCHED, "404"): 1,  # never the raw path: no unbounded label values
        ("GET", "/search", "405"): 1,
    }
    # the histogram saw every request of its route, each under +Inf
    assert value(scraped, "lexdpr_http_request_duration_seconds_count", method="POST", route="/search") == 5
    assert value(scraped, "lexdpr_http_request_duration_seconds_bucket", method="POST", route="/search", le="+Inf") == 5
    assert value(scraped, "lexdpr_http_request_duration_seconds_sum", method="POST", route="/search") > 0
    assert value(scraped, "lexdpr_http_requests_in_progress") == 0
    # scrapes are not counted: a second scrape shows the same totals
    assert requests_by_label(scrape(client)) == requests_by_label(scraped)


def test_refused_requests_are_counted_and_metrics_need_no_key_by_default(make_client) -> None:
    client = make_client(api_key=API_KEY)
    refused = client.post("/search", json={"query": "x"})
    assert refused.status_code == 401 and error_code(refused) == "unauthorized"
    assert client.post("/search", json={"query": "x"}, headers={"X-API-Key": API_KEY}).status_code == 200
    text = client.get("/metrics").text  # open, like /health
    counts = requests_by_label(samples(text))
    assert counts[("POST", "/search", "401")] == 1 and counts[("POST", "/search", "200")] == 1
    assert API_KEY not in text


def test_metrics_behind_the_key_when_asked(make_client) -> None:
    client = make_client(api_key=API_KEY, metrics_require_key=True)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": API_KEY}).status_code == 200


def test_in_progress_gauge_counts_a_request_held_in_the_engine(make_client) -> None:
    engine = FakeEngine()
    client = make_client(Loader(engine))
    engine.gate = threading.Event()
    engine.entered.clear()  # (set by the warm-up search at load)
    thread = threading.Thread(target=lambda: client.post("/search", json={"query": "x"}))
    thread.start()
    try:
        assert engine.entered.wait(30)
        assert value(scrape(client), "lexdpr_http_requests_in_progress") == 1
    finally:
        engine.gate.set()
        thread.join(30)
    scraped = scrape(client)
    assert value(scraped, "lexdpr_http_requests_in_progress") == 0
    assert requests_by_label(scraped)[("POST", "/search", "200")] == 1


def test_index_gauges_and_reload_counters_follow_the_hot_swap(make_client) -> None:
    old, new = FakeEngine("v1"), FakeEngine("v2")
    new.versions.update(passages=7, by_source={"law": 5, "admrul": 2}, faiss_type="hnsw", encoder_backend="onnx-int8")
    loader = Loader(old, new)
    client = make_client(loader)
    info_v1 = {"model_version": "model-v1", "index_version": "index-v1", "faiss_type": "flat"}
    scraped = scrape(client)
    assert value(scraped, "lexdpr_index_info", **info_v1, encoder_backend="torch") == 1
    assert value(scraped, "lexdpr_index_passages") == 3
    assert value(scraped, "lexdpr_corpus_passages", source="law") == 2
    assert value(scraped, "lexdpr_corpus_passages", source="prec") == 1
    assert value(scraped, "lexdpr_engine_loaded") == 1
    assert value(scraped, "lexdpr_index_reloads_total", trigger="startup") == 1

    assert client.post("/admin/reload").json()["health"]["index_version"] == "index-v2"
    scraped = scrape(client)
    info_v2 = {"model_version": "model-v2", "index_version": "index-v2", "faiss_type": "hnsw"}
    assert value(scraped, "lexdpr_index_info", **info_v2, encoder_backend="onnx-int8") == 1
    assert value(scraped, "lexdpr_index_info", **info_v1, encoder_backend="torch") is None  # one served index
    assert value(scraped, "lexdpr_index_passages") == 7
    assert value(scraped, "lexdpr_corpus_passages", source="admrul") == 2
    assert value(scraped, "lexdpr_corpus_passages", source="prec") is None  # not in the new index
    assert value(scraped, "lexdpr_index_reloads_total", trigger="admin") == 1

    loader.error = FileNotFoundError("/secret/path/CURRENT.json")
    assert client.post("/admin/reload").status_code == 500
    scraped = scrape(client)
    assert value(scraped, "lexdpr_index_reload_failures_total", trigger="admin") == 1
    assert value(scraped, "lexdpr_index_reloads_total", trigger="admin") == 1
    assert value(scraped, "lexdpr_index_info", **info_v2, encoder_backend="onnx-int8") == 1  # still served
    assert value(scraped, "lexdpr_engine_loaded") == 1


def test_no_engine_at_startup_shows_in_the_metrics(make_client) -> None:
    loader = Loader(FakeEngine())
    loader.error = FileNotFoundError("no index")
    scraped = scrape(make_client(loader))
    assert value(scraped, "lexdpr_engine_loaded") == 0
    assert value(scraped, "lexdpr_index_reload_failures_total", trigger="startup") == 1
    assert not any(name == "lexdpr_index_info" for name, _ in scraped)


# gzip ----------------------------------------------------------------------------------------------------------


def _sizes_and_encoding(client, accept: str = "gzip") -> dict[str, tuple[int, str | None]]:  # type: ignore[no-untyped-def]
    """(uncompressed size, Content-Encoding) of a small and a large response."""
    out = {}
    for name, call in {
        "small": lambda h: client.post("/embed/query", json={"texts": ["손해배상"]}, headers=h),
        "large": lambda h: client.post("/embed/query", json={"texts": ["가" * 50] * 16}, headers=h),
    }.items():
        plain = call({"Accept-Encoding": "identity"})
        assert plain.headers.get("content-encoding") is None
        response = call({"Accept-Encoding": accept})
        assert response.status_code == 200 and response.content == plain.content  # same body once decoded
        out[name] = (len(plain.content), response.headers.get("content-encoding"))
    return out


def test_gzip_above_the_threshold_only(make_client) -> None:
    client = make_client(max_texts=16)  # api.gzip_min_bytes: 1024
    found = _sizes_and_encoding(client)
    assert found["small"][0] < 1024 <= found["large"][0], found  # the two sides of the threshold
    assert found["small"][1] is None and found["large"][1] == "gzip"


def test_gzip_threshold_is_the_setting(make_client) -> None:
    sizes = _sizes_and_encoding(make_client(max_texts=16))
    at = sizes["small"][0]
    # a threshold right at the small response's size compresses it; one byte more does not
    assert _sizes_and_encoding(make_client(max_texts=16, gzip_min_bytes=at))["small"][1] == "gzip"
    assert _sizes_and_encoding(make_client(max_texts=16, gzip_min_bytes=at + 1))["small"][1] is None
    off = _sizes_and_encoding(make_client(max_texts=16, gzip_min_bytes=None))
    assert off["large"][1] is None  # null: never


def test_gzip_body_is_real_gzip(make_client) -> None:
    client = make_client(max_texts=16)
    with client.stream(
        "POST", "/embed/query", json={"texts": ["가" * 50] * 16}, headers={"Accept-Encoding": "gzip"}
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    body = json.loads(gzip.decompress(raw))
    assert body["count"] == 16 and len(raw) < len(json.dumps(body))


# several workers ------------------------------------------------------------------------------------------------


def test_two_workers_share_one_metrics_view(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``lex-dpr api --workers 2``: /metrics, answered by one worker, adds up both (multiprocess mode): each worker
    loaded the index once at startup, so the startup reload counter reads 2; the private metrics folder is removed
    when the server stops."""
    data = tmp_path / "data"
    build_tiny_index(data, tiny_model_dir, "v1")
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXDPR", "DAGSTER", "PROMETHEUS", "MLFLOW"))}
    env.update(TMPDIR=str(scratch), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "lexdpr_pipeline.cli", f"--set=paths.data_dir={data}", "--set=api.reload_check_s=0"]
    cmd += ["--set=api.rate_limit_per_minute=0", "api", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        reloads = None
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):  # both workers up: each counted its startup load
                scraped = samples(httpx.get(f"{base}/metrics", timeout=10).text)
                reloads = value(scraped, "lexdpr_index_reloads_total", trigger="startup")
            if reloads == 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate(timeout=30)[0]
        assert reloads == 2
        assert [p.name for p in scratch.iterdir() if p.name.startswith("lexdpr-metrics-")]  # the shared folder
        for _ in range(12):  # new connections: the kernel hands them to either worker
            with httpx.Client(base_url=base, timeout=30) as http:
                assert http.get("/health").status_code == 200
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.post("/search", json={"query": " "}).status_code == 422
        scraped = samples(httpx.get(f"{base}/metrics", timeout=10).text)
        assert requests_by_label(scraped) == {("GET", "/health", "200"): 12, ("POST", "/search", "422"): 1}
        assert value(scraped, "lexdpr_http_request_duration_seconds_count", method="GET", route="/health") == 12
        assert value(scraped, "lexdpr_http_requests_in_progress") == 0
        info = [dict(labels) for (name, labels), v in scraped.items() if name == "lexdpr_index_info" and v == 1]
        assert [i["index_version"] for i in info] == ["index-v1"]
        assert value(scraped, "lexdpr_engine_loaded") == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate(timeout=30)[0]
    assert not [p for p in scratch.iterdir() if p.name.startswith("lexdpr-metrics-")], output
