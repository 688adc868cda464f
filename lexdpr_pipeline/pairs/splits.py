"""Train/valid/test splits that never leak one decision across splits.

``digit`` (the original LexDPR rule): the last digit of the query's *group* decides — train 0–7, valid 8,
test 9 by default. The group is the document the query was derived from (a precedent's ``prec:`` id for every
precedent-derived query, the article for statute queries), so all queries from one decision share a split.

``temporal``: valid/test are the most recent decisions by 선고일자 (cut-off dates in config; a group of companion
decisions goes by its newest date), because users deploy on next year's cases and a random split flatters a model.
Queries without a date (statute/admin-rule heading queries) go to train.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import polars as pl


@dataclass(frozen=True)
class SplitConfig:
    mode: Literal["digit", "temporal"] = "digit"
    train_digits: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    valid_digits: tuple[int, ...] = (8,)
    test_digits: tuple[int, ...] = (9,)
    valid_from: dt.date | None = None  # temporal: decisions on/after this date → valid (until test_from)
    test_from: dt.date | None = None  # temporal: decisions on/after this date → test

    def __post_init__(self) -> None:
        if self.mode == "digit":
            digits = [*self.train_digits, *self.valid_digits, *self.test_digits]
            if sorted(digits) != list(range(10)):
                raise ValueError(f"split digits must cover 0-9 exactly once, got {sorted(digits)}")
        elif self.mode == "temporal":
            if self.valid_from is None or self.test_from is None or self.valid_from > self.test_from:
                raise ValueError("temporal split needs valid_from <= test_from")
        else:
            raise ValueError(f"unknown split mode {self.mode!r}")


def last_digit_expr(column: str) -> pl.Expr:
    """The last decimal digit in a string id (``prec:212907`` → 7, ``law:001706:10-2`` → 2)."""
    return pl.col(column).str.extract(r"(\d)\D*$", 1).cast(pl.Int8)


def assign_splits(pairs: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """Add a ``split`` column (train | valid | test) to the pairs table."""
    if config.mode == "digit":
        digit = last_digit_expr("group_id")
        split = (
            pl.when(digit.is_in(list(config.valid_digits)))
            .then(pl.lit("valid"))
            .when(digit.is_in(list(config.test_digits)))
            .then(pl.lit("test"))
            .otherwise(pl.lit("train"))
        )
    else:
        # One date per group: companion decisions (one group) can carry different dates; the group takes its newest,
        # so no training query comes from a decision dated on/after valid_from and no group spans two splits.
        date = pl.col("group_date").max().over("group_id")
        split = (
            pl.when(date.is_not_null() & (date >= config.test_from))
            .then(pl.lit("test"))
            .when(date.is_not_null() & (date >= config.valid_from))
            .then(pl.lit("valid"))
            .otherwise(pl.lit("train"))
        )
    return pairs.with_columns(split.alias("split"))


def split_sizes(splits: pl.DataFrame) -> dict[str, int]:
    counts = dict(splits.group_by("split").len().iter_rows())
    return {name: int(counts.get(name, 0)) for name in ("train", "valid", "test")}
