"""Pure functions: DRF response bodies (bytes) → the normalized records of :mod:`lexdpr_pipeline.sources.records`.

Every function accepts ``fmt="XML"`` or ``"JSON"`` and gives the same result for the same document in either
format. An HTTP-200 error body raises its typed error (:func:`errors.detect_error_body`); a body without the
required structure raises :class:`LawGoMalformedResponseError` with the reason.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from lexdpr_pipeline.logging_setup import redacting_logger
from lexdpr_pipeline.sources.ids import (
    admin_rule_article_id,
    article_key,
    precedent_id,
    statute_article_id,
)
from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoMalformedResponseError,
    LawGoTransientError,
    detect_error_body,
)
from lexdpr_pipeline.sources.lawgo.normalize import as_list, load_body, preview, resolve_entities, strip_oc, text_of
from lexdpr_pipeline.sources.records import AdminRuleArticle, Precedent, StatuteArticle

logger = redacting_logger(__name__)

Fmt = Literal["XML", "JSON"]

# --- text helpers -------------------------------------------------------------------------------------------------

_HSPACE = re.compile(r"[ \t\f\v\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000\ufeff]+")
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ARTICLE_HEAD = re.compile(r"제\s*(\d+)\s*조(?:\s*의\s*(\d+))?")
_HEADING = re.compile(r"제\s*\d+\s*(편|장|절|관)")
_HEADING_LEVEL = {"편": 0, "장": 1, "절": 2, "관": 3}
_DELETED = re.compile(r"삭제\s*(?:[<\[(][^>\])]*[>\])])?\s*\.?")
_MST_IN_REF = re.compile(r"[?&]MST=(\d+)", re.I)


def _lines(text: str) -> list[str]:
    """Lines with horizontal whitespace collapsed, blank lines dropped; inline ``<img>`` tags removed."""
    if "<img" in text or "<IMG" in text:
        text = _IMG.sub(" ", text)
    out = []
    for line in text.splitlines():
        line = _HSPACE.sub(" ", line).strip()
        if line:
            out.append(line)
    return out


def _one_line(value: Any) -> str:
    return " ".join(_lines(text_of(value)))


def _date(value: Any) -> dt.date | None:
    """``YYYYMMDD`` (or ``YYYY.MM.DD``) → date; empty or impossible → None."""
    digits = re.sub(r"\D", "", text_of(value))
    if len(digits) != 8:
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _int(value: Any, default: int = 0) -> int:
    text = text_of(value).strip()
    return int(text) if text.isdigit() else default


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LawGoMalformedResponseError(f"{what} is missing or not a structure (got {type(value).__name__})")
    return value


def _load(body: bytes, fmt: str, expected_root: str | tuple[str, ...]) -> dict[str, Any]:
    """Error bodies → typed errors; then the root, checked against ``expected_root``."""
    error = detect_error_body(body)
    if isinstance(error, LawGoTransientError):  # an empty body on disk is not worth a retry here
        raise LawGoMalformedResponseError("empty body")
    if error is not None:
        raise error
    root, content = load_body(body, fmt)
    roots = (expected_root,) if isinstance(expected_root, str) else expected_root
    if root not in roots:
        raise LawGoMalformedResponseError(f"root is <{root}>, expected <{'|'.join(roots)}>")
    return _dict(content, f"<{root}>")


def _split_head(line: str, *, with_title: bool) -> tuple[int, int, str, str] | None:
    """``제N조의M(제목) 본문`` → ``(N, M, 제목, 본문)``; the parenthetical may nest. None when not an article."""
    m = _ARTICLE_HEAD.match(line)
    if not m:
        return None
    number, branch = int(m.group(1)), int(m.group(2) or 0)
    pos = m.end()
    while pos < len(line) and line[pos] == " ":
        pos += 1
    title = ""
    if with_title and pos < len(line) and line[pos] == "(":
        depth = 0
        for k in range(pos, len(line)):
            depth += {"(": 1, ")": -1}.get(line[k], 0)
            if depth == 0:
                title, pos = line[pos + 1 : k].strip(), k + 1
                break
    return number, branch, title, line[pos:].strip()


def _is_deleted(lines: list[str]) -> bool:
    """``삭제 <2020.6.9>``, or no text at all: a number vacated by a move (관세법 시행령 제192조의4 reads just
    ``제192조의4``, its 조문참고자료 says ``종전 제192조의4는 제192조의7로 이동``)."""
    return not lines or (len(lines) == 1 and _DELETED.fullmatch(lines[0]) is not None)


class _Headings:
    """The enclosing 편/장/절/관: a new 장 replaces the previous 장 and the 절/관 under it."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def push(self, kind: str, text: str) -> None:
        level = _HEADING_LEVEL[kind]
        self._stack = [(lv, t) for lv, t in self._stack if lv < level] + [(level, text)]

    def current(self) -> list[str]:
        return [t for _, t in self._stack]


def _numbered(number: Any, content: Any) -> list[str]:
    """항/호/목 lines; the number is prefixed only when the content does not already start with it."""
    lines = _lines(text_of(content))
    num = _one_line(number)
    if num and lines and not lines[0].startswith(num):
        lines[0] = f"{num} {lines[0]}"
    return lines


# --- statutes (target=law) ----------------------------------------------------------------------------------------


def parse_law_body(
    body: bytes,
    fmt: Fmt,
    source_ref: str,
    *,
    mst: str | None = None,
    status: str = "시행",
) -> list[StatuteArticle]:
    """A ``lawService.do?target=law`` body (whole law or a ``JO=`` excerpt) → its articles, in order.

    ``조문여부=전문`` rows are headings: 편/장/절/관 lines become ``headings`` context; other 전문 rows (the
    constitution's preamble, the single text of an article-less 고시-style 대통령령) carry no article number and
    give no record. The body has no 법령일련번호, so ``mst`` comes from the caller (default: ``MST=`` in
    ``source_ref``).
    """
    law = _load(body, fmt, "법령")
    info = _dict(law.get("기본정보"), "기본정보")
    law_id = _one_line(info.get("법령ID"))
    if not law_id:
        raise LawGoMalformedResponseError("기본정보 has no 법령ID")
    if mst is None:
        m = _MST_IN_REF.search(source_ref)
        mst = m.group(1) if m else ""
    ministries = [_one_line(x) for x in as_list(info.get("소관부처"))]
    common = {
        "law_id": law_id,
        "law_mst": mst,
        "law_name": _one_line(info.get("법령명_한글")),
        "law_kind": _one_line(info.get("법종구분")),
        "ministry": ", ".join(dict.fromkeys(m for m in ministries if m)),
        "promulgation_date": _date(info.get("공포일자")),
        "promulgation_no": _one_line(info.get("공포번호")),
        "effective_date": _date(info.get("시행일자")),
        "status": status,
    }
    units = law.get("조문")
    rows = as_list(units.get("조문단위")) if isinstance(units, dict) else []
    headings = _Headings()
    records: list[StatuteArticle] = []
    seen: set[str] = set()
    for row in rows:
        row = _dict(row, "조문단위")
        kind = _one_line(row.get("조문여부"))
        content = _lines(text_of(row.get("조문내용")))
        if kind != "조문":
            heading = " ".join(content)
            m = _HEADING.match(heading)
            if m:
                headings.push(m.group(1), heading)
            else:
                logger.debug("%s: 전문 row without a 편/장/절/관 heading skipped: %s", source_ref, preview(heading))
            continue
        number, branch = _int(row.get("조문번호")), _int(row.get("조문가지번호"))
        has_title = bool(_one_line(row.get("조문제목")))
        head = _split_head(content[0], with_title=has_title) if content else None
        if number <= 0:
            if head is None:
                row_text = preview(_one_line(row), 60)
                raise LawGoMalformedResponseError(f"조문단위 without a usable 조문번호 ({row_text!r})")
            number, branch = head[0], head[1]
        text_lines: list[str] = []
        title = ""
        if head is not None:
            title = head[2]
            text_lines = ([head[3]] if head[3] else []) + content[1:]
        else:
            text_lines = content
        if has_title and not title:
            title = _one_line(row.get("조문제목")).strip("()").strip()
        for para in as_list(row.get("항")):
            if not isinstance(para, dict):  # a bare 항 text
                text_lines += _lines(text_of(para))
                continue
            text_lines += _numbered(para.get("항번호"), para.get("항내용"))
            for item in as_list(para.get("호")):
                item = _dict(item, "호")
                text_lines += _numbered(item.get("호번호"), item.get("호내용"))
                for sub in as_list(item.get("목")):
                    sub = _dict(sub, "목")
                    text_lines += _numbered(sub.get("목번호"), sub.get("목내용"))
        _add_article(
            records,
            seen,
            StatuteArticle,
            statute_article_id(law_id, number, branch),
            common,
            (number, branch, title),
            headings,
            text_lines,
            source_ref,
        )
    return records


def _add_article(
    records: list,
    seen: set[str],
    cls: type[StatuteArticle] | type[AdminRuleArticle],
    article_id: str,
    common: dict,
    head: tuple[int, int, str],
    headings: _Headings,
    text_lines: list[str],
    source_ref: str,
) -> None:
    """Append one parsed article (statute or admin rule); a second article with the same id is logged and dropped."""
    if article_id in seen:
        logger.warning("%s: duplicate article %s kept once", source_ref, article_id)
        return
    seen.add(article_id)
    number, branch, title = head
    records.append(
        cls(
            article_id=article_id,
            **common,
            article_no=number,
            article_branch=branch,
            article_key=article_key(number, branch),
            article_title=title,
            headings=headings.current(),
            text="\n".join(text_lines),
            is_deleted=_is_deleted(text_lines),
            source="api",
            source_ref=source_ref,
        )
    )


# --- administrative rules (target=admrul) -------------------------------------------------------------------------


def parse_admrul_body(body: bytes, fmt: Fmt, source_ref: str) -> list[AdminRuleArticle]:
    """A ``lawService.do?target=admrul`` body → its articles.

    Articles are the repeated root-level ``조문내용`` texts (``제N조(제목) 본문…``); a ``조문내용`` that reads
    ``제N장 …`` is a heading. A rule with ``조문형식여부=N`` (attachment-only) has no articles: ``[]``.
    """
    rule = _load(body, fmt, "AdmRulService")
    info = _dict(rule.get("행정규칙기본정보"), "행정규칙기본정보")
    rule_id = _one_line(info.get("행정규칙ID"))
    if not rule_id:
        raise LawGoMalformedResponseError("행정규칙기본정보 has no 행정규칙ID")
    form = _one_line(info.get("조문형식여부")).upper()
    if form == "N":
        logger.debug("%s: 조문형식여부=N (attachment-only rule), no articles", source_ref)
        return []
    common = {
        "rule_id": rule_id,
        "rule_serial": _one_line(info.get("행정규칙일련번호")),
        "rule_name": _one_line(info.get("행정규칙명")),
        "rule_kind": _one_line(info.get("행정규칙종류")),
        "ministry": _one_line(info.get("소관부처명")),
        "issue_date": _date(info.get("발령일자")),
        "issue_no": _one_line(info.get("발령번호")),
        "effective_date": _date(info.get("시행일자")),
    }
    headings = _Headings()
    records: list[AdminRuleArticle] = []
    seen: set[str] = set()
    for item in as_list(rule.get("조문내용")):
        lines = _lines(text_of(item))
        while lines and (heading := _HEADING.match(lines[0])):  # "제1장 총칙", possibly with its 제1조 below
            headings.push(heading.group(1), lines.pop(0))
        if not lines:
            continue
        if lines[0].startswith("부칙"):  # a 부칙 rendered as 조문내용: its 제1조… are not the rule's articles
            logger.debug("%s: 부칙 reached in 조문내용, articles end here", source_ref)
            break
        head = _split_head(lines[0], with_title=True)
        if head is None:
            logger.warning("%s: 조문내용 without 제N조 skipped: %s", source_ref, preview(lines[0]))
            continue
        number, branch, title, rest = head
        text_lines = ([rest] if rest else []) + lines[1:]
        _add_article(
            records,
            seen,
            AdminRuleArticle,
            admin_rule_article_id(rule_id, number, branch),
            common,
            (number, branch, title),
            headings,
            text_lines,
            source_ref,
        )
    return records


# --- precedents (target=prec) -------------------------------------------------------------------------------------

_BR = re.compile(r"<br\s*/?>|</?p\b[^>]*>", re.I)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
COURT_LEVELS = {"400201": "대법원", "400202": "하급심"}


def clean_html_text(value: Any) -> str:
    """A 판례 section: ``<br/>`` → newline, other HTML tags removed, entities resolved; indentation kept."""
    text = text_of(value)
    if "<" in text:
        text = _TAG.sub("", _BR.sub("\n", text))
    text = resolve_entities(text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def parse_prec_body(body: bytes, fmt: Fmt, source_ref: str) -> Precedent:
    """A ``lawService.do?target=prec`` body → one :class:`Precedent` (detail key 판례정보일련번호)."""
    prec = _load(body, fmt, "PrecService")
    serial = _one_line(prec.get("판례정보일련번호")) or _one_line(prec.get("판례일련번호"))
    if not serial.isdigit():
        raise LawGoMalformedResponseError(f"PrecService has no numeric 판례정보일련번호 (got {preview(serial, 20)!r})")
    return Precedent(
        prec_id=precedent_id(serial),
        serial_no=str(int(serial)),
        case_no=_one_line(prec.get("사건번호")),
        case_name=_one_line(clean_html_text(prec.get("사건명"))),
        court=_one_line(prec.get("법원명")),
        court_level=COURT_LEVELS.get(_one_line(prec.get("법원종류코드")), "미분류"),
        case_type=_one_line(prec.get("사건종류명")),
        decision_date=_date(prec.get("선고일자")),
        judgment_type=_one_line(prec.get("판결유형")),
        holdings=clean_html_text(prec.get("판시사항")),
        summary=clean_html_text(prec.get("판결요지")),
        ref_articles=clean_html_text(prec.get("참조조문")),
        ref_cases=clean_html_text(prec.get("참조판례")),
        body=clean_html_text(prec.get("판례내용")),
        source="api",
        source_ref=source_ref,
    )


# --- listings (lawSearch.do) --------------------------------------------------------------------------------------

#: target → (root element, item element) of a lawSearch.do answer.
LISTING_SHAPES: dict[str, tuple[str, str]] = {
    "law": ("LawSearch", "law"),
    "eflaw": ("LawSearch", "law"),
    "prec": ("PrecSearch", "prec"),
    "admrul": ("AdmRulSearch", "admrul"),
}


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a ``lawSearch.do`` answer; ``rows`` keep the Korean keys, OC stripped from every value."""

    target: str
    total_count: int
    page: int
    rows: list[dict[str, str]] = field(default_factory=list)


def parse_listing(body: bytes, fmt: Fmt, target: str) -> Listing:
    """A ``lawSearch.do`` page → :class:`Listing`. An empty result (``totalCnt`` 0, no items) is fine."""
    if target not in LISTING_SHAPES:
        raise ValueError(f"no listing shape for target {target!r} (known: {sorted(LISTING_SHAPES)})")
    root_name, item_name = LISTING_SHAPES[target]
    root = _load(body, fmt, root_name)
    total = text_of(root.get("totalCnt")).strip()
    if not total.isdigit():
        raise LawGoMalformedResponseError(f"<{root_name}> has no numeric totalCnt (got {preview(total, 20)!r})")
    rows: list[dict[str, str]] = []
    for item in as_list(root.get(item_name)):
        item = _dict(item, f"<{item_name}> item")
        rows.append({key: strip_oc(text_of(value).strip()) for key, value in item.items()})
    return Listing(target=target, total_count=int(total), page=_int(root.get("page"), 1), rows=rows)
