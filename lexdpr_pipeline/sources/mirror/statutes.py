"""Statute articles from a legalize-kr/legalize-kr checkout (``kr/{법령명}/{법률|시행령|…}.md``).

One file is one law (법령). Its Markdown body reads::

    # 민법                         law title (not part of the headings context)
    # 제1편 총칙                    편
    ## 제2장 인                     장 (also 제N장의M)
    ### 제1절 능력                   절
    #### 제1관 …                    관
    ##### 제3조 (권리능력의 존속기간)   an article; also 제N조의M, 제N조(제목), 제N조 (no title)
    **①** …                        항
      1\\. …                        호 (Markdown-escaped dot)
        가\\. …                     목
    ## 부칙                         addenda: everything from here on is not an article

Quirks handled: 민법 has two ``**제N항 …**`` lines that subdivide a 관 (they become the innermost heading, not
article text); a few article headings have no body at all (a number vacated by a move or a range deletion; the
API's 조문참고자료 says e.g. "종전 제192조의4는 제192조의7로 이동") — those are kept as deleted articles whose text
is the bare label (see :func:`parse_statute_markdown`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lexdpr_pipeline.sources.ids import article_key, parse_article_number, statute_article_id
from lexdpr_pipeline.sources.mirror.frontmatter import (
    MirrorFormatError,
    as_date,
    as_str,
    as_str_list,
    find_checkout,
    parse_front_matter,
    read_markdown,
)
from lexdpr_pipeline.sources.mirror.select import select_included
from lexdpr_pipeline.sources.records import ReadResult, StatuteArticle

logger = logging.getLogger(__name__)

SOURCE = "mirror"
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*$")
_TITLE_LINE = re.compile(r"^#[ \t]+(?!제\s*\d+\s*편)(.+)$", re.M)
_ARTICLE = re.compile(r"^제\s*(\d+)\s*조(?:\s*의\s*(\d+))?\s*(?:\((.*)\))?\s*$")
_PART = re.compile(r"^제\s*\d+\s*편")
_ADDENDA = re.compile(r"^부\s*칙(?:\s|<|$)")
# A whole-line bold "**제1항 협의상 파양 <개정 2012.2.10>**" subdivides a 관 (민법 제4편); not a paragraph.
_SUBDIVISION = re.compile(r"^\*\*(제\s*\d+\s*항(?:의\s*\d+)?\s.*?)\*\*$")
# "**①** text": the bold paragraph marker (①…㊿, or any short token without spaces).
_PARAGRAPH = re.compile(r"^\*\*([^*\s]{1,4})\*\*(?:\s+|$)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_DELETED = re.compile(r"^삭제\s*(?:<[^>]*>\s*)*$")
_SPACES = re.compile(r"\s+")
SUBDIVISION_LEVEL = 5  # below 편(1)/장(2)/절(3)/관(4)


def unescape_markdown(text: str) -> str:
    r"""Undo Markdown backslash escapes (``1\.`` → ``1.``)."""
    return _ESCAPE.sub(r"\1", text) if "\\" in text else text


def _clean_heading(text: str) -> str:
    return _SPACES.sub(" ", unescape_markdown(text)).strip()


def _body_text(lines: list[str]) -> str:
    """Article body lines → one 항/호/목 (or continuation) per line, indentation and bold markers removed."""
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        line = unescape_markdown(line)
        m = _PARAGRAPH.match(line)
        if m is not None:
            rest = line[m.end() :]
            line = f"{m.group(1)} {rest}" if rest else m.group(1)
        out.append(line)
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class _LawMeta:
    law_id: str
    law_mst: str
    law_name: str
    law_kind: str
    ministry: str
    promulgation_date: dt.date | None
    promulgation_no: str
    effective_date: dt.date | None
    status: str


def _law_meta(meta: dict[str, Any], body: str, source_ref: str) -> _LawMeta:
    law_id = as_str(meta.get("법령ID"))
    if not law_id:
        raise MirrorFormatError("front matter has no 법령ID")
    law_name = as_str(meta.get("제목"))
    if not law_name:
        title = _TITLE_LINE.search(body)
        law_name = _clean_heading(title.group(1)) if title else ""
        if not law_name:
            raise MirrorFormatError("front matter has no 제목 and the body no '# title' line")
        logger.warning("%s: front matter has no 제목; using the title line %r", source_ref, law_name)
    return _LawMeta(
        law_id=law_id,
        law_mst=as_str(meta.get("법령MST")),
        law_name=law_name,
        law_kind=as_str(meta.get("법령구분")),
        ministry=", ".join(as_str_list(meta.get("소관부처"))),
        promulgation_date=as_date(meta.get("공포일자"), field="공포일자", ref=source_ref),
        promulgation_no=as_str(meta.get("공포번호")),
        effective_date=as_date(meta.get("시행일자"), field="시행일자", ref=source_ref),
        status=as_str(meta.get("상태")),
    )


class _ArticleBuilder:
    """Collects one article's heading and body lines while the file is scanned."""

    __slots__ = ("branch", "headings", "lines", "number", "title")

    def __init__(self, number: int, branch: int, title: str, headings: list[str]) -> None:
        self.number = number
        self.branch = branch
        self.title = title
        self.headings = headings
        self.lines: list[str] = []

    def build(self, law: _LawMeta, source_ref: str) -> StatuteArticle:
        text = _body_text(self.lines)
        if text:
            is_deleted = _DELETED.match(text) is not None
        else:
            # No body in the source: the number is vacated (moved or deleted in a range). Keep the article so the
            # numbering is complete, as a deleted one whose text is its bare label (what the API's 조문내용 reads).
            text = f"제{self.number}조" + (f"의{self.branch}" if self.branch else "")
            is_deleted = True
            logger.debug("%s: %s has no body; kept as deleted", source_ref, text)
        return StatuteArticle(
            article_id=statute_article_id(law.law_id, self.number, self.branch),
            law_id=law.law_id,
            law_mst=law.law_mst,
            law_name=law.law_name,
            law_kind=law.law_kind,
            ministry=law.ministry,
            promulgation_date=law.promulgation_date,
            promulgation_no=law.promulgation_no,
            effective_date=law.effective_date,
            status=law.status,
            article_no=self.number,
            article_branch=self.branch,
            article_key=article_key(self.number, self.branch),
            article_title=self.title,
            headings=self.headings,
            text=text,
            is_deleted=is_deleted,
            source=SOURCE,
            source_ref=source_ref,
        )


def _parse_article_heading(text: str) -> tuple[int, int, str] | None:
    """``제3조의2 (제목)`` / ``제3조(제목)`` / ``제3조`` → ``(3, 2, "제목")``; ``None`` if it is no article."""
    m = _ARTICLE.match(text)
    if m is not None:
        number, branch, title = int(m.group(1)), int(m.group(2) or 0), m.group(3) or ""
    else:  # something after the title, e.g. "제3조 (제목) <개정 …>": take the number and the parenthesized part
        found = parse_article_number(text) if text.startswith("제") else None
        if found is None:
            return None
        (number, branch), paren = found, re.search(r"\((.*)\)", text)
        title = paren.group(1) if paren else ""
    return (number, branch, _clean_heading(title)) if number > 0 else None


def _scan(body: str, law: _LawMeta, source_ref: str) -> tuple[list[StatuteArticle], int]:
    """Walk the body line by line. Returns the articles and the number of text lines outside any article."""
    articles: list[StatuteArticle] = []
    levels: dict[int, str] = {}
    current: _ArticleBuilder | None = None
    seen_title = False
    stray = 0

    def close() -> None:
        nonlocal current
        if current is not None:
            articles.append(current.build(law, source_ref))
            current = None

    def set_heading(level: int, text: str) -> None:
        close()
        for deeper in [k for k in levels if k >= level]:
            del levels[deeper]
        levels[level] = text

    for line in body.split("\n"):
        if line.startswith("#"):
            m = _HEADING.match(line)
            if m is not None:
                level, text = len(m.group(1)), _clean_heading(m.group(2))
                if level >= 5:
                    parsed = _parse_article_heading(text)
                    if parsed is not None:
                        close()
                        number, branch, title = parsed
                        current = _ArticleBuilder(number, branch, title, [levels[k] for k in sorted(levels)])
                    else:
                        logger.warning("%s: unrecognized article heading %r, kept as a heading", source_ref, line)
                        set_heading(SUBDIVISION_LEVEL, text)
                    continue
                if _ADDENDA.match(text):
                    break  # 부칙: addenda follow; their "제1조 …" lines are not articles
                if level == 1 and not seen_title and not levels and current is None and not _PART.match(text):
                    seen_title = True  # the law's own title line
                    continue
                set_heading(level, text)
                continue
        stripped = line.strip()
        if stripped.startswith("**"):
            sub = _SUBDIVISION.match(stripped)
            if sub is not None:
                set_heading(SUBDIVISION_LEVEL, _clean_heading(sub.group(1)))
                continue
        if current is not None:
            current.lines.append(line)
        elif stripped:
            stray += 1
    close()
    return articles, stray


def parse_statute_markdown(text: str, source_ref: str) -> list[StatuteArticle]:
    """Parse one legalize-kr statute file into its articles (조), in file order.

    ``text`` is the whole file, front matter included; ``source_ref`` is recorded on every article.
    Raises :class:`MirrorFormatError` when the front matter is missing/invalid or lacks ``법령ID``.
    An article with no body is kept with ``is_deleted=True`` and its label (``"제42조"``) as text.
    Returns ``[]`` for a file without articles (the caller decides whether that is an error).
    """
    meta, body = parse_front_matter(text)
    law = _law_meta(meta, body, source_ref)
    articles, stray = _scan(body, law, source_ref)
    if stray:
        logger.warning("%s: %d text line(s) outside any article were ignored", source_ref, stray)
    return articles


def _attachment_count(text: str) -> int:
    try:
        meta, _ = parse_front_matter(text)
    except MirrorFormatError:
        return 0
    attachments = meta.get("첨부파일")
    return len(attachments) if isinstance(attachments, list) else 0


def _version_key(articles: list[StatuteArticle], ref: str) -> tuple[Any, ...]:
    """Sort key preferring the newest version of a law (later 공포일자, then larger 법령MST), then the path."""
    first = articles[0]
    date = first.promulgation_date.toordinal() if first.promulgation_date else 0
    mst = int(first.law_mst) if first.law_mst.isdigit() else -1
    return (-date, -mst, ref)


def statute_files(root: Path) -> list[Path]:
    """``{root}/kr/*/*.md`` sorted by their path relative to ``root``."""
    kr = root / "kr"
    files = [p for p in kr.glob("*/*.md") if p.is_file() and not p.parent.name.startswith(".")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def is_statute_root(path: Path) -> bool:
    """Whether ``path`` looks like a legalize-kr checkout: ``kr/{법령명}/*.md``."""
    kr = path / "kr"
    return kr.is_dir() and next(kr.glob("*/*.md"), None) is not None


def find_statute_root(path: Path) -> Path | None:
    """The legalize-kr checkout at ``path``, at ``path/legalize-kr``, or in another child folder of ``path``."""
    return find_checkout(path, "legalize-kr", is_statute_root)


def _resolve_root(mirror_root: Path) -> Path:
    root = find_statute_root(Path(mirror_root))
    if root is None:
        raise FileNotFoundError(f"no legalize-kr checkout (a folder with kr/{{법령명}}/*.md) at or under {mirror_root}")
    return root


def read_statutes(
    mirror_root: Path,
    *,
    max_files: int | None = None,
    include: Sequence[str] | None = None,
    progress: bool = True,
) -> ReadResult[StatuteArticle]:
    """Read every statute file of a legalize-kr checkout into articles.

    ``mirror_root`` is the checkout (holding ``kr/``) or a folder containing ``legalize-kr/``. Files are read in
    sorted path order; ``include`` keeps the files its patterns name (law folder names such as ``민법``, paths or
    globs; see :mod:`~lexdpr_pipeline.sources.mirror.select`), then ``max_files`` keeps the first N.
    Malformed files are skipped with a reason, never raised.
    When two files carry the same 법령ID, the newer version (공포일자, then 법령MST) is kept and the other file
    skipped; an article key repeated inside one file keeps its first occurrence.
    Raises :class:`FileNotFoundError` only when no checkout is found at all.
    """
    root = _resolve_root(mirror_root)
    files = select_included(statute_files(root), root, include, "legalize-kr")
    if max_files is not None:
        files = files[: max(max_files, 0)]
    result: ReadResult[StatuteArticle] = ReadResult()
    parsed: list[tuple[str, list[StatuteArticle]]] = []
    for path in tqdm(files, desc="legalize-kr statutes", unit="file", disable=not progress):
        ref = path.relative_to(root).as_posix()
        try:
            text = read_markdown(path)
            articles = parse_statute_markdown(text, ref)
        except (MirrorFormatError, OSError) as exc:
            result.skip(ref, str(exc))
            continue
        except Exception as exc:  # one odd file must not stop the whole ingest; it is recorded, with a traceback
            logger.exception("unexpected error parsing %s", ref)
            result.skip(ref, f"parser error: {type(exc).__name__}: {exc}")
            continue
        if not articles:
            n_attachments = _attachment_count(text)
            if n_attachments:
                logger.info("%s: no articles, attachment-only (%d 첨부파일)", ref, n_attachments)
                result.skip(ref, f"no articles: attachment-only file ({n_attachments} 첨부파일)")
            else:
                result.skip(ref, "no articles (no '##### 제N조' heading before 부칙)")
            continue
        parsed.append((ref, articles))

    by_law: dict[str, list[tuple[str, list[StatuteArticle]]]] = {}
    for ref, articles in parsed:
        by_law.setdefault(articles[0].law_id, []).append((ref, articles))
    kept_refs: set[str] = set()
    for law_id, versions in by_law.items():
        versions.sort(key=lambda v: _version_key(v[1], v[0]))
        kept_refs.add(versions[0][0])
        for ref, _ in versions[1:]:
            result.skip(ref, f"duplicate 법령ID {law_id}: same law as {versions[0][0]}, which is newer or first")

    for ref, articles in parsed:
        if ref not in kept_refs:
            continue
        seen: set[str] = set()
        for article in articles:
            if article.article_id in seen:
                result.skip(f"{ref}#{article.article_key}", f"duplicate article id {article.article_id} in file")
                continue
            seen.add(article.article_id)
            result.records.append(article)
    logger.info(
        "legalize-kr: %d articles from %d files (%d skipped) under %s",
        len(result.records),
        len(kept_refs),
        len(result.skipped),
        root,
    )
    return result
