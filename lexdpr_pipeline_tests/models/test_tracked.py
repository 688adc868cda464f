"""``train_tracked`` without the real trainer: the content key, and how an error ends the MLflow run.

(The real training through it: assets/test_training_asset.py for ``trained_model``, sweeps/test_runner.py for trials.)
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, Kind
from lexdpr_pipeline.models import tracked
from lexdpr_pipeline.models.tracked import model_key, train_tracked
from lexdpr_pipeline.settings import EvalSettings, TrackingSettings, TrainSettings
from lexdpr_pipeline.tracking import RunHandle
from lexdpr_pipeline_tests.training_fixtures import tiny_training_set

BASE = BaseModelManifest("unused", None, "unused", "hub:unused")


def test_the_key_covers_what_the_model_is_made_from_not_how_the_run_goes():
    cfg = TrainSettings()
    key = model_key("base", "pairs", "corpus", cfg)
    runtime_only = {"device": "cpu", "resume": False, "logging_steps": 1, "save_total_limit": 7}
    assert model_key("base", "pairs", "corpus", cfg.model_copy(update=runtime_only)) == key
    assert model_key("base", "pairs", "corpus", cfg.model_copy(update={"learning_rate": 1e-3})) != key
    assert len({key, model_key("base2", "pairs", "corpus", cfg), model_key("base", "pairs2", "corpus", cfg)}) == 3


def test_an_error_ends_the_run_as_the_hook_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    splits, corpus = tiny_training_set()
    store = ArtifactStore(tmp_path / "data")
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    cfg = TrainSettings(batch_size=8, device="cpu")

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(tracked, "train_biencoder", out_of_memory)
    runs: list[RunHandle] = []

    def train(**hooks) -> None:
        with pytest.raises(RuntimeError, match="out of memory"):
            train_tracked(cfg, EvalSettings(), tracking, splits, corpus, BASE, store, on_run_start=runs.append, **hooks)

    train(on_error=lambda exc: ("KILLED", {"why": str(exc)}))
    train()  # no hook: FAILED
    client = mlflow.MlflowClient(tracking.tracking_uri)
    hooked, plain = (client.get_run(r.run_id) for r in runs)
    assert hooked.info.status == "KILLED" and hooked.data.tags["why"] == "CUDA out of memory"
    assert plain.info.status == "FAILED" and "why" not in plain.data.tags
    for run in (hooked, plain):  # the run got as far as its tags and params before training failed
        assert run.data.tags["lexdpr.kind"] == "training" and int(run.data.params["train_rows"]) > 0
    assert not list(store.root(Kind.TRAINED_MODEL).glob("*/model"))
