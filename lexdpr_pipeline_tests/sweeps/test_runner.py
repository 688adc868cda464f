"""Sweeps on the tiny model: trials, resume, failures, pruning, grid, fair batches, MLflow parent/children,
best.yaml. Real training (2–4 steps) unless a test says it replaces the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import optuna
import polars as pl
import pytest

from lexdpr_pipeline.evaluation import validation
from lexdpr_pipeline.models import tracked
from lexdpr_pipeline.models.training import RowStats, TrainResult
from lexdpr_pipeline.settings import load_settings, with_overrides
from lexdpr_pipeline.sweeps.runner import apply_base, baseline_params, run_sweep, sweep_dir
from lexdpr_pipeline.sweeps.space import ParamSpec
from lexdpr_pipeline_tests.sweeps.conftest import base_manifest, make_spec, project_settings

UNUSED = base_manifest("unused")  # the base model of tests whose trainer is replaced


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def _runs(root: Path) -> list:
    client = _client(root)
    return client.search_runs([client.get_experiment_by_name("lexdpr").experiment_id], max_results=1000)


def _children(root: Path, parent_id: str) -> list:
    return [r for r in _runs(root) if r.data.tags.get("mlflow.parentRunId") == parent_id]


@pytest.fixture
def split_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the split of every validation (the trial's validate_dense and, below it, the query sampler)."""
    seen: list[str] = []
    real_validate, real_queries = tracked.validate_dense, validation.eval_queries

    def validate(*args: Any, **kw: Any) -> dict[str, float]:
        seen.append(kw["split"])
        return real_validate(*args, **kw)

    def queries(splits: pl.DataFrame, corpus: pl.DataFrame, split: str, **kw: Any):
        seen.append(split)
        return real_queries(splits, corpus, split, **kw)

    monkeypatch.setattr(tracked, "validate_dense", validate)
    monkeypatch.setattr(validation, "eval_queries", queries)
    return seen


def test_three_trials_then_resume_to_five(tiny_data, tiny_model_dir: Path, tmp_path: Path, split_spy: list[str]):
    splits, corpus = tiny_data
    settings = project_settings(tmp_path)
    base = base_manifest(tiny_model_dir)
    result = run_sweep(make_spec(), settings, splits, corpus, base, tags={"dagster_run_id": "r1"}, progress=False)

    # three completed trials, a best, the table and plots on disk
    assert result.counts["COMPLETE"] == 3 and result.ran_now == [0, 1, 2]
    assert result.trials["number"].to_list() == [0, 1, 2]
    assert result.trials["value"].is_between(0, 1).all()
    assert result.best_value == result.trials["value"].max()
    # trial 0 is the default configuration (the project's own settings), so the sweep reports best vs default
    baseline, _ = baseline_params(apply_base(settings, make_spec()), make_spec())
    assert baseline is not None and baseline["train.learning_rate"] == settings.train.learning_rate
    assert result.trials.filter(pl.col("number") == 0)["value"].item() == pytest.approx(result.baseline_value)
    assert "default configuration" in result.summary_markdown()
    # a default that a categorical parameter cannot take gives no baseline trial, and says why
    narrow = make_spec().model_copy(
        update={"params": {"train.batch_size": ParamSpec(type="categorical", choices=[settings.train.batch_size + 1])}}
    )
    skipped, why = baseline_params(apply_base(settings, narrow), narrow)
    assert skipped is None and "not among its choices" in why
    out = sweep_dir(settings.data_dir, "tiny")
    assert (out / "optuna.db").exists() and (out / "trials.parquet").exists() and (out / "trials.md").exists()
    assert pl.read_parquet(out / "trials.parquet")["number"].to_list() == [0, 1, 2]
    assert {"optimization_history", "param_importances", "params_vs_score"} <= set(result.plots)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in result.plots.values())
    assert not any((out / "trials").glob("*/model"))  # trial models are not kept by default

    # best.yaml: the best trial's settings, loadable as a settings file (with the sweep's base)
    best = load_settings(result.best_config, environ={})
    assert best.train.learning_rate == pytest.approx(result.best_params["train.learning_rate"])
    assert best.train.temperature == result.best_params["train.temperature"]
    assert best.train.max_steps == 2 and best.train.eval_steps == 2  # the base overrides
    assert best.train.device is None  # runtime-only settings are left to the machine that trains
    as_overrides = with_overrides(settings, result.best_overrides()).train
    assert as_overrides.learning_rate == pytest.approx(result.best_params["train.learning_rate"])

    # the objective only ever looked at the valid split
    assert split_spy and set(split_spy) == {"valid"}

    # MLflow: one parent, three children with params, curves, final metrics and a state
    parent_id = result.mlflow_parent_run_id
    client = _client(tmp_path)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "sweep tiny" and parent.info.status == "FINISHED"
    assert parent.data.tags["dagster_run_id"] == "r1" and parent.data.tags["sweep.strategy"] == "random"
    assert float(parent.data.params["best.train.learning_rate"]) == pytest.approx(
        result.best_params["train.learning_rate"]
    )
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    artifacts = {a.path for a in client.list_artifacts(parent_id, "summary")} | {
        a.path for a in client.list_artifacts(parent_id, "plots")
    }
    assert {"summary/trials.parquet", "summary/best.yaml", "plots/optimization_history.png"} <= artifacts
    children = _children(tmp_path, parent_id)
    assert len(children) == 3 and len(_runs(tmp_path)) == 4
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["trial_state"] == "COMPLETE"
        assert "sampled.train.learning_rate" in child.data.params and "train.max_steps" in child.data.params
        assert "final_valid.ndcg_at_10" in child.data.metrics and "objective" in child.data.metrics
        assert len(client.get_metric_history(child.info.run_id, "loss")) == 2  # one point per step
        # the trial is the same tracked training as trained_model: its tags, params, final metrics at the last step
        assert child.data.tags["lexdpr.kind"] == "sweep_trial" and len(child.data.tags["model_content_hash"]) == 64
        assert child.data.params["base_model"] == "tiny" and child.data.params["base_model_hash"] == "tiny-1"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "final_valid.ndcg_at_10")] == [2]

    # resume with a budget of 5: two more trials (3 and 4), under the same sweep parent
    again = run_sweep(make_spec().with_budget(n_trials=5), settings, splits, corpus, base, progress=False)
    assert again.ran_now == [3, 4]
    assert again.trials["number"].to_list() == [0, 1, 2, 3, 4] and again.counts["COMPLETE"] == 5
    current = [r for r in _runs(tmp_path) if r.info.run_name == "sweep tiny"]
    assert [r.info.run_id for r in current] == [again.mlflow_parent_run_id]
    assert len(_children(tmp_path, again.mlflow_parent_run_id)) == 5
    # a sweep whose budget is used up runs nothing
    assert run_sweep(make_spec().with_budget(n_trials=5), settings, splits, corpus, base).ran_now == []


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tiny_data, tiny_model_dir: Path, tmp_path: Path):
    """Grid over temperature: -1 is refused (by the settings' validation, before training starts) and the trial is
    recorded as failed with that reason, as an OOM mid-training would be."""
    splits, corpus = tiny_data
    spec = make_spec(
        name="fails", strategy="grid", params={"train.temperature": {"type": "categorical", "choices": [-1.0, 0.05]}}
    )
    result = run_sweep(spec, project_settings(tmp_path), splits, corpus, base_manifest(tiny_model_dir), progress=False)
    states = dict(zip(result.trials["number"], result.trials["state"], strict=True))
    assert sorted(states.values()) == ["COMPLETE", "FAIL"]
    failed = result.trials.filter(pl.col("state") == "FAIL").row(0, named=True)
    assert "temperature" in failed["error"] and "greater than 0" in failed["error"]
    assert result.best_params == {"train.temperature": 0.05}
    assert load_settings(result.best_config, environ={}).train.temperature == 0.05
    children = {r.data.tags["trial_state"]: r for r in _children(tmp_path, result.mlflow_parent_run_id)}
    assert children["FAIL"].info.status == "FAILED" and "temperature" in children["FAIL"].data.tags["error"]
    assert children["COMPLETE"].info.status == "FINISHED"


def test_a_trial_below_the_median_is_pruned(tiny_data, tiny_model_dir: Path, tmp_path: Path, monkeypatch):
    """Validation replaced by a stub: trial 0 scores 0.9 at every validation, later trials 0.1."""
    splits, corpus = tiny_data
    calls: list[tuple[int, str]] = []

    def validate(model, **kw):
        trial = int(mlflow.active_run().data.tags["sweep.trial_number"])
        calls.append((trial, kw["split"]))
        score = 0.9 if trial == 0 else 0.1
        return {"ndcg@10": score, "recall@100": score}

    monkeypatch.setattr(tracked, "validate_dense", validate)
    spec = make_spec(
        name="prune",
        n_trials=2,
        pruner={"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        base={"train": {"max_steps": 4, "eval_steps": 1}},
    )
    result = run_sweep(spec, project_settings(tmp_path), splits, corpus, base_manifest(tiny_model_dir), progress=False)
    rows = {r["number"]: r for r in result.trials.iter_rows(named=True)}
    assert rows[0]["state"] == "COMPLETE" and rows[0]["last_step"] == 4
    assert rows[1]["state"] == "PRUNED" and rows[1]["last_step"] == 1  # stopped at its first validation
    assert rows[1]["value"] == pytest.approx(0.1)
    assert {split for _, split in calls} == {"valid"}
    assert sum(1 for t, _ in calls if t == 1) == 1  # no more validations (nor training) after the prune
    child = next(
        r for r in _children(tmp_path, result.mlflow_parent_run_id) if r.data.tags["sweep.trial_number"] == "1"
    )
    assert child.info.status == "KILLED" and child.data.tags["trial_state"] == "PRUNED"


# ------------------------------------------------------------------------ trainer replaced (sampling logic only)


def trained(work_dir: Path, metrics: dict[str, float], global_step: int) -> TrainResult:
    """What a replaced trainer returns (nothing is written)."""
    return TrainResult(Path(work_dir) / "model", metrics, {}, [], RowStats(), {}, None, global_step, 0.0)


@pytest.fixture
def fake_trainer(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replaces training: records each trial's TrainSettings and returns a score from the learning rate."""
    seen: list[Any] = []

    def train(base, rows, row_stats, cfg, work_dir, *, validate=None, callbacks=(), metadata=None):
        seen.append(cfg)
        return trained(work_dir, {"ndcg@10": min(cfg.learning_rate * 10, 1.0)}, cfg.max_steps)

    monkeypatch.setattr(tracked, "train_biencoder", train)
    return seen


def test_grid_enumerates_the_grid_with_fair_batches(tiny_data, tmp_path: Path, fake_trainer: list[Any]):
    splits, corpus = tiny_data
    spec = make_spec(
        name="grid",
        strategy="grid",
        n_trials=None,  # the grid's size
        params={
            "train.batch_size": {"type": "categorical", "choices": [4, 8]},
            "train.gradient_accumulation_steps": {"type": "int", "low": 1, "high": 2},
        },
    )
    result = run_sweep(spec, project_settings(tmp_path), splits, corpus, UNUSED, progress=False)
    assert result.counts["COMPLETE"] == 4 and spec.n_trials == 4
    sampled = {
        (r["train.batch_size"], r["train.gradient_accumulation_steps"]) for r in result.trials.iter_rows(named=True)
    }
    assert sampled == {(4, 1), (4, 2), (8, 1), (8, 2)}
    # each trial trained B×G rows per step in one cached-loss batch, encoding at most B texts at a time
    effective = sorted((c.batch_size, c.gradient_accumulation_steps, c.loss, c.mini_batch_size) for c in fake_trainer)
    assert effective == [
        (4, 1, "cached_mnrl", 4),
        (8, 1, "cached_mnrl", 4),
        (8, 1, "cached_mnrl", 8),
        (16, 1, "cached_mnrl", 8),
    ]
    adjusted = result.trials.filter(pl.col("train.batch_size") == 8, pl.col("train.gradient_accumulation_steps") == 2)
    assert '"batch_size": 16' in adjusted["adjustments"][0] and '"loss": "cached_mnrl"' in adjusted["adjustments"][0]
    # grid exhausted: running it again adds nothing
    assert run_sweep(spec, project_settings(tmp_path), splits, corpus, UNUSED, progress=False).ran_now == []


def test_an_interrupted_trial_runs_again_without_using_budget(tiny_data, tmp_path: Path, fake_trainer: list[Any]):
    splits, corpus = tiny_data
    settings = project_settings(tmp_path)
    spec = make_spec(name="crash", n_trials=1)
    run_sweep(spec, settings, splits, corpus, UNUSED, progress=False)
    # a process killed mid-trial leaves the trial RUNNING in the storage
    study = optuna.load_study(
        study_name="crash", storage=f"sqlite:///{sweep_dir(settings.data_dir, 'crash') / 'optuna.db'}"
    )
    killed = study.ask()
    lr = killed.suggest_float("train.learning_rate", 1e-4, 1e-2, log=True)
    killed.suggest_categorical("train.temperature", [0.05, 0.1])
    result = run_sweep(spec.with_budget(n_trials=2), settings, splits, corpus, UNUSED, progress=False)
    assert result.requeued == [1] and result.ran_now == [2]
    rows = {r["number"]: r for r in result.trials.iter_rows(named=True)}
    assert rows[1]["state"] == "INTERRUPTED" and rows[2]["retry_of"] == 1
    assert rows[2]["train.learning_rate"] == pytest.approx(lr) and rows[2]["state"] == "COMPLETE"
    assert result.counts["COMPLETE"] == 2


def test_lora_knobs_are_only_sampled_with_lora_on(tiny_data, tmp_path: Path, fake_trainer: list[Any]):
    splits, corpus = tiny_data
    lora_r = {"type": "categorical", "choices": [4, 8]}
    with pytest.raises(ValueError, match="LoRA is off"):
        nolora = make_spec(name="nolora", params={"train.lora_r": lora_r})
        run_sweep(nolora, project_settings(tmp_path), splits, corpus, UNUSED)
    spec = make_spec(
        name="lora",
        n_trials=8,
        params={"train.lora": {"type": "categorical", "choices": [False, True]}, "train.lora_r": lora_r},
    )
    result = run_sweep(spec, project_settings(tmp_path), splits, corpus, UNUSED, progress=False)
    rows = result.trials.select("train.lora", "train.lora_r").rows()
    assert {lora for lora, _ in rows} == {False, True}
    assert all((r is None) == (not lora) for lora, r in rows)
    assert all(c.lora_r in (4, 8) for c in fake_trainer if c.lora)


def test_a_second_process_cannot_run_the_same_sweep(tiny_data, tmp_path: Path, fake_trainer: list[Any]):
    splits, corpus = tiny_data
    settings = project_settings(tmp_path)
    lock = sweep_dir(settings.data_dir, "tiny") / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("1@another-host", encoding="utf-8")
    with pytest.raises(RuntimeError, match="already running"):
        run_sweep(make_spec(), settings, splits, corpus, UNUSED, progress=False)
    lock.write_text("999999999@" + __import__("socket").gethostname(), encoding="utf-8")  # a dead local process
    assert run_sweep(make_spec(n_trials=1), settings, splits, corpus, UNUSED, progress=False).ran_now == [0]
    assert not lock.exists()


def test_ctrl_c_mid_trial_keeps_results_and_the_trial_runs_again(tiny_data, tmp_path: Path, monkeypatch):
    splits, corpus = tiny_data
    settings = project_settings(tmp_path)
    calls = {"n": 0}

    def train(base, rows, row_stats, cfg, work_dir, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return trained(work_dir, {"ndcg@10": 0.1 * calls["n"]}, 1)

    monkeypatch.setattr(tracked, "train_biencoder", train)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(make_spec(name="ctrlc"), settings, splits, corpus, UNUSED, progress=False)
    out = sweep_dir(settings.data_dir, "ctrlc")
    assert (out / "best.yaml").exists() and pl.read_parquet(out / "trials.parquet")["state"].to_list() == [
        "COMPLETE",
        "INTERRUPTED",
    ]
    parent = next(r for r in _runs(tmp_path) if r.info.run_name == "sweep ctrlc")
    assert parent.info.status == "KILLED"
    interrupted = next(r for r in _children(tmp_path, parent.info.run_id) if r.data.tags["sweep.trial_number"] == "1")
    assert interrupted.data.tags["trial_state"] == "INTERRUPTED"

    result = run_sweep(make_spec(name="ctrlc"), settings, splits, corpus, UNUSED, progress=False)
    assert result.requeued == [1] and result.ran_now == [2, 3]  # the retry of 1, then the last of 3 counted trials
    assert result.trials.filter(pl.col("number") == 2)["retry_of"].to_list() == [1]
    assert result.counts["COMPLETE"] == 3 and result.counts["INTERRUPTED"] == 1


def test_a_new_best_after_resume_moves_the_trials_to_a_new_parent(tiny_data, tmp_path: Path, monkeypatch):
    """MLflow params cannot change: the superseded parent keeps its old best, the new one holds every trial."""
    splits, corpus = tiny_data
    settings = project_settings(tmp_path)
    scores = iter([0.1, 0.2, 0.3])  # every trial beats the one before

    monkeypatch.setattr(tracked, "train_biencoder", lambda *a, **kw: trained(a[4], {"ndcg@10": next(scores)}, 1))
    first = run_sweep(make_spec(n_trials=1), settings, splits, corpus, UNUSED, progress=False)
    again = run_sweep(make_spec(n_trials=3), settings, splits, corpus, UNUSED, progress=False)
    assert again.best_trial == 2 and again.mlflow_parent_run_id != first.mlflow_parent_run_id
    client = _client(tmp_path)
    old, new = client.get_run(first.mlflow_parent_run_id), client.get_run(again.mlflow_parent_run_id)
    assert old.info.run_name == "sweep tiny (superseded)" and old.data.tags["lexdpr.superseded_by"] == new.info.run_id
    assert old.data.params["best.trial_number"] == "0" and new.data.params["best.trial_number"] == "2"
    assert new.info.run_name == "sweep tiny" and new.info.status == "FINISHED"
    assert len(_children(tmp_path, new.info.run_id)) == 3 and not _children(tmp_path, old.info.run_id)
