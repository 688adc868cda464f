"""The FastAPI application: ``create_app(settings)`` (tests, embedding) and ``create_app_from_env()`` (uvicorn).

Endpoints, limits and error shapes are documented in docs/API.md; running it in docs/DEPLOY.md. Thin: the work is
done by the search engine (``lexdpr_pipeline.search.engine``), which :class:`EngineHolder` loads and hot-swaps.

Every request but ``/health`` and the OpenAPI pages (and their assets) goes through :class:`RequestGuard`, in order: the
``Content-Length`` check (400 / 413), the per-client rate limit (429 + Retry-After), the ``X-API-Key`` check when
``api.api_key`` is set (401), the separate ``/admin/reload`` limit (429), the media type of JSON endpoints (415),
and the body itself, read with the size limit whatever ``Content-Length`` said (413 as soon as it is passed, a
chunked body included) and checked to be UTF-8 (422). Then the request models (built from the configured limits,
so the OpenAPI schema declares them) validate it (422). Every error is ``{"error": {"code", "message"}}``; nothing
a client sends gives a 500.

Around the guard: :class:`~lexdpr_pipeline.api.metrics.MetricsMiddleware` (Prometheus metrics, ``GET /metrics``: open
unless ``api.metrics_require_key``) outermost, then Starlette's ``GZipMiddleware`` (responses of at least
``api.gzip_min_bytes`` bytes, for clients that accept gzip).
"""

import email.message
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lexdpr_pipeline.api.engine_holder import EngineHolder, Loaded
from lexdpr_pipeline.api.metrics import METRICS_PATH, ApiMetrics, MetricsMiddleware
from lexdpr_pipeline.api.ratelimit import RateLimiter
from lexdpr_pipeline.api.schemas import (
    EmbedResponse,
    EmbedType,
    ErrorResponse,
    HealthResponse,
    ReloadResponse,
    SearchResponse,
    request_models,
)
from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.search.engine import SearchFilters
from lexdpr_pipeline.settings import Settings, load_settings

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
#: Paths that need neither the API key nor a rate-limit token (load balancers poll /health).
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: Where the Swagger UI / ReDoc assets are served from (open like /docs): the copies the ``fastapi-offline`` wheel
#: ships, so the documentation pages work on an air-gapped host (FastAPI's defaults load them from a CDN).
DOCS_STATIC = "/docs-static"
#: Endpoints whose body is JSON (415 for another media type, 422 for a body that is not UTF-8).
JSON_PATHS = frozenset({"/search", "/embed/query", "/embed/passage"})
RELOAD_PATH = "/admin/reload"
#: Environment variable through which ``lex-dpr api`` hands its ``--set`` overrides to uvicorn workers.
OVERRIDES_ENV = "LEXDPR_API_OVERRIDES"

# Documents the header in OpenAPI ("Authorize" in /docs) when a key is configured; the check itself is in the
# guard, before the body is read, so an unauthenticated request never learns whether its body was valid.
_api_key_doc = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The key the server was given")

_ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: a Content-Length that is not a number, a body that cannot be parsed (bad_request)",
    401: "Missing or wrong X-API-Key (unauthorized)",
    413: "Body over the size limit, counted while it is read (body_too_large)",
    415: "A body that is not application/json (unsupported_media_type)",
    422: "Invalid body: not UTF-8 JSON (invalid_json), wrong types, unknown fields, a blank query, a text that is not "
    "well-formed Unicode (invalid_request), a limit of the schema passed (too_many_texts, text_too_long, "
    "top_k_too_large)",
    429: "Rate limit exceeded (rate_limited); see Retry-After",
    500: "A server bug (internal_error, with a request id to find in the log)",
    503: "No engine loaded: no index yet, or it failed to load (engine_unavailable)",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def is_open_path(path: str) -> bool:
    """Whether ``path`` skips the guard (key, rate limit): /health, the documentation pages and their assets."""
    return path in OPEN_PATHS or path.startswith(DOCS_STATIC + "/")


def _error(
    status: int, code: str, message: str, *, details: list | None = None, headers: dict | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _default_loader(settings: Settings, pointer: Path) -> Callable[[], Any]:
    def load() -> Any:
        from lexdpr_pipeline.search.engine import load_engine

        return load_engine(settings, pointer)

    return load


WARM_UP_QUERY = "손해배상"


def warm_up(engine: Any) -> None:
    """One search per mode the engine offers, before it is served: loads what loads lazily (Kiwi's model for BM25
    takes seconds) so no user request pays for it, and proves the new engine can answer at all."""
    for mode in getattr(engine, "modes", None) or [None]:
        engine.search(WARM_UP_QUERY, top_k=1, mode=mode)


def max_body_bytes(settings: Settings) -> int:
    """The body size limit: room for ``max_texts`` texts of ``max_chars`` characters, each escaped as ``\\uXXXX``
    (12 bytes for a surrogate pair), plus the other fields."""
    return settings.api.max_texts * (settings.api.max_chars * 12 + 16) + 64 * 1024


def _clean(value: Any, limit: int = 200) -> str:
    """A string safe to put in a JSON response: lone surrogates replaced, bounded length."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.encode("utf-8", "replace").decode("utf-8")


def _limit_code(detail: dict[str, Any]) -> str:
    """The error code of one validation problem: the declared limits have codes of their own."""
    kind, loc = detail["type"], detail["loc"]
    field = loc[1] if len(loc) > 1 else ""
    if kind == "too_long" and field == "texts" and len(loc) == 2:
        return "too_many_texts"
    if kind == "string_too_long" and field in ("query", "texts"):
        return "text_too_long"
    if kind == "less_than_equal" and field == "top_k":
        return "top_k_too_large"
    return "invalid_request"


def _validation_details(exc: RequestValidationError) -> tuple[str, str, list[dict[str, Any]]]:
    details = [
        {
            "loc": [_clean(p, 100) for p in err.get("loc", ())],
            "msg": _clean(err.get("msg", "")),
            "type": _clean(err.get("type", "")),
        }
        for err in exc.errors()
    ]  # no "input": it would echo (possibly huge) request text back
    if any(d["type"] == "json_invalid" for d in details):
        return "invalid_json", "the request body is not valid JSON", details
    codes = {_limit_code(d) for d in details}
    code = codes.pop() if len(codes) == 1 else "invalid_request"
    summary = "; ".join(f"{'.'.join(d['loc'][1:]) or 'body'}: {d['msg']}" for d in details[:5])
    return code, summary or "invalid request", details


def _is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class RequestGuard:
    """Pure ASGI middleware: the checks before the app (``refuse``: headers only; then the body, read here with the
    ``max_body`` limit and handed on), the ``X-Request-ID`` header, the request log line, and the JSON 500 for an
    unhandled error. Pure ASGI rather than ``@app.middleware``, so it can stop reading a body that is too large."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        refuse: Callable[[Request], Response | None],
        max_body: int,
        open_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app, self.refuse, self.max_body, self.open_paths = app, refuse, max_body, open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:12]
        state = {"status": 0, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        request = Request(scope)
        path = scope["path"]
        try:
            response = None
            if not (is_open_path(path) or path in self.open_paths):
                response = self.refuse(request)
                if response is None:
                    response, receive = await self._read_body(request, receive)
                elif request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
                    # refused before its body was read: close the connection rather than let the server read
                    # (and throw away) a body of any length to keep it open
                    response.headers["Connection"] = "close"
            if response is not None:
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            state["status"] = state["status"] or 499  # nginx's word for it: the client went away
        except Exception:  # logged with its traceback; the client gets the error shape, not internals
            logger.exception("unhandled error in %s %s (id=%s)", scope["method"], path, request_id)
            if state["started"]:
                raise
            await _error(500, "internal_error", f"internal server error (request id {request_id})")(
                scope, receive, send_with_id
            )
        client = scope.get("client")
        logger.info(
            "%s %s %s %d %.1fms id=%s",
            client[0] if client else "-",
            scope["method"],
            path,  # never the query string or headers: no secrets in logs
            state["status"],
            (time.perf_counter() - started) * 1000,
            request_id,
        )

    async def _read_body(self, request: Request, receive: Receive) -> tuple[Response | None, Receive]:
        """Read the whole body (chunked or not), counting: 413 as soon as it passes ``max_body``, without reading
        the rest. The app then gets the body from memory (it would hold it all to parse the JSON anyway)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:  # the rest stays unread; the connection is closed after the answer
                text = f"request body over {self.max_body} bytes"
                return _error(413, "body_too_large", text, headers={"Connection": "close"}), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and request.url.path in JSON_PATHS:
            if "content-type" not in request.headers:
                return _error(415, "unsupported_media_type", "send the body as Content-Type: application/json"), receive
            if json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
                return _error(422, "invalid_json", "the request body is not valid JSON: it must be UTF-8"), receive
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                return _error(
                    422, "invalid_json", f"the request body is not valid JSON: not UTF-8 (byte {exc.start})"
                ), receive
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        return None, replay


def create_app(
    settings: Settings,
    engine_loader: Callable[[], Any] | None = None,
    *,
    pointer: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The API over the engine ``engine_loader()`` returns (default: ``load_engine`` on ``pointer``).

    The engine is loaded when the app starts (lifespan), then reloaded whenever the pointer file changes (checked
    every ``api.reload_check_s`` seconds) or on ``POST /admin/reload``. ``clock`` drives the rate limiters (tests).
    """
    api = settings.api
    store = ArtifactStore.from_settings(settings)
    pointer = pointer or store.pointer_path
    metrics = ApiMetrics()
    holder = EngineHolder(
        engine_loader or _default_loader(settings, pointer),
        store,
        pointer=pointer,
        warm_up=warm_up,
        on_reload=metrics.record_reload,
    )
    limiter = RateLimiter(api.rate_limit_per_minute, clock=clock) if api.rate_limit_per_minute else None
    reload_limiter = (
        RateLimiter(api.reload_rate_limit_per_minute, clock=clock) if api.reload_rate_limit_per_minute else None
    )
    api_key = api.api_key.get_secret_value().encode("utf-8") if api.api_key else None
    max_body = max_body_bytes(settings)
    models = request_models(max_chars=api.max_chars, max_texts=api.max_texts, max_top_k=api.max_top_k)
    SearchRequest, EmbedRequest = models.search, models.embed

    # what each endpoint can answer besides 200, as OpenAPI declares it
    def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
        out: dict[int | str, dict[str, Any]] = {}
        for code in codes:
            if (code == 401 and api_key is None) or (code == 429 and limiter is None and reload_limiter is None):
                continue  # cannot happen with these settings
            out[code] = {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[code]}
            if code == 429:
                out[code]["headers"] = _RETRY_AFTER
        return out

    json_responses = responses(400, 401, 413, 415, 422, 429, 500, 503)
    auth = [Depends(_api_key_doc)] if api_key is not None else []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "loading the engine; index pointer %s%s",
            pointer,
            f", checked every {api.reload_check_s:g}s" if api.reload_check_s > 0 else " (reload: POST /admin/reload)",
        )
        result = holder.reload("startup")
        if not result.ok:
            logger.error("no engine at startup (%s): serving 503 until a reload succeeds", result.error)
        holder.start_watcher(api.reload_check_s)
        try:
            yield
        finally:
            holder.stop_watcher()
            metrics.shutdown()

    app = FastAPI(
        title="LexDPR API",
        version="1",
        description="Korean legal passage retrieval: dense (bi-encoder + FAISS), BM25 and hybrid search over "
        'statutes, administrative rules and precedents. Errors: `{"error": {"code", "message"}}`. '
        f"Limits: {api.max_texts} texts of {api.max_chars} characters per request, top_k ≤ {api.max_top_k}, "
        f"bodies ≤ {max_body} bytes. Texts must be well-formed Unicode.",
        lifespan=lifespan,
        docs_url=None,  # served by _add_docs, from local assets
        redoc_url=None,
    )
    _add_docs(app)
    app.state.settings = settings
    app.state.holder = holder
    app.state.limiter = limiter
    app.state.reload_limiter = reload_limiter
    app.state.metrics = metrics

    # errors ------------------------------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, details = _validation_details(exc)
        return _error(422, code, message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
            415: "unsupported_media_type",
        }.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, _clean(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error", exc_info=exc)
        return _error(500, "internal_error", "internal server error (see the server log)")

    # guard -------------------------------------------------------------------------------------------------------

    def _limited(bucket: RateLimiter, client: str, what: str) -> JSONResponse | None:
        allowed, retry_after = bucket.allow(client)
        if allowed:
            return None
        return _error(
            429,
            "rate_limited",
            f"more than {int(bucket.capacity)} {what} a minute; retry in {retry_after}s",
            headers={"Retry-After": str(retry_after)},
        )

    def refuse(request: Request) -> JSONResponse | None:
        length = request.headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return _error(400, "bad_request", "the Content-Length header is not a number")
            if int(length) > max_body:
                return _error(413, "body_too_large", f"request body over {max_body} bytes")
        presented = request.headers.get(API_KEY_HEADER)
        key_ok = (
            api_key is not None and presented is not None and hmac.compare_digest(presented.encode("utf-8"), api_key)
        )
        # A valid key is its own client (wherever it comes from); anything else is limited by address, so guessing
        # keys is rate limited too. The address is the TCP peer unless it is a trusted proxy (api.trusted_proxies,
        # applied by the server). The key itself is never stored or logged, only a hash prefix.
        client = (
            "key:" + hashlib.sha256(api_key or b"").hexdigest()[:16]
            if key_ok
            else "ip:" + (request.client.host if request.client else "unknown")
        )
        if limiter is not None and (refused := _limited(limiter, client, "requests")):
            return refused
        if api_key is not None and not key_ok:
            return _error(
                401,
                "unauthorized",
                f"missing or wrong {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        path = request.url.path
        reloading = path == RELOAD_PATH and reload_limiter is not None
        if reloading and (refused := _limited(reload_limiter, client, "reloads")):
            return refused
        if path in JSON_PATHS and not _is_json(request.headers.get("content-type") or "application/json"):
            return _error(415, "unsupported_media_type", "send the body as Content-Type: application/json")
        return None

    open_paths = frozenset() if api.metrics_require_key else frozenset({METRICS_PATH})
    app.add_middleware(RequestGuard, refuse=refuse, max_body=max_body, open_paths=open_paths)
    if api.gzip_min_bytes is not None:
        app.add_middleware(GZipMiddleware, minimum_size=api.gzip_min_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)  # outermost: sees every status

    # endpoints ---------------------------------------------------------------------------------------------------

    def _loaded() -> Loaded:
        loaded = holder.current  # one read: this request keeps this engine even if a reload swaps it
        if loaded is None:
            error = (holder.last_attempt or {}).get("error") or "no engine loaded"
            raise ApiError(503, "engine_unavailable", f"no search engine is loaded: {error}")
        return loaded

    def _health() -> HealthResponse:
        status = holder.status()
        versions = status["versions"]
        by_source = versions.get("by_source") or {}
        return HealthResponse(
            status=status["status"],
            loaded_at=status["loaded_at"],
            model_version=_str_or_none(versions.get("model_version")),
            index_version=_str_or_none(versions.get("index_version")),
            passages=versions.get("passages") if isinstance(versions.get("passages"), int) else None,
            passages_by_source=by_source if isinstance(by_source, dict) else {},
            # no file system paths: /health is open even when an API key is required
            versions={k: v for k, v in versions.items() if not k.endswith("_path") and k != "pointer"},
            loads=status["loads"],
            last_reload=status["last_reload"],
        )

    @app.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "No engine loaded (status unavailable)"}},
    )
    def health() -> Any:
        """Liveness and what is served. 200 while an engine is loaded (status ok or degraded), else 503."""
        report = _health()
        if report.status == "unavailable":
            return JSONResponse(report.model_dump(mode="json"), status_code=503)
        return report

    def _embed(texts: list[str], kind: EmbedType) -> EmbedResponse:
        loaded = _loaded()
        encode = loaded.engine.embed_queries if kind is EmbedType.query else loaded.engine.embed_passages
        try:
            matrix = encode(texts)
        except ValueError as exc:  # e.g. a BM25-only engine has no model
            raise ApiError(422, "invalid_request", _clean(exc)) from exc
        return EmbedResponse(
            type=kind,
            embeddings=matrix.tolist(),
            dim=int(matrix.shape[1]),
            count=int(matrix.shape[0]),
            model_version=_str_or_none(loaded.versions.get("model_version")),
        )

    @app.post("/embed/query", response_model=EmbedResponse, responses=json_responses, dependencies=auth)
    def embed_query(body: EmbedRequest) -> EmbedResponse:
        """Embed queries with the served model (its query template applied)."""
        return _embed(body.texts, EmbedType.query)

    @app.post("/embed/passage", response_model=EmbedResponse, responses=json_responses, dependencies=auth)
    def embed_passage(body: EmbedRequest) -> EmbedResponse:
        """Embed passages with the served model (its passage template applied)."""
        return _embed(body.texts, EmbedType.passage)

    @app.post("/search", response_model=SearchResponse, responses=json_responses, dependencies=auth)
    def search(body: SearchRequest) -> SearchResponse:
        """Search the served index. One result per document (its best passage), best first."""
        loaded = _loaded()
        versions = loaded.versions
        mode = body.mode.value if body.mode else _str_or_none(versions.get("default_mode", settings.search.mode))
        filters = SearchFilters(**body.filters.to_kwargs()) if body.filters is not None else None
        started = time.perf_counter()
        if body.filters is not None and body.filters.empty_range():
            hits = []  # date_from after date_to: nothing can match
        else:
            try:
                hits = loaded.engine.search(
                    body.query,
                    top_k=body.top_k,
                    mode=body.mode.value if body.mode else None,
                    filters=filters,
                    threshold=body.threshold,
                )
            except ValueError as exc:  # the engine's word for bad input (e.g. a mode its index cannot serve)
                raise ApiError(422, "invalid_request", _clean(exc)) from exc
        return SearchResponse(
            query=body.query,
            mode=mode,
            results=[hit.to_dict() for hit in hits],
            took_ms=round((time.perf_counter() - started) * 1000, 2),
            index_version=_str_or_none(versions.get("index_version")),
            model_version=_str_or_none(versions.get("model_version")),
        )

    @app.get(METRICS_PATH, include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text format (docs/DEPLOY.md, Monitoring); every worker's values under ``api.workers`` > 1."""
        from lexdpr_pipeline.api.metrics import CONTENT_TYPE

        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.post(
        RELOAD_PATH,
        response_model=ReloadResponse,
        responses={
            **responses(400, 401, 413, 429),
            500: {"model": ErrorResponse, "description": "Reload failed (reload_failed; the old engine stays), a bug"},
        },
        dependencies=auth,
    )
    def admin_reload() -> ReloadResponse:
        """Load the index the pointer names now and swap it in. Cheap when the pointer still names the served index
        (``reloaded: false``). On failure the served engine stays (500)."""
        result = holder.reload("admin", if_changed=True)
        if not result.ok:
            serving = holder.current
            still = f"still serving index {serving.versions.get('index_version')}" if serving else "no engine is loaded"
            raise ApiError(500, "reload_failed", f"reload failed: {result.error}; {still}")
        return ReloadResponse(
            ok=True,
            reloaded=result.reloaded,
            reason="loaded" if result.reloaded else "unchanged",
            seconds=round(result.seconds, 3),
            health=_health(),
        )

    return app


def docs_assets_dir() -> Path:
    """The folder of Swagger UI's and ReDoc's JavaScript/CSS as the ``fastapi-offline`` package ships them."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI), its OAuth2 redirect page and ``/redoc``, as FastAPI builds them but with every asset
    served by this app under :data:`DOCS_STATIC`: no URL in these pages leaves the server."""
    app.mount(DOCS_STATIC, StaticFiles(directory=docs_assets_dir()), name="docs-static")
    oauth2_redirect = "/docs/oauth2-redirect"

    def local(request: Request, path: str) -> str:
        return request.scope.get("root_path", "").rstrip("/") + path

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=local(request, app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=local(request, oauth2_redirect),
            swagger_js_url=local(request, f"{DOCS_STATIC}/swagger-ui-bundle.js"),
            swagger_css_url=local(request, f"{DOCS_STATIC}/swagger-ui.css"),
            swagger_favicon_url=local(request, f"{DOCS_STATIC}/favicon.png"),
            # no badge asking validator.swagger.io about the schema
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=local(request, app.openapi_url or "/openapi.json"),
            title=f"{app.title} - ReDoc",
            redoc_js_url=local(request, f"{DOCS_STATIC}/redoc.standalone.js"),
            redoc_favicon_url=local(request, f"{DOCS_STATIC}/favicon.png"),
            with_google_fonts=False,
        )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def create_app_from_env() -> FastAPI:
    """uvicorn factory (``--factory lexdpr_pipeline.api.app:create_app_from_env``): settings from the usual places
    (``$LEXDPR_CONFIG`` / ``./lexdpr.yaml``, environment) plus the ``--set`` overrides ``lex-dpr api`` passes in
    ``$LEXDPR_API_OVERRIDES`` (a JSON list), so every worker process builds the same app."""
    from lexdpr_pipeline.logging_setup import configure_logging

    overrides = json.loads(os.environ.get(OVERRIDES_ENV) or "[]")
    settings = load_settings(None, overrides)
    secrets = [s.get_secret_value() for s in (settings.api.api_key, settings.lawgo.oc) if s is not None]
    configure_logging(settings.logging.level, settings.logging.json_format, settings.logging.file, secrets=secrets)
    return create_app(settings)
