"""False-negative-safe hard negatives: each drop rule fires where it must, stays quiet where it must not, and is
counted (per rule, per query type, per row)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.citations.table import CITATION_SCHEMA
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.models.biencoder import BiEncoder, Template
from lexdpr_pipeline.pairs.build import negative_rules
from lexdpr_pipeline.pairs.negatives import (
    REMOVED_COLUMN,
    RULES,
    jaccard,
    mine_bm25_negatives,
    mine_dense_negatives,
    query_decisions,
    shingles,
)
from lexdpr_pipeline.pairs.queries import PAIR_SCHEMA
from lexdpr_pipeline.settings import PairsSettings
from lexdpr_pipeline.sources.ids import doc_id_of
from lexdpr_pipeline.text.passages import PASSAGE_SCHEMA, merge_corpus
from lexdpr_pipeline_tests.pairs.conftest import RealSlice
from lexdpr_pipeline_tests.pairs.test_negatives import passage_row

POSITIVE = "민법 제750조 고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 배상할 책임이 있다"
NEAR = "민법 제750조 고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 배상할 책임이 있음"
PARTLY = "민법 제760조 수인이 공동의 불법행위로 타인에게 손해를 가한 때에는 연대하여 그 손해를 배상할 책임이 있다"
TEXTS = {
    "law:1:750#0": POSITIVE,  # the cross_law query's positive (cited in part [1])
    "law:1:750#1": "위법행위 손해 배상 책임 제2항 정신상 고통",  # → positive_document (another chunk)
    "law:1:751": "재산 이외의 손해 배상 책임 위법행위",  # cited in part [2] of the decision → cited_by_query_decision
    "law:1:760": NEAR,  # → near_duplicate of the positive (Jaccard ≥ 0.6)
    "law:1:770": PARTLY,  # overlaps the positive, below the threshold → kept
    "prec:10#0": "위법행위 손해 배상 책임의 판시사항",  # the query's own passage (left out of the search)
    "prec:10#1": "위법행위 손해 배상 책임의 판결요지",  # → query_document
    # cited by the decision (cross_prec) → cited_by_query_decision
    "prec:20#0": "대법원 선례: 위법행위 손해 배상 책임은 채무불이행 책임과 경합한다",
    "prec:30#0": "위법행위 손해 배상 책임 사건 삼십",  # cites law:1:750 as well → shares_citation
    "prec:40#0": "위법행위 손해 배상 책임 사건 사십",  # cites the query's decision → shares_citation
    "prec:50#0": "위법행위 손해 배상 책임 사건 오십",  # cites an unrelated article → kept
}
CITATIONS = [  # (citing decision, kind, target, groups)
    ("prec:10", "statute", "law:1:750", [1]),
    ("prec:10", "statute", "law:1:751", [2]),
    ("prec:10", "case", "prec:20", []),
    ("prec:30", "statute", "law:1:750", []),
    ("prec:40", "case", "prec:10", []),
    ("prec:50", "statute", "law:1:999", []),
    ("prec:50", "statute", "law:1:751", []),  # unresolved below: an unresolved citation never links
]
QUERY = "위법행위 손해 배상 책임"


def citations_frame() -> pl.DataFrame:
    rows = [
        {
            "prec_id": p,
            "kind": kind,
            "groups": groups,
            "raw": target,
            "status": "resolved" if i < 6 else "article_not_in_law",
            "target_id": target if i < 6 else None,
            "former": False,
        }
        for i, (p, kind, target, groups) in enumerate(CITATIONS)
    ]
    return pl.DataFrame(rows, schema=CITATION_SCHEMA)


def row(qid: str, qtype: str, positives: list[str], group: str, qpid: str | None) -> dict:
    return {
        "query_id": qid,
        "query_type": qtype,
        "query_text": QUERY,
        "group_id": group,
        "group_date": None,
        "query_passage_id": qpid,
        "positive_ids": positives,
        "positive_doc_ids": sorted({doc_id_of(p) for p in positives}),
        "former_citation": False,
    }


@pytest.fixture(scope="module")
def merged() -> pl.DataFrame:
    frame, _ = merge_corpus([pl.DataFrame([passage_row(p, t) for p, t in TEXTS.items()], schema=PASSAGE_SCHEMA)])
    assert frame.height == len(TEXTS)
    return frame


@pytest.fixture(scope="module")
def index(merged: pl.DataFrame) -> BM25Index:
    return BM25Index.build(merged["passage_id"].to_list(), merged["text"].to_list())


@pytest.fixture(scope="module")
def pairs() -> pl.DataFrame:
    return pl.DataFrame(
        [
            row("q:cross_law:10:1", "cross_law", ["law:1:750#0"], "prec:10", "prec:10#0"),
            row("q:cross_prec:10", "cross_prec", ["prec:20#0"], "prec:10", "prec:10#0"),
            # A heading query on the same article: no citing decision, so no citation rule applies.
            row("q:law:1:750", "law", ["law:1:750#0"], "law:1:750", None),
        ],
        schema=PAIR_SCHEMA,
    )


def mine(pairs: pl.DataFrame, merged: pl.DataFrame, index: BM25Index, **kw) -> tuple[pl.DataFrame, object]:
    return mine_bm25_negatives(pairs, merged, index, per_query=20, candidates=20, progress=False, **kw)


def test_the_constructed_texts_straddle_the_overlap_threshold() -> None:
    assert jaccard(shingles(NEAR), shingles(POSITIVE)) >= 0.6 > jaccard(shingles(PARTLY), shingles(POSITIVE)) > 0.2
    assert jaccard(shingles("a b"), shingles("a  b")) == 1.0 and jaccard(frozenset(), shingles("abc")) == 0.0


def test_every_candidate_reaches_the_miner(index: BM25Index) -> None:
    """All passages match the query, so what is missing from the negatives below was removed by a rule."""
    hits = {pid for pid, _ in index.search(QUERY, k=50)}
    assert hits == set(TEXTS)


def test_without_rules_only_the_positive_and_own_documents_are_removed(
    pairs: pl.DataFrame, merged: pl.DataFrame, index: BM25Index
) -> None:
    out, stats = mine(pairs, merged, index)
    negs = {r["query_id"]: set(r["negative_ids"]) for r in out.iter_rows(named=True)}
    assert {"law:1:751", "law:1:760", "prec:20#0", "prec:30#0", "prec:40#0", "prec:50#0"} <= negs["q:cross_law:10:1"]
    assert stats.removed_by_rule() == {
        **dict.fromkeys(RULES, 0),
        "positive_document": 2,  # law:1:750#1 (cross_law, law rows)
        "query_document": 2,  # prec:10#1 (both decision rows)
    }


def test_each_rule_fires_and_is_counted(pairs: pl.DataFrame, merged: pl.DataFrame, index: BM25Index) -> None:
    out, stats = mine(pairs, merged, index, citations=citations_frame(), max_overlap=0.6)
    negs = {r["query_id"]: r["negative_ids"] for r in out.iter_rows(named=True)}
    # cross_law [1]: the other part's article and the cited precedent go; a co-citing and a citing decision go; the
    # near duplicate goes; the partly overlapping article and the unrelated decision stay.
    assert set(negs["q:cross_law:10:1"]) == {"law:1:770", "prec:50#0"}
    # cross_prec: the decision's cited articles are not its positives but are cited: removed as well (the near
    # duplicate of law:1:750 is not near this row's positive, so it stays).
    assert set(negs["q:cross_prec:10"]) == {"law:1:760", "law:1:770", "prec:50#0"}
    # The heading query: citation rules do not apply; the near duplicate still goes.
    docs = {r["query_id"]: r["negative_doc_ids"] for r in out.iter_rows(named=True)}
    assert set(docs["q:law:1:750"]) == {"law:1:751", "law:1:770", *(f"prec:{n}" for n in (10, 20, 30, 40, 50))}
    removed = {r["query_id"]: r[REMOVED_COLUMN] for r in out.iter_rows(named=True)}
    assert removed["q:cross_law:10:1"] == {
        **dict.fromkeys(RULES, 0),
        "positive_document": 1,
        "query_document": 1,
        "cited_by_query_decision": 2,  # law:1:751, prec:20#0
        "shares_citation": 2,  # prec:30#0 (cites law:1:750), prec:40#0 (cites prec:10)
        "near_duplicate": 1,  # law:1:760
    }
    assert removed["q:cross_prec:10"] == {
        **dict.fromkeys(RULES, 0),
        "query_document": 1,
        "cited_by_query_decision": 3,  # law:1:750#0, law:1:750#1, law:1:751
        "shares_citation": 2,
    }
    assert removed["q:law:1:750"] == {**dict.fromkeys(RULES, 0), "positive_document": 1, "near_duplicate": 1}
    totals = {rule: sum(r[rule] for r in removed.values()) for rule in RULES}
    assert stats.removed_by_rule() == totals
    assert stats.as_dict()["removed_by_type"]["law"]["near_duplicate"] == 1
    assert stats.rules == {"miner": "bm25", "citation_rules": True, "max_overlap": 0.6}
    assert "| shares_citation | 2 | 2 | 0 | 4 |" in stats.removed_markdown()


def test_rules_switch_off_one_at_a_time(pairs: pl.DataFrame, merged: pl.DataFrame, index: BM25Index) -> None:
    only_overlap, stats = mine(pairs.head(1), merged, index, max_overlap=0.6)
    assert "prec:30#0" in only_overlap["negative_ids"][0] and "law:1:760" not in only_overlap["negative_ids"][0]
    assert stats.removed["shares_citation"] == stats.removed["cited_by_query_decision"] == 0
    only_citations, stats = mine(pairs.head(1), merged, index, citations=citations_frame())
    assert "law:1:760" in only_citations["negative_ids"][0] and "prec:30#0" not in only_citations["negative_ids"][0]
    assert stats.removed["near_duplicate"] == 0 and stats.removed["shares_citation"] == 2
    # A strict threshold keeps the near duplicate too.
    strict, stats = mine(pairs.head(1), merged, index, max_overlap=0.99)
    assert "law:1:760" in strict["negative_ids"][0] and stats.removed["near_duplicate"] == 0


def test_query_decisions() -> None:
    assert query_decisions("q:cross_law:10:1", "prec:7", "prec:8#0") == {"prec:10", "prec:7", "prec:8"}
    assert query_decisions("q:prec:12", "prec:12", None) == {"prec:12"}
    assert query_decisions("q:law:1:750", "law:1:750", None) == set()


def test_settings_drive_the_rules() -> None:
    cit = citations_frame()
    assert negative_rules(PairsSettings(), cit) == {"citations": cit, "max_overlap": 0.6}
    off = PairsSettings(negative_citation_filter=False, negative_max_overlap=None)
    assert negative_rules(off, cit) == {"citations": None, "max_overlap": None}
    with pytest.raises(ValueError):
        PairsSettings(negative_max_overlap=0)


def _cited_and_citing(citations: pl.DataFrame) -> dict[str, set[str]]:
    cites: dict[str, set[str]] = {}
    for p, t in citations.filter(pl.col("status") == "resolved").select("prec_id", "target_id").iter_rows():
        cites.setdefault(p, set()).add(t)
    return cites


def assert_no_citation_linked_negative(out: pl.DataFrame, citations: pl.DataFrame) -> int:
    """Checked straight from the citations table (no duplicate groups): returns the decision rows checked."""
    cites = _cited_and_citing(citations)
    checked = 0
    for r in out.filter(pl.col("query_type") != "law").iter_rows(named=True):
        decision = "prec:" + r["query_id"].split(":")[2]
        cited = cites.get(decision, set())
        for neg in r["negative_doc_ids"]:
            assert neg not in cited, (r["query_id"], neg)
            assert not cites.get(neg, set()) & (cited | {decision}), (r["query_id"], neg)
        checked += 1
    return checked


def test_real_slice_bm25_negatives_are_not_citation_linked(real_slice: RealSlice, real_bm25: BM25Index) -> None:
    out, stats = mine_bm25_negatives(
        real_slice.pairs,
        real_slice.merged,
        real_bm25,
        per_query=4,
        citations=real_slice.citations,
        max_overlap=0.6,
        progress=False,
    )
    assert assert_no_citation_linked_negative(out, real_slice.citations) > 50
    plain, _ = mine_bm25_negatives(real_slice.pairs, real_slice.merged, real_bm25, per_query=4, progress=False)
    with pytest.raises(AssertionError):  # without the rules the slice does have such negatives: the check can fail
        assert_no_citation_linked_negative(plain, real_slice.citations)
    assert stats.removed["shares_citation"] > 0 and stats.removed["cited_by_query_decision"] > 0
    assert stats.short_rows < out.height // 10


def test_dense_miner_applies_and_counts_the_rules(real_slice: RealSlice, tiny_model_dir: Path) -> None:
    model = BiEncoder.load(tiny_model_dir, template=Template.named("e5"))
    pairs = real_slice.pairs.filter(pl.col("query_type") != "law").head(40)
    kw = {"per_query": 3, "range_max": 30, "citations": real_slice.citations, "max_overlap": 0.6}
    out, stats = mine_dense_negatives(pairs, real_slice.merged, model, relative_margin=0.0, **kw)
    assert assert_no_citation_linked_negative(out, real_slice.citations) == 40
    assert stats.removed["shares_citation"] + stats.removed["cited_by_query_decision"] > 0
    assert stats.removed["dense_margin"] > 0  # above the positive's own score
    assert stats.removed_by_rule() == {r: int(out[REMOVED_COLUMN].struct.field(r).sum()) for r in RULES}
    assert stats.rules["dense_relative_margin"] == 0.0
    wide, wide_stats = mine_dense_negatives(pairs, real_slice.merged, model, relative_margin=0.999, **kw)
    assert wide_stats.removed["dense_margin"] > stats.removed["dense_margin"]
    assert sum(wide["negative_ids"].list.len()) < sum(out["negative_ids"].list.len())
