"""Choosing mirror files by name (``ingest.mirror_include``): a demo slice that holds the laws and decisions it needs.

A pattern is matched against each file's path relative to its checkout (``kr/민법/법률.md``,
``민사/대법원/2021다210195.md``):

- with ``*``, ``?`` or ``[``: a glob over that path (``kr/민법/*``, ``민사/대법원/2021다*``);
- with ``/``: the path itself, with or without ``.md``, or a folder prefix (``민사/대법원``);
- otherwise a folder name or a file name with or without ``.md``: a law (``민법``, the folder of every file of that
  law) or a case number (``2021다210195``).

Comparisons ignore spaces and Unicode normalization form (``가등기담보 등에 관한 법률`` finds the folder
``가등기담보등에관한법률``; NFD file names from macOS checkouts match NFC patterns).
"""

from __future__ import annotations

import fnmatch
import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)
_GLOB_CHARS = frozenset("*?[")


def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFC", text).split())


def path_matches(rel_path: str, pattern: str) -> bool:
    """Whether ``rel_path`` (POSIX, relative to the checkout) is selected by ``pattern`` (see the module doc)."""
    path, pat = _norm(rel_path), _norm(pattern).strip("/")
    if not pat:
        return False
    if _GLOB_CHARS & set(pat):
        return fnmatch.fnmatchcase(path, pat)
    if "/" in pat:
        return path in (pat, f"{pat}.md") or path.startswith(f"{pat}/")
    *folders, name = path.split("/")
    return pat in folders or pat in (name, name.removesuffix(".md"))


def select_files(files: Sequence[Path], root: Path, include: Sequence[str] | None) -> list[Path]:
    """The ``files`` (under ``root``) that some ``include`` pattern selects, in their order; all when ``include``
    is ``None``."""
    if include is None:
        return list(files)
    return [p for p in files if any(path_matches(p.relative_to(root).as_posix(), pat) for pat in include)]


def unmatched_patterns(rel_paths: Sequence[str], include: Sequence[str]) -> list[str]:
    """The patterns of ``include`` that select none of ``rel_paths`` (typos, or meant for the other mirror)."""
    return [pat for pat in include if not any(path_matches(rel, pat) for rel in rel_paths)]


def select_included(files: Sequence[Path], root: Path, include: Sequence[str] | None, mirror: str) -> list[Path]:
    """:func:`select_files` for a reader: logs what was selected, and warns when ``include`` selects nothing in
    this ``mirror`` (one ``ingest.mirror_include`` list serves both mirrors, so a pattern may belong to the other)."""
    if include is None:
        return list(files)
    chosen = select_files(files, root, include)
    if not chosen:
        logger.warning("%s: ingest.mirror_include %s selects no file under %s", mirror, list(include), root)
    else:
        logger.info("%s: ingest.mirror_include selects %d of %d files", mirror, len(chosen), len(files))
    return chosen
