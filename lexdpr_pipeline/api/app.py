"""The FastAPI application: ``create_app(settings)`` (tests, embedding) and ``create_app_from_env()`` (uvicorn).

Endpoints and error shapes are documented in docs/API.md; running it in docs/DEPLOY.md. Thin: the work is done
by the search engine (``lexdpr_pipeline.search.engine``), which :class:`EngineHolder` loads and hot-swaps.

Every request but ``/health`` and the OpenAPI pages goes through, in order: a body-size check (413), the per-client
rate limit (429 + Retry-After), and, when ``api.api_key`` is set, the ``X-API-Key`` check (401). Every error is
``{"error": {"code", "message"}}``; a malformed body is a 422, never a 500.
"""

from __future__ import annotations

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
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from lexdpr_pipeline.api.engine_holder import EngineHolder, Loaded
from lexdpr_pipeline.api.ratelimit import RateLimiter
from lexdpr_pipeline.api.schemas import (
    EmbedRequest,
    EmbedResponse,
    EmbedType,
    ErrorResponse,
    HealthResponse,
    ReloadResponse,
    SearchRequest,
    SearchResponse,
)
from lexdpr_pipeline.search.engine import SearchFilters, pointer_path
from lexdpr_pipeline.settings import Settings, load_settings

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
#: Paths that need neither the API key nor a rate-limit token (load balancers poll /health).
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: Environment variable through which ``lex-dpr api`` hands its ``--set`` overrides to uvicorn workers.
OVERRIDES_ENV = "LEXDPR_API_OVERRIDES"

# Documents the header in OpenAPI ("Authorize" in /docs); the check itself is in the middleware, before the body is
# parsed, so an unauthenticated request never learns whether its body was valid.
_api_key_doc = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Needed when api.api_key is set")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what}
    for code, what in {
        401: "Missing or wrong X-API-Key",
        413: "Too many texts, a text too long, or a body too large",
        422: "Malformed JSON, wrong types, unknown fields, top_k too large, blank query",
        429: "Rate limit exceeded (see Retry-After)",
        503: "No engine loaded (no index yet, or it failed to load)",
    }.items()
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


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


def _max_body_bytes(settings: Settings) -> int:
    # JSON may escape every character as \uXXXX (12 bytes for a surrogate pair), plus room for the other fields.
    return settings.api.max_texts * (settings.api.max_chars * 12 + 16) + 64 * 1024


def _validation_details(exc: RequestValidationError) -> tuple[str, str, list[dict[str, Any]]]:
    details = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]  # no "input": it would echo (possibly huge) request text back
    if any(d["type"] == "json_invalid" for d in details):
        return "invalid_json", "the request body is not valid JSON", details
    summary = "; ".join(f"{'.'.join(d['loc'][1:]) or 'body'}: {d['msg']}" for d in details[:5])
    return "invalid_request", summary or "invalid request", details


def create_app(
    settings: Settings,
    engine_loader: Callable[[], Any] | None = None,
    *,
    pointer: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The API over the engine ``engine_loader()`` returns (default: ``load_engine`` on ``pointer``).

    The engine is loaded when the app starts (lifespan), then reloaded whenever the pointer file changes (checked
    every ``api.reload_check_s`` seconds) or on ``POST /admin/reload``. ``clock`` drives the rate limiter (tests).
    """
    api = settings.api
    pointer = pointer or pointer_path(settings)
    holder = EngineHolder(engine_loader or _default_loader(settings, pointer), pointer, warm_up=warm_up)
    limiter = RateLimiter(api.rate_limit_per_minute, clock=clock) if api.rate_limit_per_minute else None
    api_key = api.api_key.get_secret_value().encode("utf-8") if api.api_key else None
    max_body = _max_body_bytes(settings)

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

    app = FastAPI(
        title="LexDPR API",
        version="1",
        description="Korean legal passage retrieval: dense (bi-encoder + FAISS), BM25 and hybrid search over "
        'statutes, administrative rules and precedents. Errors: `{"error": {"code", "message"}}`.',
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.limiter = limiter

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
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error", exc_info=exc)
        return _error(500, "internal_error", "internal server error (see the server log)")

    # guard + request log -----------------------------------------------------------------------------------------

    def _refuse(request: Request) -> JSONResponse | None:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return _error(413, "body_too_large", f"request body over {max_body} bytes")
        presented = request.headers.get(API_KEY_HEADER)
        key_ok = (
            api_key is not None and presented is not None and hmac.compare_digest(presented.encode("utf-8"), api_key)
        )
        if limiter is not None:
            # A valid key is its own client (wherever it comes from); anything else is limited by address, so
            # guessing keys is rate limited too. The key itself is never stored or logged, only a hash prefix.
            client = (
                "key:" + hashlib.sha256(api_key or b"").hexdigest()[:16]
                if key_ok
                else "ip:" + (request.client.host if request.client else "unknown")
            )
            allowed, retry_after = limiter.allow(client)
            if not allowed:
                return _error(
                    429,
                    "rate_limited",
                    f"more than {api.rate_limit_per_minute} requests a minute; retry in {retry_after}s",
                    headers={"Retry-After": str(retry_after)},
                )
        if api_key is not None and not key_ok:
            return _error(
                401,
                "unauthorized",
                f"missing or wrong {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        return None

    @app.middleware("http")
    async def _guard_and_log(request: Request, call_next: Callable) -> Any:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:12]
        response = None if request.url.path in OPEN_PATHS else _refuse(request)
        if response is None:
            try:
                response = await call_next(request)
            except Exception:  # logged with its traceback; the client gets the error shape, not internals
                logger.exception("unhandled error in %s %s (id=%s)", request.method, request.url.path, request_id)
                response = _error(500, "internal_error", f"internal server error (request id {request_id})")
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers["X-Request-ID"] = request_id
        logger.info(
            "%s %s %s %d %.1fms id=%s",
            request.client.host if request.client else "-",
            request.method,
            request.url.path,  # never the query string or headers: no secrets in logs
            response.status_code,
            elapsed_ms,
            request_id,
        )
        return response

    # endpoints ---------------------------------------------------------------------------------------------------

    def _loaded() -> Loaded:
        loaded = holder.current  # one read: this request keeps this engine even if a reload swaps it
        if loaded is None:
            error = (holder.last_attempt or {}).get("error") or "no engine loaded"
            raise ApiError(503, "engine_unavailable", f"no search engine is loaded: {error}")
        return loaded

    def _check_texts(texts: list[str]) -> None:
        if len(texts) > api.max_texts:
            raise ApiError(413, "too_many_texts", f"{len(texts)} texts; at most {api.max_texts} per request")
        for i, text in enumerate(texts):
            if len(text) > api.max_chars:
                raise ApiError(413, "text_too_long", f"text {i} has {len(text)} characters; at most {api.max_chars}")

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

    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    def health() -> Any:
        """Liveness and what is served. 200 while an engine is loaded (status ok or degraded), else 503."""
        report = _health()
        if report.status == "unavailable":
            return JSONResponse(report.model_dump(mode="json"), status_code=503)
        return report

    def _embed(body: EmbedRequest, kind: EmbedType) -> EmbedResponse:
        _check_texts(body.texts)
        loaded = _loaded()
        encode = loaded.engine.embed_queries if kind is EmbedType.query else loaded.engine.embed_passages
        try:
            matrix = encode(body.texts)
        except ValueError as exc:  # e.g. a BM25-only engine has no model
            raise ApiError(422, "invalid_request", str(exc)) from exc
        return EmbedResponse(
            type=kind,
            embeddings=matrix.tolist(),
            dim=int(matrix.shape[1]),
            count=int(matrix.shape[0]),
            model_version=_str_or_none(loaded.versions.get("model_version")),
        )

    @app.post("/embed/query", response_model=EmbedResponse, responses=_ERRORS, dependencies=[Depends(_api_key_doc)])
    def embed_query(body: EmbedRequest) -> EmbedResponse:
        """Embed queries with the served model (its query template applied)."""
        return _embed(body, EmbedType.query)

    @app.post("/embed/passage", response_model=EmbedResponse, responses=_ERRORS, dependencies=[Depends(_api_key_doc)])
    def embed_passage(body: EmbedRequest) -> EmbedResponse:
        """Embed passages with the served model (its passage template applied)."""
        return _embed(body, EmbedType.passage)

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, dependencies=[Depends(_api_key_doc)])
    def search(body: SearchRequest) -> SearchResponse:
        """Search the served index. One result per document (its best passage), best first."""
        _check_texts([body.query])
        if body.top_k > api.max_top_k:
            raise ApiError(422, "top_k_too_large", f"top_k {body.top_k} is over the limit of {api.max_top_k}")
        loaded = _loaded()
        filters = SearchFilters(**body.filters.to_kwargs()) if body.filters is not None else None
        started = time.perf_counter()
        try:
            hits = loaded.engine.search(
                body.query,
                top_k=body.top_k,
                mode=body.mode.value if body.mode else None,
                filters=filters,
                threshold=body.threshold,
            )
        except ValueError as exc:  # the engine's word for bad input (e.g. a mode its index cannot serve)
            raise ApiError(422, "invalid_request", str(exc)) from exc
        versions = loaded.versions
        return SearchResponse(
            query=body.query,
            mode=body.mode.value if body.mode else _str_or_none(versions.get("default_mode", settings.search.mode)),
            results=[hit.to_dict() for hit in hits],
            took_ms=round((time.perf_counter() - started) * 1000, 2),
            index_version=_str_or_none(versions.get("index_version")),
            model_version=_str_or_none(versions.get("model_version")),
        )

    @app.post(
        "/admin/reload",
        response_model=ReloadResponse,
        responses={**_ERRORS, 500: {"model": ErrorResponse, "description": "Reload failed; the old engine stays"}},
        dependencies=[Depends(_api_key_doc)],
    )
    def admin_reload() -> ReloadResponse:
        """Load the index the pointer names now and swap it in; on failure the served engine stays (500)."""
        result = holder.reload("admin")
        if not result.ok:
            serving = holder.current
            still = f"still serving index {serving.versions.get('index_version')}" if serving else "no engine is loaded"
            raise ApiError(500, "reload_failed", f"reload failed ({result.error}); {still}")
        return ReloadResponse(ok=True, seconds=round(result.seconds, 3), health=_health())

    return app


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
