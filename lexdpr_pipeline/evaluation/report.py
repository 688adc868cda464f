"""The evaluation report: side-by-side markdown tables and a PNG bar chart, written atomically to a folder."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from lexdpr_pipeline.storage import atomic_write_bytes, atomic_write_text

REPORT_FILE = "evaluation_report.md"
CHART_FILE = "ndcg_recall_by_type.png"
PREFERRED_HEADLINE = ("ndcg@10", "recall@100", "mrr@10", "accuracy@1", "recall@10", "accuracy@5")


@dataclass
class EvalReport:
    markdown: str
    markdown_path: Path
    chart_path: Path | None


def headline_metrics(table: pl.DataFrame) -> list[str]:
    """The headline columns present in ``table`` (``ndcg@10``, ``recall@100``, ``mrr@10``, ``accuracy@1`` …);
    with unusual ``ks``, nDCG and recall at the largest k."""
    present = [m for m in PREFERRED_HEADLINE if m in table.columns]
    if present:
        return present
    ks = sorted({int(c.split("@")[1]) for c in table.columns if c.startswith("ndcg@")})
    return [f"ndcg@{ks[-1]}", f"recall@{ks[-1]}"] if ks else []


def chart_metrics(table: pl.DataFrame) -> list[str]:
    """nDCG@10 and recall@100 when measured, else the nDCG/recall headline columns."""
    head = headline_metrics(table)
    wanted = [m for m in ("ndcg@10", "recall@100") if m in table.columns]
    return wanted or [m for m in head if m.startswith(("ndcg@", "recall@"))][:2]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown_tables(table: pl.DataFrame) -> str:
    """Per split: systems × headline metrics overall, then per query type and per source."""
    metrics = headline_metrics(table)
    parts: list[str] = []
    for split in table["split"].unique(maintain_order=True).to_list():
        rows = table.filter(pl.col("split") == split)
        overall = rows.filter(pl.col("group") == "all")
        parts.append(f"### {split}")
        parts.append(_md_table(["system", "queries", *metrics], overall.select("system", "n_queries", *metrics).rows()))
        by_group = rows.filter(pl.col("group") != "all")
        if by_group.height:
            parts.append("")
            parts.append(f"#### {split}: by query type and source")
            parts.append(
                _md_table(
                    ["group", "system", "queries", *metrics],
                    by_group.select("group", "system", "n_queries", *metrics).rows(),
                )
            )
        parts.append("")
    return "\n".join(parts).strip() or "_(no queries evaluated)_"


def _save(fig: plt.Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def bar_chart(table: pl.DataFrame, path: Path) -> Path | None:
    """Grouped bars: rows = splits, columns = nDCG@10 / recall@100; per query type (and all), one bar per system."""
    metrics = chart_metrics(table)
    rows = table.filter((pl.col("group") == "all") | pl.col("group").str.starts_with("type:"))
    if not metrics or rows.is_empty():
        return None
    splits = rows["split"].unique(maintain_order=True).to_list()
    systems = rows["system"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(len(splits), len(metrics), figsize=(5.5 * len(metrics), 3.4 * len(splits)), squeeze=False)
    width = 0.8 / len(systems)
    for r, split in enumerate(splits):
        part = rows.filter(pl.col("split") == split)
        groups = part["group"].unique(maintain_order=True).to_list()
        labels = [g.removeprefix("type:") for g in groups]
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            for s, system in enumerate(systems):
                values = dict(part.filter(pl.col("system") == system).select("group", metric).iter_rows())
                xs = [i + (s - (len(systems) - 1) / 2) * width for i in range(len(groups))]
                ax.bar(xs, [values.get(g) or 0.0 for g in groups], width, label=system)
            ax.set_xticks(range(len(groups)), labels)
            ax.set_ylim(0, 1)
            ax.set_title(f"{split}: {metric}")
            ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, names, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(systems), fontsize=9)
    return _save(fig, path)


def write_report(
    table: pl.DataFrame,
    out_dir: Path,
    *,
    notes: Mapping[str, Any] | None = None,
    title: str = "Retrieval evaluation",
) -> EvalReport:
    """Write ``evaluation_report.md`` (``notes`` as a key/value list on top, then :func:`markdown_tables`) and
    the bar chart into ``out_dir``. The file links the chart by its relative name; for Dagster metadata the asset
    inlines it (``assets.common.inline_images``)."""
    out_dir = Path(out_dir)
    chart = bar_chart(table, out_dir / CHART_FILE)
    md = [f"# {title}", ""]
    md += [f"- **{key}**: {value}" for key, value in (notes or {}).items()]
    md += ["", markdown_tables(table), ""]
    if chart is not None:
        md += [f"![nDCG and recall per query type]({chart.name})", ""]
    markdown = "\n".join(md)
    return EvalReport(markdown, atomic_write_text(out_dir / REPORT_FILE, markdown), chart)
