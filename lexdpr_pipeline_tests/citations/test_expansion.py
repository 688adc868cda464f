"""citation_expansion (library): only train-split decisions, most recent first, deduplicated, capped; provenance."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from lexdpr_pipeline.citations.expansion import (
    EXPANSION_SCHEMA,
    ExpansionConfig,
    citation_expansion,
    cutoff_label,
    decisions_per_article,
    passage_expansions,
)
from lexdpr_pipeline.citations.table import CITATION_SCHEMA
from lexdpr_pipeline.pairs.splits import SplitConfig

TEMPORAL = SplitConfig(mode="temporal", valid_from=dt.date(2019, 1, 1), test_from=dt.date(2021, 1, 1))
ART = "law:001706:750"
OTHER = "law:001706:751"


def _citations(rows: list[tuple[str, str, list[int]]]) -> pl.DataFrame:
    """(citing prec_id, target article, groups) → resolved statute citations."""
    return pl.DataFrame(
        [
            {
                "prec_id": p,
                "kind": "statute",
                "groups": g,
                "raw": "민법 제750조",
                "status": "resolved",
                "target_id": t,
                "former": False,
            }
            for p, t, g in rows
        ],
        schema=CITATION_SCHEMA,
        orient="row",
    )


def _precedents(rows: list[tuple[str, dt.date | None, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"prec_id": [r[0] for r in rows], "decision_date": [r[1] for r in rows], "holdings": [r[2] for r in rows]},
        schema={"prec_id": pl.String, "decision_date": pl.Date, "holdings": pl.String},
    )


def _corpus(docs: list[str], aliases: dict[str, list[str]] | None = None) -> pl.DataFrame:
    aliases = aliases or {}
    return pl.DataFrame(
        {
            "passage_id": [f"{d}#0" for d in docs],
            "doc_id": docs,
            "source": ["law" if d.startswith("law:") else "prec" for d in docs],
            "aliases": [aliases.get(d, []) for d in docs],
        },
        schema={"passage_id": pl.String, "doc_id": pl.String, "source": pl.String, "aliases": pl.List(pl.String)},
    )


def test_a_decision_after_the_cutoff_never_contributes() -> None:
    precedents = _precedents(
        [
            ("prec:11", dt.date(2015, 3, 1), "불법행위 손해배상의 범위"),
            ("prec:12", dt.date(2019, 1, 1), "검증 기간의 판시사항"),  # valid_from itself: valid
            ("prec:13", dt.date(2022, 5, 1), "시험 기간의 판시사항"),
            ("prec:14", None, "선고일자 없는 판시사항"),  # undated: train, as the pairs' split puts it
        ]
    )
    cites = _citations([(p, ART, []) for p in ("prec:11", "prec:12", "prec:13", "prec:14")])
    frame, stats = citation_expansion(cites, precedents, _corpus([ART]), TEMPORAL)
    assert frame.schema == EXPANSION_SCHEMA
    row = frame.row(0, named=True)
    assert row["decision_ids"] == ["prec:11", "prec:14"]  # dated first (most recent first), undated last
    assert "검증" not in row["expansion_text"] and "시험" not in row["expansion_text"]
    assert row["cutoff"] == cutoff_label(TEMPORAL) and "2019-01-01" in row["cutoff"]
    assert stats.excluded_by_split == 2 and stats.decisions_used == 2


def test_digit_split_excludes_valid_and_test_digits_by_the_companion_group() -> None:
    # prec:28 ends in 8 (valid); prec:31 ends in 1 but is a companion of prec:29 (its group prec:29 → test).
    precedents = _precedents(
        [
            ("prec:20", dt.date(2010, 1, 1), "가 판시"),
            ("prec:28", dt.date(2011, 1, 1), "나 판시"),
            ("prec:29", dt.date(2012, 1, 1), "다 판시"),
            ("prec:31", dt.date(2013, 1, 1), "라 판시"),
        ]
    )
    cites = _citations([(p, ART, []) for p in ("prec:20", "prec:28", "prec:29", "prec:31")])
    corpus = pl.concat([_corpus([ART]), _corpus(["prec:29"], {"prec:29": ["prec:31#0"]})])
    frame, stats = citation_expansion(cites, precedents, corpus, SplitConfig())
    assert frame["decision_ids"].to_list() == [["prec:20"]]
    assert frame["expansion_text"].to_list() == ["가 판시"]
    assert stats.excluded_by_split == 3


def test_cap_dedup_order_and_truncation() -> None:
    precedents = _precedents(
        [(f"prec:{i}0", dt.date(2000 + i, 1, 1), f"판시 {i}") for i in range(1, 7)]
        + [("prec:70", dt.date(2016, 1, 1), "판시 6"), ("prec:80", dt.date(2017, 1, 1), "   ")]
    )
    cites = _citations([(f"prec:{i}0", ART, []) for i in range(1, 9)] + [("prec:10", OTHER, [])])
    frame, stats = citation_expansion(
        cites, precedents, _corpus([ART, OTHER]), SplitConfig(), ExpansionConfig(max_decisions=3)
    )
    art = frame.filter(pl.col("doc_id") == ART).row(0, named=True)
    # Most recent first; prec:70 (2016) repeats prec:60's text: one copy, the newer decision's id.
    assert art["decision_ids"] == ["prec:70", "prec:50", "prec:40"]
    assert art["expansion_text"] == "판시 6\n판시 5\n판시 4"
    assert art["n_decisions"] == 3 and art["n_citing"] == 7  # prec:80 has no 판시사항: skipped and counted
    assert stats.duplicate_texts == 1 and stats.skipped["citing decision without 판시사항"] == 1
    assert stats.articles_expanded == 2 and stats.share_expanded == 1.0

    short, stats = citation_expansion(
        cites, precedents, _corpus([ART]), SplitConfig(), ExpansionConfig(max_decisions=8, max_chars=12)
    )
    assert short["expansion_text"].to_list() == ["판시 6\n판시 5\n판시"]  # 12 characters: the third one cut
    assert stats.truncated_articles == 1
    assert short["decision_ids"].to_list() == [["prec:70", "prec:50", "prec:40"]]  # the last one only in part


def test_numbered_holding_contributes_only_the_cited_part_unless_also_cited_unnumbered() -> None:
    precedents = _precedents([("prec:10", dt.date(2010, 1, 1), "[1] 계약 해제의 효과 [2] 불법행위 책임의 성립")])
    frame, _ = citation_expansion(
        _citations([("prec:10", ART, [2]), ("prec:10", OTHER, [2]), ("prec:10", OTHER, [])]),
        precedents,
        _corpus([ART, OTHER]),
        SplitConfig(),
    )
    texts = dict(frame.select("doc_id", "expansion_text").iter_rows())
    assert texts[ART] == "불법행위 책임의 성립"
    assert texts[OTHER] == "[1] 계약 해제의 효과 [2] 불법행위 책임의 성립"


def test_articles_outside_the_corpus_and_non_statute_targets_are_left_out() -> None:
    precedents = _precedents([("prec:10", dt.date(2010, 1, 1), "판시")])
    cites = _citations([("prec:10", "law:999:1", []), ("prec:10", ART, [])])
    frame, stats = citation_expansion(cites, precedents, _corpus([ART, "prec:10"]), SplitConfig())
    assert frame["doc_id"].to_list() == [ART]
    assert stats.skipped["cited document not in merged_corpus"] == 1 and stats.statute_articles == 1


def test_passage_expansions_follow_the_corpus_rows_and_the_histogram_counts_articles() -> None:
    corpus = pl.DataFrame({"doc_id": [OTHER, ART, ART, "prec:10"]})
    expansion = pl.DataFrame(
        {"doc_id": [ART], "expansion_text": ["판시"], "n_citing": [3]}, schema_overrides={"n_citing": pl.Int32}
    )
    assert passage_expansions(corpus, expansion) == ["", "판시", "판시", ""]
    hist = decisions_per_article(expansion, statute_articles=5)
    assert hist["0"] == 4 and hist["3-4"] == 1 and sum(hist.values()) == 5


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        ExpansionConfig(max_decisions=0)
    for sources in ((), ("admrul",), ("law", "case")):
        with pytest.raises(ValueError, match="expansion sources"):
            ExpansionConfig(sources=sources)


def test_cited_decisions_are_expanded_by_later_train_decisions_only_when_asked() -> None:
    """sources incl. prec: a decision cited (참조판례) by later train-split decisions gets their 판시사항; a citing
    decision from the valid/test period never contributes, a cited decision outside the corpus is counted."""
    precedents = _precedents(
        [
            ("prec:1", dt.date(2001, 1, 1), "오래된 판결의 판시사항"),
            ("prec:2", dt.date(2010, 6, 1), "신의칙 위반 여부"),
            ("prec:3", dt.date(2020, 6, 1), "검증 기간 판결의 판시사항"),
        ]
    )
    case = _citations([("prec:2", "prec:1", []), ("prec:3", "prec:1", []), ("prec:2", "prec:404", [])])
    case = case.with_columns(kind=pl.lit("case"))
    cites = pl.concat([case, _citations([("prec:2", ART, [])])])
    corpus = _corpus([ART, "prec:1", "prec:2", "prec:3"])

    law_only, stats = citation_expansion(cites, precedents, corpus, TEMPORAL)
    assert law_only["doc_id"].to_list() == [ART] and stats.precedents_expanded == 0

    both, stats = citation_expansion(cites, precedents, corpus, TEMPORAL, ExpansionConfig(sources=("law", "prec")))
    rows = {r["doc_id"]: r for r in both.iter_rows(named=True)}
    assert set(rows) == {ART, "prec:1"}
    assert rows["prec:1"]["decision_ids"] == ["prec:2"] and rows["prec:1"]["expansion_text"] == "신의칙 위반 여부"
    assert stats.precedents == 3 and stats.precedents_expanded == 1 and stats.articles_expanded == 1
    assert stats.skipped["cited document not in merged_corpus"] == 1  # prec:404
    assert decisions_per_article(both, statute_articles=1) == decisions_per_article(law_only, statute_articles=1)

    prec_only, _ = citation_expansion(cites, precedents, corpus, TEMPORAL, ExpansionConfig(sources=("prec",)))
    assert prec_only["doc_id"].to_list() == ["prec:1"]
