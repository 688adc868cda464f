"""validate_dense (training-time early stopping) and the whole library run with its report."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.evaluation.report import CHART_FILE, REPORT_FILE
from lexdpr_pipeline.evaluation.run import BM25, EvalPlan, run_evaluation
from lexdpr_pipeline.evaluation.validation import validate_dense
from lexdpr_pipeline.models.biencoder import BiEncoder


def test_validate_dense_is_deterministic_and_bounded(tiny_model_dir: Path, mini_splits, mini_corpus) -> None:
    model = BiEncoder.load(tiny_model_dir)
    kwargs = {"max_queries": 3, "corpus_max_passages": 12, "ks": (1, 5, 10)}
    first = validate_dense(model, mini_splits, mini_corpus, **kwargs)
    second = validate_dense(model, mini_splits, mini_corpus.reverse(), **kwargs)
    assert {"ndcg@10", "recall@10", "mrr@10", "accuracy@1", "map@5", "precision@1"} <= set(first)
    assert all(0.0 <= v <= 1.0 for v in first.values())
    assert first == second
    with pytest.raises(ValueError, match="no query"):
        validate_dense(model, mini_splits, mini_corpus, split="nope")


def test_run_writes_ranks_and_report(tiny_model_dir: Path, tmp_path: Path, mini_splits, mini_corpus) -> None:
    plan = EvalPlan(ks=(1, 10), splits=("valid", "test", "missing"), corpus_max_passages=15)
    run = run_evaluation(
        {"tiny": lambda: BiEncoder.load(tiny_model_dir)},
        mini_splits,
        mini_corpus,
        plan,
        out_dir=tmp_path,
        progress=False,
    )
    assert run.corpus_size == 15
    assert run.queries_per_split == {"valid": 4, "test": 5}
    assert run.skipped["missing"] == {"split without queries": 1}
    plain = {"tiny", BM25, "hybrid rrf (tiny+bm25)", "hybrid weighted (tiny+bm25)"}
    served = {"served, unfiltered (tiny+bm25)"}  # the engine's own choice by candidate sources (no source filter)
    assert set(run.table["system"]) == plain | {f"{s} + linking" for s in plain} | served
    assert run.hybrid_parts == {"hybrid rrf (tiny+bm25)": ("tiny", BM25), "hybrid weighted (tiny+bm25)": ("tiny", BM25)}
    assert set(run.table.filter(pl.col("group") == "all")["split"]) == {"valid", "test"}
    assert (tmp_path / CHART_FILE).read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / REPORT_FILE).read_text(encoding="utf-8")
    assert "### test" in md and "| system | queries | ndcg@10" in md and "type:cross_law" in md
    # A sampled corpus says so in the report (and EvalRun.corpus: MLflow's eval_corpus tag).
    assert run.corpus == "sampled" and "sampled: every positive + a seeded uniform sample, cap 15" in md
    assert "positives + seeded sample" in md
    # The hybrid ≥ parts table covers every test query type, and any shortfall is listed by name.
    check = run.hybrid_check
    assert check is not None
    assert set(check.filter(pl.col("split") == "test")["query_type"]) == {
        "all",
        "law",
        "prec",
        "cross_law",
        "cross_prec",
    }
    below = run.hybrid_below_parts("test")
    assert len(below) == check.filter((pl.col("split") == "test") & ~pl.col("ge_parts")).height
    assert ("**Hybrid below a part**" in md) == bool(below)
    ranks = pl.read_parquet(run.ranks_path)
    assert ranks.height == 9 * 9 and ranks["first_relevant_rank"].drop_nulls().min() >= 1


def test_run_reuses_cached_passage_vectors(tiny_model_dir: Path, tmp_path: Path, mini_splits, mini_corpus) -> None:
    """A second evaluation with the same model encodes no passage (only queries) and scores identically; a changed
    passage is the only one encoded again."""
    from lexdpr_pipeline.index.embeddings import EmbeddingCache

    encoded: list[int] = []

    def load() -> BiEncoder:
        model = BiEncoder.load(tiny_model_dir)
        original = model.encode_passages

        def spy(texts, **kwargs):
            encoded.append(len(texts))
            return original(texts, **kwargs)

        model.encode_passages = spy  # type: ignore[method-assign]
        return model

    plan = EvalPlan(ks=(1, 10), splits=("valid", "test"))
    caches = {"tiny": EmbeddingCache(tmp_path / "cache", "tiny-v1")}
    first = run_evaluation(
        {"tiny": load}, mini_splits, mini_corpus, plan, bm25=False, progress=False, embedding_caches=caches
    )
    assert encoded == [mini_corpus.height]
    second = run_evaluation(
        {"tiny": load}, mini_splits, mini_corpus, plan, bm25=False, progress=False, embedding_caches=caches
    )
    assert encoded == [mini_corpus.height]  # nothing encoded the second time
    assert second.table.equals(first.table)

    changed = mini_corpus.with_columns(
        pl.when(pl.col("passage_id") == "law:1:751")
        .then(pl.lit("민법 제751조 바뀐 조문"))
        .otherwise(pl.col("text"))
        .alias("text")
    )
    from lexdpr_pipeline.text.passages import content_hash

    changed = changed.with_columns(
        pl.col("text").map_elements(content_hash, return_dtype=pl.String).alias("content_hash")
    )
    run_evaluation({"tiny": load}, mini_splits, changed, plan, bm25=False, progress=False, embedding_caches=caches)
    assert encoded == [mini_corpus.height, 1]
    # Without a cache every passage is encoded, as before.
    run_evaluation({"tiny": load}, mini_splits, mini_corpus, plan, bm25=False, progress=False)
    assert encoded[-1] == mini_corpus.height
