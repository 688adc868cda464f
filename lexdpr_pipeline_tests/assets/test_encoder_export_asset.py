"""encoder_export in Dagster with the tiny model: exports + gate + choice, the index holds the chosen backend's
vectors, the pointer names the export and load_engine searches with it; a broken export falls back (auto) or fails
the blocking check (forced)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, EmbeddingSetManifest, EncoderExportManifest, IndexPointer
from lexdpr_pipeline.index.embeddings import EmbeddingSet
from lexdpr_pipeline.models import export_gate
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.models.encoders import load_encoder
from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder
from lexdpr_pipeline.models.resolve import model_for_serving
from lexdpr_pipeline.orchestration import failure_reason, latest_metadata, materialize
from lexdpr_pipeline.search.engine import load_engine
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.assets.index_graph import index_defs
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice

QUERIES = ["국가배상 책임", "가등기담보 실행", "손해배상 청구", "공무원의 직무"]


def _settings(data: Path, model_dir: Path, *overrides: str):
    base = [f"paths.data_dir={data}", f"models.base_model={model_dir}", "embed.threads=1"]
    return load_settings(overrides=[*base, *overrides], environ={})


def _run(instance: dg.DagsterInstance, defs: dg.Definitions) -> tuple[dg.ExecuteInProcessResult, dict[str, bool]]:
    result = materialize(instance, defs, list(defs.resolve_asset_graph().materializable_asset_keys))
    if not result.success:
        print("run failed:", failure_reason(result))
    return result, {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _splits(data: Path, corpus: pl.DataFrame) -> None:
    """A dataset_splits table: valid queries whose positives are corpus passages (the gate scores nDCG on them)."""
    rows = corpus.head(6)
    frame = pl.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(rows.height)],
            "query_text": [t[:30] for t in rows["text"].to_list()],
            "split": ["valid"] * rows.height,
            "positive_ids": [[pid] for pid in rows["passage_id"].to_list()],
        }
    )
    (data / "tables").mkdir(parents=True, exist_ok=True)
    frame.write_parquet(data / "tables" / "dataset_splits.parquet")


def test_auto_exports_gates_and_serves_the_chosen_backend(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = corpus_slice()
    _splits(tmp_path, corpus)
    # embed.backend=auto (the default). The nDCG tolerance is wide open: the tiny random model's scores are near
    # ties, and int8 noise reorders a few of them (a 4% nDCG drop on 6 queries); quality_gate's own tests cover it.
    settings = _settings(tmp_path, tiny_model_dir, "embed.gate_max_ndcg_drop=1.0")
    with dg.DagsterInstance.ephemeral() as instance:
        result, checks = _run(instance, index_defs(settings, tiny_model_dir, corpus))
        assert result.success and all(checks.values()) and checks["encoder_export_quality_gate"]
        store = ArtifactStore(tmp_path)
        export = store.read_manifest("encoder_export", EncoderExportManifest)
        # both exports pass on the tiny model: auto takes int8, the first of its preference order
        assert export.requested == "auto" and export.chosen == "onnx-int8" and export.chosen_passed
        assert set(export.backends) == {"torch", "onnx", "onnx-int8"}
        for name in ("onnx", "onnx-int8"):
            gate = export.backends[name]["gate"]
            assert export.backends[name]["passed"] and gate["mean_cosine"] >= 0.99
            assert gate["n_scored_queries"] == 6  # the sample holds the valid queries' positives
            assert Path(export.backends[name]["path"]).parent == tmp_path / "models" / "exported"
        assert export.encoder_version == "tiny-trained-v1|onnx-int8"
        meta = latest_metadata(instance, dg.AssetKey("encoder_export"))
        assert meta["chosen_backend"] == "onnx-int8" and "| onnx-int8 (chosen) | yes |" in meta["gate"]

        # The index holds the int8 encoder's vectors (not torch's), and the pointer names the export.
        pointer = store.read_pointer()
        assert (pointer.encoder_backend, pointer.encoder_path) == ("onnx-int8", export.chosen_path)
        assert pointer.model_version == "tiny-trained-v1|onnx-int8"
        emb = EmbeddingSet.load(Path(pointer.embeddings_path))
        texts = corpus["text"].to_list()
        int8 = load_encoder(tiny_model_dir, "onnx-int8", export.chosen_path, threads=1).encode_passages(texts)
        torch_vectors = BiEncoder.load(tiny_model_dir).encode_passages(texts)
        row = {pid: i for i, pid in enumerate(emb.ids)}
        stored = np.asarray(emb.vectors)[[row[p] for p in corpus["passage_id"].to_list()]]
        # dynamic int8 quantizes activations per batch, so other batches give slightly other vectors: the stored
        # ones are int8's (far closer to them than to torch's)
        to_int8, to_torch = np.abs(stored - int8).max(), np.abs(stored - torch_vectors).max()
        print(f"max |stored - int8| {to_int8:.2e}, max |stored - torch| {to_torch:.2e}")
        assert to_int8 < 5e-4 and to_torch > 5 * to_int8

        # load_engine encodes queries with the pointer's export and finds what torch (exact search over torch
        # vectors, torch query vectors) finds.
        engine = load_engine(settings)
        assert isinstance(engine.model, OnnxEncoder) and engine.model.backend == "onnx-int8"
        assert engine.versions["encoder_backend"] == "onnx-int8"
        torch_queries = BiEncoder.load(tiny_model_dir).encode_queries(QUERIES)
        for query, vec in zip(QUERIES, torch_queries, strict=True):
            exact = int(np.argmax(torch_vectors @ vec))
            assert engine.search(query, mode="dense", top_k=3)[0].passage_id == corpus["passage_id"][exact]
        # `embed` / `embed-text` take the served index's encoder too (`--model` means torch).
        served = model_for_serving("trained", str(tiny_model_dir), store)
        assert (served.backend, served.export_path) == ("onnx-int8", export.chosen_path)
        assert model_for_serving("trained", str(tiny_model_dir), store, explicit=tiny_model_dir).backend == "torch"
        # An older pointer (no encoder fields) still reads, and means torch.
        old = {k: v for k, v in pointer.to_dict().items() if k not in ("encoder_backend", "encoder_path")}
        assert isinstance(load_engine(settings, IndexPointer.from_dict(old)).model, BiEncoder)


def test_backend_is_part_of_the_cache_key(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The same passages embedded with torch and with onnx land in different cache folders and embedding sets."""
    corpus = corpus_slice()
    keys: dict[str, tuple[str, set[str]]] = {}
    for backend in ("torch", "onnx"):
        settings = _settings(tmp_path, tiny_model_dir, f"embed.backend={backend}")
        with dg.DagsterInstance.ephemeral() as instance:
            result, checks = _run(instance, index_defs(settings, tiny_model_dir, corpus))
            assert result.success and all(checks.values())
            emb = latest_metadata(instance, dg.AssetKey("passage_embeddings"))
            assert emb["encoder_backend"] == backend and emb["encoded"] == corpus.height  # nothing reused across
        caches = {p.name for p in (tmp_path / "embeddings" / "cache").iterdir()}
        stored = ArtifactStore(tmp_path).read_manifest("passage_embeddings", EmbeddingSetManifest)
        assert stored.encoder_backend == backend
        keys[backend] = (stored.path, caches)
    assert keys["torch"][0] != keys["onnx"][0]
    assert len(keys["onnx"][1]) == 2 and keys["torch"][1] < keys["onnx"][1]


def _broken_exporter(tmp_path: Path):
    """Real exports, copied and re-pooled with the CLS vector: they load and run but fail the gate."""

    def exporter(store, model_dir, model_hash, backend):
        good = export_gate.export_to_store(store, model_dir, model_hash, backend)
        broken = tmp_path / "broken" / backend
        if not broken.exists():
            shutil.copytree(good, broken)
            info = json.loads((broken / "export.json").read_text(encoding="utf-8"))
            (broken / "export.json").write_text(json.dumps({**info, "pooling_mode": ["cls"]}), encoding="utf-8")
        return broken

    return exporter


def test_a_broken_export_falls_back_to_torch_or_fails_the_forced_check(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = corpus_slice()
    real = export_gate.export_and_gate
    monkeypatch.setattr(
        "lexdpr_pipeline.assets.encoder_export.export_and_gate",
        lambda *a, **kw: real(*a, **kw, exporter=_broken_exporter(tmp_path)),
    )
    data = tmp_path / "auto"
    with dg.DagsterInstance.ephemeral() as instance:
        result, checks = _run(instance, index_defs(_settings(data, tiny_model_dir), tiny_model_dir, corpus))
        assert result.success and checks["encoder_export_quality_gate"] is True
        export = ArtifactStore(data).read_manifest("encoder_export", EncoderExportManifest)
        assert export.chosen == "torch" and export.chosen_path is None
        assert not export.backends["onnx"]["passed"] and not export.backends["onnx-int8"]["passed"]
        assert ArtifactStore(data).read_pointer().encoder_backend == "torch"

    data = tmp_path / "forced"
    with dg.DagsterInstance.ephemeral() as instance:
        settings = _settings(data, tiny_model_dir, "embed.backend=onnx")
        result, checks = _run(instance, index_defs(settings, tiny_model_dir, corpus))
        assert checks["encoder_export_quality_gate"] is False
        assert not result.success  # the blocking check stops passage_embeddings: nothing embeds with a failed export
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert "encoder_export" in done and "passage_embeddings" not in done
        assert not ArtifactStore(data).pointer_path.exists()


def test_an_export_that_raises_is_reported_not_fatal(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = corpus_slice()
    sample = export_gate.gate_sample(corpus, None, n_passages=8, n_queries=4)

    def failing(store, model_dir, model_hash, backend):
        raise RuntimeError(f"no {backend} today")

    store = ArtifactStore(tmp_path)
    manifest = export_gate.export_and_gate(
        store, str(tiny_model_dir), "v1", "auto", sample, threads=1, exporter=failing
    )
    assert manifest.chosen == "torch" and manifest.chosen_passed and manifest.encoder_version == "v1"
    assert manifest.backends["onnx-int8"]["error"] == "RuntimeError: no onnx-int8 today"
    forced = export_gate.export_and_gate(store, str(tiny_model_dir), "v1", "onnx", sample, threads=1, exporter=failing)
    assert forced.chosen == "onnx" and not forced.chosen_passed and forced.chosen_path is None
    assert "no onnx today" in export_gate.gate_table(forced)
    on_gpu = export_gate.export_and_gate(store, str(tiny_model_dir), "v1", "auto", sample, exporter=failing, gpu=True)
    assert on_gpu.chosen == "torch" and set(on_gpu.backends) == {"torch"}  # nothing exported, nothing gated


def test_auto_takes_torch_bf16_on_a_cpu_with_native_bf16(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the CPU multiplies bf16 natively, auto tries torch-bf16 first: no export folder, the gate against fp32,
    and the index, pointer and engine all run the bf16 encoder."""
    monkeypatch.setattr(export_gate, "cpu_supports_bf16", lambda: True)
    corpus = corpus_slice()
    _splits(tmp_path, corpus)
    settings = _settings(tmp_path, tiny_model_dir, "embed.gate_max_ndcg_drop=1.0")
    with dg.DagsterInstance.ephemeral() as instance:
        result, checks = _run(instance, index_defs(settings, tiny_model_dir, corpus))
        assert result.success and all(checks.values())
        store = ArtifactStore(tmp_path)
        export = store.read_manifest("encoder_export", EncoderExportManifest)
        assert (export.chosen, export.chosen_path, export.chosen_passed) == ("torch-bf16", None, True)
        assert list(export.backends) == ["torch", "torch-bf16", "onnx-int8", "onnx"]  # tried in auto's order
        assert export.backends["torch-bf16"]["gate"]["mean_cosine"] >= 0.999
        assert export.encoder_version == "tiny-trained-v1|torch-bf16"
        # single queries go to int8 (onnxruntime's per-call overhead is a fraction of torch's), gated as a pair
        assert (export.query_backend, export.query_path) == ("onnx-int8", export.backends["onnx-int8"]["path"])
        assert export.query_gate and export.query_gate["passed"] and export.query_gate["queries"] == "onnx-int8"
        assert (
            "Queries by onnx-int8 against passages by torch-bf16"
            in latest_metadata(instance, dg.AssetKey("encoder_export"))["gate"]
        )
        assert all(export.backends[b]["query_p50_ms"] > 0 for b in export.backends)
        pointer = store.read_pointer()
        assert (pointer.encoder_backend, pointer.encoder_path) == ("torch-bf16", None)
        assert pointer.query_encoder() == ("onnx-int8", export.query_path)
        texts = corpus["text"].to_list()
        emb = EmbeddingSet.load(Path(pointer.embeddings_path))
        row = {pid: i for i, pid in enumerate(emb.ids)}
        stored = np.asarray(emb.vectors)[[row[p] for p in corpus["passage_id"].to_list()]]
        bf16 = load_encoder(tiny_model_dir, "torch-bf16").encode_passages(texts)
        assert np.abs(stored - bf16).max() < 1e-5  # the stored vectors are the bf16 encoder's
        engine = load_engine(settings)
        assert isinstance(engine.model, OnnxEncoder) and engine.model.backend == "onnx-int8"
        assert engine.versions["query_backend"] == "onnx-int8" and engine.versions["encoder_backend"] == "torch-bf16"
        # passages (the API's /embed) come from the encoder that embedded the index
        assert np.abs(engine.embed_passages(texts[:3]) - bf16[:3]).max() < 1e-5
        torch_vectors = BiEncoder.load(tiny_model_dir).encode_passages(texts)
        torch_queries = BiEncoder.load(tiny_model_dir).encode_queries(QUERIES)
        for query, vec in zip(QUERIES, torch_queries, strict=True):
            exact = int(np.argmax(torch_vectors @ vec))
            assert engine.search(query, mode="dense", top_k=3)[0].passage_id == corpus["passage_id"][exact]


@pytest.fixture(autouse=True)
def _quiet_hub(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if "native_bf16" not in request.node.name:
        # A CPU without native bf16, whatever this machine has: these tests are about the ONNX exports (auto would
        # otherwise try torch-bf16 first on AMX / AVX-512 BF16 CPUs); the test above covers the bf16 choice.
        monkeypatch.setattr(export_gate, "cpu_supports_bf16", lambda: False)
