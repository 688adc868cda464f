"""Court decisions from a legalize-kr/precedent-kr checkout (``{사건종류}/{법원등급}/{사건번호}.md``).

Body layout: a ``# 사건명`` title line (not body), then ``## 판시사항``, ``## 판결요지``, ``## 참조조문``,
``## 참조판례``, ``## 판례내용`` sections, any of which may be missing. Only those five names open a section; any
other ``## …`` line stays text of the section it is in. File names may contain spaces.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from lexdpr_pipeline.sources.ids import precedent_id
from lexdpr_pipeline.sources.mirror.frontmatter import (
    MirrorFormatError,
    as_date,
    as_str,
    find_checkout,
    parse_front_matter,
    read_markdown,
)
from lexdpr_pipeline.sources.mirror.select import select_included
from lexdpr_pipeline.sources.records import Precedent, ReadResult

logger = logging.getLogger(__name__)

SOURCE = "mirror"
COURT_LEVELS = ("대법원", "하급심", "미분류")
SECTIONS: dict[str, str] = {
    "판시사항": "holdings",
    "판결요지": "summary",
    "참조조문": "ref_articles",
    "참조판례": "ref_cases",
    "판례내용": "body",
}
_SECTION = re.compile(r"^##[ \t]+(" + "|".join(SECTIONS) + r")[ \t]*$", re.M)
_TITLE = re.compile(r"^#[ \t]+.*$", re.M)


def _sections(body: str, source_ref: str) -> dict[str, str]:
    """Section texts by field name; a section that appears twice is joined with a blank line."""
    parts = _SECTION.split(body)
    preamble = _TITLE.sub("", parts[0], count=1).strip()
    if preamble:
        logger.warning("%s: %d characters before the first section ignored", source_ref, len(preamble))
    found: dict[str, str] = {}
    for name, text in zip(parts[1::2], parts[2::2], strict=True):
        field = SECTIONS[name]
        found[field] = "\n\n".join(t for t in (found.get(field, ""), text.strip()) if t)
    return found


def parse_precedent_markdown(text: str, source_ref: str) -> Precedent:
    """Parse one precedent-kr file (front matter included) into a :class:`Precedent`.

    Raises :class:`MirrorFormatError` when the front matter is missing/invalid or has no usable 판례일련번호.
    ``법원등급`` / ``사건종류`` fall back to the folder names when the front matter lacks them.
    """
    meta, body = parse_front_matter(text)
    serial = as_str(meta.get("판례일련번호"))
    if not serial:
        raise MirrorFormatError("front matter has no 판례일련번호")
    try:
        prec_id = precedent_id(serial)
    except ValueError as exc:
        raise MirrorFormatError(str(exc)) from exc
    folders = source_ref.split("/")
    case_type_dir, level_dir = (folders[-3], folders[-2]) if len(folders) >= 3 else ("", "")
    sections = _sections(body, source_ref)
    case_no = as_str(meta.get("사건번호"))
    court = as_str(meta.get("법원명"))
    if not case_no or not court:
        logger.warning("%s: front matter lacks %s", source_ref, "사건번호" if not case_no else "법원명")
    return Precedent(
        prec_id=prec_id,
        serial_no=serial,
        case_no=case_no,
        case_name=as_str(meta.get("사건명")),
        court=court,
        court_level=as_str(meta.get("법원등급")) or level_dir,
        case_type=as_str(meta.get("사건종류")) or case_type_dir,
        decision_date=as_date(meta.get("선고일자"), field="선고일자", ref=source_ref),
        judgment_type="",  # the mirror does not carry 판결유형
        holdings=sections.get("holdings", ""),
        summary=sections.get("summary", ""),
        ref_articles=sections.get("ref_articles", ""),
        ref_cases=sections.get("ref_cases", ""),
        body=sections.get("body", ""),
        source=SOURCE,
        source_ref=source_ref,
    )


def is_precedent_root(path: Path) -> bool:
    """Whether ``path`` looks like a precedent-kr checkout: ``{사건종류}/{대법원|하급심|미분류}/``."""
    try:
        children = [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return False
    return any((c / level).is_dir() for c in children for level in COURT_LEVELS)


def find_precedent_root(path: Path) -> Path | None:
    """The precedent-kr checkout at ``path``, at ``path/precedent-kr``, or in another child folder of ``path``."""
    return find_checkout(path, "precedent-kr", is_precedent_root)


def precedent_files(root: Path) -> list[Path]:
    """``{root}/*/*/*.md`` (README.md and hidden folders left out), sorted by path relative to ``root``."""
    files = [
        p
        for p in root.glob("*/*/*.md")
        if p.is_file() and p.name.lower() != "readme.md" and not any(part.startswith(".") for part in p.parts[-3:-1])
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_precedents(
    mirror_root: Path,
    *,
    max_files: int | None = None,
    include: Sequence[str] | None = None,
    progress: bool = True,
) -> ReadResult[Precedent]:
    """Read every decision of a precedent-kr checkout.

    ``mirror_root`` is the checkout or a folder containing ``precedent-kr/``. Files are read in sorted path order;
    ``include`` keeps the files its patterns name (case numbers such as ``2021다210195``, folders such as
    ``민사/대법원``, paths or globs; see :mod:`~lexdpr_pipeline.sources.mirror.select`), then ``max_files`` keeps
    the first N. Malformed files are skipped with a reason, never raised. Two files with the
    same 판례일련번호: the first in path order is kept, the other recorded as skipped.
    Raises :class:`FileNotFoundError` only when no checkout is found at all.
    """
    root = find_precedent_root(Path(mirror_root))
    if root is None:
        raise FileNotFoundError(f"no precedent-kr checkout ({{사건종류}}/{{법원등급}}/*.md) at or under {mirror_root}")
    files = select_included(precedent_files(root), root, include, "precedent-kr")
    if max_files is not None:
        files = files[: max(max_files, 0)]
    result: ReadResult[Precedent] = ReadResult()
    first_ref: dict[str, str] = {}
    for path in tqdm(files, desc="precedent-kr decisions", unit="file", disable=not progress):
        ref = path.relative_to(root).as_posix()
        try:
            record = parse_precedent_markdown(read_markdown(path), ref)
        except (MirrorFormatError, OSError) as exc:
            result.skip(ref, str(exc))
            continue
        except Exception as exc:  # one odd file must not stop the whole ingest; it is recorded, with a traceback
            logger.exception("unexpected error parsing %s", ref)
            result.skip(ref, f"parser error: {type(exc).__name__}: {exc}")
            continue
        if record.prec_id in first_ref:
            result.skip(ref, f"duplicate {record.prec_id}: already read from {first_ref[record.prec_id]}")
            continue
        first_ref[record.prec_id] = ref
        result.records.append(record)
    logger.info(
        "precedent-kr: %d decisions from %d files (%d skipped) under %s",
        len(result.records),
        len(files),
        len(result.skipped),
        root,
    )
    return result
