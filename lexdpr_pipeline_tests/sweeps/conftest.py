"""Shared pieces for the sweep tests: the tiny real training set, project settings under tmp_path, small specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lexdpr_pipeline.artifacts import BaseModelManifest
from lexdpr_pipeline.settings import Settings, load_settings
from lexdpr_pipeline.sweeps.space import SweepSpec
from lexdpr_pipeline_tests.training_fixtures import tiny_training_set


@pytest.fixture(scope="session")
def tiny_data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return tiny_training_set()


def settings_overrides(root: Path) -> list[str]:
    return [
        f"paths.data_dir={root / 'data'}",
        f"tracking.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        "train.template=none",
        "train.batch_size=8",
        "train.logging_steps=1",
        "train.device=cpu",
        "train.eval_max_queries=20",
        "train.eval_corpus_max_passages=null",
        "train.early_stopping_patience=null",
        "eval.batch_size=32",
    ]


def project_settings(root: Path, *extra: str) -> Settings:
    return load_settings(overrides=[*settings_overrides(root), *extra], environ={})


def make_spec(**kw: Any) -> SweepSpec:
    data: dict[str, Any] = {
        "name": "tiny",
        "strategy": "random",
        "n_trials": 3,
        "seed": 3,
        "pruner": {"kind": "none"},
        "base": {"train": {"max_steps": 2, "eval_steps": 2}},
        "params": {
            "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "train.temperature": {"type": "categorical", "choices": [0.05, 0.1]},
        },
    }
    data.update(kw)
    return SweepSpec.model_validate(data)


def base_manifest(model: Path | str) -> BaseModelManifest:
    """The base model as the sweep gets it (the ``base_model`` asset's manifest): a folder, or a name never loaded
    (tests whose trainer is replaced)."""
    if isinstance(model, Path):
        return BaseModelManifest("tiny", str(model), None, "tiny-1")
    return BaseModelManifest(model, None, model, f"hub:{model}")
