"""The search engine the API serves, swapped atomically when a newer index is published.

Requests read :attr:`EngineHolder.current` once and keep that reference for the whole request, so a swap never
changes the engine under a request in flight: the old engine is freed when its last request finishes. Loads are
serialized (one at a time) and happen outside the request path. A load that fails keeps the engine being served and
is reported by :meth:`EngineHolder.status` (shown by ``GET /health``).

A newer index is noticed by the content of the pointer file (``data/indexes/CURRENT.json``, written atomically by
the ``faiss_index`` asset): :meth:`EngineHolder.check` reloads when its bytes differ from those of the last load
attempt, so a broken pointer is tried once, not every few seconds, and a fixed one is picked up. A reload asked for
while the pointer still names the index being served (:meth:`EngineHolder.reload` with ``if_changed``) loads nothing.

``/health`` is open to anyone, so what it shows of a failed load (:func:`public_reason`) is a reason, never the
exception's text (which often holds absolute file paths); the full error goes to the server log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lexdpr_pipeline.artifacts import ArtifactStore

logger = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Loaded:
    """An engine with what it reported about itself when it was loaded (read once: it may cost a scan)."""

    engine: Any
    versions: dict[str, Any]
    loaded_at: str
    signature: str | None = None  # of the pointer file it was loaded from


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    reason: str
    error: str | None = None  # public_reason(): safe to show to clients
    seconds: float = 0.0
    reloaded: bool = True  # False: the pointer names the served index, nothing was loaded


def public_reason(exc: BaseException, stage: str, *, published: bool = True) -> str:
    """What a client may read about a failed load: a category and the exception's type, no message, no paths."""
    if not published:
        what = "no index has been published yet"
    elif stage == "warm-up":
        what = "the new engine failed its warm-up search"
    elif isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        what = "a file of the published index is missing"
    elif isinstance(exc, PermissionError):
        what = "a file of the published index cannot be read"
    elif any(isinstance(e, UnicodeDecodeError | json.JSONDecodeError) for e in _causes(exc)):
        what = "the index pointer is not valid JSON"
    elif isinstance(exc, ValueError | KeyError | TypeError):
        what = "the published index is invalid"
    elif isinstance(exc, MemoryError):
        what = "not enough memory to load the index"
    else:
        what = "the index could not be loaded"
    return f"{what} ({type(exc).__name__}; details in the server log)"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from (the store wraps a JSON error of the pointer in a ValueError)."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__  # type: ignore[assignment]
    return chain


class EngineHolder:
    """Holds the current engine; ``loader()`` builds a new one (e.g. ``lambda: load_engine(settings)``) and
    ``warm_up(engine)``, when given, runs on it before it is served (an engine that fails it is not swapped in).
    ``store`` (and ``pointer``, a pointer file other than the store's) say which pointer file to watch.
    ``on_reload(result, current)`` is told of every load attempt (not of the no-op ``if_changed`` reloads), with the
    engine served after it (the metrics count reloads and describe the served index); its errors are only logged."""

    def __init__(
        self,
        loader: Callable[[], Any],
        store: ArtifactStore | None = None,
        *,
        pointer: Path | None = None,
        warm_up: Callable[[Any], None] | None = None,
        on_reload: Callable[[ReloadResult, Loaded | None], None] | None = None,
    ) -> None:
        self._loader = loader
        self._warm_up = warm_up
        self._on_reload = on_reload
        if pointer is not None and store is None:
            raise ValueError("watching a pointer file needs the artifact store it belongs to")
        self._store = store
        # the watched pointer file: ``pointer``, else the store's; none without a store (nothing to watch)
        self.pointer = Path(pointer) if pointer is not None else (store.pointer_path if store is not None else None)
        self._current: Loaded | None = None
        self._load_lock = threading.Lock()
        self._attempted_signature: str | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.loads = 0
        self.last_attempt: dict[str, Any] | None = None

    @property
    def current(self) -> Loaded | None:
        """The engine to use for one request (None while none could be loaded). Read it once per request."""
        return self._current

    @property
    def engine(self) -> Any:
        current = self._current
        return current.engine if current is not None else None

    def pointer_signature(self) -> str | None:
        """sha256 of the pointer file's bytes; None when there is no pointer file (or none is watched)."""
        raw = self._pointer_bytes()
        return hashlib.sha256(raw).hexdigest() if raw is not None else None

    def _pointer_bytes(self) -> bytes | None:
        return self._store.pointer_bytes(self.pointer) if self._store is not None else None

    def _published(self) -> bool:
        """Whether there is a pointer file to load from (or none is watched: the loader decides)."""
        try:
            return self.pointer is None or self._pointer_bytes() is not None
        except OSError:
            return True  # there, but unreadable

    def reload(self, reason: str = "admin", *, if_changed: bool = False) -> ReloadResult:
        """Load a new engine now and swap it in; on failure keep the current one and record the error.

        ``if_changed``: do nothing (``reloaded=False``) when the pointer file's bytes are those the served engine was
        loaded from. Without a pointer file to compare, it loads.
        """
        with self._load_lock:
            signature = self.pointer_signature()  # before loading: a change during the load triggers another
            current = self._current
            if if_changed and current is not None and signature is not None and signature == current.signature:
                return ReloadResult(True, reason, None, 0.0, reloaded=False)
            started = time.perf_counter()
            stage = "load"
            try:
                engine = self._loader()
                if self._warm_up is not None:
                    stage = "warm-up"
                    self._warm_up(engine)
                versions = _versions(engine)
            except Exception as exc:  # any loader failure must leave the served engine in place
                seconds = time.perf_counter() - started
                published = self._published()
                expected = isinstance(exc, FileNotFoundError | ValueError)  # no index yet, a bad pointer: no traceback
                logger.error(
                    "engine reload (%s) failed after %.1fs (%s: %s); %s",
                    reason,
                    seconds,
                    type(exc).__name__,
                    exc,
                    "keeping the current engine" if self._current is not None else "no engine is loaded",
                    exc_info=not expected,
                )
                result = ReloadResult(False, reason, public_reason(exc, stage, published=published), seconds)
            else:
                seconds = time.perf_counter() - started
                # one reference assignment: atomic for readers
                self._current = Loaded(engine, versions, _now(), signature)
                self.loads += 1
                logger.info(
                    "engine loaded (%s) in %.1fs: model %s, index %s",
                    reason,
                    seconds,
                    versions.get("model_version"),
                    versions.get("index_version"),
                )
                result = ReloadResult(True, reason, None, seconds)
            self._attempted_signature = signature
            self.last_attempt = {
                "at": _now(),
                "reason": reason,
                "ok": result.ok,
                "error": result.error,
                "seconds": round(result.seconds, 3),
            }
            if self._on_reload is not None:
                try:
                    self._on_reload(result, self._current)
                except Exception:  # reporting must never break serving
                    logger.exception("on_reload hook failed")
            return result

    def check(self) -> ReloadResult | None:
        """Reload when the pointer file changed since the last attempt; None when nothing changed."""
        signature = self.pointer_signature()
        if signature is None or signature == self._attempted_signature:
            return None
        return self.reload("pointer changed")

    # background watcher --------------------------------------------------------------------------------------

    def start_watcher(self, interval_s: float) -> None:
        """Call :meth:`check` every ``interval_s`` seconds in a daemon thread (no-op for ``interval_s <= 0``)."""
        if interval_s <= 0 or self._watcher is not None:
            return
        self._stop.clear()
        self._watcher = threading.Thread(
            target=self._watch, args=(interval_s,), name="lexdpr-engine-watcher", daemon=True
        )
        self._watcher.start()

    def stop_watcher(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
            self._watcher = None

    def _watch(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.check()
            except Exception:  # never let the watcher die (e.g. the pointer's folder became unreadable)
                logger.exception("index pointer check failed")

    # reporting ------------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``/health`` reports: ``ok`` / ``degraded`` (serving, but the last reload failed) / ``unavailable``."""
        current = self._current
        last = self.last_attempt
        if current is None:
            state = "unavailable"
        elif last is not None and not last["ok"]:
            state = "degraded"
        else:
            state = "ok"
        return {
            "status": state,
            "loaded_at": current.loaded_at if current is not None else None,
            "versions": current.versions if current is not None else {},
            "loads": self.loads,
            "last_reload": last,
        }


def _versions(engine: Any) -> dict[str, Any]:
    """The engine's ``versions``, JSON-safe (it goes into /health as it is)."""
    versions = getattr(engine, "versions", None)
    return json.loads(json.dumps(versions, default=str)) if isinstance(versions, dict) else {}
