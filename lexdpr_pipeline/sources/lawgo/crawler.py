"""Resumable, incremental crawl of one DRF target into a raw-response store, and records rebuilt from it.

Layout under ``raw_dir/{target}/``::

    bodies/{key}.xml|json         the response body, verbatim (only an echoed OC=… parameter is removed)
    bodies/{key}.meta.json        url and params without OC, status, content type, fetched_at, sha256, listing row
    quarantine/{key}.xml|json     bodies that failed to parse, with {key}.reason.json
    state.json                    last complete crawl (drives incremental refreshes)

``key`` is the version id the listing gives: 법령일련번호 (MST) for ``law``, 행정규칙일련번호 for ``admrul`` and
판례일련번호 for ``prec``. A body is written (atomically) only after its sidecar, so a body on disk is always
complete; a rerun after a kill fetches only the keys without one. Records are always rebuilt from *every* body on
disk for the target, so an interrupted-then-resumed crawl yields exactly the records of an uninterrupted one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from lexdpr_pipeline.sources.lawgo.client import LawGoClient, RawResponse
from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoError,
    LawGoMalformedResponseError,
    LawGoNotFoundError,
)
from lexdpr_pipeline.sources.lawgo.parsers import parse_admrul_body, parse_law_body, parse_listing, parse_prec_body
from lexdpr_pipeline.sources.records import Skipped
from lexdpr_pipeline.storage import atomic_write_bytes, sha256_bytes

logger = logging.getLogger(__name__)

Target = Literal["law", "admrul", "prec"]
KST = dt.timezone(dt.timedelta(hours=9), "KST")  # the API's dates are Korean calendar dates
PAGE_SIZE = 100
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
    wall_s: float = 0.0


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
    spec: TargetSpec, since: dt.date | None, until: dt.date | None, state: dict[str, Any], incremental: bool
) -> tuple[dt.date | None, dt.date | None]:
    if since is None and incremental and spec.use_state_since and state.get("last_complete_date"):
        try:
            since = dt.date.fromisoformat(state["last_complete_date"])
            logger.info("%s: incremental crawl from %s (last complete crawl)", spec.target, since)
        except ValueError:
            logger.warning("%s: unreadable last_complete_date in state.json, crawling without it", spec.target)
    return since, until


def _list(
    client: LawGoClient,
    spec: TargetSpec,
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
        response = client.search(spec.target, page=page, display=PAGE_SIZE, fmt=fmt, **params)
        listing = parse_listing(response.body, fmt, spec.target)  # type: ignore[arg-type]
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
) -> str:
    """Fetch, check and store one body; returns ``"fetched"``, ``"not_found"`` or ``"quarantined"``."""
    key = row[spec.key_field].strip()
    ext = fmt.lower()
    try:
        response: RawResponse = client.fetch(spec.target, fmt=fmt, **{spec.id_param: key})
    except LawGoNotFoundError as exc:
        result.not_found += 1
        result.skipped.append(Skipped(f"{spec.target}:{key}", f"not found: {exc.url}"))
        logger.warning("%s %s: not found (listed, but lawService.do has no body)", spec.target, key)
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
    except LawGoError as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        result.quarantined.append(_quarantine(store, key, ext, body, reason, meta, client))
        return "quarantined"
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
    info = {"key": key, "reason": reason, "moved_from": f"bodies/{path.name}", **store.read_meta(key)}
    atomic_write_bytes(store.quarantine / f"{key}.reason.json", _json_bytes(info))
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
    since: dt.date | None = None,
    until: dt.date | None = None,
    max_items: int | None = None,
    fmt: Literal["XML", "JSON"] = "XML",
    incremental: bool = True,
    progress: bool = True,
) -> CrawlResult:
    """List ``target`` (``lawSearch.do``), fetch the bodies not yet on disk, and rebuild all records.

    ``since``/``until`` filter the listing by 공포일자 (law), 발령일자 (admrul) or 선고일자 (prec). With
    ``incremental`` and no ``since``, prec and admrul listings start at the last complete crawl's date (from
    ``state.json``); law lists everything and fetches only MSTs not on disk. Stored bodies are never re-fetched
    (a key names one immutable version); delete a body to force it. Auth failures and transient errors that
    outlast the retries abort the crawl — rerun to resume.
    """
    started = time.perf_counter()
    if target not in SPECS:
        raise ValueError(f"target must be one of {sorted(SPECS)}, not {target!r}")
    fmt = fmt.upper()  # type: ignore[assignment]
    if fmt not in ("XML", "JSON"):
        raise ValueError(f"fmt must be 'XML' or 'JSON', not {fmt!r}")
    spec = SPECS[target]
    store = _Store(Path(raw_dir) / target)
    store.bodies.mkdir(parents=True, exist_ok=True)
    store.clean_temp_files()
    state = store.read_state()
    result = CrawlResult(target=target)

    since, until = _date_filter(spec, since, until, state, incremental)
    rows, truncated = _list(client, spec, fmt, since, until, max_items, result)
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
    for row in tqdm(todo + retry, desc=f"law.go.kr {target}", unit="doc", disable=not progress):
        if _fetch_one(client, spec, store, row, fmt, result, parsed) == "not_found":
            not_found_rows[row[spec.key_field].strip()] = row

    records, moved, not_found, empty = rebuild_records(store.root, target, fmt=fmt, parsed=parsed)
    result.skipped.extend(empty)
    result.records = records
    result.quarantined.extend(moved)
    result.not_found += not_found

    _write_state(store, state, result, since=since, until=until, truncated=truncated, not_found=not_found_rows)
    result.wall_s = time.perf_counter() - started
    logger.info(
        "%s: %d records; fetched %d, reused %d, quarantined %d, not found %d in %.1fs",
        target,
        len(records),
        result.fetched,
        result.reused,
        len(result.quarantined),
        result.not_found,
        result.wall_s,
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
            "records": len(result.records),
        },
    }
    atomic_write_bytes(store.state_path, _json_bytes(state))
