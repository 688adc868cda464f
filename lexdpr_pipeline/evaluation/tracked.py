"""One tracked evaluation: what the ``model_evaluation`` asset and ``lex-dpr eval --model`` do (no Dagster here).

:func:`evaluate_tracked` scores the fine-tuned model (or any model folder), the zero-shot base model
(``eval.compare_base``), BM25 (``eval.compare_bm25``) and their hybrids (``eval.hybrid``) side by side
(:func:`~lexdpr_pipeline.evaluation.run.run_evaluation`) inside one MLflow run named ``evaluation``: tags (model /
base model content hashes, pairs data version, whole or sampled corpus, the caller's), the ``eval`` settings, the
model names and the fusion chosen on valid as params, the eval corpus size, the overall metrics per split and system
(``<split>.<system slug>.<metric>``) and the report, chart and per-query ranks as artifacts (``evaluation/``). The
fusion chosen on valid for each dense model is stored per model version (``ArtifactStore.write_fusion_params``),
where ``search.fusion: auto`` finds it, with the query citation linking chosen on valid per search mode
(``FusionParams.linking``: what ``search.citation_linking: auto`` uses; also logged as ``linking.*`` params).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from lexdpr_pipeline.artifacts import (
    ArtifactStore,
    BaseModelManifest,
    Bm25IndexManifest,
    FusionParams,
    Kind,
    TrainedModelManifest,
)
from lexdpr_pipeline.evaluation.fusion_tuning import FUSIONS
from lexdpr_pipeline.evaluation.run import BASE, BM25, FINE_TUNED, EvalPlan, EvalRun, hybrid_name, run_evaluation
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import EmbeddingCache
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.models.encoders import encoder_version, load_encoder, needs_export
from lexdpr_pipeline.models.export_gate import batch_backend
from lexdpr_pipeline.settings import EvalSettings, TrackingSettings
from lexdpr_pipeline.storage import frame_content_hash
from lexdpr_pipeline.tracking import log_artifact_or_path, log_metrics, log_params, start_run, target_for

if TYPE_CHECKING:
    from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder

RUN_NAME = "evaluation"  # the MLflow run's name
#: The report folder under ``data/reports`` and the MLflow artifact folder of the report, chart and ranks.
REPORTS_GROUP = "evaluation"
_log = logging.getLogger(__name__)


def system_slug(system: str) -> str:
    """``base (zero-shot)`` → ``base_zero-shot``: what MLflow metric names and metadata keys allow."""
    return re.sub(r"[^0-9A-Za-z_\-.:/ ]", "", system).strip().replace(" ", "_")


@dataclass(frozen=True)
class ModelRef:
    """A dense model to evaluate: its name in reports, what ``BiEncoder.load`` gets, and the version that keys its
    embedding cache and its stored fusion parameters."""

    name: str
    target: str
    version: str

    @classmethod
    def of(cls, model: ModelRef | TrainedModelManifest | BaseModelManifest) -> ModelRef:
        if isinstance(model, ModelRef):
            return model
        if isinstance(model, TrainedModelManifest):
            return cls(model.name or Path(model.path).name, model.path, model.content_hash)
        return cls(model.name, model.load_target(), model.content_hash)

    @classmethod
    def folder(cls, path: Path | str, store: ArtifactStore | None = None) -> ModelRef:
        """A model folder given by path (``lex-dpr eval --model``): versioned by its files, as ``embed.model``. A
        trained model of ``store`` (``<trained root>/<key>/model``, its training metadata naming that key) keeps the
        content key its ``trained_model`` manifest carries, so its evaluations and the pipeline's share one embedding
        cache and one set of stored fusion choices instead of encoding the corpus once per name."""
        from lexdpr_pipeline.models.resolve import folder_version, store_model_key

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{path} is not a model folder")
        key = store_model_key(folder, store) if store is not None else None
        return cls(str(folder), str(folder.resolve()), key or folder_version(folder))


@dataclass
class TrackedEvaluation:
    """What :func:`evaluate_tracked` did: the evaluation, the MLflow run that records it, the stored fusions."""

    run: EvalRun
    mlflow_run_id: str
    mlflow_url: str
    tracking_uri: str
    fusion_params: dict[str, FusionParams]  # dense system → the FusionParams written for its model version


def evaluate_tracked(
    eval_cfg: EvalSettings,
    tracking: TrackingSettings,
    trained_model: TrainedModelManifest | ModelRef,
    base_model: BaseModelManifest | ModelRef | None,
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
    model = ModelRef.of(trained_model)
    base = ModelRef.of(base_model) if base_model is not None and eval_cfg.compare_base else None
    refs = {FINE_TUNED: model, **({BASE: base} if base is not None else {})}
    # Loaders, so only one model is in memory at a time; the full BM25 index only when it matches the corpus.
    backend = batch_backend(eval_cfg.backend)
    models = {name: partial(_load_encoder, ref, backend, store) for name, ref in refs.items()}
    # The passage_embeddings asset's per-model caches: passages are encoded once per model version (and backend), so
    # the zero-shot base is not re-encoded by every evaluation and the embeddings asset reuses what evaluation encoded.
    cache_root = store.root(Kind.EMBEDDING_CACHE)
    caches = {name: EmbeddingCache(cache_root, encoder_version(ref.version, backend)) for name, ref in refs.items()}
    full_bm25 = None
    if bm25_index is not None and bm25_index.passages == corpus.height:
        full_bm25 = partial(BM25Index.load, bm25_index.path)
    corpus_kind = "whole" if plan.corpus_max_passages is None else "sampled"
    run_tags = {
        **(tags or {}),
        "model_content_hash": model.version,
        "pairs_data_version": frame_content_hash(splits),
        "eval_corpus": corpus_kind,
        "eval_backend": backend,
    }
    if base_model is not None:
        run_tags["base_model_content_hash"] = ModelRef.of(base_model).version
    target = target_for(tracking, store.data_dir)
    with start_run(target, run_name=RUN_NAME, tags=run_tags) as (_, handle):
        log_params(
            {
                **eval_cfg.model_dump(mode="json"),
                "trained_model": model.name,
                "base_model": ModelRef.of(base_model).name if base_model is not None else "",
            }
        )
        run = run_evaluation(
            models,
            splits,
            corpus,
            plan,
            bm25=eval_cfg.compare_bm25,
            full_bm25=full_bm25,
            out_dir=out_dir if out_dir is not None else store.report_path(REPORTS_GROUP),
            notes={
                "fine-tuned model": model.name,
                **({"base model": base.name} if base is not None else {}),
                "encoder backend": f"{backend} (ONNX export of each model)" if needs_export(backend) else backend,
            },
            embedding_caches=caches if eval_cfg.embedding_cache else None,
        )
        log_params({"eval_corpus_passages": run.corpus_size, "eval_corpus": run.corpus_label})
        for (split, system), values in run.overall().items():
            log_metrics(values, prefix=f"{split}.{system_slug(system)}.")
        for (split, system), values in run.overall(documents=True).items():
            log_metrics(values, prefix=f"{split}.documents.{system_slug(system)}.")
        stored: dict[str, FusionParams] = {}
        for system, ref in refs.items():  # the model under test first: it wins a shared version
            tuning, linking = run.fusion.get(system), linking_by_mode(run, system)
            if tuning is not None:
                params = tuning.to_params(ref.version, dense_system=system, linking=linking)
            elif linking:  # no hybrid (no BM25, or eval.hybrid off): the linking alone
                params = FusionParams(ref.version, {}, dense_system=system, linking=linking, created_at=_now())
            else:
                continue
            if all(p.model_version != params.model_version for p in stored.values()):
                store.write_fusion_params(params)
            stored[system] = params
            log_params(
                {
                    f"fusion.{system_slug(system)}.{group}": f"{c['fusion']} rrf_k={c['rrf_k']} "
                    f"dense_weight={c['dense_weight']}"
                    for group, c in params.by_source.items()
                }
            )
        for system, link in run.linking.items():
            log_params(
                {
                    f"linking.{system_slug(system)}.{group}": f"{c.citation_linking} weight={c.link_weight} "
                    f"law_names={c.link_law_names}"
                    for group, c in link.by_group.items()
                }
            )
        if run.link_shares is not None:
            for r in run.link_shares.iter_rows(named=True):
                log_metrics({f"{r['split']}.linked_share.{system_slug(r['query_type'])}": r["linked_share"]})
        if run.hybrid_check is not None:
            log_metrics({"hybrid_below_parts_test": float(len(run.hybrid_below_parts("test")))})
        paths = [run.report.markdown_path, run.report.chart_path, run.ranks_path] if run.report else [run.ranks_path]
        for path in filter(None, paths):
            log_artifact_or_path(path, max_mb=tracking.model_artifact_max_mb, artifact_path=REPORTS_GROUP)
    log.info(f"evaluation: corpus {run.corpus_label}, queries {run.queries_per_split}")
    return TrackedEvaluation(
        run=run,
        mlflow_run_id=handle.run_id,
        mlflow_url=handle.url,
        tracking_uri=target.display_uri,
        fusion_params=stored,
    )


def _load_encoder(ref: ModelRef, backend: str, store: ArtifactStore) -> BiEncoder | OnnxEncoder:
    """``ref``'s encoder on ``backend``: the torch backends load the folder; an ONNX backend exports it first (into
    the store's content-addressed export folder, reused by ``encoder_export`` and later evaluations)."""
    if not needs_export(backend):
        return load_encoder(ref.target, backend)
    from lexdpr_pipeline.models.export import export_to_store

    return load_encoder(ref.target, backend, export_to_store(store, ref.target, ref.version, backend))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def linking_by_mode(run: EvalRun, dense_system: str) -> dict[str, dict[str, dict[str, object]]]:
    """What ``search.citation_linking: auto`` reads for a model: per search mode (``dense``; ``bm25``; hybrid by its
    fusion, ``rrf`` / ``weighted``) the linking chosen on valid per source group."""
    systems = {"dense": dense_system, "bm25": BM25, **{f: hybrid_name(f, dense_system) for f in FUSIONS}}
    return {mode: run.linking[name].to_dict() for mode, name in systems.items() if name in run.linking}


def model_report_dir(store: ArtifactStore, model: ModelRef) -> Path:
    """``data/reports/evaluation/models/<version key>``: a ``--model`` evaluation never overwrites the asset's."""
    return store.report_path(REPORTS_GROUP, "models", store.fusion_params_path(model.version).parent.name)


def evaluate_model_folder(
    eval_cfg: EvalSettings,
    tracking: TrackingSettings,
    store: ArtifactStore,
    model_path: Path | str,
    base_path: Path | str | None = None,
    *,
    tags: Mapping[str, str] | None = None,
) -> TrackedEvaluation:
    """``lex-dpr eval --model PATH [--base PATH]``: any model folder against the base model (``--base``, else the
    stored ``base_model``) and BM25, with the same plan, queries and corpus as ``model_evaluation`` (the stored
    ``dataset_splits`` and ``merged_corpus``)."""
    model = ModelRef.folder(model_path, store)
    if base_path is not None:
        base: ModelRef | BaseModelManifest | None = ModelRef.folder(base_path, store)
    else:
        base = store.find_manifest("base_model", BaseModelManifest)
        if base is None and eval_cfg.compare_base:
            raise FileNotFoundError("no base_model manifest: pass --base PATH or materialize base_model")
    splits = store.read_table("dataset_splits")
    corpus = store.read_table("merged_corpus")
    bm25 = store.find_manifest("bm25_index", Bm25IndexManifest) if eval_cfg.compare_bm25 else None
    return evaluate_tracked(
        eval_cfg,
        tracking,
        model,
        base,
        splits,
        corpus,
        bm25,
        store,
        tags={"lexdpr/trigger": "eval --model", "model_path": str(model.target), **(tags or {})},
        out_dir=model_report_dir(store, model),
    )
