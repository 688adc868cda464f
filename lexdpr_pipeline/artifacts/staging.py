"""The one way LexDPR puts a folder in place: stage a sibling temp folder, fsync it, rename it over the target.

Every folder artifact (models, exported encoders, embeddings, indexes) goes through :func:`staged_folder`, so a
crash never leaves a half-written artifact where a reader looks:

- ``on_exists="keep"`` (content-addressed folders): when the target already exists (another run with the same key)
  the fresh copy is dropped and the existing one kept — same key, same content.
- ``on_exists="replace"`` (a folder whose name is not its content, e.g. the converted base model): the old folder is
  moved aside, the new one renamed in, the old one removed; if the rename fails the old folder is put back.
  ``replaceable`` guards against replacing a folder that is not an artifact of the expected kind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from lexdpr_pipeline.storage import fsync_dir, fsync_tree

OnExists = Literal["keep", "replace"]


def _sibling(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name}.{tag}-{uuid.uuid4().hex[:12]}"


@contextmanager
def staged_folder(
    target: Path,
    *,
    on_exists: OnExists = "keep",
    replaceable: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield an empty temp folder next to ``target``; when the block ends without error it becomes ``target``.

    On an error inside the block the temp folder is removed and ``target`` is untouched.
    """
    if on_exists not in ("keep", "replace"):
        raise ValueError(f"on_exists must be 'keep' or 'replace', not {on_exists!r}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if on_exists == "replace" and target.exists() and replaceable is not None and not replaceable(target):
        raise FileExistsError(f"{target} exists and is not an artifact this step may replace; not replacing it")
    tmp = _sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if not target.exists():
            os.replace(tmp, target)
        elif on_exists == "keep":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(new: Path, target: Path) -> None:
    """Rename ``new`` over an existing ``target``: old aside, new in, old removed (or put back on failure)."""
    old = _sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
