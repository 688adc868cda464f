"""The pairs report: what the training data looks like, as a markdown file with PNG histograms.

Written next to the data (``data/reports/training_data/``) by :func:`write_pairs_report`, which both the
``dataset_splits`` asset (attached to its materialization) and ``lex-dpr analyze-pairs`` (printed) call. Token
lengths are counted against the lengths that matter: ``train.max_seq_length`` (where training truncates) and, when
the base model's folder says, the model's own limit (what a saved model encodes at most).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from lexdpr_pipeline.citations.table import citation_stats
from lexdpr_pipeline.pairs.negatives import REMOVED_COLUMN, RULES
from lexdpr_pipeline.settings import PairsSettings, TrainSettings
from lexdpr_pipeline.storage import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from lexdpr_pipeline.artifacts import ArtifactStore

SPLITS = ("train", "valid", "test")
REPORT_FOLDER = "training_data"  # under data/reports/
REPORT_FILE = "pairs_report.md"


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


def report_dir(store: ArtifactStore) -> Path:
    """Where the pairs report lives: ``data/reports/training_data``."""
    return store.report_path(REPORT_FOLDER)


def _json_int(path: Path, key: str) -> int | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000 else None


def model_max_seq_length(model_dir: Path | None) -> int | None:
    """The most tokens a sentence-transformers model folder encodes, read from its files as sentence-transformers
    does without loading the model: ``max_seq_length`` of ``sentence_bert_config.json`` (older saves), else the
    tokenizer's ``model_max_length`` capped by the config's ``max_position_embeddings``. None when it does not say."""
    if model_dir is None or not Path(model_dir).is_dir():
        return None
    module = Path(model_dir)
    try:  # the Transformer module: the first entry of modules.json ("" = the folder itself, or e.g. 0_Transformer)
        first = json.loads((module / "modules.json").read_text(encoding="utf-8"))[0]
        module = module / str(first.get("path", ""))
    except (OSError, ValueError, LookupError, AttributeError, TypeError):
        pass
    legacy = _json_int(module / "sentence_bert_config.json", "max_seq_length")
    if legacy is not None:
        return legacy
    limits = [
        _json_int(module / "tokenizer_config.json", "model_max_length"),
        _json_int(module / "config.json", "max_position_embeddings"),
    ]
    known = [n for n in limits if n is not None]
    return min(known) if known else None


def _limits(train_max_seq_length: int, model_max_seq_length: int | None) -> list[tuple[str, str, int]]:
    """(summary key suffix, column label, tokens) of each length the report counts against."""
    limits = [("train_max_seq_length", f"> {train_max_seq_length} (train)", train_max_seq_length)]
    if model_max_seq_length is not None:
        limits.append(("model_max_seq_length", f"> {model_max_seq_length} (model)", model_max_seq_length))
    return limits


def build_pairs_report(
    splits: pl.DataFrame,
    corpus: pl.DataFrame,
    citation_stats: dict[str, Any],
    out_dir: Path,
    *,
    negatives_per_query: int,
    train_max_seq_length: int,
    tokenizer_name: str,
    model_max_seq_length: int | None = None,
) -> PairsReport:
    """Compute the statistics, draw the plots and write ``pairs_report.md`` into ``out_dir``.

    Query and passage lengths are counted against ``train_max_seq_length`` (training truncates there) and, when
    known, ``model_max_seq_length`` (the base model's own limit: what the saved model encodes at most).
    """
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
    types = types.sort(["queries", "query_type"], descending=[True, False])  # ties by name: a stable report
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
    split_cols = [row[0] for row in types.iter_rows() if row[0] in per_split.columns]  # the types table's order
    split_rows = []
    for name in SPLITS:
        row = per_split.filter(pl.col("split") == name)
        counts = [int(row[c][0]) if row.height else 0 for c in split_cols]
        groups = frame.filter(pl.col("split") == name)["group_id"].n_unique()
        split_rows.append([name, sum(counts), groups, *counts])

    q_tokens = frame["query_n_tokens"]
    p_tokens = corpus["n_tokens"]
    limits = _limits(train_max_seq_length, model_max_seq_length)
    over_q = [int((q_tokens > n).sum()) for _, _, n in limits]
    over_p = [int((p_tokens > n).sum()) for _, _, n in limits]
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
    _limit_lines(axes[0], limits)
    axes[0].set_title(f"query length ({tokenizer_name} tokens)")
    axes[0].legend(fontsize=7)
    for source in passages_by_source["source"].to_list():
        vals = corpus.filter(pl.col("source") == source)["n_tokens"].to_list()
        axes[1].hist(vals, bins=40, alpha=0.5, label=source)
    _limit_lines(axes[1], limits)
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

    removed_headers, removed_rows, removed_totals = _removed_table(frame, [r[0] for r in type_rows])

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
            ["what", "mean", "p50", "p90", "p99", "max", *(label for _, label, _ in limits)],
            [["query tokens", *_quantiles(q_tokens), *over_q], ["passage tokens", *_quantiles(p_tokens), *over_p]],
        ),
        "",
        _md_table(["source", "passages", "documents"], [list(r) for r in passages_by_source.iter_rows()]),
        "",
        "![token lengths](token_lengths.png)",
        "",
        "![positives and negatives per query](per_query_counts.png)",
        "",
        *_removed_section(removed_headers, removed_rows),
        "## Citation resolution",
        _md_table(["citations", "total", "resolved", "rate", "unresolved by reason"], cit_rows),
        "",
    ]
    markdown = "\n".join(md)
    path = atomic_write_text(out_dir / REPORT_FILE, markdown)
    summary: dict[str, Any] = {
        "queries": total,
        "queries_by_type": {r[0]: r[1] for r in type_rows},
        "split_sizes": {r[0]: r[1] for r in split_rows},
        "short_negative_rows": int((frame["n_neg"] < negatives_per_query).sum()),
    }
    if removed_totals is not None:
        summary["negatives_removed_by_rule"] = removed_totals
    for (suffix, _, _), queries, passages in zip(limits, over_q, over_p, strict=True):
        summary[f"queries_over_{suffix}"] = queries
        summary[f"passages_over_{suffix}"] = passages
    return PairsReport(markdown=markdown, markdown_path=path, images=images, summary=summary)


def _removed_table(frame: pl.DataFrame, types: list[str]) -> tuple[list[str], list[list[Any]], dict[str, int] | None]:
    """Mined candidates each false-negative rule removed (``negatives_removed``), per query type and in all: the
    table's headers and rows, and the totals by rule (None for a table mined before the column existed)."""
    if REMOVED_COLUMN not in frame.columns:
        return [], [], None
    sums = frame.group_by("query_type").agg(
        *(pl.col(REMOVED_COLUMN).struct.field(rule).sum().alias(rule) for rule in RULES)
    )
    per_type = {row["query_type"]: row for row in sums.iter_rows(named=True)}
    totals = {rule: int(sum(int(r[rule] or 0) for r in per_type.values())) for rule in RULES}
    rows = [[rule, *(int(per_type[t][rule] or 0) for t in types if t in per_type), totals[rule]] for rule in RULES]
    return ["rule", *(t for t in types if t in per_type), "all"], rows, totals


def _removed_section(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not headers:
        return []
    return [
        "## Hard negatives removed (false-negative rules)",
        "Mined candidates passed over, by the first rule that rejected them (`pairs.negative_citation_filter`, "
        "`pairs.negative_max_overlap`, `pairs.dense_relative_margin`): a cited or co-citing document, a near "
        "duplicate, or another passage of a positive's or the query's own document is likely a false negative.",
        "",
        _md_table(headers, rows),
        "",
    ]


def _limit_lines(ax: Any, limits: list[tuple[str, str, int]]) -> None:
    for (_, label, tokens), style in zip(limits, ("--", ":"), strict=False):
        ax.axvline(tokens, color="red", linestyle=style, linewidth=1, label=label)


def write_pairs_report(
    splits: pl.DataFrame,
    corpus: pl.DataFrame,
    citations: pl.DataFrame,
    out_dir: Path,
    *,
    pairs: PairsSettings,
    train: TrainSettings,
    tokenizer_name: str,
    model_max_seq_length: int | None = None,
) -> PairsReport:
    """The pairs report of the materialized tables (``dataset_splits``, ``merged_corpus``, ``precedent_citations``):
    :func:`build_pairs_report` with the numbers the settings fix (``pairs.negatives_per_query``,
    ``train.max_seq_length``). ``tokenizer_name``: what the token counts were measured with;
    ``model_max_seq_length``: the base model's limit (:func:`model_max_seq_length`), when known."""
    return build_pairs_report(
        splits,
        corpus,
        citation_stats(citations),
        out_dir,
        negatives_per_query=pairs.negatives_per_query,
        train_max_seq_length=train.max_seq_length,
        tokenizer_name=tokenizer_name,
        model_max_seq_length=model_max_seq_length,
    )
