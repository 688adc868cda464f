"""The training-data workflow of the ``training_pairs`` asset and the settings-to-config glue of ``dataset_splits``
(no Dagster here).

:func:`build_training_pairs`: the enabled query types (:mod:`.queries`), a deterministic cap for demo runs, hard
negatives by the configured miner (BM25 over the stored index, or the base model), and each query's token count.
:func:`split_config` turns the ``pairs`` settings into the :mod:`.splits` config; :func:`report_args` measures the
pairs report (:mod:`.report`) with the base model's tokenizer and length limit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, Bm25IndexManifest
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.pairs.negatives import NegativeStats, mine_bm25_negatives, mine_dense_negatives
from lexdpr_pipeline.pairs.queries import QueryConfig, QueryStats, build_queries
from lexdpr_pipeline.pairs.report import model_max_seq_length
from lexdpr_pipeline.pairs.splits import SplitConfig
from lexdpr_pipeline.settings import PairsSettings, TextSettings
from lexdpr_pipeline.text.chunking import token_counter, token_counter_name

CAP_SEED = 7  # the hash seed of the deterministic sample a capped run keeps
_log = logging.getLogger(__name__)


def query_config(p: PairsSettings) -> QueryConfig:
    return QueryConfig(
        query_types=tuple(p.query_types),
        split_numbered_holdings=p.split_numbered_holdings,
        include_former_citations=p.include_former_citations,
    )


def split_config(p: PairsSettings) -> SplitConfig:
    return SplitConfig(
        mode=p.split_mode,
        train_digits=tuple(p.train_digits),
        valid_digits=tuple(p.valid_digits),
        test_digits=tuple(p.test_digits),
        valid_from=dt.date.fromisoformat(p.valid_from) if p.split_mode == "temporal" else None,
        test_from=dt.date.fromisoformat(p.test_from) if p.split_mode == "temporal" else None,
    )


def cap_queries(pairs: pl.DataFrame, max_queries: int | None) -> pl.DataFrame:
    """A deterministic sample (by a hash of the query id) when the run is capped, e.g. for demos."""
    if max_queries is None or pairs.height <= max_queries:
        return pairs
    return pairs.sort(pl.col("query_id").hash(seed=CAP_SEED)).head(max_queries).sort("query_id")


def negative_rules(p: PairsSettings, citations: pl.DataFrame) -> dict[str, Any]:
    """The false-negative rules' arguments of both miners (``pairs.negative_citation_filter``,
    ``pairs.negative_max_overlap``)."""
    return {"citations": citations if p.negative_citation_filter else None, "max_overlap": p.negative_max_overlap}


def base_model_dir(base_model: BaseModelManifest) -> Path | None:
    """The base model's local folder (None for a hub id): where its tokenizer and length limit are read."""
    return Path(base_model.path) if base_model.path else None


@dataclass
class TrainingPairs:
    pairs: pl.DataFrame  # one row per query: PAIR_SCHEMA + negative_ids, negative_doc_ids, negatives_removed,
    # query_n_tokens
    query_stats: QueryStats
    negative_stats: NegativeStats


def build_training_pairs(
    raw_statutes: pl.DataFrame,
    raw_admin_rules: pl.DataFrame,
    raw_precedents: pl.DataFrame,
    citations: pl.DataFrame,
    corpus: pl.DataFrame,
    pairs: PairsSettings,
    text: TextSettings,
    base_model: BaseModelManifest,
    bm25_index: Bm25IndexManifest,
    *,
    log: logging.Logger | None = None,
) -> TrainingPairs:
    """Queries with citation-linked positives, capped at ``pairs.max_queries``, with ``pairs.negatives_per_query``
    hard negatives from ``pairs.negative_miner`` (``bm25``: ``bm25_index``; ``dense``: ``base_model``) and
    ``query_n_tokens`` counted with ``text.tokenizer``. Queries short of negatives are kept and reported; the
    false-negative rules (:func:`negative_rules`) count what they removed."""
    log = log or _log
    frame, qstats = build_queries(raw_statutes, raw_admin_rules, raw_precedents, citations, corpus, query_config(pairs))
    frame = cap_queries(frame, pairs.max_queries)
    rules = negative_rules(pairs, citations)
    if pairs.negative_miner == "dense":
        frame, nstats = mine_dense_negatives(
            frame,
            corpus,
            BiEncoder.load(base_model.load_target()),
            per_query=pairs.negatives_per_query,
            range_max=pairs.dense_range_max,
            relative_margin=pairs.dense_relative_margin,
            **rules,
        )
    else:
        frame, nstats = mine_bm25_negatives(
            frame,
            corpus,
            BM25Index.load(bm25_index.path),
            per_query=pairs.negatives_per_query,
            candidates=pairs.bm25_candidates,
            **rules,
        )
    counter = token_counter(text.tokenizer, base_model_dir(base_model))
    spans = counter.spans_many(frame["query_text"].to_list())
    frame = frame.with_columns(pl.Series("query_n_tokens", [len(s) for s in spans], pl.Int32))
    log.info(f"hard-negative candidates removed by rule: {nstats.removed_by_rule()}")
    if nstats.short_rows:
        log.warning(f"{nstats.short_rows} queries have fewer than {pairs.negatives_per_query} hard negatives")
    return TrainingPairs(frame, qstats, nstats)


def report_args(text: TextSettings, base_model: BaseModelManifest) -> dict[str, Any]:
    """The ``tokenizer_name`` / ``model_max_seq_length`` arguments of :func:`~.report.write_pairs_report` when token
    counts use ``text.tokenizer`` and the length limit is ``base_model``'s (``dataset_splits``' report)."""
    model_dir = base_model_dir(base_model)
    return {
        "tokenizer_name": token_counter_name(text.tokenizer, model_dir),
        "model_max_seq_length": model_max_seq_length(model_dir),
    }
