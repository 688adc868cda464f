"""``evaluate_tracked``, the workflow of the ``model_evaluation`` asset, without Dagster: one MLflow run with its
tags, params, metrics and artifacts, the report under the store, and the stored BM25 index only when it fits."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, Bm25IndexManifest, Kind, TrainedModelManifest
from lexdpr_pipeline.evaluation.report import REPORT_FILE
from lexdpr_pipeline.evaluation.run import BASE, BM25, FINE_TUNED, RANKS_FILE, hybrid_name, served_name
from lexdpr_pipeline.evaluation.tracked import evaluate_tracked, system_slug
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import EmbeddingCache
from lexdpr_pipeline.settings import EvalSettings, TrackingSettings
from lexdpr_pipeline.storage import frame_content_hash
from lexdpr_pipeline_tests.evaluation.conftest import splits_frame


def test_system_slugs_are_metric_and_metadata_names() -> None:
    assert system_slug(BASE) == "base_zero-shot"
    assert system_slug(FINE_TUNED) == "fine-tuned" and system_slug(BM25) == "bm25"


@pytest.fixture
def tracking(tmp_path: Path) -> TrackingSettings:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(uri).create_experiment("lexdpr", artifact_location=(tmp_path / "artifacts").as_uri())
    return TrackingSettings(tracking_uri=uri)


def test_one_tracked_evaluation(
    tmp_path: Path, tiny_model_dir: Path, mini_corpus: pl.DataFrame, tracking: TrackingSettings
) -> None:
    import mlflow

    store = ArtifactStore(tmp_path / "data")
    trained = TrainedModelManifest(path=str(tiny_model_dir), content_hash="tiny-model-hash", name="tiny")
    base = BaseModelManifest("tiny-base", str(tiny_model_dir), None, "tiny-base-hash")
    splits = splits_frame()
    # An index over another corpus (one passage more): never loaded (its folder does not even exist).
    other = Bm25IndexManifest(str(tmp_path / "absent"), mini_corpus.height + 1, "other")
    result = evaluate_tracked(
        EvalSettings(compare_base=False, ks=[1, 10]),
        tracking,
        trained,
        base,
        splits,
        mini_corpus,
        other,
        store,
        tags={"caller": "test"},
    )

    run = result.run
    hybrids = {hybrid_name("rrf", FINE_TUNED), hybrid_name("weighted", FINE_TUNED)}
    assert hybrids == {"hybrid rrf (fine-tuned+bm25)", "hybrid weighted (fine-tuned+bm25)"}
    plain = {FINE_TUNED, BM25, *hybrids}  # compare_base=False: no zero-shot base
    linked = {f"{s} + linking" for s in plain}  # eval.citation_linking
    assert set(run.table["system"]) == plain | linked | {served_name(FINE_TUNED)}  # + what search serves unfiltered
    assert run.corpus_size == mini_corpus.height and run.queries_per_split == {"valid": 4, "test": 5}
    out = store.report_path("evaluation")
    assert (
        run.report is not None and run.report.markdown_path == out / REPORT_FILE and run.ranks_path == out / RANKS_FILE
    )
    assert len(EmbeddingCache(store.root(Kind.EMBEDDING_CACHE), "tiny-model-hash")) == mini_corpus.height
    # The fusion chosen on valid is stored for the model version (what search.fusion auto loads) …
    stored = store.find_fusion_params("tiny-model-hash")
    assert stored is not None and stored == result.fusion_params[FINE_TUNED]
    assert (
        stored.chosen_on == "valid" and stored.metric == "ndcg@10" and set(stored.by_source) == {"law", "prec", "all"}
    )
    assert store.find_fusion_params("tiny-model-hash|onnx-int8") == stored  # an export of the model shares it
    # the linking chosen on valid, per search mode (search.citation_linking auto)
    assert set(stored.linking) == {"dense", "bm25", "rrf", "weighted"}
    assert set(stored.linking["rrf"]) == {"law", "prec", "all"}
    assert stored.linking["bm25"]["all"] == run.linking[BM25].to_dict()["all"]
    # … and reported, with the whole-corpus label.
    report = run.report.markdown
    assert "Hybrid fusion, chosen on valid" in report and "Hybrid ≥ its parts (test" in report
    assert f"whole merged_corpus ({mini_corpus.height} passages)" in report and run.corpus == "whole"

    client = mlflow.MlflowClient(tracking.tracking_uri)
    recorded = client.get_run(result.mlflow_run_id)
    assert recorded.info.run_name == "evaluation" and recorded.info.status == "FINISHED"
    assert result.mlflow_url.endswith(result.mlflow_run_id) and result.tracking_uri == tracking.tracking_uri
    tags = recorded.data.tags
    assert tags["caller"] == "test" and tags["model_content_hash"] == "tiny-model-hash"
    assert tags["base_model_content_hash"] == "tiny-base-hash"
    assert tags["pairs_data_version"] == frame_content_hash(splits)
    assert tags["eval_corpus"] == "whole" and recorded.data.params["eval_corpus"].startswith("whole merged_corpus")
    assert recorded.data.params["fusion.fine-tuned.law"].startswith(stored.by_source["law"]["fusion"])
    assert "test.hybrid_rrf_fine-tunedbm25.ndcg_at_10" in recorded.data.metrics
    params = recorded.data.params
    assert params["trained_model"] == "tiny" and params["base_model"] == "tiny-base"
    assert params["compare_base"] == "False" and params["eval_corpus_passages"] == str(mini_corpus.height)
    fine_tuned = run.overall()[("test", FINE_TUNED)]["ndcg@10"]
    assert recorded.data.metrics["test.fine-tuned.ndcg_at_10"] == pytest.approx(fine_tuned, abs=1e-6)
    assert "valid.bm25.recall_at_10" in recorded.data.metrics
    assert not any(m.startswith(("valid.base", "test.base")) for m in recorded.data.metrics)
    artifacts = {Path(a.path).name for a in client.list_artifacts(result.mlflow_run_id, "evaluation")}
    assert {REPORT_FILE, RANKS_FILE} <= artifacts


def test_the_stored_bm25_index_is_loaded_when_it_covers_the_corpus(
    tmp_path: Path,
    tiny_model_dir: Path,
    mini_corpus: pl.DataFrame,
    tracking: TrackingSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = BM25Index.build(mini_corpus["passage_id"].to_list(), mini_corpus["text"].to_list())
    manifest = Bm25IndexManifest(str(index.save(tmp_path / "bm25")), mini_corpus.height, "bm25-hash")
    loaded: list[str] = []
    original = BM25Index.load.__func__  # type: ignore[attr-defined]

    def load(cls: type[BM25Index], directory: str, **kw: object) -> BM25Index:
        loaded.append(str(directory))
        return original(cls, directory, **kw)

    monkeypatch.setattr(BM25Index, "load", classmethod(load))
    trained = TrainedModelManifest(path=str(tiny_model_dir), content_hash="tiny-model-hash", name="tiny")
    base = BaseModelManifest("tiny", str(tiny_model_dir), None, "tiny-1")
    settings = EvalSettings(compare_base=False, ks=[1, 10], embedding_cache=False)
    store = ArtifactStore(tmp_path / "data")
    result = evaluate_tracked(settings, tracking, trained, base, splits_frame(), mini_corpus, manifest, store)
    assert loaded == [manifest.path] and BM25 in set(result.run.table["system"])
    assert not (store.root(Kind.EMBEDDING_CACHE)).exists()  # eval.embedding_cache=false: no cache written


def test_eval_backend_encodes_with_the_models_export_and_keys_vectors_by_backend(
    tmp_path: Path, tiny_model_dir: Path, mini_corpus: pl.DataFrame, tracking: TrackingSettings
) -> None:
    """eval.backend=onnx-int8: the model is exported into the store once, its vectors land in the int8 cache (never
    in the torch one), and the report and MLflow say which runtime encoded."""
    import mlflow

    from lexdpr_pipeline.models.export import export_key

    store = ArtifactStore(tmp_path / "data")
    trained = TrainedModelManifest(path=str(tiny_model_dir), content_hash="tiny-model-hash", name="tiny")
    cfg = EvalSettings(compare_base=False, compare_bm25=False, ks=[1, 10], backend="onnx-int8")
    result = evaluate_tracked(cfg, tracking, trained, None, splits_frame(), mini_corpus, None, store)

    cache_root = store.root(Kind.EMBEDDING_CACHE)
    assert len(EmbeddingCache(cache_root, "tiny-model-hash|onnx-int8")) == mini_corpus.height
    assert len(EmbeddingCache(cache_root, "tiny-model-hash")) == 0
    assert (store.folder(Kind.ENCODER_EXPORT, export_key("tiny-model-hash", "onnx-int8")) / "export.json").is_file()
    assert result.run.report is not None and "onnx-int8" in result.run.report.markdown_path.read_text()
    tags = mlflow.MlflowClient(tracking.tracking_uri).get_run(result.mlflow_run_id).data.tags
    assert tags["eval_backend"] == "onnx-int8"
