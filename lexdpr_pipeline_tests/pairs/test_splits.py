"""assign_splits: the digit rule and the temporal rule, whole groups per split, config validation."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from lexdpr_pipeline.pairs.checks import no_group_spans_splits
from lexdpr_pipeline.pairs.splits import SplitConfig, assign_splits, last_digit_expr, split_sizes
from lexdpr_pipeline_tests.pairs.conftest import RealSlice


def frame(rows: list[tuple[str, str, dt.date | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "query_id": [r[0] for r in rows],
            "group_id": [r[1] for r in rows],
            "group_date": [r[2] for r in rows],
        },
        schema={"query_id": pl.String(), "group_id": pl.String(), "group_date": pl.Date()},
    )


def splits_by_query(pairs: pl.DataFrame, config: SplitConfig) -> dict[str, str]:
    out = assign_splits(pairs, config)
    assert out.select(pairs.columns).equals(pairs)
    return dict(out.select("query_id", "split").iter_rows())


D = dt.date(2020, 1, 1)
PAIRS = frame(
    [
        ("q:prec:212907", "prec:212907", D),
        ("q:cross_law:212907:1", "prec:212907", D),
        ("q:cross_law:212907:2", "prec:212907", D),
        ("q:prec:5558", "prec:5558", D),
        ("q:cross_prec:5558", "prec:5558", D),
        ("q:prec:12349", "prec:12349", D),
        ("q:prec:40", "prec:40", D),
        ("q:law:001706:758", "law:001706:758", None),
        ("q:law:001706:10-2", "law:001706:10-2", None),
        ("q:law:001706:759", "law:001706:759", None),
    ]
)


def test_default_digit_rule() -> None:
    got = splits_by_query(PAIRS, SplitConfig())
    assert got == {
        "q:prec:212907": "train",
        "q:cross_law:212907:1": "train",  # the query id ends in 1, but its group decides
        "q:cross_law:212907:2": "train",
        "q:prec:5558": "valid",
        "q:cross_prec:5558": "valid",
        "q:prec:12349": "test",
        "q:prec:40": "train",
        "q:law:001706:758": "valid",
        "q:law:001706:10-2": "train",  # 제10조의2: the last digit is the branch's
        "q:law:001706:759": "test",
    }


def test_custom_digits() -> None:
    config = SplitConfig(train_digits=(2, 3, 4, 5, 6, 7, 8, 9), valid_digits=(0,), test_digits=(1,))
    got = splits_by_query(PAIRS, config)
    assert {q: got[q] for q in ("q:prec:40", "q:prec:212907", "q:prec:5558", "q:law:001706:10-2")} == {
        "q:prec:40": "valid",
        "q:prec:212907": "train",
        "q:prec:5558": "train",
        "q:law:001706:10-2": "train",
    }
    config = SplitConfig(train_digits=(0, 1, 2, 3, 4, 5), valid_digits=(6, 7), test_digits=(8, 9))
    got = splits_by_query(PAIRS, config)
    assert got["q:prec:212907"] == "valid" and got["q:prec:5558"] == "test" and got["q:prec:12349"] == "test"


def test_last_digit_expr() -> None:
    ids = ["prec:212907", "law:001706:10-2", "law:001706:750#3", "admrul:2100000012345:4", "no digits"]
    got = pl.DataFrame({"id": ids}).select(last_digit_expr("id"))["id"].to_list()
    assert got == [7, 2, 3, 4, None]


def test_temporal_rule() -> None:
    pairs = frame(
        [
            ("old", "prec:1", dt.date(2019, 12, 31)),
            ("old-2", "prec:1", dt.date(2019, 12, 31)),
            ("valid-start", "prec:2", dt.date(2022, 1, 1)),
            ("valid-end", "prec:3", dt.date(2023, 6, 30)),
            ("test-start", "prec:4", dt.date(2023, 7, 1)),
            ("test-late", "prec:5", dt.date(2025, 3, 1)),
            ("undated-law", "law:001706:759", None),
            ("undated-prec", "prec:9", None),
        ]
    )
    config = SplitConfig(mode="temporal", valid_from=dt.date(2022, 1, 1), test_from=dt.date(2023, 7, 1))
    assert splits_by_query(pairs, config) == {
        "old": "train",
        "old-2": "train",
        "valid-start": "valid",
        "valid-end": "valid",
        "test-start": "test",
        "test-late": "test",
        "undated-law": "train",  # the digit rule would say test
        "undated-prec": "train",
    }
    same_day = SplitConfig(mode="temporal", valid_from=dt.date(2023, 7, 1), test_from=dt.date(2023, 7, 1))
    assert "valid" not in set(splits_by_query(pairs, same_day).values())


def test_temporal_rule_keeps_a_group_of_companion_decisions_together_at_its_newest_date() -> None:
    """Companion decisions share a group but not always a date (seen on the sample: 2012-05-10 and 2016-08-24): the
    group goes by its newest, so it never spans splits and training holds nothing dated on/after valid_from."""
    pairs = frame(
        [
            ("older-companion", "prec:7", dt.date(2012, 5, 10)),
            ("newer-companion", "prec:7", dt.date(2016, 8, 24)),
            ("undated-companion", "prec:7", None),
            ("alone", "prec:8", dt.date(2012, 5, 10)),
        ]
    )
    config = SplitConfig(mode="temporal", valid_from=dt.date(2012, 7, 1), test_from=dt.date(2017, 11, 1))
    assert splits_by_query(pairs, config) == {
        "older-companion": "valid",
        "newer-companion": "valid",
        "undated-companion": "valid",
        "alone": "train",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_digits": (0, 1, 2, 3, 4, 5, 6), "valid_digits": (8,), "test_digits": (9,)},  # 7 missing
        {"train_digits": (0, 1, 2, 3, 4, 5, 6, 7, 8), "valid_digits": (8,), "test_digits": (9,)},  # 8 twice
        {"train_digits": (0, 1, 2, 3, 4, 5, 6, 7, 10), "valid_digits": (8,), "test_digits": (9,)},
        {"mode": "temporal"},
        {"mode": "temporal", "valid_from": dt.date(2022, 1, 1)},
        {"mode": "temporal", "test_from": dt.date(2022, 1, 1)},
        {"mode": "temporal", "valid_from": dt.date(2023, 1, 1), "test_from": dt.date(2022, 1, 1)},
        {"mode": "random"},
    ],
)
def test_bad_configs_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SplitConfig(**kwargs)


def test_split_sizes() -> None:
    out = assign_splits(PAIRS, SplitConfig())
    assert split_sizes(out) == {"train": 5, "valid": 3, "test": 2}
    only_train = out.filter(pl.col("split") == "train")
    assert split_sizes(only_train) == {"train": 5, "valid": 0, "test": 0}


@pytest.mark.parametrize(
    "config",
    [
        SplitConfig(),
        SplitConfig(mode="temporal", valid_from=dt.date(2000, 1, 1), test_from=dt.date(2015, 1, 1)),
    ],
    ids=["digit", "temporal"],
)
def test_real_pairs_keep_each_group_in_one_split(real_slice: RealSlice, config: SplitConfig) -> None:
    out = assign_splits(real_slice.pairs, config)
    assert out.height == real_slice.pairs.height
    assert no_group_spans_splits(out).passed
    per_group = out.group_by("group_id").agg(pl.col("split").n_unique().alias("n"), pl.len().alias("queries"))
    assert per_group["n"].max() == 1 and per_group["queries"].max() > 1  # multi-query groups exist and stay whole
    sizes = split_sizes(out)
    assert all(sizes[s] > 0 for s in ("train", "valid", "test")), sizes
    assert sum(sizes.values()) == out.height
