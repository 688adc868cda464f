"""Citation parsing and resolution: 참조조문 → statute article ids, 참조판례 → precedent ids.

Library code only (no dagster). Typical use::

    index = LawNameIndex.from_articles(statute_articles)
    resolutions = resolve_statute_refs(parse_statute_refs(precedent.ref_articles), index)
    stats = CitationStats().add(resolutions)

    cases = CaseNumberIndex.from_precedents(precedents)
    case_resolutions = resolve_case_refs(parse_case_refs(precedent.ref_cases), cases)

The parsers never raise: what they cannot read comes back as a reference with an ``unparseable`` status.
"""

from __future__ import annotations

from lexdpr_pipeline.citations.case_refs import (
    CASE_STATUSES,
    NOT_IN_CORPUS,
    CaseNumberIndex,
    CaseRef,
    CaseResolution,
    normalize_case_no,
    parse_case_refs,
    resolve_case_refs,
    split_case_numbers,
)
from lexdpr_pipeline.citations.law_names import (
    DEFAULT_ALIASES,
    RENAMED_LAWS,
    LawEntry,
    LawNameIndex,
    normalize_law_name,
)
from lexdpr_pipeline.citations.resolve import (
    ADDENDA,
    ARTICLE_NOT_IN_LAW,
    LAW_NOT_IN_CORPUS,
    RESOLVED,
    STATUTE_STATUSES,
    UNPARSEABLE,
    CitationStats,
    Resolution,
    resolve_statute_ref,
    resolve_statute_refs,
)
from lexdpr_pipeline.citations.statute_refs import ISSUE_ADDENDA, ISSUE_UNPARSEABLE, StatuteRef, parse_statute_refs

__all__ = [
    "ADDENDA",
    "ARTICLE_NOT_IN_LAW",
    "CASE_STATUSES",
    "DEFAULT_ALIASES",
    "ISSUE_ADDENDA",
    "ISSUE_UNPARSEABLE",
    "LAW_NOT_IN_CORPUS",
    "NOT_IN_CORPUS",
    "RENAMED_LAWS",
    "RESOLVED",
    "STATUTE_STATUSES",
    "UNPARSEABLE",
    "CaseNumberIndex",
    "CaseRef",
    "CaseResolution",
    "CitationStats",
    "LawEntry",
    "LawNameIndex",
    "Resolution",
    "StatuteRef",
    "normalize_case_no",
    "normalize_law_name",
    "parse_case_refs",
    "parse_statute_refs",
    "resolve_case_refs",
    "resolve_statute_ref",
    "resolve_statute_refs",
    "split_case_numbers",
]
