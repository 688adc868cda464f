"""One ingest: the records of one source type from a legalize-kr mirror or the law.go.kr API (no Dagster here).

:func:`ingest_records` is what each ``raw_*`` asset does: ``ingest.source=mirror`` reads the mirror checkout of the
target (``ingest.mirror_include`` slice, ``ingest.max_items`` cap); ``ingest.source=api`` runs the resumable crawl
(:func:`~lexdpr_pipeline.sources.lawgo.crawler.crawl`) with a client from the caller's factory. Either way the
records become one table and every input that did not make it is returned as a :class:`Skipped` (quarantined
bodies and skips of a crawl scrubbed of secrets). :func:`completeness` judges a crawl's missing share.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from lexdpr_pipeline.logging_setup import scrub_secrets
from lexdpr_pipeline.settings import IngestSettings, LawGoSettings
from lexdpr_pipeline.sources.lawgo.client import LawGoClient
from lexdpr_pipeline.sources.lawgo.crawler import CrawlResult, Target, crawl
from lexdpr_pipeline.sources.mirror import find_precedent_root, find_statute_root, read_precedents, read_statutes
from lexdpr_pipeline.sources.records import AdminRuleArticle, Precedent, ReadResult, Skipped, StatuteArticle, to_frame

MISSING_IDS_SHOWN = 50  # ids of missing documents named in logs and reports (the count is always complete)
RECORD_TYPES: dict[str, type] = {"law": StatuteArticle, "admrul": AdminRuleArticle, "prec": Precedent}


@dataclass(frozen=True)
class MirrorReader:
    find_root: Callable[[Path], Path | None]  # the target's checkout under the mirror folder, or None
    read: Callable[..., ReadResult]


#: The targets the public mirrors hold (admin rules come from the API only).
MIRROR_READERS: dict[str, MirrorReader] = {
    "law": MirrorReader(find_statute_root, read_statutes),
    "prec": MirrorReader(find_precedent_root, read_precedents),
}
_log = logging.getLogger(__name__)


class SourceUnavailableError(FileNotFoundError):
    """The configured source of a target is not there (no mirror checkout): the message says what to set."""


@dataclass
class IngestResult:
    target: str
    source: str  # "mirror" | "api"
    frame: pl.DataFrame  # the records, in the schema of RECORD_TYPES[target]
    skipped: list[Skipped] = field(default_factory=list)
    crawl: CrawlResult | None = None  # source=api
    mirror_root: Path | None = None  # source=mirror
    note: str | None = None  # why there are no records by design (the mirrors hold no admin rules)


def ingest_records(
    target: Target,
    ingest: IngestSettings,
    lawgo: LawGoSettings,
    *,
    client_factory: Callable[[LawGoSettings], LawGoClient],
    raw_dir: Path,
    mirror_dir: Path,
    since: dt.date | None = None,
    until: dt.date | None = None,
    incremental: bool = True,
    progress: bool = True,
    log: logging.Logger | None = None,
) -> IngestResult:
    """The records of ``target`` from ``ingest.source``. API: ``client_factory(lawgo)`` makes the client (called
    only for source=api), raw responses go under ``raw_dir/<target>``, ``since``/``until``/``incremental`` shape
    the listing. Mirror: the checkout is looked up under ``mirror_dir``; a missing one is a
    :class:`SourceUnavailableError`, a target the mirrors do not hold gives no records and a ``note``."""
    log = log or _log
    if ingest.source == "api":
        crawled = _crawl(target, ingest, lawgo, client_factory, raw_dir, since, until, incremental, progress, log)
        # Scrubbed again here: these reasons reach a Parquet report and the orchestrator's run history.
        skipped = [
            Skipped(scrub_secrets(s.ref), scrub_secrets(s.reason)) for s in crawled.quarantined + crawled.skipped
        ]
        return IngestResult(target, "api", _frame(target, crawled.records), skipped, crawl=crawled)
    reader = MIRROR_READERS.get(target)
    if reader is None:
        log.warning(f"no mirror reader for {target}: the mirrors hold no {target} records; use source=api")
        note = f"mirror source has no {target} data; use source=api"
        return IngestResult(target, "mirror", _frame(target, []), note=note)
    root = reader.find_root(Path(mirror_dir))
    if root is None:
        raise SourceUnavailableError(
            f"no {target} mirror under {mirror_dir}: set LEXDPR_MIRROR_DIR (or paths.mirror_dir) to a folder "
            "holding legalize-kr/ and precedent-kr/, or use source=api"
        )
    # ingest.mirror_include: a demo slice chosen by name (configs/demo.yaml)
    read = reader.read(root, max_files=ingest.max_items, include=ingest.mirror_include, progress=progress)
    return IngestResult(target, "mirror", _frame(target, read.records), list(read.skipped), mirror_root=root)


def _frame(target: str, records: list) -> pl.DataFrame:
    return to_frame(records, RECORD_TYPES[target])


def _crawl(
    target: Target,
    ingest: IngestSettings,
    lawgo: LawGoSettings,
    client_factory: Callable[[LawGoSettings], LawGoClient],
    raw_dir: Path,
    since: dt.date | None,
    until: dt.date | None,
    incremental: bool,
    progress: bool,
    log: logging.Logger,
) -> CrawlResult:
    result = crawl(
        client_factory(lawgo),
        target,
        raw_dir,
        ingest=ingest,
        lawgo=lawgo,
        since=since,
        until=until,
        incremental=incremental,
        progress=progress,
    )
    log.info(
        f"{target}: listed {result.listed}, fetched {result.fetched}, reused {result.reused}, "
        f"re-fetched {result.refetched}, quarantined {len(result.quarantined)}, not found {result.not_found}"
    )
    if result.missing:
        log.warning(
            f"{target}: {len(result.missing)} of {result.wanted} documents still missing after "
            f"{lawgo.detail_parse_retries} re-fetches each ({result.missing_share:.1%}; quarantined "
            f"under {raw_dir / target / 'quarantine'}, retried on the next run): "
            + ", ".join(result.missing[:MISSING_IDS_SHOWN])
        )
    return result


@dataclass(frozen=True)
class Completeness:
    """The verdict on one ingest: ``applicable`` only for an API crawl (a mirror read cannot miss documents)."""

    passed: bool
    applicable: bool
    description: str
    missing: int = 0
    wanted: int = 0
    share: float = 0.0
    limit: float = 0.0


def completeness(source: str, *, missing: int, wanted: int, missing_ids: Sequence[str], limit: float) -> Completeness:
    """Whether an ingest's share of wanted-but-missing documents is at most ``limit`` (``ingest.max_missing_share``
    of the run). Anything but ``source == "api"`` passes: nothing was fetched, nothing can be missing."""
    if source != "api":
        return Completeness(True, False, f"source={source}: no API crawl, nothing can be missing")
    share = missing / wanted if wanted else 0.0
    description = scrub_secrets(
        f"{missing} of {wanted} wanted documents missing ({share:.2%}; limit {limit:.2%})"
        + (f": {', '.join(map(str, missing_ids))}" if missing else "")
    )
    return Completeness(share <= limit, True, description, missing, wanted, share, limit)
