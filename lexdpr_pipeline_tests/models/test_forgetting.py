"""Training that does not forget (issue 14 §4): WiSE-FT interpolation with the base and the distillation term."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from sentence_transformers import SentenceTransformer

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest
from lexdpr_pipeline.evaluation.tracked import ModelRef
from lexdpr_pipeline.models import tracked
from lexdpr_pipeline.models.biencoder import ADAPTER_FILE, BiEncoder, Template
from lexdpr_pipeline.models.interpolate import (
    interpolate_,
    interpolate_folder,
    interpolate_state_dicts,
    interpolated,
)
from lexdpr_pipeline.models.losses import (
    DistillToBase,
    MaskedCachedMNRL,
    MaskedMNRL,
    build_loss,
    frozen_base,
    row_keys,
)
from lexdpr_pipeline.models.resolve import folder_version
from lexdpr_pipeline.models.tracked import model_key, train_tracked
from lexdpr_pipeline.models.training import TRAINING_FILE, read_training_metadata, train_biencoder, training_rows
from lexdpr_pipeline.settings import EvalSettings, Settings, TrackingSettings, TrainSettings
from lexdpr_pipeline.sweeps.runner import trial_settings
from lexdpr_pipeline.sweeps.space import SweepSpec
from lexdpr_pipeline_tests.training_fixtures import tiny_training_set

PROBE = ["민법 제750조 불법행위", "사람은 생존한 동안 권리와 의무의 주체가 된다", "민법 법원"]


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return tiny_training_set()


def _cfg(**kw) -> TrainSettings:
    base = {"batch_size": 8, "max_steps": 3, "template": "none", "logging_steps": 1, "device": "cpu"}
    return TrainSettings(**{**base, **kw})


def _load(path: Path) -> SentenceTransformer:
    model = SentenceTransformer(str(path), device="cpu")
    model.eval()
    return model


def _perturb(model: torch.nn.Module, seed: int = 1, scale: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _vectors(path_or_model) -> np.ndarray:
    model = path_or_model if isinstance(path_or_model, SentenceTransformer) else _load(path_or_model)
    return BiEncoder(model, Template.named("none")).encode_passages(PROBE)


@pytest.fixture(scope="module")
def tuned_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with every weight moved: a stand-in for a fine-tuned model, with training metadata."""
    out = tmp_path_factory.mktemp("tuned") / "model"
    model = _load(tiny_model_dir)
    _perturb(model)
    BiEncoder(model, Template.named("none")).save(out)
    (out / TRAINING_FILE).write_text(json.dumps({"final_validation": {"ndcg@10": 0.9}, "lora": {"enabled": False}}))
    return out


# -------------------------------------------------------------------------------------------------- interpolation


def test_state_dict_interpolation_is_exact_at_the_ends_and_the_midpoint_between():
    gen = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(4, 3, generator=gen), "b": torch.randn(3, generator=gen), "ids": torch.arange(5)}
    tuned = {"w": torch.randn(4, 3, generator=gen), "b": torch.randn(3, generator=gen), "ids": torch.arange(5)}
    zero, one, half = (interpolate_state_dicts(base, tuned, a) for a in (0.0, 1.0, 0.5))
    assert all(torch.equal(zero[k], base[k]) for k in base)
    assert all(torch.equal(one[k], tuned[k]) for k in base)
    for k in ("w", "b"):
        torch.testing.assert_close(half[k], (base[k] + tuned[k]) / 2, rtol=0, atol=1e-7)
        assert not torch.equal(half[k], base[k]) and not torch.equal(half[k], tuned[k])
    assert half["ids"].dtype == torch.int64 and torch.equal(half["ids"], tuned["ids"])
    assert torch.equal(base["w"], zero["w"]) and zero["w"] is not base["w"]  # new tensors, inputs untouched
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        interpolate_state_dicts(base, tuned, 1.5)


def test_interpolation_refuses_models_that_differ():
    base = {"w": torch.zeros(4, 3), "b": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"differ in shape, e.g. w: base \(4, 3\) vs fine-tuned \(4, 2\)"):
        interpolate_state_dicts(base, {"w": torch.zeros(4, 2), "b": torch.zeros(3)}, 0.5)
    with pytest.raises(ValueError, match=r"different parameters: only in the fine-tuned model \['extra'\]"):
        interpolate_state_dicts(base, {**base, "extra": torch.zeros(1)}, 0.5)
    with pytest.raises(ValueError, match="needs the base model's weights"):
        interpolate_(torch.nn.Linear(2, 2), None, 0.5)


def test_interpolate_folder_gives_the_base_the_tuned_and_the_mix(tiny_model_dir: Path, tuned_dir: Path, tmp_path):
    base_vecs, tuned_vecs = _vectors(tiny_model_dir), _vectors(tuned_dir)
    assert not np.allclose(base_vecs, tuned_vecs, atol=1e-3)
    at0 = interpolate_folder(tiny_model_dir, tuned_dir, 0.0, tmp_path / "a0")
    np.testing.assert_allclose(_vectors(at0), base_vecs, rtol=0, atol=1e-6)
    at1 = interpolate_folder(tiny_model_dir, tuned_dir, 1.0, tmp_path / "a1")
    np.testing.assert_allclose(_vectors(at1), tuned_vecs, rtol=0, atol=1e-6)
    half = interpolate_folder(tiny_model_dir, tuned_dir, 0.5, tmp_path / "a05")
    b, t, h = (_load(p).state_dict() for p in (tiny_model_dir, tuned_dir, half))
    for name, value in h.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (b[name] + t[name]) / 2, rtol=0, atol=1e-6)
    assert not np.allclose(_vectors(half), base_vecs, atol=1e-4) and not np.allclose(_vectors(half), tuned_vecs)
    meta = read_training_metadata(half)
    assert meta["interpolate"] == 0.5 and meta["final_validation"] == {}  # the tuned scores no longer apply
    assert Template.load(half) is not None
    again = read_training_metadata(interpolate_folder(tiny_model_dir, half, 0.5, tmp_path / "a025"))
    assert again["interpolate"] == 0.25 and again["interpolation"]["tuned_interpolate"] == 0.5
    with pytest.raises(ValueError, match="new folder"):
        interpolate_folder(tiny_model_dir, tuned_dir, 0.5, tuned_dir)


def test_interpolated_block_scores_the_mix_and_restores_the_model(tiny_model_dir: Path, tuned_dir: Path):
    base_state = _load(tiny_model_dir).state_dict()
    model = _load(tuned_dir)
    before = _vectors(model)
    with interpolated(model, base_state, 0.0):
        np.testing.assert_allclose(_vectors(model), _vectors(tiny_model_dir), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(_vectors(model), before)
    with pytest.raises(RuntimeError, match="inside"), interpolated(model, base_state, 0.3):
        raise RuntimeError("inside")
    np.testing.assert_array_equal(_vectors(model), before)  # restored on an error too


# ---------------------------------------------------------------------------------------------------- distillation


def _batch(model: SentenceTransformer):
    anchors = ["민법 법원", "민법 신의성실", "민법 권리능력", "민법 주소"]
    passages = ["민사에 관하여 법률", "권리의 행사와 의무의 이행", "사람은 생존한 동안", "생활의 근거되는 곳"]
    negatives = ["주소를 알 수 없으면", "부재자의 재산관리", "실종의 선고", "법인의 설립"]
    features = [model.tokenize(t) for t in (anchors, passages, negatives)]
    labels = torch.tensor([row_keys(f"q{i}", f"p{i}", [f"n{i}"], [f"p{i}"]) for i in range(4)])
    return features, labels


@pytest.mark.parametrize("metric", ["cosine", "mse"])
def test_distill_term_is_zero_for_the_base_itself_and_grows_when_the_student_moves(tiny_model_dir: Path, metric):
    student = _load(tiny_model_dir)
    loss = DistillToBase(MaskedMNRL(student), frozen_base(tiny_model_dir, "cpu"), weight=2.0, metric=metric)
    features, labels = _batch(student)
    with torch.no_grad():
        same = loss(features, labels)
        assert abs(float(same["distill"])) < 1e-6 and float(same["ranking"]) > 0
        _perturb(student)
        moved = loss(features, labels)
    assert float(moved["distill"]) > 1e-4
    assert all(not p.requires_grad for p in loss.__dict__["base"].parameters())
    assert not any(n.startswith("base") for n, _ in loss.named_parameters())  # not trained, not saved


def test_cached_distillation_matches_the_plain_loss_and_its_gradients(tiny_model_dir: Path):
    """The cached (GradCache) variant adds the term to the cached gradients: same loss, same gradients."""
    results = []
    for cached in (False, True):
        student = _load(tiny_model_dir)  # eval mode: no dropout, so both passes see the same embeddings
        _perturb(student, seed=3, scale=0.02)
        ranking = MaskedCachedMNRL(student, scale=20.0, mini_batch_size=2) if cached else MaskedMNRL(student, 20.0)
        loss = DistillToBase(ranking, frozen_base(tiny_model_dir, "cpu"), weight=3.0, chunk_size=2 if cached else None)
        features, labels = _batch(student)
        out = loss(features, labels)
        total = torch.stack(list(out.values())).sum()  # what the trainer does with a dict of parts
        total.backward()
        grads = torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None])
        results.append((float(out["ranking"].detach()), float(out["distill"].detach()), grads))
    (r0, d0, g0), (r1, d1, g1) = results
    assert d0 > 0 and r0 == pytest.approx(r1, abs=1e-5) and d0 == pytest.approx(d1, abs=1e-6)
    torch.testing.assert_close(g1, g0, rtol=1e-3, atol=1e-5)


def test_build_loss_wraps_only_with_a_positive_weight(tiny_model_dir: Path):
    student = _load(tiny_model_dir)
    kw = {"temperature": 0.05, "mask_duplicates": True, "mini_batch_size": 4}
    assert isinstance(build_loss(student, kind="mnrl", **kw), MaskedMNRL)
    wrapped = build_loss(student, kind="cached_mnrl", distill_weight=0.5, distill_base=tiny_model_dir, **kw)
    assert isinstance(wrapped, DistillToBase) and wrapped.chunk_size == 4 and wrapped.weight == 0.5
    with pytest.raises(ValueError, match="needs the base model"):
        build_loss(student, kind="mnrl", distill_weight=0.5, **kw)


@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl"])
def test_a_tiny_training_with_distillation_completes_and_logs_the_term(data, tiny_model_dir: Path, tmp_path, loss):
    splits, corpus = data
    cfg = _cfg(loss=loss, mini_batch_size=4, distill_weight=1.0)
    rows, stats = training_rows(splits, corpus, cfg)
    result = train_biencoder(tiny_model_dir, rows, stats, cfg, tmp_path)
    assert result.global_step == 3
    logged = [h for h in result.history if "distill" in h]
    assert logged and all(h["distill"] >= 0 for h in logged) and any(h["distill"] > 0 for h in logged)
    assert all("ranking" in h and "loss" in h for h in logged)
    meta = read_training_metadata(result.model_dir)
    assert meta["training_args"]["distill_weight"] == 1.0 and meta["masked_in_batch_pairs"] is not None
    assert not np.allclose(_vectors(result.model_dir), _vectors(tiny_model_dir), atol=1e-5)  # it trained


# ------------------------------------------------------------------------------------- interpolation in training


def test_training_with_interpolate_saves_and_validates_the_mix(data, tiny_model_dir: Path, tmp_path: Path):
    """interpolate 0: the saved model is the base and every validation saw the base; 0.5: the saved weights are the
    midpoint of the base and the trainer's own (un-mixed) last checkpoint."""
    splits, corpus = data
    base_vecs = _vectors(tiny_model_dir)
    seen: list[np.ndarray] = []

    def validate(encoder: BiEncoder) -> dict[str, float]:
        seen.append(encoder.encode_passages(PROBE))
        return {"ndcg@10": 0.5}

    cfg = _cfg(interpolate=0.0, learning_rate=1e-3, eval_steps=2, early_stopping_patience=None)
    rows, stats = training_rows(splits, corpus, cfg)
    zero = train_biencoder(tiny_model_dir, rows, stats, cfg, tmp_path / "zero", validate=validate)
    assert len(seen) >= 2  # in-training validations + the final one
    for vecs in seen:
        np.testing.assert_allclose(vecs, base_vecs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_vectors(zero.model_dir), base_vecs, rtol=0, atol=1e-6)
    raw = _vectors(tmp_path / "zero" / "checkpoints" / "checkpoint-3")  # the trainer's own weights moved
    assert not np.allclose(raw, base_vecs, atol=1e-4)
    assert read_training_metadata(zero.model_dir)["interpolation"] == "full"

    half = train_biencoder(tiny_model_dir, rows, stats, _cfg(interpolate=0.5, learning_rate=1e-3), tmp_path / "half")
    b = _load(tiny_model_dir).state_dict()
    t = _load(tmp_path / "half" / "checkpoints" / "checkpoint-3").state_dict()
    h = _load(half.model_dir).state_dict()
    for name, value in h.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, torch.lerp(b[name], t[name], 0.5), rtol=0, atol=1e-6)


def test_lora_with_interpolate_zero_keeps_the_base(data, tiny_model_dir: Path, tmp_path: Path):
    splits, corpus = data
    lora = {"lora": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["query", "value"], "max_steps": 2}
    cfg = _cfg(**lora, learning_rate=1e-2, interpolate=0.0)
    rows, stats = training_rows(splits, corpus, cfg)
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    result = train_biencoder(base, rows, stats, cfg, tmp_path / "run")
    assert (result.model_dir / ADAPTER_FILE).exists()
    assert read_training_metadata(result.model_dir)["interpolation"] == "lora"
    encoder = BiEncoder.load(result.model_dir, template=Template.named("none"))
    np.testing.assert_allclose(encoder.encode_passages(PROBE), _vectors(base), rtol=0, atol=1e-6)
    # an unmerged adapter trained as usual, re-mixed afterwards: a plain, merged folder
    tuned = train_biencoder(base, rows, stats, _cfg(**lora, learning_rate=1e-2), tmp_path / "tuned").model_dir
    adapted = BiEncoder.load(tuned, template=Template.named("none")).encode_passages(PROBE)
    assert not np.allclose(adapted, _vectors(base), atol=1e-4)
    at1 = interpolate_folder(base, tuned, 1.0, tmp_path / "at1")
    assert not (at1 / ADAPTER_FILE).exists() and read_training_metadata(at1)["lora"]["merged"] is True
    np.testing.assert_allclose(_vectors(at1), adapted, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        _vectors(interpolate_folder(base, tuned, 0.0, tmp_path / "at0")), _vectors(base), atol=1e-6
    )


# ----------------------------------------------------------------------------------------- key, MLflow, the sweep


def test_the_knobs_are_in_the_model_key_and_their_neutral_values_keep_old_keys():
    cfg = TrainSettings()
    key = model_key("b", "p", "c", cfg)
    assert {"interpolate", "distill_weight"} <= set(tracked.KEY_NEUTRAL)
    changed = [{"interpolate": 0.5}, {"distill_weight": 0.1}, {"distill_weight": 0.1, "distill_metric": "mse"}]
    keys = {model_key("b", "p", "c", cfg.model_copy(update=u)) for u in changed}
    assert len(keys | {key}) == 4
    assert model_key("b", "p", "c", cfg.model_copy(update={"distill_metric": "mse"})) == key  # distill off
    # a model trained before these settings existed keeps its key (so it is reused, not retrained)
    old_args = {
        k: v
        for k, v in cfg.model_dump(mode="json").items()
        if k not in tracked.NOT_IN_KEY | set(tracked.KEY_NEUTRAL) | {"distill_metric"}  # as before them
    }
    old = hashlib.sha256(json.dumps(["b", "p", "c", old_args], sort_keys=True).encode()).hexdigest()
    assert key == old


def test_the_knobs_are_logged_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    splits, corpus = tiny_training_set()
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = []

    def stop(*args, **kwargs):
        raise RuntimeError("stop before training")

    monkeypatch.setattr(tracked, "train_biencoder", stop)
    cfg = TrainSettings(batch_size=8, device="cpu", interpolate=0.6, distill_weight=0.25)
    with pytest.raises(RuntimeError, match="stop"):
        train_tracked(
            cfg,
            EvalSettings(),
            tracking,
            splits,
            corpus,
            BaseModelManifest("unused", None, "unused", "hub:unused"),
            ArtifactStore(tmp_path / "data"),
            on_run_start=runs.append,
        )
    params = mlflow.MlflowClient(tracking.tracking_uri).get_run(runs[0].run_id).data.params
    assert params["train.interpolate"] == "0.6" and params["train.distill_weight"] == "0.25"


def test_the_sweep_searches_the_knobs():
    spec = SweepSpec.model_validate(
        {
            "name": "forgetting",
            "n_trials": 2,
            "params": {
                "train.interpolate": {"type": "float", "low": 0.3, "high": 1.0},
                "train.distill_weight": {"type": "categorical", "choices": [0.0, 0.5]},
                "train.distill_metric": {"type": "categorical", "choices": ["cosine", "mse"]},
            },
        }
    )
    settings, _ = trial_settings(
        Settings(), spec, {"train.interpolate": 0.4, "train.distill_weight": 0.5, "train.distill_metric": "mse"}
    )
    assert (settings.train.interpolate, settings.train.distill_weight, settings.train.distill_metric) == (
        0.4,
        0.5,
        "mse",
    )
    with pytest.raises(ValueError, match="less than or equal to 1"):
        trial_settings(Settings(), spec, {"train.interpolate": 1.5})


# ------------------------------------------------------------------------------ a mix derived from its twin


def test_mix_is_derivable_only_when_the_last_step_is_saved():
    derivable = TrainSettings(max_steps=10, interpolate=0.5)
    assert tracked.mix_is_derivable(derivable)
    assert tracked.mix_is_derivable(derivable.model_copy(update={"eval_steps": 10}))
    for update in ({"interpolate": 1.0}, {"eval_steps": 5}, {"lora": True}, {"max_steps": None}, {"test_run": True}):
        assert not tracked.mix_is_derivable(derivable.model_copy(update=update)), update


def test_train_tracked_derives_an_interpolation_from_its_finished_twin(
    data, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The interpolate-1 model exists: interpolate 0.5 is its mix with the base, validated, in a run of its own,
    and no training runs; a setting that picks checkpoints by validation trains as before."""
    splits, corpus = data
    store = ArtifactStore(tmp_path / "data")
    tracking = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    base = BaseModelManifest("tiny", str(tiny_model_dir), None, "tiny-1")
    cfg = _cfg(learning_rate=1e-3, eval_max_queries=8, eval_corpus_max_passages=20)
    run = {"tracking": tracking, "splits": splits, "corpus": corpus, "base_model": base, "store": store}
    twin = train_tracked(cfg, EvalSettings(batch_size=8), log_model=False, **run)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the mix could be derived")

    monkeypatch.setattr(tracked, "train_biencoder", no_training)
    mixed = train_tracked(cfg.model_copy(update={"interpolate": 0.5}), EvalSettings(batch_size=8), **run)

    assert not mixed.reused and mixed.model_dir != twin.model_dir
    assert mixed.manifest.content_hash == model_key(
        "tiny-1", *tracked.input_versions(splits, corpus), cfg.model_copy(update={"interpolate": 0.5})
    )
    b, t, m = (_load(p).state_dict() for p in (tiny_model_dir, twin.model_dir, mixed.model_dir))
    for name, value in m.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, torch.lerp(b[name], t[name], 0.5), rtol=0, atol=1e-6)
    meta = read_training_metadata(mixed.model_dir)
    assert meta["interpolate"] == 0.5 and meta["training_args"]["interpolate"] == 0.5
    assert "ndcg@10" in meta["final_validation"] and mixed.metrics == meta["final_validation"]
    assert meta["mlflow_run_id"] == mixed.mlflow_run_id != twin.mlflow_run_id
    tags = mlflow.MlflowClient(tracking.tracking_uri).get_run(mixed.mlflow_run_id).data.tags
    assert tags["lexdpr.derived_from"] == str(twin.model_dir)
    # `lex-dpr eval --model <a store folder>` keys caches by the manifest's key, the mix's own (not the twin's)
    assert meta["content_key"] == mixed.manifest.content_hash != twin.manifest.content_hash
    assert ModelRef.folder(mixed.model_dir, store).version == mixed.manifest.content_hash
    assert ModelRef.folder(twin.model_dir, store).version == twin.manifest.content_hash
    assert ModelRef.folder(tiny_model_dir, store).version == folder_version(tiny_model_dir)  # not a store folder
    # checkpoints picked by validation: the mix is not the twin's, so it must train
    with pytest.raises(AssertionError, match="trained although"):
        train_tracked(cfg.model_copy(update={"interpolate": 0.5, "eval_steps": 1}), EvalSettings(batch_size=8), **run)
