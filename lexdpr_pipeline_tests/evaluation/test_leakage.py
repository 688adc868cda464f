"""The leak check: no train query or positive derived from a valid/test decision; the query's own decision excluded.

Pure function on hand-made tables, then the blocking Dagster check on ``dataset_splits`` (ERROR with the temporal
split, so the training below it does not run; WARN with the digit split)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lexdpr_pipeline.assets.evaluation import EVALUATION_CHECKS, no_heldout_decision_in_training
from lexdpr_pipeline.evaluation.leakage import heldout_leaks
from lexdpr_pipeline.resources import project_resources
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.evaluation.conftest import HOLDINGS_20, QUERIES, TEXTS, corpus_frame, query, splits_frame

# The shared fixture puts q:prec:30 in train while q:cross_law:30 (the same decision) is valid: without it, clean.
CLEAN = [q for q in QUERIES if q["query_id"] != "q:prec:30"]


def test_a_clean_table_passes() -> None:
    result, counts = heldout_leaks(splits_frame(CLEAN), corpus_frame())
    assert result.passed, result.examples
    assert counts == {"heldout_decisions": 3, "query_leaks": 0, "positive_leaks": 0, "negatives_from_heldout": 0}


def test_a_train_query_from_a_heldout_decision_fails() -> None:
    # The fixture's q:prec:30 is train while q:cross_law:30 (the same decision prec:30) is valid.
    result, counts = heldout_leaks(splits_frame(QUERIES), corpus_frame())
    assert not result.passed and counts["query_leaks"] == 1 and counts["positive_leaks"] == 1
    assert result.examples == [
        "q:prec:30 (train): query taken from held-out decision prec:30",
        "q:prec:30 (train): positive prec:30#1 is a passage of held-out decision prec:30",
    ]


def test_a_train_positive_from_a_test_decision_fails() -> None:
    # A training decision (prec:41) citing the held-out decision prec:20: its positive is prec:20's 판결요지, the
    # very answer of the held-out query q:prec:20.
    leaking = query("q:cross_prec:41", "cross_prec", TEXTS["prec:41#0"], ["prec:20#1"], "prec:41", "prec:41#0", "train")
    result, counts = heldout_leaks(splits_frame([*CLEAN, leaking]), corpus_frame())
    assert not result.passed and counts == {
        "heldout_decisions": 3,
        "query_leaks": 0,
        "positive_leaks": 1,
        "negatives_from_heldout": 0,
    }
    assert result.examples == ["q:cross_prec:41 (train): positive prec:20#1 is a passage of held-out decision prec:20"]


def test_a_companion_of_a_heldout_decision_leaks_through_shared_passages() -> None:
    """prec:42 is a companion of the test decision prec:10 (its 판시사항 was merged into prec:10#0: an alias), so a
    train query of prec:42 is the held-out query itself."""
    corpus = corpus_frame().with_columns(
        pl.when(pl.col("passage_id") == "prec:10#0")
        .then(pl.lit(["prec:42#0"]))
        .otherwise(pl.col("aliases"))
        .alias("aliases")
    )
    companion = query("q:prec:42", "prec", TEXTS["prec:10#0"], ["prec:10#1"], "prec:42", "prec:10#0", "train")
    result, counts = heldout_leaks(splits_frame([*CLEAN, companion]), corpus)
    assert not result.passed and counts["query_leaks"] == 1 and counts["positive_leaks"] == 1


def test_negatives_from_heldout_decisions_are_counted_not_failed() -> None:
    row = query("q:law:1:751", "law", "민법 재산 이외의 손해의 배상", ["law:1:751"], "law:1:751", None, "train")
    row["negative_ids"] = ["prec:20#1"]
    rows = [r for r in CLEAN if r["query_id"] != "q:law:1:751"] + [row]
    result, counts = heldout_leaks(splits_frame(rows), corpus_frame())
    assert result.passed and counts["negatives_from_heldout"] == 1


def test_evaluation_without_own_decision_exclusion_fails() -> None:
    result, _ = heldout_leaks(splits_frame(CLEAN), corpus_frame(), exclude_query_document=False)
    assert not result.passed and "exclude_query_document" in result.examples[0]


def test_a_valid_only_split_is_also_held_out() -> None:
    # Move prec:20 (valid) to test: the leak is found either way.
    rows = [{**q, "split": "test"} if q["group_id"] == "prec:20" else q for q in CLEAN]
    leaking = query("q:cross_prec:41", "cross_prec", HOLDINGS_20, ["prec:20#1"], "prec:41", "prec:41#0", "train")
    assert not heldout_leaks(splits_frame([*rows, leaking]), corpus_frame())[0].passed


# Dagster: the check blocks what is below dataset_splits --------------------------------------------------------

LEAKING: dict[str, pl.DataFrame] = {}


@dg.asset
def merged_corpus() -> pl.DataFrame:
    return corpus_frame()


@dg.asset
def dataset_splits() -> pl.DataFrame:
    return LEAKING["splits"]


@dg.asset
def below_splits(dataset_splits: pl.DataFrame) -> pl.DataFrame:
    """Stands in for trained_model (what the check must keep from running)."""
    return dataset_splits.head(1)


@pytest.mark.parametrize(("mode", "severity"), [("temporal", "ERROR"), ("digit", "WARN")])
def test_the_blocking_check_fails_on_a_leaking_table(tmp_path: Path, mode: str, severity: str) -> None:
    assert no_heldout_decision_in_training in EVALUATION_CHECKS
    leaking = query("q:cross_prec:41", "cross_prec", TEXTS["prec:41#0"], ["prec:20#1"], "prec:41", "prec:41#0", "train")
    LEAKING["splits"] = splits_frame([*CLEAN, leaking])
    settings = load_settings(overrides=[f"paths.data_dir={tmp_path / 'data'}", f"pairs.split_mode={mode}"], environ={})
    result = dg.materialize(
        [merged_corpus, dataset_splits, below_splits, no_heldout_decision_in_training],
        resources=project_resources(settings),
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity.value == severity
    assert evaluation.metadata["positive_leaks"].value == 1 and evaluation.metadata["split_mode"].value == mode
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    # ERROR blocks the training below the leaking splits; WARN (digit split) lets it run.
    assert ("below_splits" in materialized) == (severity == "WARN")
