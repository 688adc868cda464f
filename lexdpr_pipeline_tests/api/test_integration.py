"""The API over the real engine (tiny model, tiny corpus, FAISS + BM25 on disk), and once as a real uvicorn server."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from lexdpr_pipeline.api.app import create_app
from lexdpr_pipeline.api.server import uvicorn_options
from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.search.engine import load_engine
from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline_tests.api.servers import running_server
from lexdpr_pipeline_tests.api.tiny_index import build_tiny_index


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("api-data")
    build_tiny_index(root, tiny_model_dir, "v1")
    return root


def settings_for(data_dir: Path, **api: object) -> Settings:
    return Settings.model_validate(
        {"paths": {"data_dir": str(data_dir)}, "api": {"reload_check_s": 0, "rate_limit_per_minute": None, **api}}
    )


@pytest.fixture(scope="module")
def client(data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(data_dir))) as test_client:
        yield test_client


def test_health_of_the_real_engine(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["index_version"] == "index-v1" and body["model_version"] == "model-v1"
    assert body["passages"] == 8 and body["passages_by_source"] == {"law": 4, "prec": 4}
    assert body["versions"]["faiss_type"] == "flat"
    assert not [k for k in body["versions"] if k.endswith("_path") or k == "pointer"]  # no paths on the open /health


def test_bm25_search_finds_the_article(client: TestClient) -> None:
    body = client.post("/search", json={"query": "채무불이행 손해배상 청구", "mode": "bm25", "top_k": 3}).json()
    assert body["results"][0]["doc_id"] == "law:001706:390"
    assert body["results"][0]["bm25_score"] > 0 and body["results"][0]["dense_score"] is None
    assert body["results"][0]["title"] == "민법 제390조(채무불이행과 손해배상)"
    assert body["index_version"] == "index-v1" and body["mode"] == "bm25"


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_dense_and_hybrid_one_hit_per_document(client: TestClient, mode: str) -> None:
    results = client.post("/search", json={"query": "불법행위 손해배상", "mode": mode, "top_k": 10}).json()["results"]
    doc_ids = [r["doc_id"] for r in results]
    assert len(doc_ids) == len(set(doc_ids)) == 7  # 8 passages, 7 documents (prec:100001 has two)
    assert [r["rank"] for r in results] == list(range(1, 8))
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r["dense_score"] is not None for r in results if mode == "dense")


def test_filters_reach_the_engine(client: TestClient) -> None:
    def search(filters: dict) -> list[dict]:
        response = client.post("/search", json={"query": "손해배상 판결", "mode": "dense", "filters": filters})
        assert response.status_code == 200, response.text
        return response.json()["results"]

    assert {r["source"] for r in search({"sources": ["prec"]})} == {"prec"}
    assert {r["doc_id"] for r in search({"courts": ["대법원"], "case_types": ["민사"]})} == {"prec:100001"}
    assert {r["doc_id"] for r in search({"sources": ["prec"], "date_to": "2020-12-31"})} == {"prec:100001"}
    assert {r["doc_id"] for r in search({"law_names": ["민사소송법"]})} == {"law:001692:2"}
    assert search({"courts": ["헌법재판소"]}) == []
    hit = search({"law_ids": ["001706"], "date_from": "2025-01-01"})[0]
    assert hit["metadata"]["law_name"] == "민법" and hit["metadata"]["effective_date"] == "2025-01-31"


def test_embeddings_are_the_models(client: TestClient, tiny_model_dir: Path) -> None:
    texts = ["불법행위", "민법 제750조"]
    query = np.asarray(client.post("/embed/query", json={"texts": texts}).json()["embeddings"], dtype=np.float32)
    passage = client.post("/embed/passage", json={"texts": texts}).json()
    model = BiEncoder.load(tiny_model_dir)
    np.testing.assert_allclose(query, model.encode_queries(texts), atol=1e-5)
    np.testing.assert_allclose(np.asarray(passage["embeddings"]), model.encode_passages(texts), atol=1e-5)
    assert passage["dim"] == 32 and passage["model_version"] == "model-v1"


def test_load_engine_from_the_store_or_a_pointer_object(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    store = ArtifactStore(data_dir)
    from_file = load_engine(settings)
    assert from_file.versions["pointer"] == str(store.pointer_path)
    pointer = dataclasses.replace(store.read_pointer(), bm25_path=None, index_version="index-dense-only")
    engine = load_engine(settings, pointer)
    assert engine.versions["index_version"] == "index-dense-only" and engine.modes == ["dense"]
    assert from_file.modes == ["dense", "bm25", "hybrid"]


def test_hot_swap_to_a_newly_published_index(tmp_path: Path, tiny_model_dir: Path) -> None:
    build_tiny_index(tmp_path, tiny_model_dir, "v1")
    with TestClient(create_app(settings_for(tmp_path))) as client:
        holder = client.app.state.holder
        build_tiny_index(tmp_path, tiny_model_dir, "v2")  # publishes a new CURRENT.json
        assert holder.check().ok
        assert client.get("/health").json()["index_version"] == "index-v2"
        assert client.post("/search", json={"query": "손해배상"}).json()["index_version"] == "index-v2"
        # a pointer to an index that is not there: the reload fails, v2 keeps serving
        store = ArtifactStore(tmp_path)
        served = store.read_pointer()
        shutil.rmtree(served.faiss_path)
        store.write_pointer(dataclasses.replace(served, index_version="index-v3"))
        assert holder.check().ok is False
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["index_version"] == "index-v2"
        assert health["last_reload"]["error"].startswith("a file of the published index is missing")
        assert str(tmp_path) not in json.dumps(health)  # the open /health shows no paths
        assert client.post("/search", json={"query": "손해배상"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/search", '{"query": "불법행위\\ud800", "mode": "dense"}'),
        ("/search", '{"query": "불법행위\\ud800", "mode": "hybrid"}'),
        ("/search", '{"query": "불법행위\\ud800", "mode": "bm25"}'),
        ("/search", '{"query": "손해배상", "mode": "bm25", "filters": {"courts": ["대법원\\udc00"]}}'),
        ("/embed/query", '{"texts": ["\\ud800"]}'),
        ("/embed/passage", '{"texts": ["민법", "\\ud800"]}'),
    ],
)
def test_lone_surrogates_never_reach_the_real_engine(client: TestClient, path: str, raw: str) -> None:
    """These gave a 500 (the tokenizer's traceback) or a 422 with a raw codec error before."""
    response = client.post(path, content=raw.encode("utf-8"), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "text must be valid Unicode: lone surrogate" in error["message"]
    assert "codec" not in error["message"]


def test_admin_reload_of_the_same_index_is_a_no_op(client: TestClient) -> None:
    holder = client.app.state.holder
    loads = holder.loads
    body = client.post("/admin/reload").json()
    assert body["reloaded"] is False and body["reason"] == "unchanged" and body["seconds"] == 0
    assert holder.loads == loads and body["health"]["index_version"] == "index-v1"


def test_real_uvicorn_server(data_dir: Path) -> None:
    settings = settings_for(data_dir, api_key=None)
    with running_server(create_app(settings), **uvicorn_options(settings.api)) as base:
        health = httpx.get(f"{base}/health", timeout=30)
        assert health.status_code == 200 and health.json()["index_version"] == "index-v1"
        found = httpx.post(f"{base}/search", json={"query": "보통재판적 관할", "mode": "bm25"}, timeout=30)
        assert found.status_code == 200
        assert found.json()["results"][0]["doc_id"] == "law:001692:2"
        assert found.headers["X-Request-ID"]
        bad = httpx.post(f"{base}/search", content=b"{oops", headers={"Content-Type": "application/json"}, timeout=30)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_json"
