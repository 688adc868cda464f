"""The forgetting check on valid: fine-tuned vs zero-shot base per query type and source, never on test."""

from __future__ import annotations

import polars as pl

from lexdpr_pipeline.evaluation.forgetting import forgetting
from lexdpr_pipeline.evaluation.run import BASE, BM25, FINE_TUNED


def _table(rows: list[tuple[str, str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["system", "split", "group", "ndcg@10"], orient="row")


def test_a_type_lost_beyond_the_tolerance_fails_and_test_is_never_read() -> None:
    rows = [
        (FINE_TUNED, "valid", "all", 0.80),
        (BASE, "valid", "all", 0.70),
        (FINE_TUNED, "valid", "type:cross_law", 0.50),
        (BASE, "valid", "type:cross_law", 0.20),
        (FINE_TUNED, "valid", "type:prec", 0.60),
        (BASE, "valid", "type:prec", 0.90),  # −33%: must fail
        (FINE_TUNED, "valid", "source:prec", 0.885),
        (BASE, "valid", "source:prec", 0.90),  # −1.7%: within 2%
        (BM25, "valid", "type:prec", 0.99),  # other systems do not count
        (FINE_TUNED, "test", "type:cross_law", 0.01),  # test is never a gate
        (BASE, "test", "type:cross_law", 0.90),
    ]
    result = forgetting(_table(rows), 0.02)
    assert not result.passed and result.failures == 1 and result.examples[0].startswith("type:prec")
    assert forgetting(_table(rows), 0.40).passed  # a looser tolerance lets −33% through
    fixed = [
        r if r[:3] != (FINE_TUNED, "valid", "type:prec") else (FINE_TUNED, "valid", "type:prec", 0.89) for r in rows
    ]
    assert forgetting(_table(fixed), 0.02).passed


def test_without_the_base_model_nothing_is_measured() -> None:
    result = forgetting(_table([(FINE_TUNED, "valid", "all", 0.8), (BM25, "valid", "all", 0.9)]), 0.02)
    assert result.passed and result.description.startswith("not measured")
