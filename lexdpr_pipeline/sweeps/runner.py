"""The sweep: an Optuna study over ``train.*`` settings, each trial a short training scored on validation queries.

- Storage: ``data/sweeps/<name>/optuna.db`` (sqlite). Running the same sweep again resumes it: the budget
  (``n_trials``) counts the trials already stored, so only the remaining ones run. A trial cut off by a crash or
  Ctrl-C is marked failed (``interrupted``), not counted, and its parameters are queued to run again.
- One failing trial (out of memory, a bad value) is recorded FAIL with its error and the sweep goes on
  (``catch=(Exception,)``); validations during training feed the pruner, which stops hopeless trials early.
- The objective is a validation metric from :func:`validate_dense` on the ``valid`` split, the same seeded queries and
  passages for every trial; the test split is never read.
- MLflow: one parent run ``sweep <name>`` (reopened on resume) and one child run per trial (``mlflow.parentRunId``)
  with its parameters, loss and validation curves, final metrics, status and a ``trial_state`` tag. The parent holds
  the summary: ``best.*`` parameters, the best value, the trials table and the plots. A trial's training and child
  run are :func:`~lexdpr_pipeline.models.tracked.train_tracked`, the same tracked training as ``trained_model``.
- ``best.yaml``: the best trial's ``train`` settings (and the sweep's ``base`` sections) in the settings layout, so
  ``lex-dpr --config data/sweeps/<name>/best.yaml train`` trains with them.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import yaml
from optuna.trial import TrialState

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, Kind
from lexdpr_pipeline.models.tracked import VALIDATION_KS, TrackedTraining, train_tracked
from lexdpr_pipeline.settings import Settings, TrainSettings
from lexdpr_pipeline.storage import atomic_write_text
from lexdpr_pipeline.sweeps.report import SweepReport, write_report
from lexdpr_pipeline.sweeps.space import (
    BATCH_PARAMS,
    LORA_PARAMS,
    Strategy,
    SweepSpec,
    metric_k,
    param_value,
    set_param,
)
from lexdpr_pipeline.tracking import (
    RunHandle,
    TrackingTarget,
    end_run,
    experiment_id,
    log_metrics,
    log_params,
    safe_metric_name,
    start_run,
    target_for,
)

_log = logging.getLogger(__name__)
PARENT_ATTR = "mlflow_parent_run_id"
FINGERPRINT_ATTR = "space_fingerprint"
#: Runtime-only settings left out of best.yaml (they belong to the machine that trains, not to the result).
NOT_IN_BEST = ("device", "resume", "test_run", "test_run_steps")


def sweep_dir(data_dir: Path, name: str) -> Path:
    """``data/sweeps/<name>``: the study, its tables and plots, best.yaml, and ``trials/<number>`` folders."""
    return ArtifactStore(Path(data_dir)).folder(Kind.SWEEP, name)


# ------------------------------------------------------------------------------------------------ trial settings


def apply_base(settings: Settings, spec: SweepSpec) -> Settings:
    """``settings`` with the sweep's ``base`` sections (train / eval) laid over them."""
    if not spec.base:
        return settings
    tree = settings.model_dump(mode="python")
    for section, fields in spec.base.items():
        tree[section] = {**tree[section], **fields}
    return Settings.model_validate(tree)


def baseline_params(settings: Settings, spec: SweepSpec) -> tuple[dict[str, Any] | None, str]:
    """The searched parameters' values in ``settings`` (the sweep's default configuration), or None and why when a
    categorical parameter's choices do not include the default (the trial could not be sampled as it is)."""
    out: dict[str, Any] = {}
    for name, param in spec.params.items():
        value = param_value(settings.train, name)  # params are train.* (an entry of a mapping: train.x.key)
        if param.type == "categorical" and value not in (param.choices or []):
            return None, f"no baseline trial: the default {name}={value} is not among its choices {param.choices}"
        out[name] = value
    return out, ""


def baseline_value(study: optuna.Study) -> float | None:
    """The objective of the baseline trial (the default configuration), when it completed."""
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE:
            return float(t.value)  # type: ignore[arg-type]
    return None


def fair_batch_adjustments(cfg: TrainSettings) -> tuple[TrainSettings, dict[str, Any]]:
    """Train a sampled (batch_size B, gradient_accumulation_steps G) as one cached-MNRL batch of B×G rows.

    Gradient accumulation does not add in-batch negatives: with plain MNRL each of the G micro-batches only sees its
    own B-1 negatives, so (B=16, G=4) is a weaker contrastive task than B=64 at the same examples per step. The
    cached loss gives every anchor all B×G-1 negatives while encoding ``min(mini_batch_size, B)`` texts at a time
    (memory of the sampled batch), so trials differ only in the effective batch they were meant to test.
    Returns the adjusted settings and what changed (recorded with the trial).
    """
    update = {
        "loss": "cached_mnrl",
        "batch_size": cfg.batch_size * cfg.gradient_accumulation_steps,
        "gradient_accumulation_steps": 1,
        "mini_batch_size": min(cfg.mini_batch_size, cfg.batch_size),
    }
    changed = {k: v for k, v in update.items() if getattr(cfg, k) != v}
    return TrainSettings.model_validate({**cfg.model_dump(mode="python"), **update}), changed


def trial_settings(base: Settings, spec: SweepSpec, values: Mapping[str, Any]) -> tuple[Settings, dict[str, Any]]:
    """The settings one trial trains with: ``base`` (project settings + the sweep's base) and the sampled values,
    then the fair-batch adjustment when the space varies the batch. Returns (settings, adjustments)."""
    train = base.train.model_dump(mode="python")
    for name, value in values.items():
        set_param(train, name, value)
    cfg = TrainSettings.model_validate(train)
    adjustments: dict[str, Any] = {}
    if spec.fair_batches and BATCH_PARAMS & set(spec.params):
        cfg, adjustments = fair_batch_adjustments(cfg)
    return base.model_copy(update={"train": cfg}), adjustments


def check_lora_space(spec: SweepSpec, base: Settings) -> None:
    """LoRA knobs are only sampled where LoRA is on: searching them with LoRA always off is a mistake."""
    if not LORA_PARAMS & set(spec.params):
        return
    lora = spec.params.get("train.lora")
    if base.train.lora or (lora is not None and True in (lora.choices or [])):
        return
    raise ValueError(
        f"the sweep searches {sorted(LORA_PARAMS & set(spec.params))} but LoRA is off: set train.lora: true in "
        "base, or search train.lora: {type: categorical, choices: [false, true]}"
    )


def suggest_values(trial: optuna.Trial, spec: SweepSpec, lora_default: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, param in spec.ordered_params():
        if name in LORA_PARAMS and not values.get("train.lora", lora_default):
            continue
        values[name] = param.suggest(trial, name)
    return values


# ----------------------------------------------------------------------------------------------------- the study


def _sampler(spec: SweepSpec, n_existing: int) -> optuna.samplers.BaseSampler:
    # Reseed on resume: the same seed would replay the first session's random draws.
    seed = spec.seed + n_existing
    if spec.strategy == Strategy.grid:
        return optuna.samplers.GridSampler(spec.grid(), seed=seed)
    if spec.strategy == Strategy.random:
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.tpe_startup_trials)


def _pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.kind == "none":
        return optuna.pruners.NopPruner()
    if p.kind == "percentile":
        return optuna.pruners.PercentilePruner(
            p.percentile,
            n_startup_trials=p.n_startup_trials,
            n_warmup_steps=p.n_warmup_steps,
            interval_steps=p.interval_steps,
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps, interval_steps=p.interval_steps
    )


def counted_trials(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials that used up budget: finished ones, except those cut off by an interruption (they run again)."""
    return [t for t in trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]


def requeue_interrupted(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Mark trials left RUNNING by a killed process as failed (``interrupted``) and queue every interrupted trial's
    parameters once more. Call only while holding the sweep's lock (no other process runs this study)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    requeued = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_user_attr(t._trial_id, "error", "interrupted (the process stopped during this trial)")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("interrupted")):
            continue
        if t.number in retried or not t.params:
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        requeued.append(t.number)
    return requeued


@contextmanager
def _exclusive(folder: Path, name: str) -> Iterator[None]:
    """One process per sweep: a lock file with pid@host; a stale lock of a dead local process is taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    me = f"{os.getpid()}@{socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock.read_text(encoding="utf-8").strip() if lock.exists() else ""
            pid, _, host = holder.partition("@")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            raise RuntimeError(
                f"sweep {name!r} is already running ({holder or 'unknown process'}); if that process is gone, "
                f"delete {lock}"
            ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------------- the trials


def pruning_callback(trial: optuna.Trial, metric: str) -> Any:
    """Trainer callback: every validation's score goes to ``trial.report``; a trial the pruner gives up on stops
    with :class:`optuna.TrialPruned` (raised out of training)."""
    from transformers import TrainerCallback

    key = f"eval_valid_{metric}"

    class _Prune(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[override]
            value = (metrics or {}).get(key)
            if value is None:
                return
            trial.report(float(value), state.global_step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {state.global_step}: valid {metric} {float(value):.4f}")

    return _Prune()


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def trial_error(trial: optuna.Trial, exc: BaseException) -> tuple[str, dict[str, str]]:
    """How a trial's error ends its MLflow run (status, tags) and what the trial records about it: pruned → KILLED,
    Ctrl-C → KILLED and ``interrupted`` (it runs again on resume), anything else → FAILED with the error."""
    if isinstance(exc, optuna.TrialPruned):
        return "KILLED", {"trial_state": "PRUNED", "pruned_reason": str(exc)}
    if isinstance(exc, KeyboardInterrupt):
        trial.set_user_attr("interrupted", True)
        trial.set_user_attr("error", "interrupted (KeyboardInterrupt)")
        return "KILLED", {"trial_state": "INTERRUPTED"}
    message = f"{type(exc).__name__}: {exc}"[:500]
    trial.set_user_attr("error", message)
    return "FAILED", {"trial_state": "FAIL", "error": message}


class TrialObjective:
    """One trial: sample, train (``max_steps`` from the sweep's base), validate, report; an MLflow child run.

    The training is :func:`~lexdpr_pipeline.models.tracked.train_tracked` (what ``trained_model`` does) into the
    trial's own folder ``trials/<number>`` (removed afterwards unless ``keep_trial_models``), never reused."""

    def __init__(
        self,
        *,
        spec: SweepSpec,
        base: Settings,
        splits: pl.DataFrame,
        corpus: pl.DataFrame,
        base_model: BaseModelManifest,
        store: ArtifactStore,
        work_root: Path,
        target: TrackingTarget,
        parent_run_id: Callable[[], str],
        tags: Mapping[str, str],
    ) -> None:
        self.spec, self.base, self.splits, self.corpus = spec, base, splits, corpus
        self.base_model, self.store, self.work_root, self.target = base_model, store, work_root, target
        self.parent_run_id, self.tags = parent_run_id, dict(tags)
        self.ran: list[int] = []

    def __call__(self, trial: optuna.Trial) -> float:
        import mlflow

        self.ran.append(trial.number)
        spec, metric = self.spec, self.spec.metric
        values = suggest_values(trial, spec, self.base.train.lora)
        work_dir = self.work_root / f"{trial.number:04d}"
        tags = {
            **self.tags,
            "lexdpr.kind": "sweep_trial",
            "sweep.name": spec.name,
            "sweep.trial_number": str(trial.number),
        }
        if "retry_of" in trial.user_attrs:
            tags["sweep.retry_of"] = str(trial.user_attrs["retry_of"])
        run: dict[str, Any] = {
            "run_name": f"{spec.name} trial {trial.number}",
            "tags": tags,
            "parent_run_id": self.parent_run_id(),
        }

        def started(handle: RunHandle) -> None:
            trial.set_user_attr("mlflow_run_id", handle.run_id)

        def finished(outcome: TrackedTraining) -> None:
            if metric not in outcome.metrics:
                raise ValueError(f"validation gave no {metric} (got {sorted(outcome.metrics)})")
            objective = {"objective": float(outcome.metrics[metric]), "global_step": outcome.global_step or 0}
            log_metrics(objective, step=outcome.global_step)
            mlflow.set_tag("trial_state", "COMPLETE")

        try:
            try:
                settings, adjustments = trial_settings(self.base, spec, values)
            except Exception as exc:  # refused before training: the trial still gets its (failed) child run
                with start_run(self.target, **run) as (_run, handle):
                    started(handle)
                    log_params({"sampled": values})
                    end_run(*trial_error(trial, exc))
                raise
            cfg = settings.train
            trial.set_user_attr("adjustments", adjustments)
            trial.set_user_attr("train", cfg.model_dump(mode="json"))
            _log.info("trial %d: %s%s", trial.number, values, f" (adjusted: {adjustments})" if adjustments else "")
            outcome = train_tracked(
                cfg,
                settings.eval,
                settings.tracking,
                self.splits,
                self.corpus,
                self.base_model,
                self.store,
                **run,
                params={"sampled": values, "adjusted": adjustments},
                metadata={"sweep": spec.name, "trial": trial.number},
                work_dir=work_dir,
                reuse=False,
                validation_ks=tuple(sorted({*VALIDATION_KS, metric_k(metric)})),
                callbacks=[pruning_callback(trial, metric)],
                plot_curve=False,
                log_model=False,
                on_run_start=started,
                on_result=finished,
                on_error=partial(trial_error, trial),
            )
            return float(outcome.metrics[metric])
        finally:
            if not spec.keep_trial_models:
                shutil.rmtree(work_dir, ignore_errors=True)
            _free_memory()


# ------------------------------------------------------------------------------------------ MLflow parent summary


def _open_parent(client: Any, target: TrackingTarget, study: optuna.Study, spec: SweepSpec, tags: dict) -> str:
    """The sweep's parent run: the stored one, reopened, or a new one."""
    from mlflow.exceptions import MlflowException

    exp = experiment_id(target)
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            run = None
        if run is not None and run.info.lifecycle_stage == "active" and run.info.experiment_id == exp:
            client.update_run(run_id, status="RUNNING")
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            return run_id
    run = client.create_run(exp, run_name=f"sweep {spec.name}", tags=tags)
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def _supersede_parent(client: Any, study: optuna.Study, old_id: str, name: str) -> str:
    """MLflow params cannot change: when a resumed sweep finds a new best, a new parent takes over every trial run
    (their ``mlflow.parentRunId`` is re-pointed) and the old one is renamed ``… (superseded)``."""
    old = client.get_run(old_id)
    exp = old.info.experiment_id
    tags = {k: v for k, v in old.data.tags.items() if not k.startswith("mlflow.")}
    new_id = client.create_run(exp, run_name=f"sweep {name}", tags={**tags, "lexdpr.supersedes": old_id}).info.run_id
    children = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{old_id}'", max_results=50000)
    for child in children:
        client.set_tag(child.info.run_id, "mlflow.parentRunId", new_id)
    client.set_tag(old_id, "lexdpr.superseded_by", new_id)
    client.update_run(old_id, status="FINISHED", name=f"sweep {name} (superseded)")
    study.set_user_attr(PARENT_ATTR, new_id)
    return new_id


def _log_parent_summary(
    client: Any,
    study: optuna.Study,
    parent_id: str,
    spec: SweepSpec,
    summary: SweepResult,
    files: list[tuple[Path, str]],
) -> str:
    from mlflow.entities import Metric, Param, RunTag

    params = {f"best.{k}": str(v)[:6000] for k, v in summary.best_params.items()}
    params |= {f"best.adjusted.{k}": str(v) for k, v in summary.best_adjustments.items()}
    if summary.best_trial is not None:
        params["best.trial_number"] = str(summary.best_trial)
    existing = client.get_run(parent_id).data.params
    if any(k in existing and existing[k] != v for k, v in params.items()):
        parent_id = _supersede_parent(client, study, parent_id, spec.name)
        existing = {}
    now = int(time.time() * 1000)
    step = int(sum(summary.counts.values()))
    metrics = {f"n_{state.lower()}": float(n) for state, n in summary.counts.items()}
    if summary.best_value is not None:
        metrics["best_value"] = summary.best_value
        metrics[f"best.{spec.metric}"] = summary.best_value
    tags = {
        "sweep.strategy": spec.strategy.value,
        "sweep.metric": f"valid.{spec.metric}",
        "sweep.direction": spec.direction,
        "sweep.n_trials": str(spec.n_trials),
        "sweep.pruner": spec.pruner.kind,
        "sweep.space_fingerprint": spec.fingerprint(),
        "sweep.best_config": str(summary.best_config or ""),
    }
    client.log_batch(
        parent_id,
        metrics=[Metric(safe_metric_name(k), float(v), now, step) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items() if k not in existing],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    for path, artifact_path in files:
        if path.exists():
            client.log_artifact(parent_id, str(path), artifact_path=artifact_path)
    return parent_id


# ------------------------------------------------------------------------------------------------------- results


@dataclass
class SweepResult:
    name: str
    strategy: str
    metric: str
    direction: str
    sweep_dir: Path
    storage_url: str
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any]
    best_adjustments: dict[str, Any]
    best_config: Path | None
    baseline_value: float | None
    trials: pl.DataFrame
    table_markdown: str
    counts: dict[str, int]
    ran_now: list[int]
    requeued: list[int]
    plots: dict[str, Path] = field(default_factory=dict)
    importances: dict[str, float] | None = None
    mlflow_parent_run_id: str = ""
    mlflow_url: str = ""
    tracking_uri: str = ""
    notes: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0

    def best_overrides(self) -> list[str]:
        """The best values as ``train.x=value`` overrides (``trained_model`` run config, ``lex-dpr --set``)."""
        merged = {**self.best_params, **{f"train.{k}": v for k, v in self.best_adjustments.items()}}
        return [f"{k}={json.dumps(v) if isinstance(v, str | bool) or v is None else v}" for k, v in merged.items()]

    def summary_markdown(self) -> str:
        counts = ", ".join(f"{n} {state.lower()}" for state, n in self.counts.items() if n)
        lines = [f"**Sweep {self.name}** ({self.strategy}, valid {self.metric}, {self.direction}): {counts or '—'}"]
        if self.best_trial is not None:
            lines.append(f"best: trial {self.best_trial}, {self.metric} = {self.best_value:.4f}")
            if self.baseline_value is not None:
                lines.append(f"default configuration (trial 0, baseline): {self.metric} = {self.baseline_value:.4f}")
            lines += [f"- `{k}` = {v}" for k, v in self.best_params.items()]
            if self.best_adjustments:
                lines.append(f"- adjusted for fair batches: {self.best_adjustments}")
            lines.append(f"config: `{self.best_config}`")
        lines += [f"_note: {n}_" for n in self.notes]
        return "\n".join(lines)


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: (t.value, -t.number) if pick is max else (t.value, t.number))


def best_config_yaml(spec: SweepSpec, trial: optuna.trial.FrozenTrial) -> str:
    """The settings file of the best trial: its whole ``train`` section (runtime-only keys left out) and the
    sweep's other ``base`` sections, with a header saying where it came from."""
    train = {k: v for k, v in trial.user_attrs["train"].items() if k not in NOT_IN_BEST}
    tree: dict[str, Any] = {"train": train}
    for section, fields in spec.base.items():
        if section != "train":
            tree[section] = dict(fields)
    sampled = ", ".join(f"{k}={v}" for k, v in trial.params.items())
    adjusted = trial.user_attrs.get("adjustments") or {}
    header = [
        f"# Best trial of sweep '{spec.name}': trial {trial.number}, valid {spec.metric} = {trial.value:.4f}",
        f"# written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; sampled: {sampled}",
    ]
    if adjusted:
        header.append(f"# adjusted for a fair effective batch (cached loss): {adjusted}")
    header.append(f"# use: lex-dpr --config data/sweeps/{spec.name}/best.yaml train")
    return "\n".join(header) + "\n" + yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


def _summarize(
    study: optuna.Study, spec: SweepSpec, out: Path, report: SweepReport, objective: TrialObjective | None
) -> SweepResult:
    trials = study.get_trials(deepcopy=False)
    counts = {s: 0 for s in ("COMPLETE", "PRUNED", "FAIL", "INTERRUPTED", "RUNNING", "WAITING")}
    for state in report.frame["state"]:
        counts[state] = counts.get(state, 0) + 1
    best = _best(study)
    best_config = None
    if best is not None:
        best_config = atomic_write_text(out / "best.yaml", best_config_yaml(spec, best))
    return SweepResult(
        name=spec.name,
        strategy=spec.strategy.value,
        metric=spec.metric,
        direction=spec.direction,
        sweep_dir=out,
        storage_url=f"sqlite:///{out / 'optuna.db'}",
        best_value=None if best is None else float(best.value),  # type: ignore[arg-type]
        best_trial=None if best is None else best.number,
        best_params={} if best is None else dict(best.params),
        best_adjustments={} if best is None else dict(best.user_attrs.get("adjustments") or {}),
        best_config=best_config,
        baseline_value=baseline_value(study),
        trials=report.frame,
        table_markdown=report.markdown,
        counts={k: v for k, v in counts.items() if v or k in ("COMPLETE", "PRUNED", "FAIL")},
        ran_now=list(objective.ran) if objective else [],
        requeued=[],
        plots=report.plots,
        importances=report.importances,
        notes=[] if trials else ["no trials"],
    )


# ------------------------------------------------------------------------------------------------------ run_sweep


def run_sweep(
    spec: SweepSpec,
    settings: Settings,
    splits: pl.DataFrame,
    corpus: pl.DataFrame,
    base_model: BaseModelManifest,
    *,
    tags: Mapping[str, str] | None = None,
    progress: bool = True,
    store: ArtifactStore | None = None,
) -> SweepResult:
    """Run (or resume) the sweep ``spec`` on the training data; see the module doc. ``settings`` are the project's
    (the sweep's ``base`` and each trial's values go on top); ``store`` defaults to the settings' data folder."""
    started = time.perf_counter()
    import mlflow

    store = store or ArtifactStore.from_settings(settings)
    out = store.folder(Kind.SWEEP, spec.name)
    base = apply_base(settings, spec)
    check_lora_space(spec, base)
    tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
    optuna.logging.set_verbosity(optuna.logging.INFO)
    with _exclusive(out, spec.name):
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{out / 'optuna.db'}", engine_kwargs={"connect_args": {"timeout": 60}}
        )
        existing = optuna.load_study(study_name=spec.name, storage=storage) if _has_study(storage, spec.name) else None
        if existing is not None and existing.direction.name.lower() != spec.direction:
            raise ValueError(
                f"sweep {spec.name!r} was created to {existing.direction.name.lower()}; it cannot resume to "
                f"{spec.direction} (use another name)"
            )
        n_before = len(existing.get_trials(deepcopy=False)) if existing is not None else 0
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            direction=spec.direction,
            sampler=_sampler(spec, n_before),
            pruner=_pruner(spec),
            load_if_exists=True,
        )
        notes: list[str] = []
        old_fp = study.user_attrs.get(FINGERPRINT_ATTR)
        if old_fp is not None and old_fp != spec.fingerprint():
            notes.append("the search space or fixed settings changed since this study began: compare with care")
            _log.warning("sweep %s: %s", spec.name, notes[-1])
        study.set_user_attr(FINGERPRINT_ATTR, spec.fingerprint())
        atomic_write_text(out / "sweep.yaml", spec.to_yaml())
        if n_before == 0 and spec.baseline_trial and spec.strategy != Strategy.grid:  # a grid has its own points
            baseline, why_not = baseline_params(base, spec)
            if baseline is None:
                notes.append(why_not)
                _log.warning("sweep %s: %s", spec.name, why_not)
            else:
                study.enqueue_trial(baseline, user_attrs={"baseline": True})
        requeued = requeue_interrupted(study, storage)
        if requeued:
            notes.append(f"re-queued interrupted trials {requeued}")
        done = len(counted_trials(study.get_trials(deepcopy=False)))
        remaining = None if spec.n_trials is None else max(spec.n_trials - done, 0)
        _log.info(
            "sweep %s: %d trials stored, %s to run (timeout %s s) → %s",
            spec.name,
            done,
            "until the timeout" if remaining is None else remaining,
            spec.timeout_s,
            out,
        )
        target = target_for(settings.tracking, store.data_dir)
        client = mlflow.MlflowClient(tracking_uri=target.uri)
        parent_tags = {**tags, "lexdpr.kind": "sweep", "sweep.name": spec.name, "sweep.strategy": spec.strategy.value}
        parent_id = _open_parent(client, target, study, spec, parent_tags)
        objective = TrialObjective(
            spec=spec,
            base=base,
            splits=splits,
            corpus=corpus,
            base_model=base_model,
            store=store,
            work_root=out / "trials",
            target=target,
            parent_run_id=lambda: parent_id,
            tags=tags,
        )
        param_names = list(spec.params)
        log_params_ = [n for n, p in spec.params.items() if p.log]

        def after_trial(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            # A table and best.yaml after every trial: an interrupted sweep still leaves its results.
            rep = write_report(
                study_, out, param_names=param_names, metric=spec.metric, direction=spec.direction, plots=False
            )
            _summarize(study_, spec, out, rep, None)
            best = _best(study_)
            _log.info(
                "sweep %s: trial %d %s%s; best so far %s",
                spec.name,
                trial.number,
                trial.state.name,
                "" if trial.value is None else f" {spec.metric}={trial.value:.4f}",
                "—" if best is None else f"trial {best.number} ({best.value:.4f})",
            )

        status = "FAILED"
        try:
            if remaining is None or remaining > 0:
                study.optimize(
                    objective,
                    n_trials=remaining,
                    timeout=spec.timeout_s,
                    catch=(Exception,),
                    callbacks=[after_trial],
                    show_progress_bar=progress,
                )
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            report = write_report(
                study,
                out,
                param_names=param_names,
                metric=spec.metric,
                direction=spec.direction,
                log_params=log_params_,
            )
            result = _summarize(study, spec, out, report, objective)
            result.requeued, result.notes = requeued, notes + [n for n in result.notes if n not in notes]
            result.wall_time_s = round(time.perf_counter() - started, 1)
            summary_path = atomic_write_text(
                out / "summary.json", json.dumps(_summary_json(result), ensure_ascii=False, indent=2, default=str)
            )
            files = [(report.table_path, "summary"), (report.markdown_path, "summary"), (summary_path, "summary")]
            files += [(out / "sweep.yaml", "summary")]
            if result.best_config is not None:
                files.append((result.best_config, "summary"))
            files += [(p, "plots") for p in report.plots.values()]
            parent_id = _log_parent_summary(client, study, parent_id, spec, result, files)
            client.set_terminated(parent_id, status=status)
            exp = client.get_run(parent_id).info.experiment_id
            result.mlflow_parent_run_id = parent_id
            result.mlflow_url = target.run_url(exp, parent_id)
            result.tracking_uri = target.display_uri
    return result


def _has_study(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def _summary_json(result: SweepResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "strategy": result.strategy,
        "metric": f"valid.{result.metric}",
        "direction": result.direction,
        "best_value": result.best_value,
        "baseline_value": result.baseline_value,
        "best_trial": result.best_trial,
        "best_params": result.best_params,
        "best_adjustments": result.best_adjustments,
        "best_config": result.best_config,
        "best_overrides": result.best_overrides(),
        "counts": result.counts,
        "ran_now": result.ran_now,
        "requeued": result.requeued,
        "importances": result.importances,
        "notes": result.notes,
        "wall_time_s": result.wall_time_s,
    }
