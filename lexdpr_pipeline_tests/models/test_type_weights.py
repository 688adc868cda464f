"""``train.type_weights``: training rows sampled by query type (mix reported, seeded, 0 drops a type), and the sweep
searching one weight as ``train.type_weights.<type>``."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from lexdpr_pipeline.models.training import effective_type_weights, training_rows, weighted_query_sample
from lexdpr_pipeline.pairs.queries import PAIR_SCHEMA
from lexdpr_pipeline.settings import Settings, TrainSettings, with_overrides
from lexdpr_pipeline.sweeps.runner import SweepResult, baseline_params, trial_settings
from lexdpr_pipeline.sweeps.space import SweepSpec, param_value, set_param
from lexdpr_pipeline.text.passages import PASSAGE_SCHEMA

COUNTS = {"law": 80, "prec": 60, "cross_law": 40, "cross_prec": 20}


def _data() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train queries of four types (COUNTS), each with one positive and one negative; two prec queries without a
    negative (skipped, so never part of the sample); a few valid queries that training must ignore."""
    corpus_rows, pair_rows = [], []
    n = 0
    for qtype, count in COUNTS.items():
        for i in range(count + 2):
            pos, neg = f"law:1:{n}", f"law:1:{n + 1}"
            n += 2
            for pid in (pos, neg):
                row = {name: None for name in PASSAGE_SCHEMA.names()}
                row.update(passage_id=pid, doc_id=pid, source="law", section="article", chunk_index=0, text=pid)
                corpus_rows.append(row)
            no_negative = qtype == "prec" and i >= count
            pair_rows.append(
                {
                    "query_id": f"q:{qtype}:{i}",
                    "query_type": qtype,
                    "query_text": f"{qtype} {i}",
                    "group_id": pos,
                    "group_date": None,
                    "query_passage_id": None,
                    "positive_ids": [pos],
                    "positive_doc_ids": [pos],
                    "former_citation": False,
                    "negative_ids": [] if no_negative else [neg],
                    "split": "valid" if (i >= count and not no_negative) else "train",
                }
            )
    schema = {**dict(PAIR_SCHEMA), "negative_ids": pl.List(pl.String()), "split": pl.String()}
    return pl.DataFrame(pair_rows, schema=schema), pl.DataFrame(corpus_rows, schema=PASSAGE_SCHEMA)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return _data()


def _cfg(**kw) -> TrainSettings:
    return TrainSettings(**{"hard_negatives": 1, **kw})


def test_without_weights_the_mix_is_reported_unchanged(data):
    rows, stats = training_rows(*data, _cfg())
    assert stats.rows_before == stats.by_type == COUNTS and rows.height == 200
    assert stats.skipped == {"fewer than 1 hard negatives": 2}
    mix = stats.as_dict()["mix"]
    assert mix["type_weights"] is None and mix["rows_after"] == COUNTS
    assert mix["share_after"]["law"] == round(80 / 200, 4)


def test_weights_change_the_mix_as_asked(data):
    rows, stats = training_rows(*data, _cfg(type_weights={"law": 0.25, "prec": 0.5}))
    assert stats.rows_before == COUNTS
    # The heaviest weight (1.0: the unnamed cross types) keeps everything; the others keep weight/max of theirs.
    assert stats.by_type == {"law": 20, "prec": 30, "cross_law": 40, "cross_prec": 20}
    assert Counter(rows["query_type"]) == stats.by_type and stats.rows == rows.height == 110
    assert stats.type_weights == {"law": 0.25, "prec": 0.5, "cross_law": 1.0, "cross_prec": 1.0}
    assert stats.as_dict()["mix"]["rows_before"] == COUNTS
    assert stats.queries == 202  # considered (the two without negatives are skipped, never sampled)
    # Relative weights: doubling all of them changes nothing.
    rows2, _ = training_rows(*data, _cfg(type_weights={"law": 0.5, "prec": 1.0, "cross_law": 2, "cross_prec": 2}))
    assert rows2.equals(rows)


def test_weight_zero_drops_a_type_and_all_zero_is_an_error(data):
    rows, stats = training_rows(*data, _cfg(type_weights={"prec": 0.0}))
    assert "prec" not in set(rows["query_type"]) and stats.by_type == {"law": 80, "cross_law": 40, "cross_prec": 20}
    with pytest.raises(ValueError, match="drops every query type"):
        training_rows(*data, _cfg(type_weights=dict.fromkeys(COUNTS, 0.0)))


def test_weighted_sample_is_seeded_and_nested(data):
    cfg = _cfg(type_weights={"prec": 0.5})
    a, _ = training_rows(*data, cfg)
    b, _ = training_rows(*data, cfg)
    assert a.equals(b)  # deterministic
    other, _ = training_rows(*data, _cfg(type_weights={"prec": 0.5}, seed=7))
    prec = lambda rows: set(rows.filter(pl.col("query_type") == "prec")["query_id"])  # noqa: E731
    assert len(prec(other)) == len(prec(a)) == 30 and prec(other) != prec(a)  # the seed picks which
    smaller, _ = training_rows(*data, _cfg(type_weights={"prec": 0.25}))
    assert prec(smaller) < prec(a)  # a smaller weight keeps a subset: comparable runs


def test_budget_shrinks_every_type_in_proportion(data):
    rows, stats = training_rows(*data, _cfg(type_weights={"law": 0.25, "prec": 0.5}, max_train_queries=50))
    # Targets 20/30/40/20 scaled by 50/110, floors 9/13/18/9, the one left over to the largest remainder (prec).
    assert stats.by_type == {"law": 9, "prec": 14, "cross_law": 18, "cross_prec": 9} and rows.height == 50


def test_equal_weights_are_the_unweighted_rows(data):
    plain, _ = training_rows(*data, _cfg(max_train_queries=50))
    same, stats = training_rows(*data, _cfg(type_weights={"law": 1.0}, max_train_queries=50))
    assert same.equals(plain) and stats.type_weights is None
    assert effective_type_weights({"law": 3.0}, ["law"]) is None
    assert effective_type_weights({"law": 0.5}, ["law", "prec"]) == {"law": 0.5, "prec": 1.0}


def test_weighted_query_sample_rows_per_query_move_together(data):
    splits, corpus = data
    two = splits.with_columns(pl.col("positive_ids").list.concat(pl.col("negative_ids")))  # two "positives"
    rows, stats = training_rows(two, corpus, _cfg(type_weights={"law": 0.5}, positives_per_query=2, hard_negatives=0))
    assert stats.rows_before["law"] == 160 and stats.by_type["law"] == 80
    assert set(Counter(rows.filter(pl.col("query_type") == "law")["query_id"]).values()) == {2}
    assert weighted_query_sample({"a": ["x", "y"], "b": []}, {"a": 1.0, "b": 1.0}, None, 1) == {"x", "y"}


# ----------------------------------------------------------------------------------------------------------- sweep


def _spec(params: dict, **kw) -> SweepSpec:
    return SweepSpec.model_validate({"name": "w", "strategy": "grid", "params": params, **kw})


def test_sweep_accepts_one_entry_of_type_weights():
    spec = _spec({"train.type_weights.prec": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5}})
    assert spec.grid_points() == [{"train.type_weights.prec": v} for v in (0.0, 0.5, 1.0)]
    for bad, why in [
        ("train.type_weights.foo", "one entry of train.type_weights"),
        ("train.type_weights", "one entry of train.type_weights"),
        ("train.learning_rate.x", "has no entries"),
    ]:
        with pytest.raises(ValueError, match=why):
            _spec({bad: {"type": "categorical", "choices": [0.5]}})


def test_trial_settings_and_baseline_for_a_type_weight():
    spec = _spec(
        {
            "train.type_weights.prec": {"type": "categorical", "choices": [0.25, 1.0]},
            "train.learning_rate": {"type": "categorical", "choices": [2e-5]},
        }
    )
    base = Settings()
    assert baseline_params(base, spec) == ({"train.type_weights.prec": 1.0, "train.learning_rate": 2e-5}, "")
    trial, _ = trial_settings(base, spec, {"train.type_weights.prec": 0.25, "train.learning_rate": 2e-5})
    assert trial.train.type_weights == {"prec": 0.25} and base.train.type_weights is None
    with_law = base.model_copy(update={"train": TrainSettings(type_weights={"law": 0.2})})
    trial, _ = trial_settings(with_law, spec, {"train.type_weights.prec": 0.25, "train.learning_rate": 2e-5})
    assert trial.train.type_weights == {"law": 0.2, "prec": 0.25}  # the other entries stay
    assert param_value(trial.train, "train.type_weights.cross_law") == 1.0  # unnamed: weight 1.0
    train: dict = {"type_weights": None}
    set_param(train, "train.type_weights.law", 0.0)
    assert train == {"type_weights": {"law": 0.0}}


def test_best_overrides_of_a_type_weight_apply_as_settings():
    result = SweepResult.__new__(SweepResult)
    result.best_params, result.best_adjustments = {"train.type_weights.prec": 0.25}, {}
    overrides = result.best_overrides()
    assert overrides == ["train.type_weights.prec=0.25"]
    assert with_overrides(Settings(), overrides).train.type_weights == {"prec": 0.25}
