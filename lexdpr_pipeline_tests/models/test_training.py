"""Training on the tiny model: rows, duplicate masking, LoRA save/load/merge, resume, early stopping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from transformers import TrainerCallback

from lexdpr_pipeline.models.biencoder import ADAPTER_FILE, TEMPLATE_FILE, BiEncoder, Template
from lexdpr_pipeline.models.losses import RELEVANT_CAP, MaskedMNRL, duplicate_mask, row_keys, text_key
from lexdpr_pipeline.models.training import (
    TRAINING_FILE,
    duplicate_report,
    metrics_callback,
    read_training_metadata,
    save_trained,
    train_biencoder,
    training_rows,
)
from lexdpr_pipeline.settings import TrainSettings
from lexdpr_pipeline_tests.training_fixtures import tiny_training_set


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return tiny_training_set()


def _cfg(**kw) -> TrainSettings:
    base = {"batch_size": 8, "max_steps": 3, "template": "none", "logging_steps": 1, "device": "cpu"}
    return TrainSettings(**{**base, **kw})


# ----------------------------------------------------------------------------------------------------------- rows


def test_training_rows_take_train_split_with_negatives_and_keys(data):
    splits, corpus = data
    rows, stats = training_rows(splits, corpus, _cfg(hard_negatives=2))
    train = splits.filter(pl.col("split") == "train")
    assert stats.queries == train.height == rows.height
    assert set(rows["query_id"]) == set(train["query_id"])
    text = dict(corpus.select("passage_id", "text").iter_rows())
    first = train.row(0, named=True)
    row = rows.filter(pl.col("query_id") == first["query_id"]).row(0, named=True)
    assert row["anchor"] == first["query_text"]
    assert row["positive"] == text[first["positive_ids"][0]]
    assert row["negative_1"] == text[first["negative_ids"][0]] and row["negative_2"] == text[first["negative_ids"][1]]
    assert len(row["label"]) == 1 + 1 + 2 + RELEVANT_CAP
    assert row["label"][1] == text_key(first["positive_ids"][0])


def test_rows_skip_and_count_queries_without_enough_negatives(data):
    splits, corpus = data
    short = splits.with_columns(
        negative_ids=pl.when(pl.col("query_id") == "q:1:0")
        .then(pl.lit(None, pl.List(pl.String)))
        .otherwise(pl.col("negative_ids"))
    )
    rows, stats = training_rows(short, corpus, _cfg(hard_negatives=1))
    assert "q:1:0" not in set(rows["query_id"])
    assert stats.skipped == {"fewer than 1 hard negatives": 1}


def test_rows_order_holdings_before_body(data):
    splits, corpus = data
    extra = corpus.head(2).with_columns(
        passage_id=pl.Series(["prec:9#0", "prec:9#1"]),
        doc_id=pl.lit("prec:9"),
        source=pl.lit("prec"),
        section=pl.Series(["body", "holdings"]),
        chunk_index=pl.Series([0, 1], dtype=pl.Int32),
    )
    corpus2 = pl.concat([corpus, extra])
    q = splits.filter(pl.col("split") == "train").head(1).with_columns(positive_ids=pl.lit(["prec:9#0", "prec:9#1"]))
    rows, _ = training_rows(q, corpus2, _cfg(hard_negatives=1, positives_per_query=1))
    assert rows["positive_id"].to_list() == ["prec:9#1"]  # 판시사항 first


# ------------------------------------------------------------------------------------------------ duplicate mask


def test_duplicate_mask_hides_shared_positives_and_same_query_rows():
    a = row_keys("q1", "law:1", ["law:9"], ["law:1"])
    b = row_keys("q2", "law:1", ["law:8"], ["law:1"])  # same positive as q1
    c = row_keys("q3", "law:3", ["law:1"], ["law:3", "law:4"])  # q3's negative is q1's positive
    d = row_keys("q3", "law:4", ["law:7"], ["law:3", "law:4"])  # second row of q3
    labels = torch.tensor([a, b, c, d])
    mask = duplicate_mask(labels, n_doc_columns=2)
    # candidates: positives [law1, law1, law3, law4] then negatives [law9, law8, law1, law7]
    assert mask.shape == (4, 8)
    assert mask[0].tolist() == [False, True, False, False, False, False, True, False]
    assert mask[1].tolist() == [True, False, False, False, False, False, True, False]
    assert mask[2].tolist() == [False, False, False, True, False, False, False, False]  # q3's other positive
    assert mask[3].tolist() == [False, False, True, False, False, False, False, False]
    assert not mask.diagonal().any()


def test_masked_loss_equals_plain_without_duplicates_and_is_lower_with_them(tiny_model_dir: Path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.eval()
    masked, plain = MaskedMNRL(model, scale=20.0), MultipleNegativesRankingLoss(model, scale=20.0)
    anchors = ["민법 법원", "민법 신의성실", "민법 권리능력"]
    passages = ["민사에 관하여 법률", "권리의 행사와 의무의 이행", "사람은 생존한 동안"]

    def feats(texts):
        return model.tokenize(texts)

    distinct = torch.tensor([row_keys(f"q{i}", f"p{i}", [], [f"p{i}"]) for i in range(3)])
    f = [feats(anchors), feats(passages)]
    with torch.no_grad():
        assert torch.isclose(masked(f, distinct), plain(f, distinct))
        dup = [feats(anchors), feats([passages[0], passages[0], passages[2]])]
        shared = torch.tensor([row_keys(f"q{i}", "p0" if i < 2 else "p2", [], []) for i in range(3)])
        assert masked(dup, shared) < plain(dup, shared)
    assert masked.masked_total == 2


def test_duplicate_report_counts_each_strategy(data):
    splits, corpus = data
    rows, _ = training_rows(splits, corpus, _cfg(hard_negatives=1))
    report = duplicate_report(rows, batch_size=16)
    assert report["rows"] == rows.height
    assert report["mask"]["rows_kept"] == rows.height
    assert report["none"]["anchors_with_in_batch_false_negatives"] > 0  # shared positives + neighbour negatives
    kept = report["no_duplicates_sampler"]["rows_kept"]
    assert 0 < kept <= rows.height and kept % 16 == 0


# -------------------------------------------------------------------------------------------------------- training


def _validate_counter(scores: list[float]):
    calls = {"n": 0}

    def validate(model: BiEncoder) -> dict[str, float]:
        i = min(calls["n"], len(scores) - 1)
        calls["n"] += 1
        assert model.encode_queries(["민법"]).shape[0] == 1
        return {"ndcg@10": scores[i], "recall@100": scores[i]}

    return validate, calls


@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl"])
def test_train_saves_a_loadable_model_with_metadata(data, tiny_model_dir: Path, tmp_path: Path, loss: str):
    splits, corpus = data
    cfg = _cfg(loss=loss, mini_batch_size=4, template="e5")
    rows, stats = training_rows(splits, corpus, cfg)
    before = BiEncoder.load(tiny_model_dir).encode_queries(["민법 법원"])
    validate, _ = _validate_counter([0.2])
    result = train_biencoder(
        tiny_model_dir, rows, stats, cfg, tmp_path, validate=validate, metadata={"pairs_data_version": "abc"}
    )
    assert result.global_step == 3
    assert result.train_metrics["train_samples_per_second"] > 0
    meta = read_training_metadata(result.model_dir)
    assert meta["pairs_data_version"] == "abc" and meta["training_args"]["loss"] == loss
    assert meta["template"]["query"] == "query: " and "torch" in meta["packages"]
    assert meta["final_validation"]["ndcg@10"] == 0.2
    assert any("loss" in h for h in result.history)
    model = BiEncoder.load(result.model_dir)
    assert model.template.name == "e5"
    after = model.encode_queries(["민법 법원"])
    assert not np.allclose(before, after)  # weights moved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "model"]  # no staging folder left


def test_early_stopping_stops_when_validation_does_not_improve(data, tiny_model_dir: Path, tmp_path: Path):
    splits, corpus = data
    cfg = _cfg(max_steps=20, eval_steps=1, early_stopping_patience=2)
    rows, stats = training_rows(splits, corpus, cfg)
    validate, calls = _validate_counter([0.5, 0.4, 0.3, 0.2])
    result = train_biencoder(tiny_model_dir, rows, stats, cfg, tmp_path, validate=validate)
    assert result.global_step == 3  # best at step 1, two worse validations, stop
    assert calls["n"] == 4  # three in-training validations + the final one
    assert read_training_metadata(result.model_dir)["best_checkpoint"].endswith("checkpoint-1")


class _Interrupt(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise KeyboardInterrupt("simulated interruption after the step-2 checkpoint")


def test_resume_continues_from_the_last_checkpoint(data, tiny_model_dir: Path, tmp_path: Path):
    splits, corpus = data
    cfg = _cfg(max_steps=4, eval_steps=2)
    rows, stats = training_rows(splits, corpus, cfg)
    validate, _ = _validate_counter([0.1, 0.2, 0.3])
    with pytest.raises(KeyboardInterrupt):
        train_biencoder(tiny_model_dir, rows, stats, cfg, tmp_path, validate=validate, callbacks=[_Interrupt()])
    assert (tmp_path / "checkpoints" / "checkpoint-2").is_dir()
    result = train_biencoder(tiny_model_dir, rows, stats, cfg, tmp_path, validate=validate)
    assert result.resumed_from is not None and result.resumed_from.endswith("checkpoint-2")
    assert result.global_step == 4


def test_lora_adapter_is_relocatable_and_merge_matches(data, tiny_model_dir: Path, tmp_path: Path):
    splits, corpus = data
    lora = {"lora": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["query", "value"], "max_steps": 2}
    cfg = _cfg(**lora, learning_rate=1e-2)
    rows, stats = training_rows(splits, corpus, cfg)
    data_dir = tmp_path / "data"
    base = data_dir / "models" / "base"
    shutil.copytree(tiny_model_dir, base)
    result = train_biencoder(base, rows, stats, cfg, data_dir / "models" / "trained" / "run1")
    adapter = json.loads((result.model_dir / ADAPTER_FILE).read_text())
    assert adapter["base"] == "../../../base" and adapter["base_is_path"]
    assert not Path(
        json.loads((result.model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    ).is_absolute()
    assert not (result.model_dir / "model.safetensors").exists()  # only the adapter is stored
    probe = ["민법 제750조 불법행위", "사람은 생존한 동안 권리와 의무의 주체가 된다"]
    adapted = BiEncoder.load(result.model_dir).encode_passages(probe)
    assert not np.allclose(adapted, BiEncoder.load(base).encode_passages(probe), atol=1e-4)
    moved = tmp_path / "elsewhere"
    shutil.move(str(data_dir), str(moved))  # the whole data folder moves: the adapter still finds its base
    relocated = BiEncoder.load(moved / "models" / "trained" / "run1" / "model").encode_passages(probe)
    np.testing.assert_allclose(relocated, adapted, atol=1e-5)
    merged_cfg = _cfg(**lora, learning_rate=1e-2, merge_lora=True)
    merged = train_biencoder(moved / "models" / "base", rows, stats, merged_cfg, tmp_path / "run2")
    assert not (merged.model_dir / ADAPTER_FILE).exists() and not (merged.model_dir / "adapter_config.json").exists()
    meta = read_training_metadata(merged.model_dir)
    assert meta["lora"]["merged"] is True and (merged.model_dir / TRAINING_FILE).exists()
    np.testing.assert_allclose(BiEncoder.load(merged.model_dir).encode_passages(probe), adapted, atol=1e-4)


class _FakeModel:
    """Stands in for a SentenceTransformer in ``save_trained``: writes one file, or part of it and then fails."""

    def __init__(self, weights: str, fail: bool = False) -> None:
        self.weights, self.fail = weights, fail

    def save(self, path: str) -> None:
        (Path(path) / "weights.bin").write_text(self.weights)
        if self.fail:
            raise OSError("disk full while saving")


def test_save_replaces_the_model_only_once_complete(tmp_path: Path):
    """A failure while saving leaves the previous model folder as it was; success replaces it whole; no temp folder
    is left behind; a folder that is not a saved model is never replaced."""
    out = tmp_path / "work" / "model"
    template, cfg = Template.named("none"), _cfg()

    def save(model: _FakeModel, target: Path = out) -> Path:
        return save_trained(model, template, target, base="base", cfg=cfg, merge=False, info={"run": model.weights})

    def folders() -> list[str]:
        return sorted(p.name for p in out.parent.iterdir())

    assert save(_FakeModel("v1")) == out
    assert (out / "weights.bin").read_text() == "v1" and read_training_metadata(out)["run"] == "v1"
    with pytest.raises(OSError, match="disk full"):
        save(_FakeModel("v2-partial", fail=True))
    assert (out / "weights.bin").read_text() == "v1" and read_training_metadata(out)["run"] == "v1"
    assert folders() == ["model"]
    save(_FakeModel("v3"))
    assert (out / "weights.bin").read_text() == "v3" and read_training_metadata(out)["run"] == "v3"
    assert sorted(p.name for p in out.iterdir()) == sorted(["weights.bin", TRAINING_FILE, TEMPLATE_FILE])
    assert folders() == ["model"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError):
        save(_FakeModel("v4"), foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_metrics_callback_logs_every_point_at_its_step_and_no_unmeasured_zero(
    data, tiny_model_dir: Path, tmp_path: Path
):
    """What the asset sends to MLflow: per-step loss, validation and the end-of-training metrics, each at the global
    step (``epoch`` never goes back), without the 0 throughput of an evaluator-only validation."""
    splits, corpus = data
    cfg = _cfg(max_steps=3, eval_steps=3)
    rows, stats = training_rows(splits, corpus, cfg)
    validate, _ = _validate_counter([0.3])
    logged: list[tuple[int, dict[str, float]]] = []
    callback = metrics_callback(lambda metrics, step: logged.append((step, metrics)))
    result = train_biencoder(tiny_model_dir, rows, stats, cfg, tmp_path, validate=validate, callbacks=[callback])
    steps = [step for step, _ in logged]
    assert steps == sorted(steps) and steps[0] >= 1 and steps[-1] == result.global_step == 3
    epochs = [m["epoch"] for _, m in logged if "epoch" in m]
    assert epochs == sorted(epochs) and len(epochs) >= 3
    names = {name for _, m in logged for name in m}
    assert {"loss", "eval_valid_ndcg@10", "eval_runtime", "train_samples_per_second", "train_runtime"} <= names
    assert "eval_samples_per_second" not in names  # the trainer reports 0 for it: no eval dataset was counted
    assert all(v > 0 for _, m in logged for k, v in m.items() if k.endswith("_per_second"))
    assert result.train_metrics["train_runtime"] == next(m["train_runtime"] for _, m in logged if "train_runtime" in m)
