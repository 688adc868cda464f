"""Report images in Dagster metadata: inline data URIs there, relative links in the files on disk (issue 11 item 16)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import polars as pl

from lexdpr_pipeline.assets.common import image_markdown, inline_images
from lexdpr_pipeline.evaluation.report import CHART_FILE, REPORT_FILE, write_report

_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\((?P<target>[^)]*)\)")


def _table() -> pl.DataFrame:
    rows = []
    for split in ("valid", "test"):
        for system, score in (("fine-tuned", 0.7), ("bm25", 0.6)):
            for group in ("all", "type:law", "type:prec"):
                rows.append(
                    {
                        "split": split,
                        "system": system,
                        "group": group,
                        "n_queries": 4,
                        "ndcg@10": score,
                        "recall@100": 0.9,
                    }
                )
    return pl.DataFrame(rows)


def test_evaluation_report_metadata_embeds_its_chart(tmp_path: Path) -> None:
    report = write_report(_table(), tmp_path, notes={"model": "tiny"})
    assert report.chart_path is not None and report.chart_path.name == CHART_FILE
    on_disk = (tmp_path / REPORT_FILE).read_text(encoding="utf-8")
    assert [m["target"] for m in _IMAGE_LINK.finditer(on_disk)] == [CHART_FILE]  # the file links to the PNG beside it

    shown = inline_images(report.markdown, report.markdown_path.parent)
    targets = [m["target"] for m in _IMAGE_LINK.finditer(shown)]
    assert len(targets) == 1 and targets[0].startswith("data:image/png;base64,")
    assert base64.b64decode(targets[0].split(",", 1)[1]) == report.chart_path.read_bytes()
    assert shown.replace(targets[0], CHART_FILE) == report.markdown  # only the link changed


def test_inline_images_leaves_urls_data_uris_and_missing_files_alone(tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    png = tmp_path / "plots" / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    md = (
        "![a](plots/a.png) ![web](https://example.org/x.png) ![gone](missing.png) "
        "![inline](data:image/png;base64,AAAA) ![text](notes.txt) [a link](plots/a.png)"
    )
    out = inline_images(md, tmp_path)
    assert out.startswith(image_markdown("a", png) + " ![web](https://example.org/x.png) ![gone](missing.png) ")
    assert out.endswith("![inline](data:image/png;base64,AAAA) ![text](notes.txt) [a link](plots/a.png)")
