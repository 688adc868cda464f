"""The ``trained_model`` asset in Dagster: a test run end to end, MLflow run recorded, reuse on equal inputs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
import polars as pl
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, Kind, TrainedModelManifest
from lexdpr_pipeline.assets.training import trained_model
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.models.training import read_training_metadata
from lexdpr_pipeline.resources import project_resources
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.training_fixtures import tiny_training_set


def upstream(model_dir: Path) -> list[dg.AssetsDefinition]:
    """Stand-ins for the data stages (tested elsewhere): the tiny real training set and the tiny model."""
    splits, corpus = tiny_training_set()

    @dg.asset(name="dataset_splits", code_version="t1")
    def dataset_splits() -> pl.DataFrame:
        return splits

    @dg.asset(name="merged_corpus", code_version="t1")
    def merged_corpus() -> pl.DataFrame:
        return corpus

    @dg.asset(name="base_model", code_version="t1")
    def base_model() -> dict:
        return {"name": "tiny", "path": str(model_dir), "repo_id": None, "content_hash": "tiny-1"}

    return [dataset_splits, merged_corpus, base_model]


def resources(data: Path, *overrides: str) -> dict:
    settings = load_settings(
        overrides=[
            f"paths.data_dir={data}",
            f"tracking.tracking_uri=sqlite:///{data}/mlflow.db",
            "train.template=none",
            "train.batch_size=8",
            "train.logging_steps=1",
            "train.device=cpu",
            *overrides,
        ],
        environ={},
    )
    return project_resources(settings)


def test_trained_model_test_run_records_an_mlflow_run(tiny_model_dir: Path, tmp_path: Path):
    assets = [*upstream(tiny_model_dir), trained_model]
    config = {"ops": {"trained_model": {"config": {"test_run": True, "overrides": ["train.learning_rate=1e-3"]}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(assets, resources=resources(tmp_path), run_config=config, instance=instance)
        assert result.success
        manifest = result.output_for_node("trained_model")
        assert isinstance(manifest, TrainedModelManifest) and manifest.test_run
        mat = result.asset_materializations_for_node("trained_model")[0]
        meta = mat.metadata
        assert meta["test_run"].value is True and meta["reused_existing"].value is False
        assert meta["global_step"].value == 3  # train.test_run_steps
        assert "training_curve" in meta and meta["mlflow_url"].value.endswith(manifest.mlflow_run_id)
        # the folder the store names for the content key (model/ + checkpoints/), the curve under reports/training
        store = ArtifactStore(tmp_path)
        work_dir = store.folder(Kind.TRAINED_MODEL, manifest.content_hash)
        assert Path(manifest.path) == work_dir / "model" and (work_dir / "checkpoints").is_dir()
        assert not [p.name for p in work_dir.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
        assert store.report_path("training", f"{manifest.content_hash[:20]}.png").is_file()
        assert store.read_manifest("trained_model", TrainedModelManifest) == manifest  # stored typed
        model = BiEncoder.load(manifest.path)
        assert model.encode_queries(["민법 법원"]).shape == (1, 32)
        info = read_training_metadata(Path(manifest.path))
        assert info["training_args"]["learning_rate"] == 1e-3  # the run-config override reached training
        assert info["training_args"]["max_train_queries"] == 64
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
        run = client.get_run(manifest.mlflow_run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["train.learning_rate"] == "0.001"
        assert run.data.tags["dagster_run_id"] == result.run_id
        assert run.data.tags["dagster_asset_key"] == "trained_model"
        assert run.data.tags["pairs_data_version"] == info["pairs_data_version"] == manifest.pairs_data_version
        assert run.data.tags["model_content_hash"] == info["content_key"] == manifest.content_hash
        assert info["dagster_run_id"] == result.run_id and info["mlflow_run_id"] == manifest.mlflow_run_id
        assert "final_valid.ndcg_at_10" in run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 3  # one loss point per step
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model", "plots"} <= artifacts  # the tiny model is small enough to log itself

        # Same inputs and settings again: the trained model is reused, same data version, no new MLflow run.
        again = dg.materialize(assets, resources=resources(tmp_path), run_config=config, instance=instance)
        assert again.output_for_node("trained_model") == manifest
        assert again.asset_materializations_for_node("trained_model")[0].metadata["reused_existing"].value is True
        assert len(client.search_runs([run.info.experiment_id])) == 1


def test_bad_override_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path):
    assets = [*upstream(tiny_model_dir), trained_model]
    config = {"ops": {"trained_model": {"config": {"test_run": True, "overrides": ["train.loss=triplet"]}}}}
    with pytest.raises(Exception, match="loss"):
        dg.materialize(assets, resources=resources(tmp_path), run_config=config)


def test_training_then_evaluation_side_by_side_in_mlflow(tiny_model_dir: Path, tmp_path: Path):
    """Issue 4's acceptance path: materialize trained_model + model_evaluation; both MLflow runs exist."""
    from lexdpr_pipeline.assets.evaluation import model_evaluation
    from lexdpr_pipeline.evaluation.link_tuning import linked_name
    from lexdpr_pipeline.evaluation.run import hybrid_name, served_name
    from lexdpr_pipeline.index.bm25 import BM25Index

    _, corpus = tiny_training_set()

    @dg.asset(name="bm25_index", code_version="t1")
    def bm25_index() -> dict:
        path = tmp_path / "bm25"
        BM25Index.build(corpus["passage_id"].to_list(), corpus["text"].to_list(), progress=False).save(path)
        return {"path": str(path), "passages": corpus.height, "content_hash": "t1"}

    assets = [*upstream(tiny_model_dir), bm25_index, trained_model, model_evaluation]
    config = {"ops": {"trained_model": {"config": {"test_run": True}}}}
    res = resources(tmp_path, "eval.ks=[1,10]")
    result = dg.materialize(assets, resources=res, run_config=config)
    assert result.success
    table = result.output_for_node("model_evaluation")
    overall = table.filter(pl.col("group") == "all")
    # The three systems, the dense+BM25 hybrids of each dense model (eval.hybrid), and every one of them again
    # with query citation linking (eval.citation_linking): all on by default.
    dense = ("fine-tuned", "base (zero-shot)")
    systems = {*dense, "bm25", *(hybrid_name(f, d) for f in ("rrf", "weighted") for d in dense)}
    assert len(systems) == 7
    served = {served_name(d) for d in dense}  # the engine's own choices by candidate sources (no source filter)
    assert set(overall["system"]) == systems | {linked_name(s) for s in systems} | served
    assert set(overall["split"]) == {"valid", "test"}
    assert overall["ndcg@10"].is_between(0, 1).all()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("lexdpr").experiment_id])}
    evaluation = runs["evaluation"]
    assert evaluation.data.tags["dagster_asset_key"] == "model_evaluation"
    manifest = result.output_for_node("trained_model")
    assert evaluation.data.tags["model_content_hash"] == manifest.content_hash
    assert "test.fine-tuned.ndcg_at_10" in evaluation.data.metrics
    assert "test.bm25.recall_at_10" in evaluation.data.metrics
    assert evaluation.data.params["ks"] == "[1, 10]"


def test_mlflow_metrics_keep_their_steps_and_the_run_links_to_dagster(tiny_model_dir: Path, tmp_path: Path):
    """Issue 11 item 16: ``epoch`` never jumps back to step 0 at the end, no throughput of 0 is logged, and with
    ``LEXDPR_DAGSTER_UI`` (here its setting) the MLflow run links to the Dagster run."""
    assets = [*upstream(tiny_model_dir), trained_model]
    config = {"ops": {"trained_model": {"config": {"test_run": True}}}}
    res = resources(tmp_path, "tracking.dagster_ui=http://127.0.0.1:3000/")
    result = dg.materialize(assets, resources=res, run_config=config)
    assert result.success
    manifest = result.output_for_node("trained_model")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(manifest.mlflow_run_id)
    steps = result.asset_materializations_for_node("trained_model")[0].metadata["global_step"].value
    assert steps == 3

    def history(name: str) -> list[tuple[int, float]]:
        points = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.timestamp)
        return [(m.step, m.value) for m in points]

    epochs = history("epoch")
    assert len(epochs) >= 3 and epochs[-1][0] == steps  # the last point is at the last step, not at step 0
    assert [s for s, _ in epochs] == sorted(s for s, _ in epochs) and min(s for s, _ in epochs) >= 1
    assert [v for _, v in epochs] == sorted(v for _, v in epochs)
    assert history("final_valid.ndcg_at_10")[0][0] == steps
    assert history("train_runtime") == [(steps, pytest.approx(history("train_runtime")[0][1]))]  # logged once
    assert "eval_valid_ndcg_at_10" in run.data.metrics  # the in-training validation is there …
    per_second = [name for name in run.data.metrics if name.endswith("_per_second")]
    assert "train_samples_per_second" in per_second
    for name in per_second:  # … but not a throughput of 0 for it (it has no eval dataset, so nothing was counted)
        assert all(value > 0 for _, value in history(name)), name

    url = f"http://127.0.0.1:3000/runs/{result.run_id}"
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert run.data.tags["dagster_run_url"] == url
    assert f"[{result.run_id}]({url})" in run.data.tags["mlflow.note.content"]
