"""scripts/choose_interpolation.py's rule: train.interpolate chosen on valid, among the mixes that keep the base."""

from __future__ import annotations

import importlib.util

import polars as pl

from lexdpr_pipeline.evaluation.run import BASE, FINE_TUNED
from lexdpr_pipeline_tests.conftest import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location(
        "choose_interpolation", REPO_ROOT / "scripts" / "choose_interpolation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(tuned: dict[str, float], base: dict[str, float], split: str = "valid") -> pl.DataFrame:
    rows = [
        {"system": system, "split": split, "group": group, "n_queries": 10, "ndcg@10": value}
        for system, scores in ((FINE_TUNED, tuned), (BASE, base))
        for group, value in scores.items()
    ]
    return pl.DataFrame(rows)


BASE_SCORES = {"all": 0.30, "type:cross_law": 0.05, "type:prec": 0.80, "source:prec": 0.60}


def _mix(overall: float, law: float, prec: float) -> pl.DataFrame:
    return _table({"all": overall, "type:cross_law": law, "type:prec": prec, "source:prec": prec * 0.75}, BASE_SCORES)


def test_the_best_passing_mix_wins_and_test_rows_are_never_read() -> None:
    script = _script()
    results = {
        1.0: _mix(0.40, 0.25, 0.70),  # best overall, but prec −12.5% vs base
        0.7: _mix(0.37, 0.20, 0.79),  # −1.25%: passes
        0.5: _mix(0.33, 0.12, 0.795),  # −0.6%: passes, lower overall
    }
    assert script.choose_alpha(results, 0.02) == (0.7, True)
    assert script.worst_drop(results[1.0]) < -0.12
    # a test split that prefers 1.0 changes nothing
    results = {a: pl.concat([t, _table({"all": 0.99 if a == 1.0 else 0.0}, {"all": 0.1}, "test")])
               for a, t in results.items()}  # fmt: skip
    assert script.choose_alpha(results, 0.02) == (0.7, True)


def test_without_a_passing_mix_the_least_forgetting_one_is_returned_as_failed() -> None:
    script = _script()
    results = {1.0: _mix(0.40, 0.25, 0.60), 0.5: _mix(0.35, 0.15, 0.72)}
    assert script.choose_alpha(results, 0.02) == (0.5, False)
    assert script.choose_alpha({0.8: _mix(0.3, 0.2, 0.80), 0.6: _mix(0.3, 0.2, 0.80)}, 0.02) == (0.8, True)  # tie


def test_a_mix_at_or_above_the_base_everywhere_beats_a_better_one_that_only_passes() -> None:
    script = _script()
    results = {
        0.4: _mix(0.36, 0.10, 0.79),  # −1.25% on prec: passes the 2% check, best overall
        0.3: _mix(0.34, 0.08, 0.80),  # level with the base on prec, above it elsewhere
        0.2: _mix(0.32, 0.07, 0.81),  # above the base everywhere, lower overall
    }
    assert script.choose_alpha(results, 0.02) == (0.3, True)
    assert script.choose_alpha({a: results[a] for a in (0.4,)}, 0.02) == (0.4, True)  # none keeps the base: 2% rule
