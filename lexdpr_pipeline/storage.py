"""Atomic file writes and content hashes. Every artifact LexDPR writes goes through here.

Files: a temp file in the same folder + ``os.replace``. Folders are staged by
:func:`lexdpr_pipeline.artifacts.staging.staged_folder` (the one folder primitive), built on :func:`fsync_tree`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
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


def fsync_dir(path: Path) -> None:
    """fsync a folder (its entries), where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on some platforms; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path`` (recursively), then each folder, deepest first."""
    folders = [Path(path)]
    for entry in sorted(Path(path).rglob("*")):
        if entry.is_file() and not entry.is_symlink():
            with open(entry, "rb") as fh:
                os.fsync(fh.fileno())
        elif entry.is_dir():
            folders.append(entry)
    for folder in reversed(folders):
        fsync_dir(folder)


def save_npy_atomic(path: Path, array: np.ndarray) -> Path:
    """``np.save`` (no pickles) to a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
