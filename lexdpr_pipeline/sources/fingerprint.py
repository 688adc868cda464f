"""Content fingerprints of source folders, so a mirror that did not change never makes anything stale."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_fingerprint(root: Path, pattern: str = "*.md") -> tuple[str, int]:
    """SHA-256 over the sorted (relative path, content) pairs of the files under ``root`` matching ``pattern``.

    Content, not mtimes: a fresh ``git clone`` of the same commit gives the same fingerprint.
    Returns ``(hexdigest, file_count)``; a missing folder gives ``("absent", 0)``.
    """
    if not root.is_dir():
        return "absent", 0
    h = hashlib.sha256()
    count = 0
    for path in sorted(root.rglob(pattern), key=lambda p: p.relative_to(root).as_posix()):
        if not path.is_file():
            continue
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
        count += 1
    return h.hexdigest(), count
