"""The sweep summary's plots: readable axes, pruned trials told apart."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.sweeps.report import _log_ticks, plot_param_scatter


def test_log_ticks_are_few_and_inside_the_range() -> None:
    assert _log_ticks(1.3e-5, 8.25e-5) == pytest.approx([2e-5, 5e-5])
    ticks = _log_ticks(0.022, 0.0924)  # one 1-2-5 tick only → 1…9 mantissas, thinned
    assert 2 <= len(ticks) <= 5 and all(0.022 <= t <= 0.0924 for t in ticks)
    assert _log_ticks(0.031, 0.039) == [0.031, 0.039]  # no round tick inside: the ends
    assert _log_ticks(1e-4, 1e-4) == [1e-4]


def test_param_scatter_draws_complete_and_pruned_trials(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "number": [0, 1, 2, 3],
            "state": ["COMPLETE", "PRUNED", "COMPLETE", "FAIL"],
            "value": [0.85, 0.78, 0.86, None],
            "train.learning_rate": [5e-5, 1.3e-5, 3.6e-5, 9e-5],
            "train.batch_size": [32, 32, 16, 16],
        }
    )
    path = plot_param_scatter(
        frame, ["train.learning_rate", "train.batch_size"], "ndcg@10", tmp_path / "p.png", ["train.learning_rate"]
    )
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    failed_only = frame.filter(pl.col("state") == "FAIL")
    assert plot_param_scatter(failed_only, ["train.batch_size"], "ndcg@10", tmp_path / "q.png") is None
