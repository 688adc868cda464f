"""BM25's citation expansion in evaluation: the leak check proves no expansion text comes from a valid/test decision;
``eval.bm25_expansion_weight`` flips the expansion on and off on the same index."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.assets.citation_expansion import ASSET_NAME, expansion_in_use
from lexdpr_pipeline.assets.evaluation import no_heldout_decision_in_training
from lexdpr_pipeline.citations.expansion import EXPANSION_SCHEMA
from lexdpr_pipeline.evaluation.leakage import heldout_leaks
from lexdpr_pipeline.evaluation.retrievers import bm25_index_for
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.resources import project_resources
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline.storage import write_parquet
from lexdpr_pipeline_tests.evaluation.conftest import QUERIES, corpus_frame, splits_frame

CLEAN = [q for q in QUERIES if q["query_id"] != "q:prec:30"]  # as in test_leakage: no train/held-out overlap


def _expansion(decisions: dict[str, list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "doc_id": d,
                "expansion_text": "판시",
                "n_decisions": len(ids),
                "n_citing": len(ids),
                "decision_ids": ids,
                "cutoff": "temporal: decision_date < 2019-01-01",
            }
            for d, ids in decisions.items()
        ],
        schema=EXPANSION_SCHEMA,
        orient="row",
    )


def test_an_expansion_from_train_decisions_passes() -> None:
    result, counts = heldout_leaks(
        splits_frame(CLEAN), corpus_frame(), expansion=_expansion({"law:1:750": ["prec:41"]})
    )
    assert result.passed, result.examples
    assert counts["expansion_leaks"] == 0


def test_an_expansion_built_from_a_heldout_decision_fails() -> None:
    expansion = _expansion({"law:1:750": ["prec:41", "prec:20"], "law:1:103": ["prec:41"]})
    result, counts = heldout_leaks(splits_frame(CLEAN), corpus_frame(), expansion=expansion)
    assert not result.passed and counts["expansion_leaks"] == 1
    assert result.examples == ["law:1:750 (citation_expansion): built from prec:20, held-out decision prec:20"]
    assert "citation-expansion" in result.description


def test_without_the_expansion_the_check_is_what_it_was() -> None:
    _, counts = heldout_leaks(splits_frame(CLEAN), corpus_frame())
    assert "expansion_leaks" not in counts


@dg.asset
def merged_corpus() -> pl.DataFrame:
    return corpus_frame()


@dg.asset
def dataset_splits() -> pl.DataFrame:
    return splits_frame(CLEAN)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_the_blocking_check_reads_the_expansion_when_bm25_uses_it(tmp_path: Path, weight: float) -> None:
    settings = load_settings(
        overrides=[
            f"paths.data_dir={tmp_path / 'data'}",
            "pairs.split_mode=temporal",
            f"index.bm25_expansion_weight={weight}",
        ],
        environ={},
    )
    store = ArtifactStore.from_settings(settings)
    write_parquet(_expansion({"law:1:750": ["prec:10"]}), store.table_path(ASSET_NAME))  # prec:10 is a test decision
    result = dg.materialize(
        [merged_corpus, dataset_splits, no_heldout_decision_in_training],
        resources=project_resources(settings),
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    # weight 0: BM25 never reads the expansion, so a stale table is not checked; weight 1: it is, and it leaks.
    assert evaluation.passed == (weight == 0)
    if weight:
        assert evaluation.metadata["expansion_leaks"].value == 1
    else:
        assert "expansion_leaks" not in evaluation.metadata
    assert (expansion_in_use(settings, store) is None) == (weight == 0)


def test_eval_weight_flips_the_expansion_on_the_same_index(mini_corpus: pl.DataFrame) -> None:
    ids, texts = mini_corpus["passage_id"].to_list(), mini_corpus["text"].to_list()
    expansions = ["축구 경기장 관람석 추락 사고" if pid == ids[0] else "" for pid in ids]
    full = BM25Index.build(ids, texts, expansions=expansions, expansion_weight=1.0)
    assert bm25_index_for(mini_corpus, full, progress=False) is full  # None: the index's own weight
    off = bm25_index_for(mini_corpus, full, progress=False, expansion_weight=0)
    assert off.expansion_weight == 0 and off.search("축구 경기장 관람석") == []
    on = bm25_index_for(mini_corpus, full, progress=False, expansion_weight=2.0)
    assert on.search("축구 경기장 관람석")[0][0] == ids[0]
    with pytest.raises(ValueError, match="without an expansion field"):
        bm25_index_for(mini_corpus.head(5), full, progress=False, expansion_weight=1.0)  # a sample: no field
