"""scripts/eval_sparse.py's choice rule: the expansion weight is chosen on valid only, within a per-type loss cap."""

from __future__ import annotations

import importlib.util

import polars as pl

from lexdpr_pipeline_tests.conftest import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location("eval_sparse", REPO_ROOT / "scripts" / "eval_sparse.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(split: str, weight: float, overall: float, law: float, prec: float) -> list[dict]:
    base = {"system": "bm25", "split": split, "n_queries": 10, "recall@100": 0.5, "expansion_weight": weight}
    return [
        {**base, "group": "all", "ndcg@10": overall},
        {**base, "group": "type:cross_law", "ndcg@10": law},
        {**base, "group": "type:prec", "ndcg@10": prec},
    ]


def test_the_weight_is_the_best_valid_one_whose_types_stay_within_the_cap() -> None:
    choose = _script().choose_weight
    valid = [
        *_rows("valid", 0.0, 0.30, 0.10, 0.80),
        *_rows("valid", 0.5, 0.33, 0.14, 0.79),  # prec −1.25%: allowed
        *_rows("valid", 2.0, 0.38, 0.24, 0.70),  # best overall, but prec −12.5%
    ]
    # Test prefers 2.0 by far: it must not matter.
    test = [*_rows("test", 0.0, 0.1, 0.1, 0.1), *_rows("test", 0.5, 0.1, 0.1, 0.1), *_rows("test", 2.0, 0.9, 0.9, 0.9)]
    table = pl.DataFrame([*valid, *test])
    assert choose(table, 0.02) == 0.5
    assert choose(table, 0.20) == 2.0  # a looser cap lets the best overall through
    flipped = pl.DataFrame([*valid, *_rows("test", 0.5, 0.0, 0.0, 0.0)])
    assert choose(flipped, 0.02) == 0.5
