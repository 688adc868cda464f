"""Embedding texts from a file (``lex-dpr embed``) and which model embeds them (``embed`` / ``embed-text``).

Input: ``.jsonl`` lines ``{"id": …, "text": …}`` (``id`` optional: the line number otherwise; ``qid`` is accepted
too), or any other file as plain text, one text per line. Bad JSONL lines and blank lines are skipped, counted and
reported (with line numbers); the ids in the ``.npz`` output say which rows are which.

Output: ``.npy`` (the float32 matrix, one row per kept text, in file order) or ``.npz`` (``ids``: unicode array,
``embeddings``: the matrix, ``model``: the model version), written atomically, loadable with
``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lexdpr_pipeline.storage import atomic_write_bytes

MAX_REPORTED_LINES = 20


@dataclass
class TextFile:
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)

    def skip(self, line: int, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_lines) < MAX_REPORTED_LINES:
            self.skipped_lines.append((line, reason))

    def summary(self) -> str:
        if not self.skipped:
            return f"{len(self.texts)} texts"
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.skipped.most_common())
        lines = ", ".join(f"line {line} ({reason})" for line, reason in self.skipped_lines)
        more = sum(self.skipped.values()) - len(self.skipped_lines)
        return f"{len(self.texts)} texts, {sum(self.skipped.values())} lines skipped ({reasons})\n  {lines}" + (
            f" and {more} more" if more > 0 else ""
        )


def read_texts(path: Path) -> TextFile:
    """Texts (and ids) of a ``.jsonl`` or plain-text file; bad lines are recorded in the result, not raised."""
    path = Path(path)
    jsonl = path.suffix.lower() in {".jsonl", ".ndjson"}
    result = TextFile()
    seen: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                result.skip(number, "blank line")
                continue
            if not jsonl:
                result.ids.append(str(number))
                result.texts.append(line)
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                result.skip(number, "invalid JSON")
                continue
            if not isinstance(obj, dict):
                result.skip(number, "not a JSON object")
                continue
            text = obj.get("text")
            ident = obj.get("id", obj.get("qid", number))
            if not isinstance(text, str):
                result.skip(number, "missing text" if text is None else "text not a string")
            elif not text.strip():
                result.skip(number, "blank text")
            elif isinstance(ident, bool) or not isinstance(ident, str | int):
                result.skip(number, "id not a string or integer")
            elif str(ident) in seen:
                result.skip(number, "repeated id")
            else:
                seen.add(str(ident))
                result.ids.append(str(ident))
                result.texts.append(text)
    return result


def write_embeddings(path: Path, embeddings: np.ndarray, ids: list[str], model_version: str) -> Path:
    """``.npy``: the matrix; ``.npz``: ids + embeddings + model version. Atomic, no pickles."""
    path = Path(path)
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"{matrix.shape} embeddings for {len(ids)} ids")
    buf = io.BytesIO()
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(buf, matrix, allow_pickle=False)
    elif suffix == ".npz":
        np.savez(buf, ids=np.asarray(ids, dtype=str), embeddings=matrix, model=np.asarray(model_version, dtype=str))
    else:
        raise ValueError(f"output must end in .npy or .npz, not {path.name!r}")
    return atomic_write_bytes(path, buf.getvalue())
