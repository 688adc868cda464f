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

from lexdpr_pipeline.settings import Settings
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


@dataclass(frozen=True)
class ResolvedModel:
    path: str  # what BiEncoder.load gets
    version: str
    origin: str  # why this model: "--model", "index pointer", "embed.model=…", "base model"


def resolve_model(settings: Settings, explicit: Path | None = None, pointer: Path | None = None) -> ResolvedModel:
    """The model to embed with: ``explicit`` (``--model``), else the model of the served index (the pointer,
    ``data/indexes/CURRENT.json``), else ``embed.model``: a folder, ``trained`` (the ``trained_model`` asset) or
    ``base`` — and the base model (``models.base_model``) when ``trained`` is asked for but none is trained yet."""
    from lexdpr_pipeline.index.embeddings import choose_model

    if explicit is not None:
        if not Path(explicit).is_dir():
            raise FileNotFoundError(f"--model {explicit} is not a model folder")
        choice = choose_model(str(explicit), None, None)
        return ResolvedModel(choice.path, choice.version, "--model")
    from lexdpr_pipeline.search.engine import pointer_path

    pointer = pointer or pointer_path(settings)
    if pointer.is_file():
        data = json.loads(pointer.read_text(encoding="utf-8"))
        if data.get("model_path"):
            return ResolvedModel(
                str(data["model_path"]), str(data.get("model_version", "")), f"index pointer {pointer}"
            )
    spec = settings.embed.model
    if spec not in ("trained", "base"):
        choice = choose_model(spec, None, None)
        return ResolvedModel(choice.path, choice.version, f"embed.model={spec}")
    trained_manifest = settings.tables_dir / "trained_model.json"
    if spec == "trained" and trained_manifest.is_file():
        trained = json.loads(trained_manifest.read_text(encoding="utf-8"))
        if trained.get("path"):
            choice = choose_model("trained", trained, None)
            return ResolvedModel(choice.path, choice.version, "embed.model=trained")
    from lexdpr_pipeline.models.base import resolve_base_model

    ref = resolve_base_model(settings.models.base_model, settings.data_dir / "models")
    why = "embed.model=base" if spec == "base" else "embed.model=trained, but no model is trained yet: the base model"
    return ResolvedModel(ref.load_target(), ref.content_hash, why)
