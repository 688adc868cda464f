"""``index.faiss_type: ivfpq`` through the faiss_index asset, its recall check and the served engine, on the real
corpus slice with the tiny model (82 passages, 32-d)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from lexdpr_pipeline.orchestration import latest_metadata, materialize
from lexdpr_pipeline.search.engine import load_engine
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.assets.index_graph import index_defs
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice


def _settings(data: Path, model_dir: Path, *overrides: str):
    base = [f"paths.data_dir={data}", f"models.base_model={model_dir}", "embed.backend=torch", "embed.model=base"]
    return load_settings(overrides=[*base, "index.faiss_type=ivfpq", *overrides], environ={})


def _run(settings, model_dir: Path) -> tuple[dict, dict[str, bool], dict]:
    corpus = corpus_slice()
    with dg.DagsterInstance.ephemeral() as instance:
        defs = index_defs(settings, model_dir, corpus)
        result = materialize(instance, defs, list(defs.resolve_asset_graph().materializable_asset_keys))
        assert result.success
        evaluations = list(result.get_asset_check_evaluations())
        checks = {e.check_name: e.passed for e in evaluations}
        recall = next(e for e in evaluations if e.check_name == "faiss_recall_at_10")
        return latest_metadata(instance, dg.AssetKey("faiss_index")), checks, dict(recall.metadata)


def test_default_ivfpq_settings_fall_back_to_flat_on_a_small_corpus(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = _settings(tmp_path, tiny_model_dir)
    idx, checks, recall = _run(settings, tiny_model_dir)
    assert idx["faiss_type"] == "ivfpq" and idx["built_as"] == "flat"
    assert "82 passages < 9984" in idx["params"]["fallback"]
    assert checks["faiss_recall_at_10"] is True and recall["recall_at_10"].value == 1.0
    engine = load_engine(settings)
    assert engine.versions["faiss_type"] == "ivfpq" and len(engine.search("국가배상 청구", top_k=3)) == 3


@pytest.mark.parametrize(("rerank", "passes"), [(100, True), (0, False)])
def test_recall_check_on_a_trained_ivfpq(tmp_path: Path, tiny_model_dir: Path, rerank: int, passes: bool) -> None:
    """1-bit codes (trainable from 78 passages) are far too coarse for recall on their own; re-ranking the candidates
    with the stored vectors, as the engine serves it, restores exact order — and the check sees the difference."""
    settings = _settings(tmp_path, tiny_model_dir, "index.pq_nbits=1", f"index.pq_rerank={rerank}")
    idx, checks, recall = _run(settings, tiny_model_dir)
    assert idx["built_as"] == "ivfpq" and idx["params"]["pq_m"] == 4  # auto: 32-d / 8
    assert checks["faiss_recall_at_10"] is passes and recall["pq_rerank"].value == rerank
    if passes:
        assert recall["recall_at_10"].value >= 0.9
        engine = load_engine(settings)  # attaches the memory-mapped vectors, so dense search is re-ranked
        assert engine.dense is not None and engine.dense.kind == "ivfpq"
        assert len(engine.search("국가배상 청구", mode="dense", top_k=5)) == 5
    else:
        assert recall["recall_at_10"].value < 0.9
