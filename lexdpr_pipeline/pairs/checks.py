"""Data checks on the training pairs (the original ``validate_dataset``), as pure functions.

Each returns a :class:`CheckResult`; the Dagster layer turns them into blocking asset checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    description: str
    failures: int = 0
    examples: list[str] = field(default_factory=list)


def _result(name: str, description: str, bad: list[str]) -> CheckResult:
    return CheckResult(name, not bad, description, len(bad), bad[:10])


def ids_exist(pairs: pl.DataFrame, corpus_ids: set[str]) -> CheckResult:
    bad = [
        f"{qid}: {pid}"
        for qid, pos, neg in pairs.select("query_id", "positive_ids", "negative_ids").iter_rows()
        for pid in [*(pos or []), *(neg or [])]
        if pid not in corpus_ids
    ]
    return _result("ids_exist_in_corpus", "every positive and negative id exists in merged_corpus", bad)


def no_positive_in_negatives(pairs: pl.DataFrame) -> CheckResult:
    bad = [
        qid
        for qid, pos, neg, pos_docs, neg_docs in pairs.select(
            "query_id", "positive_ids", "negative_ids", "positive_doc_ids", "negative_doc_ids"
        ).iter_rows()
        if set(pos or []) & set(neg or []) or set(pos_docs or []) & set(neg_docs or [])
    ]
    return _result("no_positive_among_negatives", "no positive (passage or document) is among its negatives", bad)


def no_group_spans_splits(splits: pl.DataFrame) -> CheckResult:
    spans = splits.group_by("group_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    return _result(
        "no_document_spans_splits",
        "every query derived from one precedent (or article) is in one split",
        spans["group_id"].to_list(),
    )


def splits_non_empty(splits: pl.DataFrame) -> CheckResult:
    present = set(splits["split"].unique().to_list())
    missing = [s for s in ("train", "valid", "test") if s not in present]
    return _result("every_split_non_empty", "train, valid and test each hold at least one query", missing)


def minimum_pairs(splits: pl.DataFrame, minimum: int) -> CheckResult:
    bad = [] if splits.height >= minimum else [f"{splits.height} < {minimum}"]
    return _result("minimum_pair_count", f"at least {minimum} training pairs", bad)


def run_all(splits: pl.DataFrame, corpus_ids: set[str], minimum: int) -> list[CheckResult]:
    return [
        ids_exist(splits, corpus_ids),
        no_positive_in_negatives(splits),
        no_group_spans_splits(splits),
        splits_non_empty(splits),
        minimum_pairs(splits, minimum),
    ]
