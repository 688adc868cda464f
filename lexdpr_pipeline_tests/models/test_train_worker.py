"""``train.nproc_per_node`` > 1: training in torchrun workers (DDP, gloo on CPU) inside one tracked training.

The end-to-end test launches two CPU processes on the tiny model for a few steps through ``train_tracked``: one MLflow
run, one model folder, written by rank 0 only. The rest needs no launch (or only a failing one).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from pydantic import ValidationError
from sentence_transformers.sentence_transformer.losses import multiple_negatives_ranking

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, Kind
from lexdpr_pipeline.models import losses
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.models.losses import MaskedMNRL, row_keys
from lexdpr_pipeline.models.tracked import model_key, train_tracked
from lexdpr_pipeline.models.train_worker import (
    JOB_FILE,
    RESULT_FILE,
    DistributedTrainingError,
    ValidationInputs,
    launch,
    run_job,
    write_job,
)
from lexdpr_pipeline.models.training import TRAINING_FILE, read_training_metadata, replay_log_history, training_rows
from lexdpr_pipeline.settings import EvalSettings, TrackingSettings, TrainSettings
from lexdpr_pipeline_tests.training_fixtures import tiny_training_set


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return tiny_training_set(40)


def _cfg(**kw) -> TrainSettings:
    base = {
        "nproc_per_node": 2,
        "device": "cpu",
        "batch_size": 4,
        "max_steps": 3,
        "eval_steps": 2,
        "hard_negatives": 1,
        "max_seq_length": 32,
        "duplicates": "mask",  # the masks are built over the batch gathered from both ranks
        "template": "none",
        "logging_steps": 1,
        "eval_max_queries": 8,
        "eval_corpus_max_passages": 20,
    }
    return TrainSettings(**{**base, **kw})


def test_two_cpu_processes_train_one_model_in_one_tracked_run(data, tiny_model_dir: Path, tmp_path: Path) -> None:
    splits, corpus = data
    store = ArtifactStore(tmp_path / "data")
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    base = BaseModelManifest("tiny", str(tiny_model_dir), None, "tiny-1")
    cfg = _cfg()

    outcome = train_tracked(cfg, EvalSettings(batch_size=8), tracking, splits, corpus, base, store, log_model=False)

    assert not outcome.reused and outcome.global_step == 3
    assert "ndcg@10" in outcome.metrics  # the final validation, on rank 0, from the Parquet inputs
    meta = read_training_metadata(outcome.model_dir)
    assert meta["world_size"] == 2 and meta["global_step"] == 3
    assert meta["mlflow_run_id"] == outcome.mlflow_run_id and meta["training_args"]["nproc_per_node"] == 2
    # one model folder in all, written once: no second model, no job folder or result left, nothing else beside it
    assert [p.parent for p in tmp_path.rglob(TRAINING_FILE)] == [outcome.model_dir]
    saved = [p.parent for p in tmp_path.rglob("modules.json") if "checkpoints" not in p.parts]
    assert saved == [outcome.model_dir]
    assert not list(tmp_path.rglob(RESULT_FILE)) and not list(tmp_path.rglob(JOB_FILE))
    work_dir = outcome.model_dir.parent
    assert work_dir.parent == store.root(Kind.TRAINED_MODEL) and len(list(work_dir.parent.iterdir())) == 1
    assert sorted(p.name for p in work_dir.iterdir()) == ["checkpoints", "model"]
    # rank 1's only files: its RNG state in the shared checkpoints (resuming needs it)
    ranked = {p.name for p in (work_dir / "checkpoints").rglob("rng_state*.pth")}
    assert ranked == {"rng_state_0.pth", "rng_state_1.pth"}
    encoder = BiEncoder.load(outcome.model_dir)
    vectors = encoder.encode_queries(["민법 법원", "민법 신의성실"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # in-batch negatives came from both ranks (the model card records the loss's configuration)
    assert '"gather_across_devices": true' in (outcome.model_dir / "README.md").read_text(encoding="utf-8")

    runs = mlflow.MlflowClient(tracking.tracking_uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(tracking.tracking_uri).search_experiments()]
    )
    assert len(runs) == 1 and runs[0].info.run_id == outcome.mlflow_run_id and runs[0].info.status == "FINISHED"
    client = mlflow.MlflowClient(tracking.tracking_uri)
    assert [m.step for m in client.get_metric_history(outcome.mlflow_run_id, "loss")] == [1, 2, 3]  # replayed
    # the in-training validation (rank 0's, broadcast to rank 1) at its step; MLflow spells "@" as "_at_"
    assert [m.step for m in client.get_metric_history(outcome.mlflow_run_id, "eval_valid_ndcg_at_10")] == [2, 3]
    assert runs[0].data.metrics["final_valid.ndcg_at_10"] == pytest.approx(outcome.metrics["ndcg@10"])


def test_a_rank_other_than_zero_trains_but_writes_no_model_and_no_result(
    data, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 1's part, in this process: the trainer says it is not the world's process zero, torchrun's RANK is 1."""
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer

    splits, corpus = data
    cfg = _cfg(nproc_per_node=1, max_steps=2)
    rows, stats = training_rows(splits, corpus, cfg)
    job_dir, work_dir = tmp_path / "job", tmp_path / "work"
    job_dir.mkdir()
    kwargs = {"split": "valid", "max_queries": 4, "corpus_max_passages": 10, "ks": [10], "seed": 1, "batch_size": 8}
    write_job(job_dir, tiny_model_dir, rows, stats, cfg, work_dir, validation=ValidationInputs(splits, corpus, kwargs))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(SentenceTransformerTrainer, "is_world_process_zero", lambda self: False)

    result = run_job(job_dir)

    assert result.global_step == 2 and result.metrics == {}  # trained; no final validation
    assert not (work_dir / "model").exists() and not (job_dir / RESULT_FILE).exists()
    assert not [p for p in tmp_path.rglob(TRAINING_FILE)]


def test_a_failing_worker_surfaces_with_its_exit_code(tmp_path: Path) -> None:
    with pytest.raises(DistributedTrainingError, match="exited with code 1") as failed:
        launch(tmp_path, 2)  # no job.json: both workers raise
    assert failed.value.returncode == 1
    assert JOB_FILE in str(failed.value)  # the tail of stderr names what went wrong


def test_nproc_per_node_is_validated_refuses_callbacks_and_enters_the_key_only_above_one(data, tmp_path: Path):
    with pytest.raises(ValidationError):
        TrainSettings(nproc_per_node=0)
    cfg = TrainSettings()
    key = model_key("base", "pairs", "corpus", cfg)
    assert model_key("base", "pairs", "corpus", cfg.model_copy(update={"nproc_per_node": 1})) == key
    assert model_key("base", "pairs", "corpus", cfg.model_copy(update={"nproc_per_node": 2})) != key
    splits, corpus = data
    store = ArtifactStore(tmp_path / "data")
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    base = BaseModelManifest("unused", None, "unused", "hub:unused")
    with pytest.raises(ValueError, match="callbacks"):
        train_tracked(_cfg(), EvalSettings(), tracking, splits, corpus, base, store, callbacks=[object()])
    with pytest.raises(ValueError, match="names one GPU"):
        train_tracked(_cfg(device="cuda:1"), EvalSettings(), tracking, splits, corpus, base, store)


def test_gathered_masks_give_the_loss_of_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two simulated ranks, each with half of a batch that has duplicates: with the candidates (and labels) gathered,
    the mean of the two ranks' masked losses is the masked loss of the whole batch on one process."""
    torch.manual_seed(0)
    n, dim = 8, 16
    ids = [f"p{i % 5}" for i in range(n)]  # rows 5-7 share their positive with rows 0-2
    labels = torch.tensor([row_keys(f"q{i}", ids[i], [f"n{i}"], [ids[i]]) for i in range(n)])
    embeddings = [torch.randn(n, dim) for _ in range(3)]  # anchor, positive, negative_1
    whole = MaskedMNRL(None, scale=20.0).compute_loss_from_embeddings(embeddings, labels)

    half = n // 2
    per_rank = []
    for rank in (0, 1):
        rows = slice(rank * half, (rank + 1) * half)
        monkeypatch.setattr(losses, "get_world_size", lambda: 2)
        monkeypatch.setattr(losses, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(losses, "all_gather", lambda t: labels)
        monkeypatch.setattr(multiple_negatives_ranking, "get_rank", lambda rank=rank: rank)
        local = [e[rows] for e in embeddings]
        full = {id(x): e for x, e in zip(local, embeddings, strict=True)}  # all_gather of this rank's slice
        monkeypatch.setattr(multiple_negatives_ranking, "all_gather_with_grad", lambda t, full=full: full[id(t)])
        loss = MaskedMNRL(None, scale=20.0, gather_across_devices=True)
        per_rank.append(loss.compute_loss_from_embeddings(local, labels[rows]))
        assert loss.masked_total > 0
    assert torch.isclose((per_rank[0] + per_rank[1]) / 2, whole)


def test_replayed_history_logs_what_the_callback_would() -> None:
    history = [
        {"loss": 1.5, "learning_rate": 1e-5, "epoch": 0.1, "step": 1},
        {"eval_valid_ndcg@10": 0.3, "eval_samples_per_second": 0.0, "epoch": 0.2, "step": 2},
        {"train_runtime": 3.0, "note": "text", "step": 2},
    ]
    logged: list[tuple[dict[str, float], int]] = []
    replay_log_history(history, lambda metrics, step: logged.append((metrics, step)))
    assert logged == [
        ({"loss": 1.5, "learning_rate": 1e-5, "epoch": 0.1}, 1),
        ({"eval_valid_ndcg@10": 0.3, "epoch": 0.2}, 2),
        ({"train_runtime": 3.0}, 2),
    ]
    assert json.loads(json.dumps(history)) == history  # the workers hand it back as JSON
