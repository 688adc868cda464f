"""Shared fixtures. ``../shared`` is read where it is (never copied into the project)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = (REPO_ROOT.parent / "shared").resolve()
CORPUS = SHARED / "corpus"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared is missing (expected at {SHARED}); tests read the sample data there")
    return SHARED


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a small WordPiece ``tokenizer.json`` trained on the fly on real statute text."""
    from lexdpr_pipeline_tests.tiny_model import build_tiny_tokenizer

    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"), CORPUS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """A tiny random-init BERT sentence-transformers model (mean pooling, normalized) built on the fly."""
    from lexdpr_pipeline_tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-st"), tiny_tokenizer_dir, tmp_path_factory.mktemp("tiny-hf"))
