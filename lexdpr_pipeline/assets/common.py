"""What every table asset does on output: a content-hash DataVersion and the standard metadata."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lexdpr_pipeline.sources.records import Skipped
from lexdpr_pipeline.storage import frame_content_hash, write_parquet

COMPUTE_TAG = "lexdpr/compute"
MODEL_STEP_TAGS = {COMPUTE_TAG: "model"}  # torch steps: limited by schedule.model_step_concurrency within a run
#: Standard metadata (every table asset; `lex-dpr status` shows them): row count and wall time of the step.
ROWS_KEY = "rows"
WALL_TIME_KEY = "wall_time_s"
#: Row count of an artifact asset whose output is a manifest (embeddings, indexes), shown where a table has ROWS_KEY.
PASSAGES_KEY = "passages"


def _cell(value: Any, width: int = 48) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value))
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_preview(frame: pl.DataFrame, columns: Iterable[str], n: int = 5) -> str:
    cols = [c for c in columns if c in frame.columns]
    if not cols or frame.is_empty():
        return "_(no rows)_"
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(n).select(cols).iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def count_table(frame: pl.DataFrame, by: str) -> str:
    if frame.is_empty() or by not in frame.columns:
        return "_(no rows)_"
    counts = frame.group_by(by).len().sort(["len", by], descending=[True, False])
    lines = [f"| {by} | rows |", "|---|---|"]
    lines += [f"| {_cell(k)} | {v} |" for k, v in counts.iter_rows()]
    return "\n".join(lines)


_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
# ![alt](target) whose target is a plain relative path (no scheme such as http: or data:)
_RELATIVE_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>(?![a-zA-Z][a-zA-Z0-9+.-]*:)[^)\s]+)\)")


def image_markdown(name: str, path: Path) -> str:
    """``![name](data:image/png;base64,…)``: an image that renders in Dagster's markdown metadata view, which
    cannot follow a relative link to a file next to a report."""
    mime = _IMAGE_TYPES.get(Path(path).suffix.lower(), "image/png")
    return f"![{name}](data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()})"


def inline_images(markdown: str, base_dir: Path) -> str:
    """``markdown`` with every relative image link (``![chart](chart.png)``, resolved against ``base_dir``, the
    report's folder) replaced by the image itself as a data URI (:func:`image_markdown`), for Dagster metadata. The
    report file on disk keeps its relative links; a link to a missing file or of an unknown type is left as it is."""

    def embed(m: re.Match[str]) -> str:
        path = Path(base_dir) / m["target"]
        if path.suffix.lower() not in _IMAGE_TYPES or not path.is_file():
            return m[0]
        return image_markdown(m["alt"], path)

    return _RELATIVE_IMAGE.sub(embed, markdown)


def write_skips(skipped: list[Skipped], path: Path) -> dict[str, dg.MetadataValue]:
    """Persist what was skipped (so nothing is silently dropped) and summarize it as metadata."""
    frame = pl.DataFrame(
        {"ref": [s.ref for s in skipped], "reason": [s.reason for s in skipped]},
        schema={"ref": pl.String, "reason": pl.String},
    )
    write_parquet(frame, path)
    meta: dict[str, dg.MetadataValue] = {
        "skipped": dg.MetadataValue.int(frame.height),
        "skipped_report": dg.MetadataValue.path(str(path)),
    }
    if frame.height:
        reasons = frame.with_columns(pl.col("reason").str.split(":").list.first().alias("reason"))
        meta["skipped_by_reason"] = dg.MetadataValue.md(count_table(reasons, "reason"))
    return meta


def table_output(
    frame: pl.DataFrame,
    *,
    started: float,
    preview_columns: Iterable[str],
    metadata: Mapping[str, Any] | None = None,
) -> dg.Output[pl.DataFrame]:
    """Wrap a frame with a content-hash DataVersion so unchanged outputs never make downstream stale."""
    version = frame_content_hash(frame)
    meta: dict[str, Any] = {
        ROWS_KEY: dg.MetadataValue.int(frame.height),
        "content_hash": version,
        "preview": dg.MetadataValue.md(markdown_preview(frame, preview_columns)),
        **(metadata or {}),
        WALL_TIME_KEY: dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
    }
    return dg.Output(frame, data_version=dg.DataVersion(version), metadata=meta)
