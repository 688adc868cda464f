"""Batch search: a JSONL file of queries in, a JSONL file of ranked results out (``lex-dpr search --queries``).

Input lines: ``{"qid": "q1", "text": "…"}`` (``qid`` a string or an integer, ``text`` a non-blank string). A line
that is not such an object (bad JSON, missing or wrongly typed field, blank text, repeated qid) is skipped, counted
by reason and reported with its line number; blank lines are ignored. Output lines, in input order:
``{"qid": …, "results": [{"rank", "doc_id", "passage_id", "score", "dense_score", "bm25_score", "source",
"title", "matched_reference"}, …]}`` best first. Queries go to the engine in batches through ``search_many``; when a
batch fails, its queries are retried one by one so that one bad query costs only itself (reported as ``search error``).
The output is written to a temp file next to it and renamed at the end: never half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

RESULT_FIELDS = (
    *("rank", "doc_id", "passage_id", "score", "dense_score", "bm25_score", "source", "title"),
    "matched_reference",  # the query's citation that linked the document ("민법 제750조"), else null
)
MAX_REPORTED_LINES = 20


@dataclass
class BatchQuery:
    line: int
    qid: str | int
    text: str


@dataclass
class BatchReport:
    lines: int = 0  # non-blank input lines
    searched: int = 0  # queries written to the output
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), the first few
    results: int = 0
    seconds: float = 0.0

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, line: int, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_lines) < MAX_REPORTED_LINES:
            self.skipped_lines.append((line, reason))

    def summary(self) -> str:
        text = (
            f"{self.searched} of {self.lines} queries searched, {self.results} results, "
            f"{self.n_skipped} skipped, in {self.seconds:.1f}s"
        )
        if self.skipped:
            text += "\nskipped: " + ", ".join(f"{reason}: {n}" for reason, n in self.skipped.most_common())
            shown = ", ".join(f"line {line} ({reason})" for line, reason in self.skipped_lines)
            more = self.n_skipped - len(self.skipped_lines)
            text += f"\n  {shown}" + (f" and {more} more" if more > 0 else "")
        return text


def read_queries(path: Path, report: BatchReport) -> list[BatchQuery]:
    """Parse the query file; bad lines are recorded in ``report`` and left out."""
    queries: list[BatchQuery] = []
    seen: set[str | int] = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            report.lines += 1
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                report.skip(number, "invalid JSON")
                continue
            if not isinstance(obj, dict):
                report.skip(number, "not a JSON object")
                continue
            qid, text = obj.get("qid"), obj.get("text")
            if qid is None:
                report.skip(number, "missing qid")
            elif isinstance(qid, bool) or not isinstance(qid, str | int) or (isinstance(qid, str) and not qid):
                report.skip(number, "qid not a string or integer")
            elif not isinstance(text, str):
                report.skip(number, "missing text" if text is None else "text not a string")
            elif not text.strip():
                report.skip(number, "blank text")
            elif qid in seen:
                report.skip(number, "repeated qid")
            else:
                seen.add(qid)
                queries.append(BatchQuery(number, qid, text))
    return queries


def _result_dict(hit: Any) -> dict[str, Any]:
    data = hit.to_dict()
    return {key: data.get(key) for key in RESULT_FIELDS}


def _search_chunk(engine: Any, chunk: Sequence[BatchQuery], report: BatchReport, **options: Any) -> Iterator[tuple]:
    try:
        batches = engine.search_many([q.text for q in chunk], **options)
        yield from zip(chunk, batches, strict=True)
        return
    except Exception:  # find the query that broke the batch; the others still get answers
        logger.warning("batch of %d queries failed; retrying them one by one", len(chunk), exc_info=True)
    for query in chunk:
        try:
            yield query, engine.search(query.text, **options)
        except Exception as exc:
            logger.warning("query %r (line %d) failed: %s", query.qid, query.line, exc)
            report.skip(query.line, "search error")


def run_batch_search(
    engine: Any,
    queries_path: Path,
    output_path: Path,
    *,
    top_k: int = 100,
    mode: str | None = None,
    filters: Any = None,
    threshold: float | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> BatchReport:
    """Search every query of ``queries_path`` with ``engine`` and write ``output_path`` (JSONL, input order)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    report = BatchReport()
    queries = read_queries(Path(queries_path), report)
    options = {"top_k": top_k, "mode": mode, "filters": filters, "threshold": threshold}
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output_path.name}.", suffix=".tmp", dir=output_path.parent)
    try:
        with (
            os.fdopen(fd, "w", encoding="utf-8") as out,
            tqdm(total=len(queries), desc="search", unit="query", disable=not progress) as bar,
        ):
            for start in range(0, len(queries), batch_size):
                chunk = queries[start : start + batch_size]
                for query, hits in _search_chunk(engine, chunk, report, **options):
                    results = [_result_dict(hit) for hit in hits]
                    out.write(json.dumps({"qid": query.qid, "results": results}, ensure_ascii=False) + "\n")
                    report.searched += 1
                    report.results += len(results)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - started
    return report
