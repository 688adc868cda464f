"""``run_stored_sweep`` / ``sweep_data_version`` (what the ``sweep_job`` op calls): the inputs come from the artifact
store as the IO manager wrote them, the runs get the data's tags, and the summary's data version follows its files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, MissingArtifactError
from lexdpr_pipeline.storage import frame_content_hash, write_parquet
from lexdpr_pipeline.sweeps import stored
from lexdpr_pipeline.sweeps.stored import INPUTS, run_stored_sweep, sweep_data_version
from lexdpr_pipeline_tests.sweeps.conftest import base_manifest, make_spec, project_settings


def test_the_sweep_reads_the_stored_inputs_and_tags_its_runs(
    tmp_path: Path, tiny_data: tuple[pl.DataFrame, pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = project_settings(tmp_path)
    store = ArtifactStore.from_settings(settings)
    spec = make_spec()
    with pytest.raises(MissingArtifactError, match="dataset_splits"):
        run_stored_sweep(spec, settings, store)

    splits, corpus = tiny_data
    write_parquet(splits, store.table_path("dataset_splits"))
    write_parquet(corpus, store.table_path("merged_corpus"))
    base_manifest("tiny-hub-model").write(store.table_path("base_model", ".json"))
    calls: list[dict[str, Any]] = []

    def fake_run_sweep(spec_, settings_, splits_, corpus_, base_model, **kw: Any) -> str:
        calls.append({"args": (spec_, settings_, splits_, corpus_, base_model), **kw})
        return "result"

    monkeypatch.setattr(stored, "run_sweep", fake_run_sweep)
    assert run_stored_sweep(spec, settings, store, tags={"dagster_run_id": "r1"}, progress=False) == "result"
    (call,) = calls
    spec_, settings_, splits_, corpus_, base_model = call["args"]
    assert spec_ is spec and settings_ is settings and call["store"] is store and call["progress"] is False
    assert splits_.equals(splits) and corpus_.equals(corpus) and base_model == base_manifest("tiny-hub-model")
    assert call["tags"] == {
        "dagster_run_id": "r1",
        "base_model_hash": "hub:tiny-hub-model",
        "pairs_data_version": frame_content_hash(store.read_table("dataset_splits")),  # of the stored table
    }
    assert INPUTS == ("dataset_splits", "merged_corpus", "base_model")


def test_the_summary_data_version_follows_the_trials_and_the_best_config(tmp_path: Path) -> None:
    trials = pl.DataFrame({"trial": [0, 1], "state": ["COMPLETE", "PRUNED"]})
    best = tmp_path / "best.yaml"
    best.write_text("train:\n  learning_rate: 0.001\n", encoding="utf-8")
    version = sweep_data_version(SimpleNamespace(trials=trials, best_config=best))  # type: ignore[arg-type]
    assert version == sweep_data_version(SimpleNamespace(trials=trials.clone(), best_config=best))  # type: ignore[arg-type]
    no_best = sweep_data_version(SimpleNamespace(trials=trials, best_config=None))  # type: ignore[arg-type]
    assert len(version) == 64 and no_best != version
    best.write_text("train:\n  learning_rate: 0.002\n", encoding="utf-8")
    assert sweep_data_version(SimpleNamespace(trials=trials, best_config=best)) != version  # type: ignore[arg-type]
    more = pl.concat([trials, pl.DataFrame({"trial": [2], "state": ["FAIL"]})])
    assert sweep_data_version(SimpleNamespace(trials=more, best_config=None)) != no_best  # type: ignore[arg-type]
