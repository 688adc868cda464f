"""Prometheus metrics of the API, served at ``GET /metrics`` (names and example queries: docs/DEPLOY.md, Monitoring).

- HTTP: ``lexdpr_http_requests_total{method,route,status}``, ``lexdpr_http_request_duration_seconds{method,route}``
  (histogram) and ``lexdpr_http_requests_in_progress``, counted by :class:`MetricsMiddleware` around everything else,
  so requests the guard refuses (401, 413, 429) are counted with their status. ``route`` is the route template
  (``/search``, ``/docs-static``), ``<unmatched>`` for any other path (no unbounded label values). Scrapes of
  ``/metrics`` itself are not counted.
- The served index: ``lexdpr_index_info{model_version,index_version,faiss_type,encoder_backend}`` (1 for the index
  served, 0 for earlier ones), ``lexdpr_index_passages``, ``lexdpr_corpus_passages{source}``, ``lexdpr_engine_loaded``,
  and ``lexdpr_index_reloads_total{trigger}`` / ``lexdpr_index_reload_failures_total{trigger}`` (every load attempt of
  :class:`~lexdpr_pipeline.api.engine_holder.EngineHolder`: startup, admin, pointer_changed).

Several uvicorn workers (``api.workers`` > 1) use prometheus-client's multiprocess mode: ``lex-dpr api`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the workers start (the variable must be set before
``prometheus_client`` is imported), every worker writes its values to files there, and ``/metrics`` — answered by
whichever worker — adds them up. Gauges keep only live workers (a worker marks itself dead when it shuts down).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from lexdpr_pipeline.api.engine_holder import Loaded, ReloadResult

METRICS_PATH = "/metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Content type of what generate_latest writes: the text exposition format 0.0.4 (what Prometheus scrapes).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED = "<unmatched>"
#: Seconds; /search on a CPU is tens of milliseconds, a cold BM25 or a big /embed batch seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_INFO_LABELS = ("model_version", "index_version", "faiss_type", "encoder_backend")


def multiprocess_dir() -> str | None:
    """The folder of the workers' metric files when this process runs in multiprocess mode, else None.

    Multiprocess mode is decided when ``prometheus_client`` is imported; a ``PROMETHEUS_MULTIPROC_DIR`` set after
    that would silently serve one worker's values, so it is an error here."""
    path = os.environ.get(MULTIPROC_ENV)
    active = bool(getattr(_values.ValueClass, "_multiprocess", False))
    if path and not active:
        raise RuntimeError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported: set it before the server starts"
        )
    return path if active else None


def _label(value: Any) -> str:
    return "" if value is None else str(value)[:200]


class ApiMetrics:
    """The API's metrics, in a registry of their own (single process) or in the shared files (multiprocess)."""

    def __init__(self) -> None:
        self.multiprocess_path = multiprocess_dir()
        self.registry = CollectorRegistry(auto_describe=True)
        if self.multiprocess_path is None:
            from prometheus_client import PlatformCollector, ProcessCollector

            ProcessCollector(registry=self.registry)  # memory and CPU of the (one) server process
            PlatformCollector(registry=self.registry)
        reg = None if self.multiprocess_path else self.registry  # multiprocess: collected from the files
        self.requests = Counter(
            "lexdpr_http_requests_total",
            "HTTP requests answered, by method, route template and status code",
            ("method", "route", "status"),
            registry=reg,
        )
        self.latency = Histogram(
            "lexdpr_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by method and route template",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_progress = Gauge(
            "lexdpr_http_requests_in_progress",
            "Requests being answered now",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.index_info = Gauge(
            "lexdpr_index_info",
            "The served index (1) and the ones served before it in this process (0)",
            _INFO_LABELS,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.passages = Gauge(
            "lexdpr_index_passages", "Passages in the served index", registry=reg, multiprocess_mode="livemax"
        )
        self.corpus = Gauge(
            "lexdpr_corpus_passages",
            "Passages in the served index, by source (law, admrul, prec)",
            ("source",),
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.loaded = Gauge(
            "lexdpr_engine_loaded",
            "1 while a search engine is loaded (in every live worker, under multiprocess mode), else 0",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.reloads = Counter(
            "lexdpr_index_reloads_total", "Engine loads that succeeded, by trigger", ("trigger",), registry=reg
        )
        self.reload_failures = Counter(
            "lexdpr_index_reload_failures_total",
            "Engine loads that failed (the previous engine kept serving), by trigger",
            ("trigger",),
            registry=reg,
        )
        self.loaded.set(0)
        self._info: tuple[str, ...] | None = None
        self._sources: set[str] = set()

    # the engine ------------------------------------------------------------------------------------------------

    def record_reload(self, result: ReloadResult, current: Loaded | None) -> None:
        """After a load attempt of the engine holder: count it and describe the engine now served."""
        trigger = result.reason.strip().replace(" ", "_") or "unknown"
        (self.reloads if result.ok else self.reload_failures).labels(trigger).inc()
        self.observe_engine(current)

    def observe_engine(self, current: Loaded | None) -> None:
        if current is None:
            self.loaded.set(0)
            return
        versions = current.versions
        info = tuple(_label(versions.get(k)) for k in _INFO_LABELS)
        if info[3] == "":
            info = (*info[:3], "torch")  # an index published before encoder backends existed
        if self._info is not None and self._info != info:
            self._drop(self.index_info, self._info)
        self.index_info.labels(*info).set(1)
        self._info = info
        passages = versions.get("passages")
        self.passages.set(passages if isinstance(passages, int | float) else 0)
        by_source = versions.get("by_source") if isinstance(versions.get("by_source"), dict) else {}
        for source in self._sources - set(map(str, by_source)):
            self._drop(self.corpus, (source,))
        for source, count in by_source.items():
            self.corpus.labels(_label(source)).set(count if isinstance(count, int | float) else 0)
        self._sources = set(map(str, by_source))
        self.loaded.set(1)

    def _drop(self, gauge: Gauge, labels: Sequence[str]) -> None:
        """A label set that no longer applies: removed (single process), or 0 (multiprocess: files keep values)."""
        if self.multiprocess_path is None:
            gauge.remove(*labels)
        else:
            gauge.labels(*labels).set(0)

    # exposition ------------------------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes: this process's registry, or every worker's files added up."""
        if self.multiprocess_path is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_path)
        return generate_latest(registry)

    def shutdown(self) -> None:
        """A worker that stops: its live gauges (in progress, index info) leave the sums."""
        if self.multiprocess_path is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_path)


def route_label(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route ``scope`` goes to (a wrong method still names it), else :data:`UNMATCHED`."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return getattr(route, "path", None) or UNMATCHED
    return UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware, outermost: counts every HTTP request by route template and status, times it, and keeps
    the in-progress gauge. A request that ends without a response counts as 500 (an error escaped) or 499 (the
    client went away)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = route_label(self.routes, scope)
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        metrics.in_progress.inc()
        started = time.perf_counter()
        failed = False
        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            failed = True
            raise
        finally:
            metrics.in_progress.dec()
            code = status[0] if status else (500 if failed else 499)
            metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            metrics.requests.labels(method, route, str(code)).inc()
