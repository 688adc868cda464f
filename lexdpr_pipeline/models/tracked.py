"""One tracked training: what the ``trained_model`` asset and every sweep trial do (no Dagster here).

:func:`train_tracked` builds the training rows, reports in-batch duplicates, trains with validation on the ``valid``
split inside an MLflow run (tags, params, per-step metrics, the final validation at the last step, the training-curve
PNG, the model itself or its path) and returns a :class:`TrackedTraining` with the :class:`TrainedModelManifest`.

With ``train.nproc_per_node`` > 1 the training itself runs in torchrun workers
(:func:`~lexdpr_pipeline.models.train_worker.train_distributed`); the MLflow run, the per-step metrics (replayed from
the trainer's log history once training ends), the manifest and the model folder stay this process's, one each.

The model's content key (:func:`model_key`) names its folder in the store: ``data/models/trained/<key[:20]>`` with
the model in ``…/model`` and the trainer's checkpoints in ``…/checkpoints`` (an interrupted run with the same key
resumes from them). A folder that already holds a finished model of the same key is reused: no training, no new run.

WiSE-FT without retraining: a full fine-tuning with ``train.interpolate`` < 1 whose checkpoint is the last step (no
best-checkpoint pick by validation: :func:`mix_is_derivable`) is exactly ``base + interpolate·(the same training at
interpolate 1 − base)``. When that model exists in the store, :func:`train_tracked` mixes it with the base
(:func:`~lexdpr_pipeline.models.interpolate.interpolate_folder`), validates the mix and records it as a run of its
own (tag ``lexdpr.derived_from``) in seconds, so ``train.interpolate`` can be chosen on valid without a training each.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, Kind, TrainedModelManifest
from lexdpr_pipeline.evaluation.validation import validate_dense
from lexdpr_pipeline.models.interpolate import interpolate_folder
from lexdpr_pipeline.models.report import plot_training_history
from lexdpr_pipeline.models.train_worker import ValidationInputs, check_launchable, train_distributed
from lexdpr_pipeline.models.training import (
    TRAINING_FILE,
    duplicate_report,
    metrics_callback,
    read_training_metadata,
    replay_log_history,
    train_biencoder,
    training_rows,
)
from lexdpr_pipeline.settings import EvalSettings, TrackingSettings, TrainSettings
from lexdpr_pipeline.storage import atomic_write_text, frame_content_hash
from lexdpr_pipeline.tracking import (
    DAGSTER_RUN_TAG,
    RunHandle,
    end_run,
    log_artifact_or_path,
    log_metrics,
    log_params,
    start_run,
    target_for,
)

#: Settings that change how a run goes, not what it produces: they stay out of the model's content key.
NOT_IN_KEY = frozenset({"resume", "device", "logging_steps", "save_total_limit"})
#: Settings added after models were trained, at the value that trains what those models are: left out of the key at
#: that value, so older models keep their keys (and are reused); any other value is part of the key.
KEY_NEUTRAL = {"interpolate": 1.0, "distill_weight": 0.0, "type_weights": None, "nproc_per_node": 1}
VALIDATION_KS = (1, 5, 10, 100)
#: Maps an error raised inside the run to the MLflow status the run ends with and tags to set first.
ErrorHook = Callable[[BaseException], tuple[str, Mapping[str, str]]]
_log = logging.getLogger(__name__)


def effective_train_settings(cfg: TrainSettings, test_run: bool) -> TrainSettings:
    """``cfg``, or for a test run (``lex-dpr smoke-train``): a few steps on a small sample, end to end."""
    if not (test_run or cfg.test_run):
        return cfg
    return cfg.model_copy(
        update={
            "test_run": True,
            "max_train_queries": min(cfg.max_train_queries or 64, 64),
            "eval_max_queries": min(cfg.eval_max_queries, 20),
            "eval_corpus_max_passages": min(cfg.eval_corpus_max_passages or 300, 300),
            "early_stopping_patience": None,
        }
    )


def model_key(base_hash: str, pairs_version: str, corpus_version: str, cfg: TrainSettings) -> str:
    """Content key of a trained model: what it was trained from and how."""
    args = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in NOT_IN_KEY}
    args = {k: v for k, v in args.items() if k not in KEY_NEUTRAL or v != KEY_NEUTRAL[k]}
    if cfg.distill_weight == 0:
        args.pop("distill_metric", None)  # no distillation: its distance changes nothing
    payload = json.dumps([base_hash, pairs_version, corpus_version, args], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def input_versions(splits: pl.DataFrame, corpus: pl.DataFrame) -> tuple[str, str]:
    """``(pairs_version, corpus_version)``: the content of the training inputs, part of every model key."""
    return frame_content_hash(splits), frame_content_hash(corpus.select("passage_id", "content_hash"))


def mix_is_derivable(cfg: TrainSettings) -> bool:
    """Whether the model of ``cfg`` (``interpolate`` < 1) equals its interpolate-1 twin mixed with the base afterwards.

    True for full fine-tuning (a LoRA model would come out merged, a different artifact) that saves its last step:
    validation only at the end (``eval_steps`` unset or ≥ ``max_steps``), so the mixed validation score picks no
    other checkpoint. Not for a test run."""
    if cfg.interpolate >= 1 or cfg.lora or cfg.test_run or cfg.max_steps is None:
        return False
    return cfg.eval_steps is None or cfg.eval_steps >= cfg.max_steps


@dataclass
class TrackedTraining:
    """What :func:`train_tracked` did. ``global_step`` / ``resumed_from`` / ``curve`` / ``mlflow_model`` describe
    this call's training, so they are None for a reused model."""

    manifest: TrainedModelManifest
    reused: bool
    metrics: dict[str, float]  # final validation ("ndcg@10", …)
    train_metrics: dict[str, float]  # the trainer's (train_runtime, train_samples_per_second, …)
    duplicates: dict[str, Any]
    tracking_uri: str
    rows: dict[str, Any] = field(default_factory=dict)
    curve: Path | None = None
    global_step: int | None = None
    resumed_from: str | None = None
    mlflow_model: str | None = None  # "artifact" (logged) or "path" (too big: only where it is)

    @property
    def model_dir(self) -> Path:
        return Path(self.manifest.path)

    @property
    def mlflow_run_id(self) -> str | None:
        return self.manifest.mlflow_run_id

    @property
    def mlflow_url(self) -> str | None:
        return self.manifest.mlflow_url


def train_tracked(
    train: TrainSettings,
    eval_cfg: EvalSettings,
    tracking: TrackingSettings,
    splits: pl.DataFrame,
    corpus: pl.DataFrame,
    base_model: BaseModelManifest,
    store: ArtifactStore,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    work_dir: Path | None = None,
    reuse: bool = True,
    validation_ks: Sequence[int] = VALIDATION_KS,
    callbacks: Sequence[Any] = (),
    plot_curve: bool = True,
    log_model: bool = True,
    on_run_start: Callable[[RunHandle], None] | None = None,
    on_result: Callable[[TrackedTraining], None] | None = None,
    on_error: ErrorHook | None = None,
    log: logging.Logger | None = None,
) -> TrackedTraining:
    """Train ``base_model`` on the train split of ``splits`` with ``train`` settings, tracked as one MLflow run.

    ``work_dir`` (default: the store's trained-model folder of the content key) gets ``model/`` and
    ``checkpoints/``; with ``reuse`` a finished model there is returned as it is. ``tags`` / ``run_name`` /
    ``parent_run_id`` / ``params`` shape the run (a sweep trial is a child of the sweep's run). Hooks, all called
    inside the active run: ``on_run_start`` once it exists, ``callbacks`` as extra trainer callbacks (the sweep's
    pruner), ``on_result`` after training (it may log more or raise), ``on_error`` on any error, to choose the
    run's final status and tags (default: FAILED).

    ``train.nproc_per_node`` > 1 trains in torchrun workers (one per device): ``callbacks`` cannot reach them and are
    refused; per-step metrics reach the run when training ends.
    """
    log = log or _log
    pairs_version, corpus_version = input_versions(splits, corpus)
    key = model_key(base_model.content_hash, pairs_version, corpus_version, train)
    work_dir = Path(work_dir) if work_dir is not None else store.folder(Kind.TRAINED_MODEL, key)
    model_dir = work_dir / "model"
    target = target_for(tracking, store.data_dir)

    def manifest(run_id: str | None, url: str | None) -> TrainedModelManifest:
        return TrainedModelManifest(
            path=str(model_dir),
            content_hash=key,
            name=f"lexdpr-{key[:12]}",
            base_model=base_model.name,
            template=train.template,
            pairs_data_version=pairs_version,
            mlflow_run_id=run_id,
            mlflow_url=url,
            test_run=train.test_run,
        )

    if reuse and (model_dir / TRAINING_FILE).exists():
        meta = read_training_metadata(model_dir) or {}
        log.info(f"a model trained from the same inputs and settings exists: reusing {model_dir}")
        return TrackedTraining(
            manifest=manifest(meta.get("mlflow_run_id"), meta.get("mlflow_url")),
            reused=True,
            metrics=meta.get("final_validation", {}),
            train_metrics=meta.get("train_metrics", {}),
            duplicates=meta.get("duplicates", {}),
            tracking_uri=target.display_uri,
            rows=meta.get("rows", {}),
        )

    twin = train.model_copy(update={"interpolate": 1.0})
    twin_dir = store.folder(Kind.TRAINED_MODEL, model_key(base_model.content_hash, pairs_version, corpus_version, twin))
    validation_kwargs: dict[str, Any] = {
        "split": "valid",
        "max_queries": train.eval_max_queries,
        "corpus_max_passages": train.eval_corpus_max_passages,
        "ks": tuple(sorted(set(validation_ks))),
        "seed": eval_cfg.seed,
        "batch_size": eval_cfg.batch_size,
    }
    validate = partial(validate_dense, splits=splits, merged_corpus=corpus, **validation_kwargs)
    caller_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
    if reuse and mix_is_derivable(train) and (twin_dir / "model" / TRAINING_FILE).exists():
        return _derive_mix(
            train,
            twin_dir / "model",
            model_dir,
            base_model,
            validate,
            target,
            manifest,
            key=key,
            run_name=run_name or f"interpolate {key[:8]}",
            tags={"model_content_hash": key, "lexdpr.kind": "training", **caller_tags},
            parent_run_id=parent_run_id,
            params=params,
            log=log,
        )

    distributed = train.nproc_per_node > 1
    if distributed:
        if callbacks:
            raise ValueError(
                f"train.nproc_per_node={train.nproc_per_node} trains in torchrun worker processes, which trainer "
                "callbacks (a sweep's pruner) cannot reach: use train.nproc_per_node=1 here"
            )
        check_launchable(train)
    run_tags = {
        "pairs_data_version": pairs_version,
        "model_content_hash": key,
        "lexdpr.kind": "training",
        **caller_tags,
    }
    name = run_name or f"train {'test-run ' if train.test_run else ''}{key[:8]}"
    with start_run(target, run_name=name, tags=run_tags, parent_run_id=parent_run_id) as (_run, handle):
        try:
            if on_run_start is not None:
                on_run_start(handle)
            rows, row_stats = training_rows(splits, corpus, train)
            duplicates = duplicate_report(rows, train.batch_size, train.seed)
            log.info(f"training rows: {row_stats.as_dict()}; duplicates: {duplicates}")
            log_params(
                {
                    **(params or {}),
                    "train": train.model_dump(mode="json"),
                    "base_model": base_model.name,
                    "base_model_hash": base_model.content_hash,
                    "pairs_data_version": pairs_version,
                    "corpus_version": corpus_version,
                    "train_rows": row_stats.rows,
                    "train_queries": row_stats.queries,
                    "train_mix": row_stats.mix(),  # rows per query type before/after train.type_weights
                }
            )
            train_metadata = {
                "pairs_data_version": pairs_version,
                "corpus_version": corpus_version,
                "base_model_hash": base_model.content_hash,
                "content_key": key,
                "duplicates": duplicates,
                "mlflow_run_id": handle.run_id,
                "mlflow_url": handle.url,
                **({"dagster_run_id": caller_tags[DAGSTER_RUN_TAG]} if DAGSTER_RUN_TAG in caller_tags else {}),
                **(metadata or {}),
            }
            if distributed:
                result = train_distributed(
                    base_model.load_target(),
                    rows,
                    row_stats,
                    train,
                    work_dir,
                    validation=ValidationInputs(splits, corpus, validation_kwargs),
                    metadata=train_metadata,
                    log=log,
                )
                replay_log_history(result.history, lambda metrics, step: log_metrics(metrics, step=step))
            else:
                result = train_biencoder(
                    base_model.load_target(),
                    rows,
                    row_stats,
                    train,
                    work_dir,
                    validate=validate,
                    callbacks=[metrics_callback(lambda metrics, step: log_metrics(metrics, step=step)), *callbacks],
                    metadata=train_metadata,
                )
            # At the last step: a metric logged without a step lands at step 0 and its chart jumps back. The
            # trainer's own end-of-training metrics (epoch, train_runtime, …) already came through the callback.
            log_metrics(result.metrics, prefix="final_valid.", step=result.global_step)
            outcome = TrackedTraining(
                manifest=manifest(handle.run_id, handle.url),
                reused=False,
                metrics=dict(result.metrics),
                train_metrics=dict(result.train_metrics),
                duplicates=duplicates,
                tracking_uri=target.display_uri,
                rows=row_stats.as_dict(),
                global_step=result.global_step,
                resumed_from=result.resumed_from,
            )
            if plot_curve:
                outcome.curve = _log_curve(result.history, store.report_path("training", f"{key[:20]}.png"))
            if log_model:
                outcome.mlflow_model = log_artifact_or_path(
                    model_dir, max_mb=tracking.model_artifact_max_mb, artifact_path="model"
                )
            if on_result is not None:
                on_result(outcome)
        except BaseException as exc:
            _end_run(exc, on_error)
            raise
    return outcome


def _derive_mix(
    train: TrainSettings,
    twin_model: Path,
    model_dir: Path,
    base_model: BaseModelManifest,
    validate: Callable[..., dict[str, float]],
    target: Any,
    manifest: Callable[[str | None, str | None], TrainedModelManifest],
    *,
    key: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None,
    params: Mapping[str, Any] | None,
    log: logging.Logger,
) -> TrackedTraining:
    """The model of ``train`` as its interpolate-1 twin mixed with the base (see :func:`mix_is_derivable`), stored
    under its own content ``key``."""
    from lexdpr_pipeline.models.biencoder import BiEncoder

    twin_meta = read_training_metadata(twin_model) or {}
    log.info(
        f"train.interpolate={train.interpolate}: mixing the finished twin {twin_model} with the base (no training)"
    )
    with start_run(
        target, run_name=run_name, tags={**tags, "lexdpr.derived_from": str(twin_model)}, parent_run_id=parent_run_id
    ) as (_run, handle):
        log_params(
            {
                **(params or {}),
                "train": train.model_dump(mode="json"),
                "base_model": base_model.name,
                "base_model_hash": base_model.content_hash,
                "derived_from": str(twin_model),
                "derived_from_run": str(twin_meta.get("mlflow_run_id")),
            }
        )
        interpolate_folder(base_model.load_target(), twin_model, train.interpolate, model_dir)
        final = validate(BiEncoder.load(model_dir))
        meta = read_training_metadata(model_dir) or {}
        meta.update(
            content_key=key,  # the mix's own key (the copied twin metadata names the twin's)
            training_args=train.model_dump(mode="json"),
            final_validation=final,
            mlflow_run_id=handle.run_id,
            mlflow_url=handle.url,
            derived_from_run=twin_meta.get("mlflow_run_id"),
        )
        atomic_write_text(model_dir / TRAINING_FILE, json.dumps(meta, ensure_ascii=False, indent=2, default=str))
        log_metrics(final, prefix="final_valid.", step=int(twin_meta.get("global_step") or 0))
    return TrackedTraining(
        manifest=manifest(handle.run_id, handle.url),
        reused=False,
        metrics=dict(final),
        train_metrics=dict(twin_meta.get("train_metrics", {})),
        duplicates=dict(twin_meta.get("duplicates", {})),
        tracking_uri=target.display_uri,
        rows=dict(twin_meta.get("rows", {})),
        global_step=twin_meta.get("global_step"),
        resumed_from=str(twin_model),
    )


def _log_curve(history: Sequence[dict[str, Any]], path: Path) -> Path | None:
    plot = plot_training_history(history, path)
    if plot is not None:
        import mlflow

        mlflow.log_artifact(str(plot), artifact_path="plots")
    return plot


def _end_run(exc: BaseException, on_error: ErrorHook | None) -> None:
    """End the active run with the status (and tags) ``on_error`` picks for ``exc``; FAILED without a hook."""
    status, end_tags = "FAILED", {}
    if on_error is not None:
        try:
            status, end_tags = on_error(exc)
        except Exception:  # a broken hook must not hide the training error
            _log.exception("the run's error hook failed; marking the run FAILED")
    end_run(status, end_tags)
