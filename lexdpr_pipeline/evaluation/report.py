"""The evaluation report: side-by-side markdown tables and a PNG bar chart, written atomically to a folder."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from lexdpr_pipeline.storage import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from lexdpr_pipeline.evaluation.fusion_tuning import FusionTuning
    from lexdpr_pipeline.evaluation.link_tuning import LinkTuning

REPORT_FILE = "evaluation_report.md"
HYBRID_METRIC = "ndcg@10"
HYBRID_CHECK_SCHEMA = pl.Schema(
    {
        "split": pl.String(),
        "query_type": pl.String(),  # a query type, or "all"
        "hybrid": pl.String(),
        "hybrid_score": pl.Float64(),
        "dense": pl.String(),
        "dense_score": pl.Float64(),
        "bm25": pl.String(),
        "bm25_score": pl.Float64(),
        "best_part": pl.String(),  # the better of its parts: the one the hybrid must reach
        "best_part_score": pl.Float64(),
        "ge_parts": pl.Boolean(),  # hybrid >= each of its components (to 4 decimals, as reported)
    }
)
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


def hybrid_vs_parts(
    table: pl.DataFrame, parts: Mapping[str, tuple[str, str]], metric: str = HYBRID_METRIC
) -> pl.DataFrame:
    """Per split, query type (and ``all``) and hybrid system: its ``metric`` against each of its two parts
    (``parts``: hybrid → (dense system, BM25 system)); ``ge_parts`` compares at the reported 4 decimals."""
    rows: list[dict[str, Any]] = []
    if metric not in table.columns:
        return pl.DataFrame(schema=HYBRID_CHECK_SCHEMA)
    groups = table.filter((pl.col("group") == "all") | pl.col("group").str.starts_with("type:"))
    value = {(r["split"], r["group"], r["system"]): r[metric] for r in groups.iter_rows(named=True)}
    keys = sorted({(s, g) for s, g, _ in value}, key=lambda sg: (sg[0], sg[1] != "all", sg[1]))
    for split, group in keys:
        for hybrid, (dense, bm25) in parts.items():
            h, d, b = (value.get((split, group, x)) for x in (hybrid, dense, bm25))
            if h is None or d is None or b is None:
                continue
            best_name, best = (dense, d) if d >= b else (bm25, b)
            rows.append(
                {
                    "split": split,
                    "query_type": group.removeprefix("type:"),
                    "hybrid": hybrid,
                    "hybrid_score": h,
                    "dense": dense,
                    "dense_score": d,
                    "bm25": bm25,
                    "bm25_score": b,
                    "best_part": best_name,
                    "best_part_score": best,
                    "ge_parts": round(h, 4) >= round(best, 4),
                }
            )
    return pl.DataFrame(rows, schema=HYBRID_CHECK_SCHEMA) if rows else pl.DataFrame(schema=HYBRID_CHECK_SCHEMA)


def fusion_section(
    fusion: Mapping[str, FusionTuning], check: pl.DataFrame | None, below: Sequence[str], split: str = "test"
) -> list[str]:
    """The report's hybrid sections: the fusion chosen on valid per dense model and source group, and per query
    type on ``split`` whether each hybrid reaches both of its parts (with the list of where it does not)."""
    rows = []
    for system, tuning in fusion.items():
        for group, best in tuning.best.items():
            rrf, weighted = tuning.by_method["rrf"][group], tuning.by_method["weighted"][group]
            rows.append(
                [
                    system,
                    group,
                    best.fusion,
                    best.rrf_k,
                    best.dense_weight,
                    "—" if rrf.valid_score is None else rrf.valid_score,
                    "—" if weighted.valid_score is None else weighted.valid_score,
                    best.n_queries,
                ]
            )
    chosen_on = {t.chosen_on for t in fusion.values()}
    metric = next(iter(fusion.values())).metric if fusion else HYBRID_METRIC
    out = [
        f"### Hybrid fusion, chosen on {', '.join(sorted(chosen_on))} by {metric} (never on test)",
        "Source group of the gold answers: law = law/admrul/cross_law queries, prec = prec/cross_prec, all = every "
        "query (searches that mix sources). Each hybrid system uses its own method's tuned value per group.",
        "",
        _md_table(
            [
                "dense model",
                "group",
                "best fusion",
                "rrf_k",
                "dense_weight",
                f"valid {metric} rrf",
                f"valid {metric} weighted",
                "valid queries",
            ],
            rows,
        ),
        "",
    ]
    if check is not None and check.height:
        part = check.filter(pl.col("split") == split)
        if part.height:
            out += [
                f"### Hybrid ≥ its parts ({split}, {HYBRID_METRIC}, per query type)",
                _md_table(
                    ["query type", "system", "hybrid", "dense", "bm25", "hybrid ≥ parts"],
                    [
                        [
                            r["query_type"],
                            r["hybrid"],
                            r["hybrid_score"],
                            r["dense_score"],
                            r["bm25_score"],
                            "yes" if r["ge_parts"] else "NO",
                        ]
                        for r in part.iter_rows(named=True)
                    ],
                ),
                "",
                (
                    "**Hybrid below a part**: " + "; ".join(below)
                    if below
                    else f"Every hybrid reaches both of its parts on every query type of {split}."
                ),
                "",
            ]
    return out


def linking_section(
    table: pl.DataFrame,
    linking: Mapping[str, LinkTuning],
    shares: pl.DataFrame | None,
    best_system: str | None,
    split: str = "test",
) -> list[str]:
    """The report's citation-linking sections: the linking chosen on valid per system and source group, then for
    ``best_system`` per query type on ``split`` (else the last split there is): nDCG@10 / Recall@100 without and
    with linking, and the share of queries with a resolved link."""
    from lexdpr_pipeline.evaluation.link_tuning import linked_name

    rows = []
    for system, tuning in linking.items():
        for group, c in tuning.by_group.items():
            mode = c.citation_linking
            rows.append(
                [
                    system,
                    group,
                    mode,
                    "—" if mode == "off" else c.link_weight,
                    "—" if mode == "off" else ("yes" if c.link_law_names else "no"),
                    "—" if c.valid_score_off is None else c.valid_score_off,
                    "—" if c.valid_score is None else c.valid_score,
                    c.n_queries,
                    c.n_linked,
                ]
            )
    tuning = next(iter(linking.values()), None)
    metric = tuning.metric if tuning else HYBRID_METRIC
    chosen_on = ", ".join(sorted({t.chosen_on for t in linking.values()})) or "valid"
    out = [
        f"### Query citation linking, chosen on {chosen_on} by {metric} (never on test)",
        "The statutes and decisions a query cites (민법 제750조, 2008다12345) fused into each system's ranking "
        "(`+ linking` rows): boost = cited documents first (weight ≥ 1), list = their own list fused by RRF, "
        "law names = a law named without an article boosts its retrieved articles. Chosen per source group of the "
        "gold answers (law = law/admrul/cross_law, prec = prec/cross_prec, all = every query); a cited document "
        "counts with its passages, never the query's own decision.",
        "",
        _md_table(
            [
                "system",
                "group",
                "linking",
                "weight",
                "law names",
                f"valid {metric} without",
                f"valid {metric} with",
                "valid queries",
                "with a link",
            ],
            rows,
        ),
        "",
    ]
    if best_system is None:
        return out
    splits = table["split"].unique(maintain_order=True).to_list()
    if split not in splits:
        split = splits[-1] if splits else split
    metrics = [m for m in ("ndcg@10", "recall@100") if m in table.columns] or chart_metrics(table)
    part = table.filter(
        (pl.col("split") == split) & ((pl.col("group") == "all") | pl.col("group").str.starts_with("type:"))
    )
    value = {(r["group"], r["system"]): r for r in part.iter_rows(named=True)}
    share = {}
    if shares is not None:
        share = {r["query_type"]: r for r in shares.filter(pl.col("split") == split).iter_rows(named=True)}
    with_name = linked_name(best_system)
    lines = []
    for group in part["group"].unique(maintain_order=True).to_list():
        plain, linked = value.get((group, best_system)), value.get((group, with_name))
        if plain is None or linked is None:
            continue
        qtype = group.removeprefix("type:")
        sh = share.get(qtype, {})
        cells: list[Any] = [qtype, plain["n_queries"], sh.get("linked_share", "—"), sh.get("law_name_share", "—")]
        for m in metrics:
            cells += [plain[m], linked[m], f"{linked[m] - plain[m]:+.4f}"]
        lines.append(cells)
    headers = ["query type", "queries", "share with a resolved link", "share naming a law only"]
    for m in metrics:
        headers += [f"{m} without", f"{m} with", "Δ"]
    out += [
        f"### With vs without linking: {best_system} ({split}, per query type)",
        "The system whose `+ linking` variant scores best overall on valid. Shares: queries with ≥ 1 article/case "
        "reference resolved in the eval corpus; queries naming a law without an article.",
        "",
        _md_table(headers, lines),
        "",
    ]
    return out


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
    sections: Sequence[str] = (),
) -> EvalReport:
    """Write ``evaluation_report.md`` (``notes`` as a key/value list on top, then :func:`markdown_tables`, then the
    ``sections`` lines, e.g. :func:`fusion_section`) and the bar chart into ``out_dir``. The file links the chart
    by its relative name; for Dagster metadata the asset inlines it (``assets.common.inline_images``)."""
    out_dir = Path(out_dir)
    chart = bar_chart(table, out_dir / CHART_FILE)
    md = [f"# {title}", ""]
    md += [f"- **{key}**: {value}" for key, value in (notes or {}).items()]
    md += ["", markdown_tables(table), ""]
    md += list(sections)
    if chart is not None:
        md += [f"![nDCG and recall per query type]({chart.name})", ""]
    markdown = "\n".join(md)
    return EvalReport(markdown, atomic_write_text(out_dir / REPORT_FILE, markdown), chart)


def document_section(table: pl.DataFrame) -> list[str]:
    """The report's "as served" section (:mod:`.documents`): per split, every system's nDCG@10 (Recall@100) overall
    and per query type, with rankings collapsed to one hit per document."""
    metric, recall = HYBRID_METRIC, "recall@100"
    if metric not in table.columns:
        return []
    out = [
        "### As served: one hit per document",
        "The same rankings collapsed to their documents (the engine shows one hit per statute article or decision), "
        "relevant = the gold documents. The tables above score passages, where several passages of one decision "
        "can fill the top 10.",
        "",
    ]
    for split in table["split"].unique(maintain_order=True).to_list():
        part = table.filter(
            (pl.col("split") == split) & ((pl.col("group") == "all") | pl.col("group").str.starts_with("type:"))
        )
        groups = part["group"].unique(maintain_order=True).to_list()
        value = {(r["system"], r["group"]): r for r in part.iter_rows(named=True)}
        rows = []
        for system in part["system"].unique(maintain_order=True).to_list():
            cells: list[Any] = [system]
            for g in groups:
                r = value.get((system, g))
                if r is None:
                    cells.append("—")
                else:
                    extra = f" ({r[recall]:.3f})" if recall in r else ""
                    cells.append(f"{r[metric]:.3f}{extra}")
            rows.append(cells)
        suffix = f" ({recall})" if recall in table.columns else ""
        headers = ["system", *(f"{g.removeprefix('type:')}: {metric}{suffix}" for g in groups)]
        out += [f"#### {split}", "", _md_table(headers, rows), ""]
    return out
