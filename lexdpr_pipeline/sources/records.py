"""The normalized record schemas every source produces (API and mirror alike).

Column names are English snake_case; the Korean field each comes from is noted beside it. Dates are
``datetime.date`` (``None`` when the source leaves them out). ``source`` is ``"api"`` or ``"mirror"``;
``source_ref`` says where the record came from (a mirror-relative path, or the request URL *without* the ``OC``
key), so any row can be traced back to its raw input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, get_type_hints

import polars as pl

T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatuteArticle:
    """One article (조) of a statute, decree or rule (법령)."""

    article_id: str  # law:{법령ID}:{N}[-{M}]
    law_id: str  # 법령ID, zero-padded as the source spells it ("001706")
    law_mst: str  # 법령MST = 법령일련번호 (changes with every amendment)
    law_name: str  # 법령명 (제목 / 법령명_한글)
    law_kind: str  # 법령구분 (법률, 대통령령, 총리령, …부령, 대법원규칙 …)
    ministry: str  # 소관부처, several joined by ", "
    promulgation_date: dt.date | None  # 공포일자
    promulgation_no: str  # 공포번호
    effective_date: dt.date | None  # 시행일자
    status: str  # 상태 (시행/폐지) or 현행연혁코드
    article_no: int  # N of 제N조
    article_branch: int  # M of 제N조의M, 0 when absent
    article_key: str  # "N" or "N-M"
    article_title: str  # 조문제목 ("" when the article has none)
    headings: list[str]  # enclosing 편/장/절/관 headings, outermost first
    text: str  # body: 항/호/목 in order, one per line; no heading line
    is_deleted: bool  # the article reads "삭제 <…>"
    source: str  # "api" | "mirror"
    source_ref: str


@dataclass(frozen=True, slots=True)
class AdminRuleArticle:
    """One article of an administrative rule (행정규칙: 훈령, 예규, 고시, …)."""

    article_id: str  # admrul:{행정규칙ID}:{N}[-{M}]
    rule_id: str  # 행정규칙ID (short, stable across amendments)
    rule_serial: str  # 행정규칙일련번호 (13 digits, one per version)
    rule_name: str  # 행정규칙명
    rule_kind: str  # 행정규칙종류 (훈령, 예규, 고시 …)
    ministry: str  # 소관부처명
    issue_date: dt.date | None  # 발령일자
    issue_no: str  # 발령번호
    effective_date: dt.date | None  # 시행일자
    article_no: int
    article_branch: int
    article_key: str
    article_title: str
    headings: list[str]  # enclosing 장/절 headings
    text: str
    is_deleted: bool
    source: str
    source_ref: str


@dataclass(frozen=True, slots=True)
class Precedent:
    """One court decision (판례)."""

    prec_id: str  # prec:{판례일련번호}
    serial_no: str  # 판례일련번호 (판례정보일련번호 in API bodies)
    case_no: str  # 사건번호
    case_name: str  # 사건명
    court: str  # 법원명
    court_level: str  # 법원등급: 대법원 | 하급심 | 미분류
    case_type: str  # 사건종류(명): 민사, 형사, 일반행정, 세무, 가사, 특허, …
    decision_date: dt.date | None  # 선고일자
    judgment_type: str  # 판결유형 (판결, 결정 …; "" when the source lacks it)
    holdings: str  # 판시사항
    summary: str  # 판결요지
    ref_articles: str  # 참조조문 (raw string; parsed later)
    ref_cases: str  # 참조판례 (raw string; parsed later)
    body: str  # 판례내용
    source: str
    source_ref: str


def _polars_type(tp: Any) -> pl.DataType:
    mapping: dict[Any, pl.DataType] = {
        str: pl.String(),
        int: pl.Int64(),
        bool: pl.Boolean(),
        dt.date | None: pl.Date(),
        list[str]: pl.List(pl.String()),
    }
    if tp not in mapping:
        raise TypeError(f"no polars type for {tp!r}")
    return mapping[tp]


def schema_of(cls: type) -> pl.Schema:
    """Polars schema of a record class."""
    hints = get_type_hints(cls)
    return pl.Schema({f.name: _polars_type(hints[f.name]) for f in dataclasses.fields(cls)})


STATUTE_SCHEMA = schema_of(StatuteArticle)
ADMIN_RULE_SCHEMA = schema_of(AdminRuleArticle)
PRECEDENT_SCHEMA = schema_of(Precedent)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An input that was not turned into records: counted and reported, never silently dropped."""

    ref: str  # file path (mirror) or raw-response path / id (API)
    reason: str


@dataclass(slots=True)
class ReadResult(Generic[T]):
    """Records read from a source plus what was skipped (and why)."""

    records: list[T] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, ref: str, reason: str) -> None:
        """Record (and log) an input that was not turned into records."""
        logger.warning("skipping %s: %s", ref, reason)
        self.skipped.append(Skipped(ref, reason))


ID_COLUMN: dict[type, str] = {
    StatuteArticle: "article_id",
    AdminRuleArticle: "article_id",
    Precedent: "prec_id",
}


def to_frame(records: Iterable[Any], cls: type) -> pl.DataFrame:
    """Records → a polars frame with the class's schema, sorted by id so equal inputs give equal bytes."""
    schema = schema_of(cls)
    rows = [{name: getattr(r, name) for name in schema.names()} for r in records]
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return frame.sort(ID_COLUMN[cls])
