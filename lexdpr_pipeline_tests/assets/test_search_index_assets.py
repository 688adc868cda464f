"""bm25_index, passage_embeddings, faiss_index and their checks in Dagster, on a real corpus slice with the tiny model.

``merged_corpus`` and ``trained_model`` are stand-ins (a corpus slice, a manifest pointing at the tiny model) so
these assets are tested in isolation; ``base_model`` and ``encoder_export`` are the real assets. These tests embed
with torch (``embed.backend=torch``); test_encoder_export_asset.py covers the ONNX backends.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, FaissIndexManifest, IndexPointer
from lexdpr_pipeline.assets.search_index import (
    faiss_index_matches_corpus,
)
from lexdpr_pipeline.orchestration import latest_metadata, materialize
from lexdpr_pipeline.search.engine import load_engine
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.assets.index_graph import index_defs
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice, with_changed_law

LAW = "국가배상법"
POINTER_KEYS = {
    "manifest",
    "model_path",
    "model_version",
    "faiss_path",
    "faiss_type",
    "bm25_path",
    "corpus_path",
    "embeddings_path",
    "passages",
    "index_version",
    "created_at",
    "encoder_backend",
    "encoder_path",
    "query_backend",  # None: queries by encoder_backend
    "query_path",
}


def _settings(data: Path, model_dir: Path, *overrides: str):
    base = [f"paths.data_dir={data}", f"models.base_model={model_dir}", "embed.backend=torch"]
    return load_settings(overrides=[*base, *overrides], environ={})


def _run(instance: dg.DagsterInstance, defs: dg.Definitions) -> tuple[dict, dict, dict[str, bool]]:
    result = materialize(instance, defs, list(defs.resolve_asset_graph().materializable_asset_keys))
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    emb = latest_metadata(instance, dg.AssetKey("passage_embeddings"))
    idx = latest_metadata(instance, dg.AssetKey("faiss_index"))
    return emb, idx, checks


def _pointer(data: Path) -> dict:
    return json.loads((data / "indexes" / "CURRENT.json").read_text(encoding="utf-8"))


def test_assets_build_publish_and_update_incrementally(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = _settings(tmp_path, tiny_model_dir)
    corpus = corpus_slice()
    with dg.DagsterInstance.ephemeral() as instance:
        emb, idx, checks = _run(instance, index_defs(settings, tiny_model_dir, corpus))
        assert checks == {
            "encoder_export_quality_gate": True,
            "faiss_index_matches_corpus": True,
            "faiss_recall_at_10": True,
        }
        assert (emb["encoded"], emb["reused"], emb["passages"]) == (corpus.height, 0, corpus.height)
        assert idx["update"].startswith("built")
        pointer = _pointer(tmp_path)
        assert set(pointer) == POINTER_KEYS
        manifest = json.loads((tmp_path / "tables" / "faiss_index.json").read_text())
        bm25 = json.loads((tmp_path / "tables" / "bm25_index.json").read_text())
        assert (manifest["manifest"], bm25["manifest"]) == ("faiss", "bm25")  # stored typed, read back typed
        assert pointer["faiss_path"] == manifest["path"] and pointer["bm25_path"] == bm25["path"]
        assert Path(bm25["path"]).parent == tmp_path / "indexes" / "bm25"
        assert ArtifactStore(tmp_path).read_pointer() == IndexPointer.from_dict(pointer)
        assert pointer["corpus_path"] == str(tmp_path / "tables" / "merged_corpus.parquet")
        assert pointer["model_path"] == str(tiny_model_dir) and pointer["model_version"] == "tiny-trained-v1"
        assert (pointer["encoder_backend"], pointer["encoder_path"]) == ("torch", None)  # torch: today's version
        assert pointer["index_version"] == manifest["content_hash"] and pointer["passages"] == corpus.height
        assert Path(pointer["faiss_path"]).parent == tmp_path / "indexes" / "faiss"
        assert Path(pointer["embeddings_path"]).parent == tmp_path / "embeddings"

        engine = load_engine(settings)
        assert engine.versions["index_version"] == pointer["index_version"]
        row = corpus.filter(pl.col("law_name") == LAW).row(0, named=True)
        assert engine.search(row["text"], mode="bm25")[0].passage_id == row["passage_id"]
        assert len(engine.search("국가배상 청구", top_k=3)) == 3  # hybrid, the default mode

        # One law re-worded: only its passages are encoded again, and the flat index is updated in place.
        changed = with_changed_law(corpus, LAW)
        n_law = changed.filter(pl.col("law_name") == LAW).height
        emb, idx, checks = _run(instance, index_defs(settings, tiny_model_dir, changed))
        assert all(checks.values())
        assert (emb["encoded"], emb["reused"]) == (n_law, corpus.height - n_law)
        assert idx["update"] == f"incremental (added {n_law}, removed {n_law})"
        assert latest_metadata(instance, dg.AssetKey("bm25_index"))["reused_existing"] is False  # new texts
        assert _pointer(tmp_path)["index_version"] != pointer["index_version"]

        # Nothing changed: the stored set and index are reused under the same data versions.
        before = _data_version(instance, "faiss_index")
        emb, idx, _ = _run(instance, index_defs(settings, tiny_model_dir, changed))
        assert emb["existing_set_reused"] is True and emb["encoded"] == 0 and idx["update"].startswith("reused")
        assert latest_metadata(instance, dg.AssetKey("bm25_index"))["reused_existing"] is True
        assert _data_version(instance, "faiss_index") == before == idx["content_hash"]


def _data_version(instance: dg.DagsterInstance, key: str) -> str:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None and event.asset_materialization is not None
    return event.asset_materialization.tags["dagster/data_version"]


def test_recall_check_on_an_approximate_index(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = corpus_slice()
    settings = _settings(tmp_path, tiny_model_dir, "index.faiss_type=hnsw", "embed.model=base")
    with dg.DagsterInstance.ephemeral() as instance:
        _, idx, checks = _run(instance, index_defs(settings, tiny_model_dir, corpus))
        assert checks["faiss_recall_at_10"] is True and idx["faiss_type"] == "hnsw"
        evaluation = _check_eval(instance, "faiss_recall_at_10")
        assert "passage vectors as queries" in evaluation.metadata["queries"].value
        assert _pointer(tmp_path)["model_path"] == str(tiny_model_dir.resolve())

        # With valid queries in dataset_splits, those are used (never test ones); an IVF index of ~2 passages per
        # list probed one list at a time cannot return most of a query's exact top 10: the (non-blocking) check fails.
        splits = pl.DataFrame(
            {
                "query_text": ["국가배상 책임", "가등기담보 실행", "손해배상", "test only"],
                "split": ["valid"] * 3 + ["test"],
            }
        )
        splits.write_parquet(tmp_path / "tables" / "dataset_splits.parquet")
        nlist = str(corpus.height // 2)
        strict = _settings(
            tmp_path,
            tiny_model_dir,
            "index.faiss_type=ivf",
            f"index.ivf_nlist={nlist}",
            "index.ivf_nprobe=1",
            "embed.model=base",
            "index.recall_floor=0.99",
        )
        _, idx, checks = _run(instance, index_defs(strict, tiny_model_dir, corpus))
        assert checks["faiss_recall_at_10"] is False and idx["faiss_type"] == "ivf"
        evaluation = _check_eval(instance, "faiss_recall_at_10")
        assert evaluation.metadata["queries"].value == "3 valid queries of dataset_splits (torch)"
        assert evaluation.metadata["recall_at_10"].value < 0.99


def _check_eval(instance: dg.DagsterInstance, name: str):
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("faiss_index"), name), limit=1
    )
    return records[0].event.dagster_event.event_specific_data


def test_corpus_check_fails_when_the_index_is_stale(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = corpus_slice()
    settings = _settings(tmp_path, tiny_model_dir)
    with dg.DagsterInstance.ephemeral() as instance:
        _run(instance, index_defs(settings, tiny_model_dir, corpus))
    manifest = ArtifactStore(tmp_path).read_manifest("faiss_index", FaissIndexManifest)
    changed = with_changed_law(corpus, LAW).filter(pl.col("passage_id") != corpus["passage_id"][0])
    result = faiss_index_matches_corpus(faiss_index=manifest, merged_corpus=changed)
    assert result.passed is False
    n_law = corpus.filter(pl.col("law_name") == LAW).height
    stale_expected = n_law - (1 if corpus["law_name"][0] == LAW else 0)
    assert result.metadata["not_in_corpus"].value == 1
    assert result.metadata["stale_content"].value == stale_expected
    assert faiss_index_matches_corpus(faiss_index=manifest, merged_corpus=corpus).passed is True


@pytest.fixture(autouse=True)
def _quiet_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
