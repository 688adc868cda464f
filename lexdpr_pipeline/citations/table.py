"""All citations of a set of precedents as one table: one row per cited article or case, with its resolution.

This is what training pairs are built from and what the pairs report's resolution rates are computed on.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from lexdpr_pipeline.citations.case_refs import CaseNumberIndex, parse_case_refs, resolve_case_refs
from lexdpr_pipeline.citations.law_names import LawNameIndex
from lexdpr_pipeline.citations.resolve import CitationStats, resolve_statute_refs
from lexdpr_pipeline.citations.statute_refs import parse_statute_refs
from lexdpr_pipeline.sources.records import Precedent, StatuteArticle

CITATION_SCHEMA = pl.Schema(
    {
        "prec_id": pl.String(),  # the citing decision
        "kind": pl.String(),  # statute (참조조문) | case (참조판례)
        "groups": pl.List(pl.Int32()),  # [1][2] numbers the citation belongs to ([] when unnumbered)
        "raw": pl.String(),
        "status": pl.String(),  # resolved | law_not_in_corpus | article_not_in_law | addenda | not_in_corpus | …
        "target_id": pl.String(),  # law:… / prec:… when resolved
        "former": pl.Boolean(),  # a 구법 (former version) citation
    }
)


def citation_table(raw_statutes: pl.DataFrame, raw_precedents: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Parse and resolve every 참조조문 and 참조판례 of ``raw_precedents`` against the corpus.

    Returns the table and ``{"statute": CitationStats.as_dict(), "case": …}``.
    """
    law_index = LawNameIndex.from_articles(StatuteArticle(**row) for row in raw_statutes.iter_rows(named=True))
    precedents = [Precedent(**row) for row in raw_precedents.iter_rows(named=True)]
    case_index = CaseNumberIndex.from_precedents(precedents)
    statute_stats, case_stats = CitationStats(), CitationStats()
    rows: list[dict[str, Any]] = []
    for prec in precedents:
        resolutions = resolve_statute_refs(parse_statute_refs(prec.ref_articles), law_index)
        statute_stats.add(resolutions)
        rows += [
            {
                "prec_id": prec.prec_id,
                "kind": "statute",
                "groups": list(r.ref.groups),
                "raw": r.ref.raw,
                "status": r.status,
                "target_id": r.article_id,
                "former": r.former,
            }
            for r in resolutions
        ]
        cases = resolve_case_refs(parse_case_refs(prec.ref_cases), case_index)
        case_stats.add(cases)
        rows += [
            {
                "prec_id": prec.prec_id,
                "kind": "case",
                "groups": list(c.ref.groups),
                "raw": c.ref.raw,
                "status": c.status,
                "target_id": c.prec_id,
                "former": False,
            }
            for c in cases
        ]
    frame = pl.DataFrame(rows, schema=CITATION_SCHEMA, orient="row") if rows else pl.DataFrame(schema=CITATION_SCHEMA)
    return frame, {"statute": statute_stats.as_dict(), "case": case_stats.as_dict()}


def citation_stats(citations: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Totals and counts by status per kind, from a :data:`CITATION_SCHEMA` table (for reports)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in ("statute", "case"):
        sel = citations.filter(pl.col("kind") == kind)
        by_status = dict(sel.group_by("status").len().iter_rows())
        out[kind] = {"total": sel.height, "resolved": int(by_status.get("resolved", 0)), "by_status": by_status}
    return out
