"""What a sweep leaves behind: the trials table (Parquet + markdown) and PNG plots, all written atomically.

Plots: the optimization history (every trial's score and the best so far), parameter importances
(:func:`optuna.importance.get_param_importances`, when at least two trials completed and it can be computed), and a
parameter-vs-score scatter per searched setting (a parallel-coordinates view that also works for one trial).
"""

from __future__ import annotations

import io
import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl
from matplotlib.ticker import MaxNLocator, NullFormatter

from lexdpr_pipeline.storage import atomic_write_bytes, atomic_write_text, write_parquet

if TYPE_CHECKING:
    import optuna

_log = logging.getLogger(__name__)
FIXED_COLUMNS = ("number", "state", "value", "best_so_far", "duration_s", "last_step", "retry_of")


def _column(values: list[Any]) -> pl.Series:
    """One param column: its native type when every trial agrees (bool, int, float), else strings."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pl.Series(values, dtype=pl.Boolean)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Series(values, dtype=pl.Int64)
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pl.Series([None if v is None else float(v) for v in values], dtype=pl.Float64)
    return pl.Series([None if v is None else str(v) for v in values], dtype=pl.String)


def trials_frame(
    trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str], direction: str
) -> pl.DataFrame:
    """One row per trial, in trial order: state, score (a pruned trial's is its last intermediate score), the best
    completed score so far, duration, last validation step, searched values, MLflow run, error."""
    rows = sorted(trials, key=lambda t: t.number)
    better = max if direction == "maximize" else min
    best: float | None = None
    cols: dict[str, list[Any]] = {name: [] for name in FIXED_COLUMNS}
    extra: dict[str, list[Any]] = {"adjustments": [], "mlflow_run_id": [], "error": []}
    params: dict[str, list[Any]] = {name: [] for name in param_names}
    for t in rows:
        state = t.state.name
        if state == "FAIL" and t.user_attrs.get("interrupted"):
            state = "INTERRUPTED"
        if t.state.name == "COMPLETE" and t.value is not None:
            best = t.value if best is None else better(best, t.value)
        duration = t.duration.total_seconds() if t.duration is not None else None
        cols["number"].append(t.number)
        cols["state"].append(state)
        cols["value"].append(t.value)
        cols["best_so_far"].append(best)
        cols["duration_s"].append(None if duration is None else round(duration, 1))
        cols["last_step"].append(t.last_step)
        cols["retry_of"].append(t.user_attrs.get("retry_of"))
        for name in param_names:
            params[name].append(t.params.get(name))
        adjustments = t.user_attrs.get("adjustments") or {}
        extra["adjustments"].append(json.dumps(adjustments, sort_keys=True) if adjustments else None)
        extra["mlflow_run_id"].append(t.user_attrs.get("mlflow_run_id"))
        extra["error"].append(t.user_attrs.get("error"))
    schema = {
        "number": pl.Int64,
        "state": pl.String,
        "value": pl.Float64,
        "best_so_far": pl.Float64,
        "duration_s": pl.Float64,
        "last_step": pl.Int64,
        "retry_of": pl.Int64,
    }
    frame = pl.DataFrame({name: pl.Series(cols[name], dtype=schema[name]) for name in FIXED_COLUMNS})
    for name in param_names:
        frame = frame.with_columns(_column(params[name]).alias(name))
    for name, values in extra.items():
        frame = frame.with_columns(pl.Series(name, values, dtype=pl.String))
    return frame


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"


def trials_markdown(frame: pl.DataFrame, metric: str, param_names: Sequence[str], max_rows: int = 60) -> str:
    if frame.is_empty():
        return "_(no trials yet)_"
    header = ["trial", "state", metric, "best so far", *param_names, "last step", "s", "error"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.head(max_rows).iter_rows(named=True):
        cells = [row["number"], row["state"], row["value"], row["best_so_far"]]
        cells += [row.get(name) for name in param_names]
        cells += [row["last_step"], row["duration_s"], row["error"]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows} more trials in the Parquet table_")
    return "\n".join(lines)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())


def plot_history(frame: pl.DataFrame, metric: str, path: Path, title: str = "optimization history") -> Path | None:
    """Score per trial (completed: dots; pruned: their last intermediate score; failed: ticks at the bottom) and
    the best completed score so far."""
    if frame.is_empty():
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    styles = {"COMPLETE": ("o", "tab:blue"), "PRUNED": ("x", "tab:gray")}
    for state, (marker, color) in styles.items():
        part = frame.filter((pl.col("state") == state) & pl.col("value").is_not_null())
        if part.height:
            ax.scatter(part["number"], part["value"], marker=marker, color=color, label=state.lower(), zorder=3)
    best = frame.filter(pl.col("best_so_far").is_not_null())
    if best.height:
        ax.step(best["number"], best["best_so_far"], where="post", color="tab:orange", label="best so far")
    failed = frame.filter(pl.col("state").is_in(["FAIL", "INTERRUPTED"]))
    if failed.height:
        low = frame["value"].drop_nulls().min()
        y = float(low) if low is not None else 0.0  # type: ignore[arg-type]
        ax.scatter(failed["number"], [y] * failed.height, marker="|", s=200, color="tab:red", label="failed")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {metric}")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def param_importances(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's importances over completed trials; None when fewer than two completed or it cannot be computed
    (e.g. every trial drew the same values)."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        _log.info("parameter importances not available: %s", exc)
        return None
    if any("importances will be equal" in str(w.message) for w in caught):
        return None  # too few distinct trials to tell the parameters apart
    clean = {k: float(v) for k, v in importances.items() if not math.isnan(float(v))}
    return clean or None


def plot_importances(importances: dict[str, float], path: Path) -> Path:
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.4), dpi=110)
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (share of the score's variation)")
    ax.set_title("parameter importances")
    return _save(fig, path)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 (else 1-2-3-…-9) ticks inside [lo, hi], at least the two ends."""
    if lo <= 0 or hi <= lo:
        return [lo, hi] if hi != lo else [lo]
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo <= m * 10.0**e <= hi
        ]
        if len(ticks) >= 2:
            return ticks if len(ticks) <= 5 else ticks[:: math.ceil(len(ticks) / 5)]
    return [lo, hi]


def plot_param_scatter(
    frame: pl.DataFrame, param_names: Sequence[str], metric: str, path: Path, log_params: Sequence[str] = ()
) -> Path | None:
    """One panel per searched setting: its value against the score, coloured by trial number (early → late)."""
    done = frame.filter(pl.col("state").is_in(["COMPLETE", "PRUNED"]) & pl.col("value").is_not_null())
    names = [n for n in param_names if n in done.columns and done[n].drop_nulls().len()]
    if not names:
        return None
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), dpi=110, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        part = done.filter(pl.col(name).is_not_null())
        values = part[name]
        if values.dtype in (pl.String, pl.Boolean):
            labels = sorted({str(v) for v in values})
            x = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        else:
            x = values.to_list()
            if name in log_params:
                ax.set_xscale("log")
                ticks = _log_ticks(min(x), max(x))  # matplotlib labels every minor tick of a short log range
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
                ax.xaxis.set_minor_formatter(NullFormatter())
            elif values.n_unique() <= 4:  # a few choices (batch size, accumulation): tick exactly those
                choices = sorted(values.unique().to_list())
                ax.set_xticks(choices, [f"{c:g}" for c in choices])
        pruned = (part["state"] == "PRUNED").to_list()
        for is_pruned in (False, True):
            sel = [i for i, p in enumerate(pruned) if p is is_pruned]
            if not sel:
                continue
            ax.scatter(
                [x[i] for i in sel],
                [part["value"][i] for i in sel],
                c=[part["number"][i] for i in sel],
                cmap="viridis",
                vmin=int(done["number"].min()),
                vmax=int(done["number"].max()),
                marker="v" if is_pruned else "o",
                edgecolors="k",
                linewidths=0.3,
            )
        ax.set_title(name.removeprefix("train."), fontsize=9)
        ax.set_ylabel(metric, fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle("parameters vs score (colour: trial number; ▼ pruned: score when stopped)", fontsize=10)
    return _save(fig, path)


@dataclass
class SweepReport:
    frame: pl.DataFrame
    markdown: str
    table_path: Path
    markdown_path: Path
    plots: dict[str, Path] = field(default_factory=dict)
    importances: dict[str, float] | None = None


def write_report(
    study: optuna.Study,
    out_dir: Path,
    *,
    param_names: Sequence[str],
    metric: str,
    direction: str,
    log_params: Sequence[str] = (),
    plots: bool = True,
) -> SweepReport:
    """``trials.parquet``, ``trials.md`` and (``plots=True``) ``plots/*.png`` under ``out_dir``."""
    out_dir = Path(out_dir)
    frame = trials_frame(study.get_trials(deepcopy=False), param_names, direction)
    markdown = trials_markdown(frame, metric, param_names)
    table = write_parquet(frame, out_dir / "trials.parquet")
    md = atomic_write_text(out_dir / "trials.md", f"# Sweep {study.study_name}: trials\n\n{markdown}\n")
    report = SweepReport(frame, markdown, table, md)
    if not plots:
        return report
    history = plot_history(frame, metric, out_dir / "plots" / "optimization_history.png")
    if history is not None:
        report.plots["optimization_history"] = history
    report.importances = param_importances(study)
    if report.importances:
        report.plots["param_importances"] = plot_importances(report.importances, out_dir / "plots" / "importances.png")
    scatter = plot_param_scatter(frame, param_names, metric, out_dir / "plots" / "params_vs_score.png", log_params)
    if scatter is not None:
        report.plots["params_vs_score"] = scatter
    return report
