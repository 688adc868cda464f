"""Resumable, incremental crawl of one DRF target into a raw-response store, and records rebuilt from it.

Layout under ``raw_dir/{target}/``::

    bodies/{key}.xml|json         the response body, verbatim (only an echoed OC=… parameter is removed)
    bodies/{key}.meta.json        url and params without OC, status, content type, fetched_at, sha256, listing row
    quarantine/{key}.xml|json     bodies that failed to parse (after bounded re-fetches), with {key}.reason.json
    quarantine/listing-page-{n}.* a listing page that failed to parse after the retries (the crawl then fails)
    state.json                    last complete crawl (drives incremental refreshes)

``key`` is the version id the listing gives: 법령일련번호 (MST) for ``law``, 행정규칙일련번호 for ``admrul`` and
판례일련번호 for ``prec``. A body is written (atomically) only after its sidecar, so a body on disk is always
complete; a rerun after a kill fetches only the keys without one. Records are always rebuilt from *every* body on
disk for the target, so an interrupted-then-resumed crawl yields exactly the records of an uninterrupted one.

A body that does not parse is usually a truncated transfer: a listing page is fetched again like a transient error
(the client's ``max_retries`` and backoff) and, if it never parses, quarantined and the crawl fails naming the file; a
detail body is fetched again ``lawgo.detail_parse_retries`` times, then quarantined and reported in
:attr:`CrawlResult.missing` (retried on the next run). Every reason and log line passes through
:func:`~lexdpr_pipeline.logging_setup.scrub_secrets`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from lexdpr_pipeline.logging_setup import redacting_logger, scrub_secrets, scrub_secrets_bytes
from lexdpr_pipeline.settings import IngestSettings, LawGoSettings
from lexdpr_pipeline.sources.lawgo.client import LawGoClient, RawResponse
from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoError,
    LawGoHTTPError,
    LawGoMalformedResponseError,
    LawGoNotFoundError,
)
from lexdpr_pipeline.sources.lawgo.parsers import (
    Listing,
    parse_admrul_body,
    parse_law_body,
    parse_listing,
    parse_prec_body,
)
from lexdpr_pipeline.sources.records import Skipped
from lexdpr_pipeline.storage import atomic_write_bytes, sha256_bytes

logger = redacting_logger(__name__)

Target = Literal["law", "admrul", "prec"]
KST = dt.timezone(dt.timedelta(hours=9), "KST")  # the API's dates are Korean calendar dates
PAGE_SIZE = 100
LISTING_QUARANTINE_PREFIX = "listing-page-"
# API_NOTES: precedents from the 국세청 source are served as HTML only by lawService.do.
HTML_ONLY_SOURCE = "국세법령정보시스템"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    target: str
    key_field: str  # listing row field that names a body (a version id)
    id_param: str  # lawService.do parameter taking that key
    date_param: str  # lawSearch.do date-range filter (YYYYMMDD~YYYYMMDD)
    use_state_since: bool  # incremental refreshes narrow the listing to dates since the last complete crawl


SPECS: dict[str, TargetSpec] = {
    # A law's MST changes with every amendment, so a refresh lists everything and fetches only new MSTs.
    "law": TargetSpec("law", "법령일련번호", "MST", "ancYd", use_state_since=False),
    "admrul": TargetSpec("admrul", "행정규칙일련번호", "ID", "prmlYd", use_state_since=True),
    "prec": TargetSpec("prec", "판례일련번호", "ID", "prncYd", use_state_since=True),
}


@dataclass(slots=True)
class CrawlResult:
    """What a crawl did. ``records`` is the deduplicated union of all bodies on disk for the target."""

    target: str
    records: list[Any] = field(default_factory=list)
    listed: int = 0  # listing rows considered (after max_items and de-duplication)
    fetched: int = 0  # bodies downloaded and stored in this run
    reused: int = 0  # listed bodies already on disk
    quarantined: list[Skipped] = field(default_factory=list)
    not_found: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # not-found ids and unusable listing rows
    wanted: int = 0  # keys this run wanted on disk: listed (minus HTML-only) plus earlier failures to retry
    missing: list[str] = field(default_factory=list)  # wanted keys still without a body (quarantined) after the run
    refetched: int = 0  # re-fetches of bodies that did not parse (truncated transfers)
    since: dt.date | None = None  # the listing's lower date bound (incremental: last complete date - overlap)
    wall_s: float = 0.0

    @property
    def missing_share(self) -> float:
        return len(self.missing) / self.wanted if self.wanted else 0.0


class _Store:
    """The raw-response folder of one target."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bodies = root / "bodies"
        self.quarantine = root / "quarantine"
        self.state_path = root / "state.json"

    def body_path(self, key: str, ext: str) -> Path:
        return self.bodies / f"{key}.{ext}"

    def meta_path(self, key: str) -> Path:
        return self.bodies / f"{key}.meta.json"

    def has_body(self, key: str) -> bool:
        return any(self.body_path(key, ext).is_file() for ext in ("xml", "json"))

    def body_files(self) -> list[tuple[str, str, Path]]:
        """``(key, ext, path)`` of every stored body, sorted by key; sidecars and temp files excluded."""
        out = []
        if self.bodies.is_dir():
            for path in self.bodies.iterdir():
                name = path.name
                if name.startswith(".") or name.endswith(".meta.json") or not path.is_file():
                    continue
                key, _, ext = name.rpartition(".")
                if ext in ("xml", "json") and key.isdigit():
                    out.append((key, ext, path))
        return sorted(out, key=lambda t: (int(t[0]), t[1]))

    def read_meta(self, key: str) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def clean_temp_files(self) -> None:
        """Remove temp files a killed process left behind (atomic writes never leave them otherwise)."""
        for folder in (self.bodies, self.quarantine):
            if folder.is_dir():
                for path in folder.glob(".*.tmp"):
                    path.unlink(missing_ok=True)

    def quarantined_rows(self) -> dict[str, dict[str, str]]:
        """Listing rows of quarantined keys (from their reason files), to retry them on the next run."""
        rows: dict[str, dict[str, str]] = {}
        if self.quarantine.is_dir():
            for path in sorted(self.quarantine.glob("*.reason.json")):
                try:
                    row = json.loads(path.read_text(encoding="utf-8")).get("listing_row")
                except (OSError, ValueError):
                    continue
                if isinstance(row, dict) and row:
                    rows[path.name.removesuffix(".reason.json")] = row
        return rows

    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _today_kst() -> dt.date:
    return dt.datetime.now(KST).date()


def _parser(spec: TargetSpec) -> Callable[[bytes, str, str, dict[str, Any], str], list[Any]]:
    def parse(body: bytes, fmt: str, source_ref: str, row: dict[str, Any], key: str) -> list[Any]:
        if spec.target == "law":
            status = str(row.get("현행연혁코드") or "현행")
            return parse_law_body(body, fmt, source_ref, mst=key, status=status)  # type: ignore[arg-type]
        if spec.target == "admrul":
            return parse_admrul_body(body, fmt, source_ref)  # type: ignore[arg-type]
        return [parse_prec_body(body, fmt, source_ref)]  # type: ignore[arg-type]

    return parse


def _date_filter(
    spec: TargetSpec,
    since: dt.date | None,
    until: dt.date | None,
    state: dict[str, Any],
    incremental: bool,
    overlap_days: int,
) -> tuple[dt.date | None, dt.date | None]:
    """The listing's date range. Incremental: from the last complete crawl's date minus ``overlap_days`` — decisions
    are often published weeks after their 선고일자, so a window starting exactly at the last crawl would miss them.
    Re-listing the overlap costs listing pages only: bodies already on disk are not fetched again."""
    if overlap_days < 0:
        raise ValueError("incremental_overlap_days must be >= 0")
    if since is None and incremental and spec.use_state_since and state.get("last_complete_date"):
        try:
            last = dt.date.fromisoformat(state["last_complete_date"])
        except ValueError:
            logger.warning("%s: unreadable last_complete_date in state.json, crawling without it", spec.target)
        else:
            since = last - dt.timedelta(days=overlap_days)
            logger.info(
                "%s: incremental crawl from %s (last complete crawl %s minus %d days of overlap)",
                spec.target,
                since,
                last,
                overlap_days,
            )
    return since, until


def _listing_page(
    client: LawGoClient, spec: TargetSpec, store: _Store, fmt: str, page: int, params: dict[str, str]
) -> Listing:
    """One listing page. A body that does not parse (truncated, cut inside a UTF-8 sequence, garbage) is fetched
    again like a transient error — ``client.max_retries`` times with the client's backoff — then quarantined as
    ``quarantine/listing-page-{page}.{ext}`` and the crawl fails with an error naming that file."""
    attempt = 0
    while True:
        response = client.search(spec.target, page=page, display=PAGE_SIZE, fmt=fmt, **params)
        try:
            return parse_listing(response.body, fmt, spec.target)  # type: ignore[arg-type]
        except LawGoMalformedResponseError as exc:
            if attempt >= client.max_retries:
                path = _quarantine_listing(store, page, fmt, response, exc.reason, attempt + 1, client)
                raise LawGoMalformedResponseError(
                    f"{spec.target} listing page {page} still does not parse after {attempt + 1} attempts "
                    f"({exc.reason}); the crawl stopped there — rerun later to resume",
                    url=response.url_without_oc,
                    quarantined=str(path),
                ) from exc
            logger.warning(
                "%s: listing page %d does not parse (%s); retry %d/%d",
                spec.target,
                page,
                exc.reason,
                attempt + 1,
                client.max_retries,
            )
            client.pause(attempt)
            attempt += 1


def _quarantine_listing(
    store: _Store, page: int, fmt: str, response: RawResponse, reason: str, attempts: int, client: LawGoClient
) -> Path:
    store.quarantine.mkdir(parents=True, exist_ok=True)
    name = f"{LISTING_QUARANTINE_PREFIX}{page}"
    body = client.scrub(response.body)[0]
    path = store.quarantine / f"{name}.{fmt.lower()}"
    info = {
        "listing_page": page,
        "reason": reason,
        "attempts": attempts,
        "url": response.url_without_oc,
        "params": response.params_without_oc,
        "status": response.status,
        "content_type": response.content_type,
        "fetched_at": response.fetched_at,
        "bytes_received": len(response.body),
        "sha256": sha256_bytes(body),  # of the stored copy (the key's echo in …상세링크 removed)
    }
    atomic_write_bytes(path, body)
    atomic_write_bytes(store.quarantine / f"{name}.reason.json", client.scrub(_json_bytes(info))[0])
    logger.error("%s: listing page %d quarantined as %s: %s", store.root.name, page, path, reason)
    return path


def _list(
    client: LawGoClient,
    spec: TargetSpec,
    store: _Store,
    fmt: str,
    since: dt.date | None,
    until: dt.date | None,
    max_items: int | None,
    result: CrawlResult,
) -> tuple[list[dict[str, str]], bool]:
    """All listing rows (newest first, de-duplicated by key) and whether ``max_items`` cut the listing short."""
    params: dict[str, str] = {"sort": "ddes"}  # newest first: new items shift pages forward (repeats, no gaps)
    if since is not None or until is not None:
        lo = since or dt.date(1900, 1, 1)
        hi = until or _today_kst()
        params[spec.date_param] = f"{lo:%Y%m%d}~{hi:%Y%m%d}"
    rows: list[dict[str, str]] = []
    if max_items is not None and max_items <= 0:
        return rows, True
    seen: set[str] = set()
    page = 1
    while max_items is None or len(rows) < max_items:
        listing = _listing_page(client, spec, store, fmt, page, params)
        new = 0
        for i, row in enumerate(listing.rows):
            key = row.get(spec.key_field, "").strip()
            if not key.isdigit():
                result.skipped.append(
                    Skipped(f"{spec.target} listing page {page} row {i + 1}", f"no numeric {spec.key_field}")
                )
                continue
            if key in seen:
                continue
            seen.add(key)
            rows.append(row)
            new += 1
            if max_items is not None and len(rows) >= max_items:
                return rows, True
        if not listing.rows or page * PAGE_SIZE >= listing.total_count:
            break
        if new == 0:
            logger.warning("%s: listing page %d brought nothing new; stopping", spec.target, page)
            break
        page += 1
    return rows, False


def _quarantine(
    store: _Store,
    key: str,
    ext: str,
    body: bytes | None,
    reason: str,
    details: dict[str, Any],
    client: LawGoClient,
) -> Skipped:
    store.quarantine.mkdir(parents=True, exist_ok=True)
    reason = scrub_secrets(reason)
    info = {"key": key, "reason": reason, **details}
    if body is not None:
        info["sha256"] = sha256_bytes(body)
        atomic_write_bytes(store.quarantine / f"{key}.{ext}", body)
    atomic_write_bytes(store.quarantine / f"{key}.reason.json", client.scrub(_json_bytes(info))[0])
    logger.warning("%s: quarantined %s: %s", store.root.name, key, reason)
    return Skipped(str(store.quarantine / f"{key}.{ext}"), reason)


def _fetch_one(
    client: LawGoClient,
    spec: TargetSpec,
    store: _Store,
    row: dict[str, str],
    fmt: str,
    result: CrawlResult,
    parsed: dict[str, list[Any]],
    parse_retries: int,
) -> str:
    """Fetch, check and store one body; returns ``"fetched"``, ``"not_found"`` or ``"quarantined"``.

    A body that does not parse (a truncated transfer, most often) is fetched again up to ``parse_retries`` times,
    with the client's backoff in between, before it is quarantined."""
    key = row[spec.key_field].strip()
    ext = fmt.lower()
    attempt = 0
    while True:
        try:
            response: RawResponse = client.fetch(spec.target, fmt=fmt, **{spec.id_param: key})
        except (LawGoNotFoundError, LawGoHTTPError) as exc:
            status = getattr(exc, "status", None)
            if status is not None and status not in (404, 410):
                raise  # 400/403/…: the request or this server's registration is wrong, every fetch would fail
            # The listing answered, so a 404/410 concerns this document only: skip it and retry it next run.
            result.not_found += 1
            what = f"HTTP {status}" if status is not None else "not found"
            result.skipped.append(Skipped(f"{spec.target}:{key}", f"{what}: {exc.url}"))
            logger.warning("%s %s: %s (listed, but lawService.do has no body)", spec.target, key, what)
            return "not_found"
        except LawGoMalformedResponseError as exc:  # an unknown error envelope; nothing to keep but the reason
            details = {"url": exc.url, "listing_row": row}
            result.quarantined.append(_quarantine(store, key, ext, None, exc.reason, details, client))
            return "quarantined"
        body, redacted = client.scrub(response.body)
        meta = {
            "key": key,
            "target": spec.target,
            "fmt": fmt,
            "url": response.url_without_oc,
            "params": response.params_without_oc,
            "status": response.status,
            "content_type": response.content_type,
            "fetched_at": response.fetched_at,
            "elapsed_s": round(response.elapsed, 3),
            "sha256": sha256_bytes(body),
            "bytes": len(body),
            "oc_redacted": redacted,
            "listing_row": row,
        }
        try:
            parsed[key] = _parser(spec)(body, fmt, response.url_without_oc, row, key)
        except LawGoMalformedResponseError as exc:
            if attempt < parse_retries:
                logger.warning(
                    "%s %s: body does not parse (%s); fetching it again (%d/%d)",
                    spec.target,
                    key,
                    exc.reason,
                    attempt + 1,
                    parse_retries,
                )
                client.pause(attempt)
                attempt += 1
                result.refetched += 1
                continue
            meta["attempts"] = attempt + 1
            result.quarantined.append(_quarantine(store, key, ext, body, exc.reason, meta, client))
            return "quarantined"
        except LawGoError as exc:
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            result.quarantined.append(_quarantine(store, key, ext, body, reason, meta, client))
            return "quarantined"
        break
    # Sidecar first, body last: a body on disk always has its sidecar and is complete.
    atomic_write_bytes(store.meta_path(key), client.scrub(_json_bytes(meta))[0])
    atomic_write_bytes(store.body_path(key, ext), body)
    for stale in (store.quarantine / f"{key}.{ext}", store.quarantine / f"{key}.reason.json"):
        stale.unlink(missing_ok=True)
    result.fetched += 1
    return "fetched"


def _move_to_quarantine(store: _Store, key: str, ext: str, path: Path, reason: str) -> Skipped:
    store.quarantine.mkdir(parents=True, exist_ok=True)
    target = store.quarantine / f"{key}.{ext}"
    os.replace(path, target)
    reason = scrub_secrets(reason)
    info = {"key": key, "reason": reason, "moved_from": f"bodies/{path.name}", **store.read_meta(key)}
    atomic_write_bytes(store.quarantine / f"{key}.reason.json", scrub_secrets_bytes(_json_bytes(info)))
    store.meta_path(key).unlink(missing_ok=True)
    logger.warning("%s: stored body %s no longer parses, moved to quarantine: %s", store.root.name, key, reason)
    return Skipped(str(target), reason)


def _rank(spec: TargetSpec, key: str, records: list[Any]) -> tuple[str, Any, int]:
    """Which version of a document wins: the latest 공포일자/발령일자, then the highest key."""
    first = records[0]
    if spec.target == "law":
        return first.law_id, first.promulgation_date or dt.date.min, int(key)
    if spec.target == "admrul":
        return first.rule_id, first.issue_date or dt.date.min, int(key)
    return first.prec_id, first.decision_date or dt.date.min, int(key)


def rebuild_records(
    store_root: Path, target: Target, *, fmt: str = "XML", parsed: dict[str, list[Any]] | None = None
) -> tuple[list[Any], list[Skipped], int, list[Skipped]]:
    """Records from every body under ``store_root`` (``raw_dir/{target}``), one version per document.

    Bodies that no longer parse are moved to quarantine. Bodies that parse to no records (attachment-only
    admin rules, decrees whose whole text sits in one 전문 row) are reported, not silently dropped.
    Returns ``(records, quarantined, not_found, empty)``.
    """
    spec = SPECS[target]
    store = _Store(Path(store_root))
    parse = _parser(spec)
    parsed = dict(parsed or {})
    quarantined: list[Skipped] = []
    not_found = 0
    files = store.body_files()
    keys_with_both = {k for k, e, _ in files if e == "json"} & {k for k, e, _ in files if e == "xml"}
    per_key: dict[str, list[Any]] = {}
    for key, ext, path in files:
        if key in keys_with_both and ext != fmt.lower():
            continue  # the same version in both formats (fmt changed between runs): read the current one
        if key in parsed:
            per_key[key] = parsed[key]
            continue
        meta = store.read_meta(key)
        source_ref = meta.get("url") or f"{target}/bodies/{path.name}"
        try:
            per_key[key] = parse(path.read_bytes(), ext.upper(), source_ref, meta.get("listing_row") or {}, key)
        except LawGoNotFoundError as exc:
            not_found += 1
            _move_to_quarantine(store, key, ext, path, f"not found: {exc}")
        except LawGoError as exc:
            quarantined.append(_move_to_quarantine(store, key, ext, path, getattr(exc, "reason", None) or str(exc)))
    best: dict[str, tuple[tuple[str, Any, int], str]] = {}
    empty = [
        Skipped(f"{target}:{key}", "no articles: the body holds no 조문 (attachment-only or text only in 전문 rows)")
        for key, records in sorted(per_key.items())
        if not records
    ]
    for key, records in per_key.items():
        if records:
            rank = _rank(spec, key, records)
            if rank[0] not in best or rank > best[rank[0]][0]:
                best[rank[0]] = (rank, key)
    winners = sorted((key for _, key in best.values()), key=int)
    out: list[Any] = []
    seen: set[str] = set()
    for key in winners:
        for record in per_key[key]:
            record_id = record.prec_id if spec.target == "prec" else record.article_id
            if record_id not in seen:
                seen.add(record_id)
                out.append(record)
    return out, quarantined, not_found, empty


def crawl(
    client: LawGoClient,
    target: Target,
    raw_dir: Path,
    *,
    ingest: IngestSettings | None = None,
    lawgo: LawGoSettings | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    incremental: bool = True,
    progress: bool = True,
) -> CrawlResult:
    """List ``target`` (``lawSearch.do``), fetch the bodies not yet on disk, and rebuild all records.

    The settings sections (defaults when None) give ``ingest.max_items`` (a cap on listing rows), ``ingest.fmt``
    (XML or JSON bodies), ``lawgo.detail_parse_retries`` and ``lawgo.incremental_overlap_days``; the client's own
    options (retries, rate limit) come from the same ``lawgo`` section through ``LawGoClient.from_settings``.
    ``since``/``until`` filter the listing by 공포일자 (law), 발령일자 (admrul) or 선고일자 (prec). With
    ``incremental`` and no ``since``, prec and admrul listings start ``incremental_overlap_days`` before the last
    complete crawl's date (from ``state.json``); law lists everything and fetches only MSTs not on disk. Stored
    bodies are never re-fetched (a key names one immutable version); delete a body to force it. A detail body that
    does not parse is fetched again up to ``detail_parse_retries`` times, then quarantined and counted in
    ``missing``. Auth failures, transient errors that outlast the retries and listing pages that never parse abort
    the crawl — rerun to resume.
    """
    started = time.perf_counter()
    ingest = ingest if ingest is not None else IngestSettings()
    lawgo = lawgo if lawgo is not None else LawGoSettings()
    max_items, detail_parse_retries = ingest.max_items, lawgo.detail_parse_retries
    if target not in SPECS:
        raise ValueError(f"target must be one of {sorted(SPECS)}, not {target!r}")
    if detail_parse_retries < 0:
        raise ValueError("detail_parse_retries must be >= 0")
    fmt = ingest.fmt.upper()
    if fmt not in ("XML", "JSON"):
        raise ValueError(f"fmt must be 'XML' or 'JSON', not {fmt!r}")
    spec = SPECS[target]
    store = _Store(Path(raw_dir) / target)
    store.bodies.mkdir(parents=True, exist_ok=True)
    store.clean_temp_files()
    state = store.read_state()
    result = CrawlResult(target=target)

    since, until = _date_filter(spec, since, until, state, incremental, lawgo.incremental_overlap_days)
    result.since = since
    rows, truncated = _list(client, spec, store, fmt, since, until, max_items, result)
    # The whole listing parsed: listing pages quarantined by an earlier run are history now.
    for stale in store.quarantine.glob(f"{LISTING_QUARANTINE_PREFIX}*") if store.quarantine.is_dir() else ():
        stale.unlink(missing_ok=True)
    result.listed = len(rows)
    todo: list[dict[str, str]] = []
    for row in rows:
        key = row[spec.key_field].strip()
        if store.has_body(key):
            result.reused += 1
        elif target == "prec" and row.get("데이터출처명", "").strip() == HTML_ONLY_SOURCE:
            result.skipped.append(Skipped(f"prec:{key}", f"{HTML_ONLY_SOURCE} precedent: served as HTML only"))
        else:
            todo.append(row)
    # Keys that failed before (quarantined, or listed but not found) are retried even when an incremental
    # listing no longer shows them.
    listed_keys = {row[spec.key_field].strip() for row in rows}
    pending = {**(state.get("not_found") or {}), **store.quarantined_rows()}
    retry = [r for k, r in sorted(pending.items()) if k not in listed_keys and not store.has_body(k)]
    result.wanted = result.reused + len(todo) + len(retry)
    logger.info(
        "%s: listed %d, %d already on disk, fetching %d (+%d to retry)",
        target,
        len(rows),
        result.reused,
        len(todo),
        len(retry),
    )

    parsed: dict[str, list[Any]] = {}
    not_found_rows: dict[str, dict[str, str]] = {}
    missing: set[str] = set()
    for row in tqdm(todo + retry, desc=f"law.go.kr {target}", unit="doc", disable=not progress):
        outcome = _fetch_one(client, spec, store, row, fmt, result, parsed, detail_parse_retries)
        if outcome == "not_found":
            not_found_rows[row[spec.key_field].strip()] = row
        elif outcome == "quarantined":
            missing.add(row[spec.key_field].strip())

    records, moved, not_found, empty = rebuild_records(store.root, target, fmt=fmt, parsed=parsed)
    missing.update(Path(s.ref).name.rpartition(".")[0] for s in moved)
    result.skipped.extend(empty)
    result.records = records
    result.quarantined.extend(moved)
    result.not_found += not_found
    result.missing = sorted(missing, key=lambda k: (len(k), k))
    result.wanted = max(result.wanted, len(result.missing))  # a stored body not listed this run may stop parsing
    # Nothing that reaches a report, the asset metadata or Dagster's history may carry the key.
    result.skipped = [Skipped(scrub_secrets(s.ref), scrub_secrets(s.reason)) for s in result.skipped]
    result.quarantined = [Skipped(scrub_secrets(s.ref), scrub_secrets(s.reason)) for s in result.quarantined]

    _write_state(store, state, result, since=since, until=until, truncated=truncated, not_found=not_found_rows)
    result.wall_s = time.perf_counter() - started
    logger.info(
        "%s: %d records; fetched %d, reused %d, re-fetched %d, quarantined %d, not found %d in %.1fs",
        target,
        len(records),
        result.fetched,
        result.reused,
        result.refetched,
        len(result.quarantined),
        result.not_found,
        result.wall_s,
    )
    if result.missing:
        logger.warning(
            "%s: %d of %d wanted bodies still missing after %d re-fetches each (quarantined; retried on the next "
            "run): %s",
            target,
            len(result.missing),
            result.wanted,
            detail_parse_retries,
            ", ".join(result.missing[:20]) + (" …" if len(result.missing) > 20 else ""),
        )
    return result


def _write_state(
    store: _Store,
    previous: dict[str, Any],
    result: CrawlResult,
    *,
    since: dt.date | None,
    until: dt.date | None,
    truncated: bool,
    not_found: dict[str, dict[str, str]],
) -> None:
    """Advance ``last_complete_date`` only when this run saw the whole listing from where the last one ended."""
    last = previous.get("last_complete_date")
    hi = until or _today_kst()
    covers_gap = since is None or last is None or since.isoformat() <= last
    if not truncated and covers_gap:
        last = max(last or "", hi.isoformat())
    state = {
        "target": result.target,
        "last_complete_date": last,
        "last_run_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "not_found": not_found,  # listed keys without a body, retried on the next run
        "last_run": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "complete": not truncated,
            "listed": result.listed,
            "fetched": result.fetched,
            "reused": result.reused,
            "quarantined": len(result.quarantined),
            "not_found": result.not_found,
            "missing": result.missing,
            "refetched": result.refetched,
            "records": len(result.records),
        },
    }
    atomic_write_bytes(store.state_path, _json_bytes(state))
