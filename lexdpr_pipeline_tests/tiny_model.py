"""A tiny random-init sentence-transformers model with a WordPiece tokenizer trained on real statute text.

The test fixtures ``tiny_tokenizer_dir`` / ``tiny_model_dir`` (conftest.py) and the CI graph check
(scripts/graph_check.py) both build it here. From the command line:

    python -m lexdpr_pipeline_tests.tiny_model OUT_DIR    # writes OUT_DIR/{tokenizer,hf,model}, prints OUT_DIR/model
"""

from __future__ import annotations

import sys
from pathlib import Path

CORPUS = (Path(__file__).resolve().parents[2] / "shared" / "corpus").resolve()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def korean_lines(corpus: Path = CORPUS, limit: int = 3000) -> list[str]:
    """The first ``limit`` non-empty lines of 민법 (the tokenizer's training text)."""
    lines: list[str] = []
    for path in sorted((corpus / "legalize-kr" / "kr" / "민법").glob("*.md")):
        lines += [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise FileNotFoundError(f"no 민법 text under {corpus} (the tiny tokenizer is trained on it)")
    return lines[:limit]


def build_tiny_tokenizer(out: Path, corpus: Path = CORPUS) -> Path:
    """``out/tokenizer.json``: a 2,000-token WordPiece vocabulary trained on the fly. Returns ``out``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordPieceTrainer(vocab_size=2000, special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(korean_lines(corpus), trainer)
    # The trainer picks the same 2,000 tokens every run but numbers them in hash-map order, which differs between
    # processes: the seeded random model would then embed differently in every test session (and tests depending on
    # its rankings would pass or fail by chance). Renumber: special tokens first, the rest in string order.
    trained = tok.get_vocab()
    ordered = SPECIAL_TOKENS + sorted(t for t in trained if t not in SPECIAL_TOKENS)
    tok.model = models.WordPiece({t: i for i, t in enumerate(ordered)}, unk_token="[UNK]")
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return out


def build_tiny_model(out: Path, tokenizer_dir: Path, hf_dir: Path) -> Path:
    """A 2-layer, 32-dim BERT (seed 0) with mean pooling and normalization, saved as a sentence-transformers folder
    at ``out`` (``hf_dir`` holds the plain Hugging Face model it wraps). Returns ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_dir / "tokenizer.json"),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    hf_dir.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = models.Transformer(str(hf_dir), max_seq_length=128)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lexdpr_pipeline_tests.tiny_model OUT_DIR", file=sys.stderr)
        return 2
    root = Path(args[0]).resolve()
    tokenizer = build_tiny_tokenizer(root / "tokenizer")
    print(build_tiny_model(root / "model", tokenizer, root / "hf"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
