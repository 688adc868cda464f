"""A sweep over the stored training data: what the ``sweep_job`` op does (no Dagster here).

A sweep is not part of the asset graph, so it reads its inputs as the IO manager stored them (through the artifact
store): ``dataset_splits``, ``merged_corpus`` and the ``base_model`` manifest. Its runs are tagged with the base
model's hash and the pairs' data version; :func:`sweep_data_version` is the data version its summary is recorded with.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest
from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline.storage import frame_content_hash, sha256_file
from lexdpr_pipeline.sweeps.runner import SweepResult, run_sweep
from lexdpr_pipeline.sweeps.space import SweepSpec

#: What a sweep reads: the stored tables / manifest (what the IO manager wrote), read through the artifact store.
INPUTS = ("dataset_splits", "merged_corpus", "base_model")
_log = logging.getLogger(__name__)


def run_stored_sweep(
    spec: SweepSpec,
    settings: Settings,
    store: ArtifactStore,
    *,
    tags: Mapping[str, str] | None = None,
    progress: bool = True,
    log: logging.Logger | None = None,
) -> SweepResult:
    """Run (or resume) ``spec`` on the stored :data:`INPUTS` (:func:`~.runner.run_sweep`); ``tags`` go on every
    MLflow run, with ``base_model_hash`` and ``pairs_data_version`` added."""
    splits_name, corpus_name, base_name = INPUTS
    splits, corpus = store.read_table(splits_name), store.read_table(corpus_name)
    base_model = store.read_manifest(base_name, BaseModelManifest)
    (log or _log).info(f"sweep {spec.name}: {spec.strategy.value}, budget {spec.n_trials} trials / {spec.timeout_s} s")
    run_tags = {
        **(tags or {}),
        "base_model_hash": base_model.content_hash,
        "pairs_data_version": frame_content_hash(splits),
    }
    return run_sweep(spec, settings, splits, corpus, base_model, store=store, tags=run_tags, progress=progress)


def sweep_data_version(result: SweepResult) -> str:
    """The data version of a sweep's summary: its trials table and best configuration."""
    digest = hashlib.sha256(frame_content_hash(result.trials).encode())
    if result.best_config is not None:
        digest.update(sha256_file(result.best_config).encode())
    return digest.hexdigest()
