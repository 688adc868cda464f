"""Atomic file writes and content hashes. Every artifact LexDPR writes goes through here."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import polars as pl


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder + ``os.replace`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    """Write a polars frame as Parquet atomically (zstd, statistics on)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def frame_content_hash(frame: pl.DataFrame) -> str:
    """A content hash of a frame that does not depend on Parquet encoder details.

    Rows are serialized as Arrow IPC (uncompressed) after a stable sort by every sortable column, so the same
    rows in any order give the same hash.
    """
    sortable = [c for c, t in frame.schema.items() if not isinstance(t, pl.List | pl.Struct | pl.Object)]
    ordered = frame.sort(sortable) if sortable and frame.height else frame
    h = hashlib.sha256()
    h.update(repr(list(frame.schema.items())).encode())

    buf = io.BytesIO()
    ordered.write_ipc(buf, compression="uncompressed")
    h.update(buf.getvalue())
    return h.hexdigest()
