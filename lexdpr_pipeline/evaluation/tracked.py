"""One tracked evaluation: what the ``model_evaluation`` asset does (no Dagster here).

:func:`evaluate_tracked` scores the fine-tuned model, the zero-shot base model (``eval.compare_base``) and BM25
(``eval.compare_bm25``) side by side (:func:`~lexdpr_pipeline.evaluation.run.run_evaluation`) inside one MLflow run
named ``evaluation``: tags (model / base model content hashes, pairs data version, the caller's), the ``eval``
settings and the model names as params, the eval corpus size, the overall metrics per split and system
(``<split>.<system slug>.<metric>``) and the report, chart and per-query ranks as artifacts (``evaluation/``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, Bm25IndexManifest, Kind, TrainedModelManifest
from lexdpr_pipeline.evaluation.run import BASE, FINE_TUNED, EvalPlan, EvalRun, run_evaluation
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import EmbeddingCache
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.settings import EvalSettings, TrackingSettings
from lexdpr_pipeline.storage import frame_content_hash
from lexdpr_pipeline.tracking import log_artifact_or_path, log_metrics, log_params, start_run, target_for

RUN_NAME = "evaluation"  # the MLflow run's name
#: The report folder under ``data/reports`` and the MLflow artifact folder of the report, chart and ranks.
REPORTS_GROUP = "evaluation"
_log = logging.getLogger(__name__)


def system_slug(system: str) -> str:
    """``base (zero-shot)`` → ``base_zero-shot``: what MLflow metric names and metadata keys allow."""
    return re.sub(r"[^0-9A-Za-z_\-.:/ ]", "", system).strip().replace(" ", "_")


@dataclass
class TrackedEvaluation:
    """What :func:`evaluate_tracked` did: the evaluation and the MLflow run that records it."""

    run: EvalRun
    mlflow_run_id: str
    mlflow_url: str
    tracking_uri: str


def evaluate_tracked(
    eval_cfg: EvalSettings,
    tracking: TrackingSettings,
    trained_model: TrainedModelManifest,
    base_model: BaseModelManifest,
    splits: pl.DataFrame,
    corpus: pl.DataFrame,
    bm25_index: Bm25IndexManifest | None,
    store: ArtifactStore,
    *,
    tags: Mapping[str, str] | None = None,
    out_dir: Path | None = None,
    log: logging.Logger | None = None,
) -> TrackedEvaluation:
    """Evaluate ``trained_model`` (and, per ``eval_cfg``, ``base_model`` and BM25) on the ``splits`` queries over
    ``corpus``, tracked as one MLflow run (see the module doc); the report goes to ``out_dir`` (default
    ``data/reports/evaluation``). ``bm25_index`` is reused only when it covers exactly ``corpus``."""
    log = log or _log
    plan = EvalPlan.from_settings(eval_cfg)
    # Loaders, so only one model is in memory at a time; the full BM25 index only when it matches the corpus.
    models = {FINE_TUNED: partial(BiEncoder.load, trained_model.path)}
    # The passage_embeddings asset's per-model caches: passages are encoded once per model version, so the
    # zero-shot base is not re-encoded by every evaluation and the embeddings asset reuses what evaluation encoded.
    cache_root = store.root(Kind.EMBEDDING_CACHE)
    caches = {FINE_TUNED: EmbeddingCache(cache_root, trained_model.content_hash)}
    if eval_cfg.compare_base:
        models[BASE] = partial(BiEncoder.load, base_model.load_target())
        caches[BASE] = EmbeddingCache(cache_root, base_model.content_hash)
    full_bm25 = None
    if bm25_index is not None and bm25_index.passages == corpus.height:
        full_bm25 = partial(BM25Index.load, bm25_index.path)
    run_tags = {
        **(tags or {}),
        "model_content_hash": trained_model.content_hash,
        "base_model_content_hash": base_model.content_hash,
        "pairs_data_version": frame_content_hash(splits),
    }
    target = target_for(tracking, store.data_dir)
    with start_run(target, run_name=RUN_NAME, tags=run_tags) as (_, handle):
        log_params(
            {**eval_cfg.model_dump(mode="json"), "trained_model": trained_model.name, "base_model": base_model.name}
        )
        run = run_evaluation(
            models,
            splits,
            corpus,
            plan,
            bm25=eval_cfg.compare_bm25,
            full_bm25=full_bm25,
            out_dir=out_dir if out_dir is not None else store.report_path(REPORTS_GROUP),
            notes={"fine-tuned model": trained_model.name, "base model": base_model.name},
            embedding_caches=caches if eval_cfg.embedding_cache else None,
        )
        log_params({"eval_corpus_passages": run.corpus_size})
        for (split, system), values in run.overall().items():
            log_metrics(values, prefix=f"{split}.{system_slug(system)}.")
        paths = [run.report.markdown_path, run.report.chart_path, run.ranks_path] if run.report else [run.ranks_path]
        for path in filter(None, paths):
            log_artifact_or_path(path, max_mb=tracking.model_artifact_max_mb, artifact_path=REPORTS_GROUP)
    log.info(f"evaluation: corpus {run.corpus_size} passages, queries {run.queries_per_split}")
    return TrackedEvaluation(run=run, mlflow_run_id=handle.run_id, mlflow_url=handle.url, tracking_uri=target.uri)
