"""The data checks: each passes on a good frame and fails, naming the offending example, on a crafted bad one."""

from __future__ import annotations

import polars as pl
import pytest

from lexdpr_pipeline.pairs import checks

CORPUS_IDS = {"law:1:750", "law:1:751#0", "law:1:751#1", "prec:7#0", "prec:8#0", "prec:9#2"}
SCHEMA = {
    "query_id": pl.String(),
    "group_id": pl.String(),
    "split": pl.String(),
    "positive_ids": pl.List(pl.String()),
    "positive_doc_ids": pl.List(pl.String()),
    "negative_ids": pl.List(pl.String()),
    "negative_doc_ids": pl.List(pl.String()),
}


def good() -> pl.DataFrame:
    return pl.DataFrame(
        [
            ("q:a", "prec:1", "train", ["law:1:750"], ["law:1:750"], ["prec:7#0"], ["prec:7"]),
            ("q:b", "prec:1", "train", ["law:1:751#0"], ["law:1:751"], ["prec:8#0", "prec:9#2"], ["prec:8", "prec:9"]),
            ("q:c", "prec:2", "valid", ["law:1:750"], ["law:1:750"], [], []),
            ("q:d", "prec:3", "test", ["prec:7#0"], ["prec:7"], ["law:1:751#1"], ["law:1:751"]),
        ],
        schema=SCHEMA,
        orient="row",
    )


def replace(frame: pl.DataFrame, qid: str, **values: object) -> pl.DataFrame:
    rows = [{**r, **values} if r["query_id"] == qid else r for r in frame.iter_rows(named=True)]
    return pl.DataFrame(rows, schema=SCHEMA)


def test_good_frame_passes_everything() -> None:
    results = checks.run_all(good(), CORPUS_IDS, minimum=4)
    assert [r.name for r in results] == [
        "ids_exist_in_corpus",
        "no_positive_among_negatives",
        "no_document_spans_splits",
        "every_split_non_empty",
        "minimum_pair_count",
    ]
    for r in results:
        assert r.passed and r.failures == 0 and r.examples == [] and r.description, r


def test_ids_exist() -> None:
    bad = replace(good(), "q:b", negative_ids=["prec:8#0", "prec:404#0"])
    bad = replace(bad, "q:c", positive_ids=["law:1:999"])
    result = checks.ids_exist(bad, CORPUS_IDS)
    assert not result.passed and result.failures == 2
    assert sorted(result.examples) == ["q:b: prec:404#0", "q:c: law:1:999"]


def test_no_positive_in_negatives_by_passage_and_by_document() -> None:
    by_passage = replace(good(), "q:a", negative_ids=["law:1:750"], negative_doc_ids=["law:1:750"])
    result = checks.no_positive_in_negatives(by_passage)
    assert not result.passed and result.examples == ["q:a"]
    # another passage of the positive document
    by_doc = replace(good(), "q:b", negative_ids=["law:1:751#1"], negative_doc_ids=["law:1:751"])
    result = checks.no_positive_in_negatives(by_doc)
    assert not result.passed and result.examples == ["q:b"] and result.failures == 1


def test_no_group_spans_splits() -> None:
    bad = replace(good(), "q:b", split="test")  # q:a (prec:1) stays in train
    result = checks.no_group_spans_splits(bad)
    assert not result.passed and result.examples == ["prec:1"] and result.failures == 1


@pytest.mark.parametrize("missing", ["train", "valid", "test"])
def test_splits_non_empty(missing: str) -> None:
    bad = good().filter(pl.col("split") != missing)
    result = checks.splits_non_empty(bad)
    assert not result.passed and result.examples == [missing]


def test_minimum_pairs() -> None:
    assert checks.minimum_pairs(good(), 4).passed
    result = checks.minimum_pairs(good(), 5)
    assert not result.passed and result.examples == ["4 < 5"] and "5" in result.description


def test_examples_are_capped_at_ten_but_failures_counted() -> None:
    rows = [(f"q:{i}", f"prec:{i}", "train", ["law:1:750"], ["law:1:750"], [f"x:{i}"], [f"x:{i}"]) for i in range(25)]
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    result = checks.ids_exist(frame, CORPUS_IDS)
    assert result.failures == 25 and len(result.examples) == 10 and result.examples[0] == "q:0: x:0"


def test_run_all_reports_each_failure() -> None:
    bad = replace(good(), "q:d", split="train", negative_ids=["prec:7#0"], negative_doc_ids=["prec:7"])
    results = {r.name: r for r in checks.run_all(bad, CORPUS_IDS, minimum=10)}
    failed = {name for name, r in results.items() if not r.passed}
    assert failed == {"no_positive_among_negatives", "every_split_non_empty", "minimum_pair_count"}
    assert results["every_split_non_empty"].examples == ["test"]
