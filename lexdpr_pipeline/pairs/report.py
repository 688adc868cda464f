"""The pairs report: what the training data looks like, as a markdown file with PNG histograms.

Written next to the data (``data/reports/training_data/``), attached to the Dagster materialization and printed
by ``lex-dpr analyze-pairs``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from lexdpr_pipeline.citations.table import citation_stats
from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline.storage import atomic_write_bytes, atomic_write_text

SPLITS = ("train", "valid", "test")


@dataclass
class PairsReport:
    markdown: str
    markdown_path: Path
    images: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _save(fig: plt.Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _quantiles(values: pl.Series) -> list[Any]:
    if values.is_empty():
        return ["-"] * 5
    q = [values.quantile(p, "nearest") for p in (0.5, 0.9, 0.99)]
    return [round(float(values.mean()), 1), *[int(v) for v in q], int(values.max())]


def build_pairs_report(
    splits: pl.DataFrame,
    corpus: pl.DataFrame,
    citation_stats: dict[str, Any],
    out_dir: Path,
    *,
    negatives_per_query: int,
    max_seq_length: int,
    tokenizer_name: str,
) -> PairsReport:
    """Compute the statistics, draw the plots and write ``pairs_report.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    frame = splits.with_columns(
        pl.col("positive_ids").list.len().alias("n_pos"), pl.col("negative_ids").list.len().alias("n_neg")
    )
    total = frame.height
    types = frame.group_by("query_type").agg(
        pl.len().alias("queries"),
        pl.col("n_pos").mean().alias("pos_mean"),
        pl.col("n_pos").max().alias("pos_max"),
        pl.col("n_neg").mean().alias("neg_mean"),
        (pl.col("n_neg") < negatives_per_query).sum().alias("short_neg"),
        pl.col("query_n_tokens").median().alias("q_tok_median"),
        pl.col("former_citation").sum().alias("former"),
    )
    types = types.sort("queries", descending=True)
    type_rows = [
        [
            t,
            n,
            f"{n / total:.1%}" if total else "-",
            f"{pm:.2f}",
            px,
            f"{nm:.2f}",
            sn,
            int(qm) if qm is not None else "-",
            fo,
        ]
        for t, n, pm, px, nm, sn, qm, fo in types.iter_rows()
    ]
    per_split = (
        frame.group_by("split", "query_type").len().pivot("query_type", index="split", values="len").fill_null(0)
    )
    split_cols = [c for c in per_split.columns if c != "split"]
    split_rows = []
    for name in SPLITS:
        row = per_split.filter(pl.col("split") == name)
        counts = [int(row[c][0]) if row.height else 0 for c in split_cols]
        groups = frame.filter(pl.col("split") == name)["group_id"].n_unique()
        split_rows.append([name, sum(counts), groups, *counts])

    q_tokens = frame["query_n_tokens"]
    p_tokens = corpus["n_tokens"]
    over_q = int((q_tokens > max_seq_length).sum())
    over_p = int((corpus["n_tokens"] > max_seq_length).sum())
    passages_by_source = corpus.group_by("source").agg(pl.len(), pl.col("doc_id").n_unique()).sort("source")

    images: dict[str, Path] = {}
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([r[0] for r in type_rows], [r[1] for r in type_rows], color="#4a7ab5")
    ax.set_title("queries per type")
    ax.set_ylabel("queries")
    images["query_types"] = _save(fig, out_dir / "query_types.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for qtype in [r[0] for r in type_rows]:
        vals = frame.filter(pl.col("query_type") == qtype)["query_n_tokens"].to_list()
        axes[0].hist(vals, bins=40, alpha=0.5, label=qtype)
    axes[0].axvline(max_seq_length, color="red", linestyle="--", linewidth=1)
    axes[0].set_title(f"query length ({tokenizer_name} tokens)")
    axes[0].legend(fontsize=7)
    for source in passages_by_source["source"].to_list():
        vals = corpus.filter(pl.col("source") == source)["n_tokens"].to_list()
        axes[1].hist(vals, bins=40, alpha=0.5, label=source)
    axes[1].axvline(max_seq_length, color="red", linestyle="--", linewidth=1)
    axes[1].set_title("passage length (tokens)")
    axes[1].legend(fontsize=7)
    images["token_lengths"] = _save(fig, out_dir / "token_lengths.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    axes[0].hist(frame["n_pos"].to_list(), bins=range(0, max(2, int(frame["n_pos"].max() or 1)) + 2), color="#5a9")
    axes[0].set_title("positives per query")
    axes[1].hist(frame["n_neg"].to_list(), bins=range(0, negatives_per_query + 2), color="#c75")
    axes[1].set_title("hard negatives per query")
    images["per_query_counts"] = _save(fig, out_dir / "per_query_counts.png")

    fig, ax = plt.subplots(figsize=(6, 3))
    bottom = [0] * len(SPLITS)
    for i, col in enumerate(split_cols):
        vals = [row[3 + i] for row in split_rows]
        ax.bar(SPLITS, vals, bottom=bottom, label=col)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_title("queries per split and type")
    ax.legend(fontsize=7)
    images["splits"] = _save(fig, out_dir / "splits.png")

    cit_rows = []
    for kind, st in citation_stats.items():
        resolved, tot = st.get("resolved", 0), st.get("total", 0)
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(st.get("by_status", {}).items()) if k != "resolved")
        cit_rows.append([kind, tot, resolved, f"{resolved / tot:.1%}" if tot else "-", reasons])

    md = [
        "# Training pairs report",
        "",
        f"{total} queries, {frame['group_id'].n_unique()} source documents; corpus of {corpus.height} passages. "
        f"Token counts use `{tokenizer_name}`.",
        "",
        "## Queries per type",
        _md_table(
            [
                "type",
                "queries",
                "share",
                "pos/query",
                "max pos",
                "neg/query",
                f"< {negatives_per_query} neg",
                "median q tokens",
                "former-law",
            ],
            type_rows,
        ),
        "",
        "![queries per type](query_types.png)",
        "",
        "## Splits",
        _md_table(["split", "queries", "documents", *split_cols], split_rows),
        "",
        "![splits](splits.png)",
        "",
        "## Lengths",
        _md_table(
            ["what", "mean", "p50", "p90", "p99", "max", f"> {max_seq_length}"],
            [["query tokens", *_quantiles(q_tokens), over_q], ["passage tokens", *_quantiles(p_tokens), over_p]],
        ),
        "",
        _md_table(["source", "passages", "documents"], [list(r) for r in passages_by_source.iter_rows()]),
        "",
        "![token lengths](token_lengths.png)",
        "",
        "![positives and negatives per query](per_query_counts.png)",
        "",
        "## Citation resolution",
        _md_table(["citations", "total", "resolved", "rate", "unresolved by reason"], cit_rows),
        "",
    ]
    markdown = "\n".join(md)
    path = atomic_write_text(out_dir / "pairs_report.md", markdown)
    summary = {
        "queries": total,
        "queries_by_type": {r[0]: r[1] for r in type_rows},
        "split_sizes": {r[0]: r[1] for r in split_rows},
        "short_negative_rows": int((frame["n_neg"] < negatives_per_query).sum()),
        "queries_over_max_seq_length": over_q,
        "passages_over_max_seq_length": over_p,
    }
    return PairsReport(markdown=markdown, markdown_path=path, images=images, summary=summary)


def write_pairs_report(
    splits: pl.DataFrame,
    corpus: pl.DataFrame,
    citations: pl.DataFrame,
    out_dir: Path,
    settings: Settings,
    tokenizer_name: str,
) -> PairsReport:
    """:func:`build_pairs_report` with the numbers the settings fix (negatives per query, max sequence length)."""
    return build_pairs_report(
        splits,
        corpus,
        citation_stats(citations),
        out_dir,
        negatives_per_query=settings.pairs.negatives_per_query,
        max_seq_length=settings.models.max_seq_length,
        tokenizer_name=tokenizer_name,
    )
