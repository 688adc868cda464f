"""The training-data workflows that the ``training_pairs`` / ``dataset_splits`` assets call
(:mod:`lexdpr_pipeline.pairs.build`), on the real slice of the pairs tests, without Dagster."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.artifacts import BaseModelManifest, Bm25IndexManifest
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.pairs.build import build_training_pairs, cap_queries, report_args, split_config
from lexdpr_pipeline.pairs.report import model_max_seq_length, write_pairs_report
from lexdpr_pipeline.pairs.splits import assign_splits
from lexdpr_pipeline.settings import PairsSettings, TextSettings, TrainSettings
from lexdpr_pipeline.text.chunking import token_counter
from lexdpr_pipeline_tests.pairs.conftest import RealSlice


def test_a_capped_run_keeps_the_same_sample_whatever_the_row_order() -> None:
    pairs = pl.DataFrame({"query_id": [f"q:{i:03d}" for i in range(50)], "n": list(range(50))})
    capped = cap_queries(pairs, 10)
    assert capped.height == 10 and capped["query_id"].is_sorted()
    assert capped.equals(cap_queries(pairs.reverse(), 10))  # a hash sample, not the first rows
    assert capped["query_id"].to_list() != pairs["query_id"].head(10).to_list()
    assert cap_queries(pairs, None).equals(pairs) and cap_queries(pairs, 50).equals(pairs)


def _args(real_slice: RealSlice) -> tuple[pl.DataFrame, ...]:
    s = real_slice
    return s.statutes, s.admin_rules, s.precedents, s.citations, s.merged


def test_bm25_pairs_with_token_counts_and_their_report(
    tmp_path: Path,
    real_slice: RealSlice,
    real_bm25: BM25Index,
    tiny_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = Bm25IndexManifest(str(real_bm25.save(tmp_path / "bm25")), real_slice.merged.height, "bm25-hash")
    base = BaseModelManifest("tiny", str(tiny_model_dir), None, "tiny-1")
    pairs_cfg = PairsSettings(max_queries=40, negatives_per_query=3, bm25_candidates=20)
    text = TextSettings(tokenizer="model")  # the base model's tokenizer: the manifest's folder
    with caplog.at_level(logging.WARNING, logger="lexdpr_pipeline.pairs.build"):
        built = build_training_pairs(*_args(real_slice), pairs_cfg, text, base, index)

    pairs = built.pairs
    assert pairs["query_id"].to_list() == cap_queries(real_slice.pairs, 40)["query_id"].to_list()
    assert built.query_stats.as_dict() == real_slice.query_stats.as_dict()  # counted before the cap
    assert built.negative_stats.queries == 40 and built.negative_stats.wanted_per_query == 3
    for positives, negatives in pairs.select("positive_ids", "negative_ids").iter_rows():
        assert len(negatives) <= 3 and not set(positives) & set(negatives)
    assert sum(len(n) for n in pairs["negative_ids"]) > 0
    counter = token_counter("model", tiny_model_dir)
    expected = [len(s) for s in counter.spans_many(pairs["query_text"].to_list())]
    assert pairs["query_n_tokens"].dtype == pl.Int32 and pairs["query_n_tokens"].to_list() == expected
    short = built.negative_stats.short_rows
    assert (f"{short} queries have fewer than 3 hard negatives" in caplog.text) == (short > 0)

    report = write_pairs_report(
        assign_splits(pairs, split_config(pairs_cfg)),
        real_slice.merged,
        real_slice.citations,
        tmp_path / "report",
        pairs=pairs_cfg,
        train=TrainSettings(max_seq_length=16),
        **report_args(text, base),
    )
    assert report.markdown_path.parent == tmp_path / "report" and report.markdown_path.is_file()
    assert f"Token counts use `hf:{tiny_model_dir.name}`" in report.markdown  # the base model's tokenizer
    limit = model_max_seq_length(tiny_model_dir)
    assert limit is not None and f"> {limit} (model)" in report.markdown  # and its length limit
    hub = BaseModelManifest("hub", None, "org/model", "hub-1")  # no folder: whitespace counts, no model limit
    assert report_args(TextSettings(tokenizer="whitespace"), hub) == {
        "tokenizer_name": "whitespace",
        "model_max_seq_length": None,
    }


def test_split_config_from_the_settings() -> None:
    digit = split_config(PairsSettings(valid_digits=[8], test_digits=[9]))
    assert digit.mode == "digit" and digit.valid_digits == (8,) and digit.valid_from is None
    temporal = split_config(PairsSettings(split_mode="temporal", valid_from="2019-01-01", test_from="2021-01-01"))
    assert temporal.valid_from == dt.date(2019, 1, 1) and temporal.test_from == dt.date(2021, 1, 1)


def test_the_dense_miner_uses_the_base_model_not_the_bm25_index(
    tmp_path: Path, real_slice: RealSlice, tiny_model_dir: Path
) -> None:
    absent = Bm25IndexManifest(str(tmp_path / "no-index"), real_slice.merged.height, "none")  # loading it fails
    base = BaseModelManifest("tiny", str(tiny_model_dir), None, "tiny-1")
    pairs_cfg = PairsSettings(max_queries=8, negatives_per_query=2, negative_miner="dense", dense_range_max=10)
    built = build_training_pairs(*_args(real_slice), pairs_cfg, TextSettings(tokenizer="whitespace"), base, absent)
    assert built.pairs.height == 8 and built.negative_stats.wanted_per_query == 2
    for positives, negatives in built.pairs.select("positive_ids", "negative_ids").iter_rows():
        assert len(negatives) <= 2 and not set(positives) & set(negatives)
    words = [len(t.split()) for t in built.pairs["query_text"]]
    assert built.pairs["query_n_tokens"].to_list() == words
