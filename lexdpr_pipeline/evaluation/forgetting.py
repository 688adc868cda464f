"""The forgetting check: after any training change, the fine-tuned model may not lose more than ``max_drop`` of
the zero-shot base model's valid nDCG@10 on any query type or source (issue 14: fine-tuning once cost precedent
answers 40%). Valid only — the test split is never a gate."""

from __future__ import annotations

import polars as pl

from lexdpr_pipeline.evaluation.run import BASE, FINE_TUNED
from lexdpr_pipeline.pairs.checks import CheckResult

CHECK_NAME = "fine_tuned_keeps_the_base_on_valid"
METRIC = "ndcg@10"


def tuned_vs_base(table: pl.DataFrame, *, split: str = "valid", metric: str = METRIC) -> pl.DataFrame:
    """``group, fine-tuned, base`` (their ``metric``) for ``all`` and every ``type:*`` / ``source:*`` group of
    ``split``, sorted by group; empty when the table lacks either model or the split."""
    rows = table.filter(
        (pl.col("split") == split)
        & pl.col("system").is_in([FINE_TUNED, BASE])
        & (
            pl.col("group").str.starts_with("type:")
            | pl.col("group").str.starts_with("source:")
            | (pl.col("group") == "all")
        )
    )
    wide = rows.pivot(on="system", index="group", values=metric) if rows.height else pl.DataFrame()
    if wide.is_empty() or BASE not in wide.columns or FINE_TUNED not in wide.columns:
        return pl.DataFrame(schema={"group": pl.String, FINE_TUNED: pl.Float64, BASE: pl.Float64})
    return wide.select("group", FINE_TUNED, BASE).sort("group")


def forgetting(table: pl.DataFrame, max_drop: float, *, split: str = "valid", metric: str = METRIC) -> CheckResult:
    """Every ``type:*`` / ``source:*`` group (and ``all``) of ``split`` where the fine-tuned model's ``metric`` is
    below ``(1 - max_drop)`` × the base's fails; a table without the base model (eval.compare_base off) or without
    ``split`` passes with a note saying it was not measured."""
    wide = tuned_vs_base(table, split=split, metric=metric)
    if wide.is_empty():
        return CheckResult(CHECK_NAME, True, f"not measured: no fine-tuned and base rows on {split}")
    bad = [
        f"{group}: {tuned:.4f} < {1 - max_drop:.2f} × base {base:.4f} ({tuned / base - 1:+.1%})"
        for group, tuned, base in wide.iter_rows()
        if base is not None and tuned is not None and base > 0 and tuned < (1 - max_drop) * base
    ]
    description = f"fine-tuned {metric} ≥ {1 - max_drop:.0%} of the base on every {split} query type and source"
    return CheckResult(CHECK_NAME, not bad, description, len(bad), bad[:10])
