"""BM25 hard negatives: never a positive, a passage of a positive or of the query's own document, or a stand-in."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.pairs.checks import ids_exist, no_positive_in_negatives
from lexdpr_pipeline.pairs.negatives import ExclusionIndex, mine_bm25_negatives
from lexdpr_pipeline.pairs.queries import PAIR_SCHEMA
from lexdpr_pipeline.sources.ids import doc_id_of
from lexdpr_pipeline.text.passages import PASSAGE_SCHEMA, content_hash, merge_corpus
from lexdpr_pipeline_tests.pairs.conftest import RealSlice

STRONG = "불법행위 손해배상 책임 불법행위 손해배상 책임"
# passage id → text. Every one of them matches the first query; the comments say why most must not be negatives.
TEXTS = {
    "law:1:750": "민법 제750조 불법행위 손해배상 책임",  # positive
    "law:1:751#0": "민법 제751조 불법행위 손해배상",  # positive
    "law:1:751#1": STRONG + " 위자료",  # another passage of a positive document
    "law:1:751#2": "불법행위 손해배상 책임 재산 이외의 손해",  # dropped: same text as law:1:698 …
    "law:1:698": "불법행위 손해배상 책임 재산 이외의 손해",  # … which therefore stands in for a positive document
    "law:1:752": STRONG + " 생명침해",  # positive document, dropped as a duplicate of law:1:700 …
    "law:1:700": STRONG + " 생명침해",  # … which stands in for it
    "prec:1#0": STRONG + " 판시",  # the query's own decision
    "prec:1#1": STRONG + " 요지",
    "prec:2#0": STRONG + " 사용자",  # one long decision: at most one of these
    "prec:2#1": STRONG + " 사용자 책임",
    "prec:2#2": STRONG + " 사용자 배상",
    "prec:3#0": "불법행위 성립 요건",
    "prec:4#0": "손해배상 범위 산정",
    "prec:5#0": "배상 책임 제한",
    "prec:6#0": "불법행위 책임 시효",
    "prec:7#0": "상계 항변 자동채권",  # the only match for the second query
    "prec:8#0": "상계 항변 판시",  # the second query's own passage
}


def passage_row(pid: str, text: str) -> dict[str, Any]:
    doc = doc_id_of(pid)
    return {
        "passage_id": pid,
        "doc_id": doc,
        "source": doc.split(":", 1)[0],
        "section": "article" if doc.startswith("law") else "body",
        "chunk_index": int(pid.split("#")[1]) if "#" in pid else 0,
        "n_chunks": 1,
        "title": doc,
        "text": text,
        "n_tokens": len(text.split()),
        "content_hash": content_hash(text),
    }


def pair(qid: str, text: str, positives: list[str], pos_docs: list[str], group: str, qpid: str | None) -> dict:
    return {
        "query_id": qid,
        "query_type": "cross_law",
        "query_text": text,
        "group_id": group,
        "group_date": None,
        "query_passage_id": qpid,
        "positive_ids": positives,
        "positive_doc_ids": pos_docs,
        "former_citation": False,
    }


@pytest.fixture(scope="module")
def merged() -> pl.DataFrame:
    rows = [passage_row(pid, text) for pid, text in TEXTS.items()]
    frame, stats = merge_corpus([pl.DataFrame(rows, schema=PASSAGE_SCHEMA)])
    assert stats["duplicates_dropped"] == 2
    aliases = dict(frame.select("passage_id", "aliases").iter_rows())
    assert aliases["law:1:700"] == ["law:1:752"] and aliases["law:1:698"] == ["law:1:751#2"]
    return frame


@pytest.fixture(scope="module")
def index(merged: pl.DataFrame) -> BM25Index:
    return BM25Index.build(merged["passage_id"].to_list(), merged["text"].to_list())


@pytest.fixture(scope="module")
def pairs() -> pl.DataFrame:
    return pl.DataFrame(
        [
            pair(
                "q:a",
                "불법행위 손해배상 책임",
                ["law:1:750", "law:1:751#0"],
                ["law:1:750", "law:1:751", "law:1:752"],
                "prec:1",
                "prec:1#0",
            ),
            # The query passage is left out on its own, even where the group does not own it.
            pair("q:b", "상계 항변", ["prec:4#0"], ["prec:4"], "prec:88", "prec:8#0"),
            pair("q:c", "zzqx", ["prec:4#0"], ["prec:4"], "prec:9", None),  # no term the index knows
        ],
        schema=PAIR_SCHEMA,
    )


EXCLUDED_FOR_A = {
    "law:1:750",
    "law:1:751#0",
    "law:1:751#1",
    "law:1:698",
    "law:1:700",
    "prec:1#0",
    "prec:1#1",
}


def test_excluded_passages_are_the_strongest_bm25_matches(index: BM25Index) -> None:
    """Without exclusions the top of the ranking is exactly what must be left out: the test below can fail."""
    top = [pid for pid, _ in index.search("불법행위 손해배상 책임", k=8)]
    assert len(set(top) & EXCLUDED_FOR_A) >= 5
    assert (
        len({doc_id_of(p) for p in top if p.startswith("prec:2#")}) == 1
        and sum(p.startswith("prec:2#") for p in top) >= 2
    )


def test_negatives_exclude_positives_their_documents_stand_ins_and_own_document(
    pairs: pl.DataFrame, merged: pl.DataFrame, index: BM25Index
) -> None:
    out, _ = mine_bm25_negatives(pairs, merged, index, per_query=4, progress=False)
    assert out.select(PAIR_SCHEMA.names()).equals(pairs)  # the input columns are untouched, rows kept in order
    row = out.row(0, named=True)
    negatives = row["negative_ids"]
    assert len(negatives) == 4
    assert not set(negatives) & EXCLUDED_FOR_A
    assert row["negative_doc_ids"] == [doc_id_of(p) for p in negatives]
    assert len(set(row["negative_doc_ids"])) == 4  # distinct documents
    assert sum(p.startswith("prec:2#") for p in negatives) == 1  # the long decision counts once
    assert set(row["negative_doc_ids"]) <= {"prec:2", "prec:3", "prec:4", "prec:5", "prec:6"}
    assert negatives[0].startswith("prec:2#")  # best BM25 first


def test_short_rows_are_kept_and_counted(pairs: pl.DataFrame, merged: pl.DataFrame, index: BM25Index) -> None:
    out, stats = mine_bm25_negatives(pairs, merged, index, per_query=4, progress=False)
    assert out.height == 3
    assert out["negative_ids"].to_list()[1:] == [["prec:7#0"], []]  # prec:8#0 is the query's own passage
    assert out["negative_doc_ids"].to_list()[1:] == [["prec:7"], []]
    assert (stats.queries, stats.wanted_per_query, stats.short_rows) == (3, 4, 2)
    assert stats.histogram == {4: 1, 1: 1, 0: 1}
    assert stats.as_dict()["negatives_per_query"] == {"0": 1, "1": 1, "4": 1}


def test_candidate_pool_limits_negatives(pairs: pl.DataFrame, merged: pl.DataFrame, index: BM25Index) -> None:
    """``candidates`` hits are scanned; ``per_query`` above it still asks for at least ``per_query`` hits."""
    out, stats = mine_bm25_negatives(pairs.head(1), merged, index, per_query=10, candidates=2, progress=False)
    assert len(out["negative_ids"][0]) == 5 and stats.short_rows == 1  # only 5 documents are left to choose from
    out, _ = mine_bm25_negatives(pairs.head(1), merged, index, per_query=1, candidates=1, progress=False)
    assert len(out["negative_ids"][0]) == 1 and out["negative_ids"][0][0].startswith("prec:2#")


def test_exclusion_index(merged: pl.DataFrame) -> None:
    excl = ExclusionIndex(merged)
    assert excl.exclusions(["law:1:750"], ["law:1:751", "law:1:752"]) == {
        "law:1:750",
        "law:1:751#0",
        "law:1:751#1",
        "law:1:698",  # stands in for law:1:751#2
        "law:1:700",  # stands in for law:1:752, dropped whole
    }
    assert excl.exclusions([], ["prec:2"]) == {"prec:2#0", "prec:2#1", "prec:2#2"}
    assert excl.exclusions(["x"], ["no-such-doc"]) == {"x"}


def test_real_slice_negatives(real_slice: RealSlice, real_bm25: BM25Index) -> None:
    pairs, merged = real_slice.pairs, real_slice.merged
    out, stats = mine_bm25_negatives(pairs, merged, real_bm25, per_query=5, progress=False)
    assert out.height == pairs.height
    stands_for: dict[str, set[str]] = {
        pid: {doc_id_of(a) for a in aliases} for pid, aliases in merged.select("passage_id", "aliases").iter_rows()
    }
    for q in out.iter_rows(named=True):
        negatives, neg_docs = q["negative_ids"], q["negative_doc_ids"]
        blocked_docs = {*q["positive_doc_ids"], q["group_id"]}
        assert len(negatives) <= 5 and neg_docs == [doc_id_of(p) for p in negatives]
        assert len(set(neg_docs)) == len(neg_docs)
        assert not set(negatives) & set(q["positive_ids"])
        assert not set(neg_docs) & blocked_docs
        assert q["query_passage_id"] not in negatives
        for p in negatives:
            assert not stands_for[p] & blocked_docs, (q["query_id"], p)
    lengths = out["negative_ids"].list.len()
    assert stats.short_rows == int((lengths < 5).sum()) < out.height // 10
    assert stats.histogram == dict(lengths.value_counts().iter_rows())
    assert no_positive_in_negatives(out).passed
    assert ids_exist(out, set(merged["passage_id"])).passed
