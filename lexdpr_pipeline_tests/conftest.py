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


def _korean_lines(limit: int = 3000) -> list[str]:
    lines: list[str] = []
    for path in sorted((CORPUS / "legalize-kr" / "kr" / "민법").glob("*.md")):
        lines += [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:limit]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a small WordPiece ``tokenizer.json`` trained on the fly on real statute text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(_korean_lines(), trainer)
    out = tmp_path_factory.mktemp("tiny-tokenizer")
    tok.save(str(out / "tokenizer.json"))
    return out
