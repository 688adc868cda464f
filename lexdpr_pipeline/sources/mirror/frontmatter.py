"""YAML front matter of the legalize-kr Markdown files: split it off, parse it, coerce its values.

The front matter is parsed as YAML (never line by line): statute files nest ``첨부파일`` items that carry their own
``제목``, which a line-based reader would let overwrite the law's ``제목``.

Scalars are loaded with a :class:`yaml.SafeLoader` subclass that does not resolve plain scalars to int, float,
bool or timestamp. ``yaml.safe_load`` would turn an unquoted ``법령ID: 001706`` into the octal int ``966``, and an
impossible date such as ``2026-02-30`` into an exception for the whole file; here both stay strings as spelt, and
:func:`as_date` converts dates leniently (a real ``datetime.date`` is accepted too).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LITERAL_TAGS = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:timestamp",
}


class _LiteralScalarLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader that keeps plain scalars as strings (nulls, lists and mappings still resolve)."""


_LiteralScalarLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _LITERAL_TAGS]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}

_FENCE = re.compile(r"^---[ \t]*$", re.M)
_CLOSING = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.M)
_DATE_PARTS = re.compile(r"^\s*(\d{4})\s*[-./]\s*(\d{1,2})\s*[-./]\s*(\d{1,2})\s*\.?\s*$")
_DATE_COMPACT = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})\s*$")


class MirrorFormatError(ValueError):
    """A mirror file that cannot be turned into records (the reason is the message)."""


def read_markdown(path: Path) -> str:
    """Read a mirror file as UTF-8 text (BOM tolerated, newlines normalized to ``\\n``).

    Raises :class:`MirrorFormatError` for undecodable or binary content.
    """
    data = path.read_bytes()
    if b"\x00" in data:
        raise MirrorFormatError("binary content (NUL bytes), not a Markdown file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MirrorFormatError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_front_matter(text: str) -> tuple[str, str]:
    """``"---\\n<yaml>\\n---\\n<body>"`` → ``(yaml_text, body)``.

    The file must open with a ``---`` line; the block ends at the next ``---`` (or ``...``) line.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    opening = _FENCE.match(text)
    if opening is None:
        raise MirrorFormatError("no YAML front matter (file does not start with '---')")
    closing = _CLOSING.search(text, opening.end())
    if closing is None:
        raise MirrorFormatError("unterminated YAML front matter (no closing '---')")
    return text[opening.end() : closing.start()], text[closing.end() :].lstrip("\n")


def load_front_matter(yaml_text: str) -> dict[str, Any]:
    """Parse a front-matter block into a mapping; plain scalars stay strings (see the module docstring)."""
    try:
        data = yaml.load(yaml_text, Loader=_LiteralScalarLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MirrorFormatError(f"invalid YAML front matter: {first_line}") from exc
    if data is None:
        raise MirrorFormatError("empty YAML front matter")
    if not isinstance(data, dict):
        raise MirrorFormatError(f"YAML front matter is a {type(data).__name__}, not a mapping")
    return {str(key): value for key, value in data.items()}


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split and parse: ``text`` → ``(metadata, markdown_body)``."""
    yaml_text, body = split_front_matter(text)
    return load_front_matter(yaml_text), body


def as_str(value: Any) -> str:
    """A front-matter scalar as a stripped string (``None`` → ``""``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def as_str_list(value: Any) -> list[str]:
    """A scalar or a list (``소관부처``) → non-empty strings, in order."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [s for s in (as_str(item) for item in items) if s]


def as_date(value: Any, *, field: str = "date", ref: str = "") -> dt.date | None:
    """A YAML date, a datetime, ``"2024-01-02"``, ``"2024.1.2"``, ``"20240102"`` or ``20240102`` → a date.

    Missing, empty or impossible values give ``None`` (impossible ones with a warning).
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = as_str(value)
    if not text:
        return None
    m = _DATE_PARTS.match(text) or _DATE_COMPACT.match(text)
    if m is not None:
        try:
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            pass
    logger.warning("%s: unparseable %s %r, left empty", ref or "front matter", field, text)
    return None


def find_checkout(path: Path, preferred_name: str, is_root: Callable[[Path], bool]) -> Path | None:
    """The mirror checkout at ``path``, at ``path/preferred_name``, or in one child folder of ``path``.

    ``is_root`` recognizes a checkout by its layout, so a clone under another folder name is found too
    (children are tried in sorted order, hidden ones skipped).
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        return None
    candidates = [path, path / preferred_name]
    with contextlib.suppress(OSError):
        candidates += sorted(c for c in path.iterdir() if c.is_dir() and not c.name.startswith("."))
    for candidate in candidates:
        if candidate.is_dir() and is_root(candidate):
            return candidate
    return None
