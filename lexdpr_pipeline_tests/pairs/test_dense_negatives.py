"""Dense hard-negative mining (sentence-transformers' mine_hard_negatives) with a tiny model on the real slice."""

from pathlib import Path

import polars as pl

from lexdpr_pipeline.models.biencoder import BiEncoder, Template
from lexdpr_pipeline.pairs.negatives import ExclusionIndex, mine_dense_negatives
from lexdpr_pipeline.sources.ids import doc_id_of
from lexdpr_pipeline_tests.pairs.conftest import RealSlice


def test_dense_negatives_respect_exclusions_and_margin(real_slice: RealSlice, tiny_model_dir: Path) -> None:
    model = BiEncoder.load(tiny_model_dir, template=Template.named("e5"))
    pairs = real_slice.pairs.filter(pl.col("query_type") != "law").head(40)
    mined, stats = mine_dense_negatives(pairs, real_slice.merged, model, per_query=3, range_max=30, relative_margin=0.0)
    assert mined.height == pairs.height and stats.queries == pairs.height
    excl = ExclusionIndex(real_slice.merged)
    got = 0
    for row in mined.iter_rows(named=True):
        blocked = excl.exclusions(row["positive_ids"], [*row["positive_doc_ids"], row["group_id"]])
        assert not set(row["negative_ids"]) & blocked
        assert row["query_passage_id"] not in row["negative_ids"]
        docs = [doc_id_of(p) for p in row["negative_ids"]]
        assert len(docs) == len(set(docs)) == len(row["negative_doc_ids"])
        got += len(docs)
    assert got > 0
    assert stats.short_rows == sum(1 for n in mined["negative_ids"] if len(n) < 3)
    # A margin that filters almost everything leaves fewer negatives (reported as short rows, not dropped).
    strict, strict_stats = mine_dense_negatives(
        pairs, real_slice.merged, model, per_query=3, range_max=30, relative_margin=0.999
    )
    assert strict.height == pairs.height
    assert sum(strict["negative_ids"].list.len()) < got and strict_stats.short_rows > stats.short_rows
