"""Chunking to a token budget measured with the model's own tokenizer, with overlap.

A :class:`TokenCounter` maps text to token character spans. :class:`HFTokenCounter` wraps any Hugging Face fast
tokenizer (the configured model's); :class:`WhitespaceTokenCounter` is the dependency-free fallback.
Chunk boundaries prefer sentence ends (``다.``, ``.``, line breaks) in the last part of a window, so a chunk
rarely stops mid-sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Span = tuple[int, int]


class TokenCounter(Protocol):
    name: str

    def spans_many(self, texts: Sequence[str]) -> list[list[Span]]:
        """Character spans of each text's tokens (no special tokens)."""
        ...


class WhitespaceTokenCounter:
    """Whitespace-separated words: only for tests and for running without any model."""

    name = "whitespace"
    _WORD = re.compile(r"\S+")

    def spans_many(self, texts: Sequence[str]) -> list[list[Span]]:
        return [[m.span() for m in self._WORD.finditer(t)] for t in texts]


class HFTokenCounter:
    """A Hugging Face fast tokenizer (``tokenizer.json`` in a model folder, or a ``tokenizers.Tokenizer``)."""

    def __init__(self, tokenizer, name: str) -> None:  # tokenizers.Tokenizer
        self._tok = tokenizer
        self.name = name

    @classmethod
    def from_dir(cls, path: Path) -> HFTokenCounter:
        from tokenizers import Tokenizer

        path = Path(path)
        file = path / "tokenizer.json"
        if not file.exists():
            raise FileNotFoundError(f"no tokenizer.json in {path}: point text.tokenizer at a model folder")
        return cls(Tokenizer.from_file(str(file)), name=_hf_name(path))

    def spans_many(self, texts: Sequence[str]) -> list[list[Span]]:
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        out: list[list[Span]] = []
        for enc in encodings:
            # Sentencepiece emits a bare "▁" with an empty span in places; those still cost a token.
            out.append([(s, e) for s, e in enc.offsets])
        return out


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int  # character offsets into the text
    end: int
    n_tokens: int


_SENTENCE_END = re.compile(r"(?:다\.|[.!?。])\s*$")


def chunk_spans(
    text: str, spans: Sequence[Span], max_tokens: int, overlap: int, snap_fraction: float = 0.25
) -> list[Chunk]:
    """Split ``text`` into windows of at most ``max_tokens`` tokens, consecutive windows sharing ``overlap`` tokens.

    Within the last ``snap_fraction`` of a window, the window ends after the last token that closes a sentence.
    """
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be >= 0 and smaller than max_tokens")
    n = len(spans)
    if n <= max_tokens:
        return [Chunk(0, len(text), n)]
    chunks: list[Chunk] = []
    first = 0
    while first < n:
        last = min(first + max_tokens, n)  # exclusive
        if last < n:
            floor = first + max(1, int(max_tokens * (1 - snap_fraction)))
            for cut in range(last, floor, -1):
                tail_end = spans[cut - 1][1]
                next_start = spans[cut][0] if cut < n else len(text)
                piece = text[spans[cut - 1][0] : next_start]  # the token and the gap after it
                # Punctuation closes a sentence only before whitespace: not the "." in "3.5" or "2015.2.3", which a
                # subword tokenizer makes a token of its own.
                if "\n" in piece or (_SENTENCE_END.search(piece) and not text[tail_end : tail_end + 1].strip()):
                    last = cut
                    break
        start = 0 if first == 0 else spans[first][0]
        end = len(text) if last >= n else spans[last][0]
        chunks.append(Chunk(start, end, last - first))
        if last >= n:
            break
        first = max(last - overlap, first + 1)
    return chunks


def _hf_name(path: Path) -> str:
    return f"hf:{Path(path).name}"


def _tokenizer_dir(spec: str, model_path: Path | None) -> Path | None:
    """Where the ``text.tokenizer`` setting's tokenizer lives (``None`` for whitespace)."""
    if spec == "whitespace":
        return None
    if spec == "model":
        if model_path is None:
            raise ValueError("text.tokenizer=model needs a local base model folder (or set text.tokenizer)")
        return Path(model_path)
    return Path(spec)


def token_counter(spec: str, model_path: Path | None) -> TokenCounter:
    """The ``text.tokenizer`` setting → a counter: ``model`` (the base model's), ``whitespace``, or a folder."""
    folder = _tokenizer_dir(spec, model_path)
    return WhitespaceTokenCounter() if folder is None else HFTokenCounter.from_dir(folder)


def token_counter_name(spec: str, model_path: Path | None) -> str:
    """The name :func:`token_counter` would give, without loading the tokenizer (for reports)."""
    folder = _tokenizer_dir(spec, model_path)
    return WhitespaceTokenCounter.name if folder is None else _hf_name(folder)
