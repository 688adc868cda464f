"""``model_evaluation`` in Dagster on the hand-made mini corpus: three systems, report files, one MLflow run.

``trained_model`` is a stand-in returning a manifest for the tiny test model (the asset under test only reads the
manifest); ``base_model`` and ``bm25_index`` are the real assets."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.assets.evaluation import model_evaluation
from lexdpr_pipeline.assets.models import base_model
from lexdpr_pipeline.assets.search_index import bm25_index
from lexdpr_pipeline.evaluation.report import CHART_FILE, REPORT_FILE
from lexdpr_pipeline.evaluation.run import BASE, BM25, FINE_TUNED, RANKS_FILE, hybrid_name, served_name
from lexdpr_pipeline.resources import project_resources
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.evaluation.conftest import corpus_frame, splits_frame

TINY_MODEL: dict[str, Path] = {}


@dg.asset
def trained_model() -> dict:
    return {"path": str(TINY_MODEL["dir"]), "content_hash": "tiny-model-hash", "name": "tiny"}


@dg.asset
def merged_corpus() -> pl.DataFrame:
    return corpus_frame()


@dg.asset
def dataset_splits() -> pl.DataFrame:
    return splits_frame()


@pytest.fixture
def materialized(tmp_path: Path, tiny_model_dir: Path):
    import mlflow

    TINY_MODEL["dir"] = tiny_model_dir
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Created up front so its artifacts land under tmp_path (a bare sqlite URI would default them to ./mlruns).
    mlflow.MlflowClient(uri).create_experiment("lexdpr", artifact_location=(tmp_path / "artifacts").as_uri())
    settings = load_settings(
        overrides=[
            f"paths.data_dir={tmp_path / 'data'}",
            f"models.base_model={tiny_model_dir}",
            f"tracking.tracking_uri={uri}",
        ],
        environ={},
    )
    result = dg.materialize(
        [trained_model, merged_corpus, dataset_splits, base_model, bm25_index, model_evaluation],
        resources=project_resources(settings),
    )
    return result, settings, uri


def test_evaluation_asset_end_to_end(materialized) -> None:
    import mlflow

    result, settings, uri = materialized
    assert result.success
    table = ArtifactStore.from_settings(settings).read_table("model_evaluation")
    hybrids = {hybrid_name(f, m) for f in ("rrf", "weighted") for m in (FINE_TUNED, BASE)}
    assert "hybrid weighted (base+bm25)" in hybrids
    plain = {FINE_TUNED, BASE, BM25, *hybrids}
    served = {served_name(m) for m in (FINE_TUNED, BASE)}  # what `search` returns unfiltered, per dense model
    assert set(table["system"]) == plain | {f"{s} + linking" for s in plain} | served  # eval.citation_linking
    overall = table.filter(pl.col("group") == "all")
    assert sorted(overall["split"].unique()) == ["test", "valid"] and overall.height == 2 * 16
    assert overall.filter(split="test")["n_queries"].to_list() == [5] * 16

    out = ArtifactStore.from_settings(settings).report_path("evaluation")
    assert (out / REPORT_FILE).exists() and (out / CHART_FILE).exists()
    ranks = pl.read_parquet(out / RANKS_FILE)
    assert ranks.height == 16 * (5 + 4)

    mat = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == ["model_evaluation"])
    meta = mat.materialization.metadata
    assert meta["eval_corpus_passages"].value == 20
    assert meta["eval_corpus"].value == "whole merged_corpus (20 passages)"
    fusion = meta["fusion_chosen_on_valid"].value
    assert set(fusion) == {FINE_TUNED, BASE} and fusion[FINE_TUNED]["model_version"] == "tiny-model-hash"
    assert set(fusion[BASE]) == {"model_version", "law", "prec", "all"}
    assert isinstance(meta["hybrid_below_parts_test"].value, list)
    assert "Hybrid ≥ its parts (test" in meta["report"].value
    assert meta["test_queries"].value == 5 and meta["valid_queries"].value == 4
    assert 0.0 <= meta["test_ndcg@10_fine-tuned"].value <= 1.0
    assert "test_ndcg@10_base_zero-shot" in meta and "valid_recall@100_bm25" in meta
    assert "data:image/png;base64," in meta["chart"].value
    assert "| system | queries | ndcg@10" in meta["report"].value
    # Dagster's markdown view cannot follow a link to the PNG beside the report: the chart is inline there …
    assert "![nDCG and recall per query type](data:image/png;base64," in meta["report"].value
    assert not re.search(r"!\[[^]]*\]\((?!data:)", meta["report"].value)  # no image link but data: URIs
    # … while the report file keeps its relative link next to the PNG.
    assert f"]({CHART_FILE})" in (out / REPORT_FILE).read_text(encoding="utf-8")

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("lexdpr")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_id == meta["mlflow_run_id"].value and run.info.status == "FINISHED"
    assert run.info.run_name == "evaluation"
    assert run.data.tags["dagster_asset_key"] == "model_evaluation"
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert run.data.tags["model_content_hash"] == "tiny-model-hash"
    assert len(run.data.tags["pairs_data_version"]) == 64
    assert run.data.params["seed"] == "13" and run.data.params["eval_corpus_passages"] == "20"
    assert run.data.metrics["test.fine-tuned.ndcg_at_10"] == pytest.approx(
        meta["test_ndcg@10_fine-tuned"].value, abs=1e-4
    )
    assert {"valid.base_zero-shot.recall_at_100", "test.bm25.mrr_at_10"} <= set(run.data.metrics)
    artifacts = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert artifacts == {REPORT_FILE, CHART_FILE, RANKS_FILE}

    # Both models' passage vectors went to the per-model embedding cache the passage_embeddings asset uses.
    from lexdpr_pipeline.index.embeddings import CACHE_DIR, EmbeddingCache

    root = settings.data_dir / "embeddings" / CACHE_DIR
    assert len(EmbeddingCache(root, "tiny-model-hash")) == 20
    assert len([d for d in root.iterdir() if d.is_dir()]) == 2
