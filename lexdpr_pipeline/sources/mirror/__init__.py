"""Readers for the legalize-kr git mirrors: statutes (legalize-kr/legalize-kr), precedents (…/precedent-kr).

Library code only (no dagster): each reader returns a :class:`~lexdpr_pipeline.sources.records.ReadResult` of
normalized records plus the files it skipped and why.
"""

from __future__ import annotations

from pathlib import Path

from lexdpr_pipeline.sources.mirror.frontmatter import MirrorFormatError, parse_front_matter
from lexdpr_pipeline.sources.mirror.precedents import find_precedent_root, parse_precedent_markdown, read_precedents
from lexdpr_pipeline.sources.mirror.statutes import find_statute_root, parse_statute_markdown, read_statutes


def find_mirror_roots(path: Path) -> tuple[Path | None, Path | None]:
    """``(statutes_root, precedents_root)`` for a folder holding ``legalize-kr/`` and ``precedent-kr/``.

    ``path`` may also be one of the checkouts itself; a checkout under another folder name is recognized by its
    layout. Either element is ``None`` when that mirror is not there.
    """
    return find_statute_root(Path(path)), find_precedent_root(Path(path))


__all__ = [
    "MirrorFormatError",
    "find_mirror_roots",
    "parse_front_matter",
    "parse_precedent_markdown",
    "parse_statute_markdown",
    "read_precedents",
    "read_statutes",
]
