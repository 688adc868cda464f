"""Scoring systems side by side: mean metrics per system overall, per query type and per source, plus per-query
ranks for error analysis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import polars as pl

from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.metrics.retrieval import DEFAULT_KS, METRICS, evaluate_rankings, query_metrics

TOP_IDS = 10
PER_QUERY_SCHEMA = pl.Schema(
    {
        "system": pl.String(),
        "split": pl.String(),
        "query_id": pl.String(),
        "query_type": pl.String(),
        "source": pl.String(),
        "first_relevant_rank": pl.Int32(),  # 1-based; null when no relevant passage is within the ranking depth
        "top_ids": pl.List(pl.String()),
        "n_relevant": pl.Int32(),
        "ndcg@10": pl.Float64(),
        "recall@100": pl.Float64(),
    }
)


def metric_names(ks: Iterable[int]) -> list[str]:
    return [f"{m}@{k}" for m in METRICS for k in ks]


def table_schema(ks: Iterable[int]) -> pl.Schema:
    base = {"system": pl.String(), "split": pl.String(), "group": pl.String(), "n_queries": pl.Int64()}
    return pl.Schema({**base, **{name: pl.Float64() for name in metric_names(ks)}})


def query_groups(queries: EvalQueries) -> list[tuple[str, list[str]]]:
    """``all``, then ``type:{query_type}`` and ``source:{source}`` groups (sorted), each with its query ids."""
    groups: list[tuple[str, list[str]]] = [("all", list(queries.ids))]
    for prefix, labels in (("type", queries.types), ("source", [queries.source_of[q] for q in queries.ids])):
        for value in sorted(set(labels)):
            groups.append((f"{prefix}:{value}", [q for q, v in zip(queries.ids, labels, strict=True) if v == value]))
    return groups


def first_relevant_rank(ranked: Sequence[str], relevant: set[str]) -> int | None:
    return next((i + 1 for i, pid in enumerate(ranked) if pid in relevant), None)


def evaluate_systems(
    systems: Mapping[str, Mapping[str, Sequence[str]]],
    queries: EvalQueries,
    ks: Iterable[int] = DEFAULT_KS,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(table, per_query)`` for one split. ``table``: one row per system and group (``all``, ``type:law``,
    ``source:prec`` …) with ``n_queries`` and a column per metric (``ndcg@10`` …). ``per_query``: see
    :data:`PER_QUERY_SCHEMA`."""
    ks = tuple(sorted(set(ks)))
    groups = query_groups(queries)
    types = queries.type_of()
    rows: list[dict[str, object]] = []
    per_query: list[dict[str, object]] = []
    for system, rankings in systems.items():
        for group, qids in groups:
            result = evaluate_rankings(rankings, {q: queries.relevant[q] for q in qids}, ks)
            rows.append(
                {"system": system, "split": queries.split, "group": group, "n_queries": result.n_queries}
                | result.metrics
            )
        for qid in queries.ids:
            relevant = queries.relevant[qid]
            ranked = list(dict.fromkeys(rankings.get(qid, ())))
            scores = query_metrics(ranked, relevant, (10, 100))
            per_query.append(
                {
                    "system": system,
                    "split": queries.split,
                    "query_id": qid,
                    "query_type": types[qid],
                    "source": queries.source_of[qid],
                    "first_relevant_rank": first_relevant_rank(ranked, relevant),
                    "top_ids": ranked[:TOP_IDS],
                    "n_relevant": len(relevant),
                    "ndcg@10": scores["ndcg@10"],
                    "recall@100": scores["recall@100"],
                }
            )
    table = pl.DataFrame(rows, schema=table_schema(ks), orient="row") if rows else pl.DataFrame(schema=table_schema(ks))
    ranks = pl.DataFrame(per_query, schema=PER_QUERY_SCHEMA) if per_query else pl.DataFrame(schema=PER_QUERY_SCHEMA)
    return table, ranks
