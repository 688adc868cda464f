"""Training curves: loss per logging step and validation nDCG@10, as one PNG (Dagster metadata and MLflow)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lexdpr_pipeline.storage import atomic_write_bytes


def plot_training_history(history: Sequence[dict[str, Any]], path: Path, title: str = "training") -> Path | None:
    """``trainer.state.log_history`` → PNG at ``path``; None when there is nothing to plot."""
    loss = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    valid = [(h["step"], h["eval_valid_ndcg@10"]) for h in history if "eval_valid_ndcg@10" in h]
    if not loss and not valid:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    if loss:
        ax.plot(*zip(*loss, strict=True), color="tab:blue", label="train loss")
        ax.set_ylabel("loss")
    ax.set_xlabel("step")
    ax.set_title(title)
    if valid:
        ax2 = ax.twinx()
        ax2.plot(*zip(*valid, strict=True), "o-", color="tab:orange", label="valid nDCG@10")
        ax2.set_ylabel("valid nDCG@10")
        ax2.legend(loc="upper right")
    if loss:
        ax.legend(loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())
