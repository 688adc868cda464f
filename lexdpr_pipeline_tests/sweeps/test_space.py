"""The sweep file: objective must be a validation metric, names must be train.* settings, grids, budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lexdpr_pipeline.sweeps.space import ParamSpec, Strategy, SweepSpec, load_spec
from lexdpr_pipeline_tests.sweeps.conftest import make_spec

REPO = Path(__file__).resolve().parents[2]


def test_objective_is_a_validation_metric():
    assert make_spec(metric="valid.recall@100").metric == "recall@100"
    assert make_spec().metric == "ndcg@10"
    for bad in ("test.ndcg@10", "train.ndcg@10"):
        with pytest.raises(ValidationError, match="validation metric"):
            make_spec(metric=bad)
    with pytest.raises(ValidationError, match="ndcg@k"):
        make_spec(metric="loss")


def test_params_must_be_searchable_train_settings():
    with pytest.raises(ValidationError, match="not a train"):
        make_spec(params={"eval.batch_size": {"type": "int", "low": 8, "high": 16}})
    with pytest.raises(ValidationError, match="not a train"):
        make_spec(params={"train.learning_rat": {"type": "float", "low": 1e-5, "high": 1e-4}})
    with pytest.raises(ValidationError, match="changes the measurement"):
        make_spec(params={"train.eval_max_queries": {"type": "int", "low": 10, "high": 20}})
    with pytest.raises(ValidationError, match="only the sections"):
        make_spec(base={"paths": {"data_dir": "/tmp"}})
    with pytest.raises(ValidationError, match="unknown settings"):
        make_spec(base={"train": {"max_stepz": 3}})


def test_param_ranges_are_checked():
    with pytest.raises(ValidationError, match="log: true needs low > 0"):
        ParamSpec(type="float", low=0.0, high=1.0, log=True)
    with pytest.raises(ValidationError, match="integer"):
        ParamSpec(type="int", low=1.5, high=4)
    with pytest.raises(ValidationError, match="choices"):
        ParamSpec(type="categorical")
    with pytest.raises(ValidationError, match="above high"):
        ParamSpec(type="float", low=2.0, high=1.0)


def test_grid_enumerates_values_and_caps_the_budget():
    spec = make_spec(
        strategy="grid",
        n_trials=100,
        params={
            "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
            "train.batch_size": {"type": "int", "low": 8, "high": 16, "step": 8},
            "train.scheduler": {"type": "categorical", "choices": ["linear", "cosine"]},
        },
    )
    assert spec.grid() == {
        "train.warmup_ratio": [0.0, 0.1, 0.2],
        "train.batch_size": [8, 16],
        "train.scheduler": ["linear", "cosine"],
    }
    assert spec.grid_size() == 12 and spec.n_trials == 12 and len(spec.grid_points()) == 12
    with pytest.raises(ValidationError, match="needs a step"):
        make_spec(strategy="grid", params={"train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-4}})


def test_budget_is_required_and_overridable():
    with pytest.raises(ValidationError, match="budget"):
        make_spec(n_trials=None)
    spec = make_spec(n_trials=None, timeout_s=60)
    assert spec.timeout_s == 60
    changed = make_spec().with_budget(n_trials=7, strategy="tpe")
    assert changed.n_trials == 7 and changed.strategy == Strategy.tpe
    grid = make_spec(params={"train.batch_size": {"type": "categorical", "choices": [8, 16]}}).with_budget(
        strategy="grid"
    )
    assert grid.strategy == Strategy.grid and grid.n_trials == 2


def test_grid_refuses_conditional_lora_knobs():
    with pytest.raises(ValidationError, match="LoRA"):
        make_spec(
            strategy="grid",
            params={
                "train.lora": {"type": "categorical", "choices": [False, True]},
                "train.lora_r": {"type": "categorical", "choices": [4, 8]},
            },
        )


def test_shipped_sweep_files_load():
    main = load_spec(REPO / "configs" / "sweep.yaml")
    assert main.strategy == Strategy.tpe and main.pruner.kind == "median" and main.metric == "ndcg@10"
    assert {"train.learning_rate", "train.temperature", "train.batch_size"} <= set(main.params)
    tiny = load_spec(REPO / "configs" / "sweep_tiny.yaml")
    assert tiny.n_trials == 3


def test_load_spec_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ValueError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nparams: {train.learning_rate: {type: float}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml.*low and high"):
        load_spec(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        load_spec(bad)


def test_fingerprint_tracks_the_space_not_the_budget():
    assert make_spec().fingerprint() == make_spec(n_trials=9).fingerprint()
    assert make_spec().fingerprint() != make_spec(metric="recall@100").fingerprint()


def test_spec_round_trips_through_yaml(tmp_path: Path):
    spec = make_spec()
    path = tmp_path / "s.yaml"
    path.write_text(spec.to_yaml(), encoding="utf-8")
    assert load_spec(path) == spec
    assert isinstance(SweepSpec.model_validate(spec.model_dump()), SweepSpec)
