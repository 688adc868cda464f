"""HTTP client of the law.go.kr DRF API (``lawSearch.do`` lists, ``lawService.do`` bodies).

- HTTP-200 error bodies become typed errors (:func:`errors.detect_error_body`).
- Timeouts, connection failures, 5xx, 429 and maintenance pages are retried with exponential backoff and full
  jitter (``uniform(0, min(backoff_max_s, backoff_base_s * 2**attempt))``), then raised.
- ``rate_limit_per_s`` spaces request starts at least ``1 / rate_limit_per_s`` seconds apart (0 = off).
- The ``OC`` key never leaves this object: URLs are logged and stored without it (:func:`strip_oc`), exception
  texts from ``requests`` are scrubbed and not chained, ``repr`` masks it, and a redacting filter sits on the
  ``urllib3`` logger, which would otherwise log every request line with its query string at DEBUG. The key is
  registered with :func:`~lexdpr_pipeline.logging_setup.register_secret`, so every :class:`LawGoError` message and
  every record of our loggers is scrubbed of it, whatever a server echoes back.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from lexdpr_pipeline.logging_setup import redacting_logger, register_secret, scrub_secrets
from lexdpr_pipeline.settings import LawGoSettings
from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoAuthError,
    LawGoError,
    LawGoHTTPError,
    LawGoTransientError,
    detect_error_body,
)
from lexdpr_pipeline.sources.lawgo.normalize import redact_oc_bytes, strip_oc

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_USER_AGENT", "LawGoClient", "RawResponse", "strip_oc"]

logger = redacting_logger(__name__)

_DEFAULTS = LawGoSettings()  # the options are declared once, in the settings model
DEFAULT_BASE_URL = _DEFAULTS.base_url
DEFAULT_USER_AGENT = _DEFAULTS.user_agent

# urllib3 logs '"GET /DRF/lawService.do?OC=…&… HTTP/1.1" 200' at DEBUG; mask the key there too.
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    redacting_logger(_name)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One successful answer, with everything needed to store and trace it — and no OC key anywhere."""

    url_without_oc: str
    params_without_oc: dict[str, str]
    status: int
    content_type: str
    body: bytes = field(repr=False)
    fetched_at: str  # UTC, ISO 8601
    elapsed: float  # seconds


class LawGoClient:
    """Client of the DRF API on a :class:`requests.Session`; see the module doc for retries and secrecy."""

    def __init__(
        self,
        *,
        oc: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = _DEFAULTS.timeout_s,
        max_retries: int = _DEFAULTS.max_retries,
        backoff_base_s: float = _DEFAULTS.backoff_base_s,
        backoff_max_s: float = _DEFAULTS.backoff_max_s,
        rate_limit_per_s: float = 0.0,  # tests and scripts: no pacing unless asked (the settings default paces)
        user_agent: str = DEFAULT_USER_AGENT,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not oc or not oc.strip():
            raise LawGoAuthError("no OC key configured: set LAW_GO_KR_OC")
        if max_retries < 0 or timeout <= 0 or rate_limit_per_s < 0:
            raise ValueError("max_retries must be >= 0, timeout > 0 and rate_limit_per_s >= 0")
        self._oc = oc.strip()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.rate_limit_per_s = rate_limit_per_s
        self.user_agent = user_agent
        self.session = session if session is not None else requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._next_start = 0.0
        register_secret(self._oc)

    @classmethod
    def from_settings(cls, cfg: LawGoSettings, *, oc: str, **hooks: Any) -> LawGoClient:
        """A client with the ``lawgo`` settings section's options (``hooks``: session, sleep, clock, jitter)."""
        return cls(
            oc=oc,
            base_url=cfg.base_url,
            timeout=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_base_s=cfg.backoff_base_s,
            backoff_max_s=cfg.backoff_max_s,
            rate_limit_per_s=cfg.rate_limit_per_s,
            user_agent=cfg.user_agent,
            **hooks,
        )

    def __repr__(self) -> str:
        return (
            f"LawGoClient(base_url={self.base_url!r}, oc='***', timeout={self.timeout}, "
            f"max_retries={self.max_retries}, rate_limit_per_s={self.rate_limit_per_s})"
        )

    def __enter__(self) -> LawGoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # --- public API -----------------------------------------------------------------------------------------------

    def search(self, target: str, *, page: int, display: int = 100, fmt: str = "XML", **params: Any) -> RawResponse:
        """``lawSearch.do``: one page of a listing (``display`` ≤ 100; the server default 20 applies if omitted)."""
        if not 1 <= display <= 100:
            raise ValueError("display must be between 1 and 100")
        if page < 1:
            raise ValueError("page must be >= 1")
        return self._get("lawSearch.do", target, fmt, {"page": page, "display": display, **params})

    def fetch(self, target: str, *, fmt: str = "XML", **params: Any) -> RawResponse:
        """``lawService.do``: one document (``MST=``/``ID=`` for law, ``ID=`` for prec and admrul, …)."""
        return self._get("lawService.do", target, fmt, params)

    def scrub(self, data: bytes) -> tuple[bytes, bool]:
        """``data`` without ``OC=…`` parameters or any literal copy of this client's key; ``(bytes, changed)``."""
        return redact_oc_bytes(data, self._oc)

    def scrub_text(self, text: str) -> str:
        """``text`` without the key in any form (:func:`~lexdpr_pipeline.logging_setup.scrub_secrets`)."""
        return scrub_secrets(strip_oc(text), [self._oc])

    def pause(self, attempt: int, retry_after: float | None = None) -> float:
        """Sleep the backoff of retry number ``attempt`` (0-based; full jitter, capped) and return it. Callers that
        retry for their own reasons (a body that does not parse) use it to wait like the client's own retries."""
        delay = self._backoff(attempt, retry_after)
        self._sleep(delay)
        return delay

    # --- internals ------------------------------------------------------------------------------------------------

    def _get(self, endpoint: str, target: str, fmt: str, params: Mapping[str, Any]) -> RawResponse:
        fmt = fmt.upper()
        if fmt not in ("XML", "JSON"):
            raise ValueError(f"fmt must be 'XML' or 'JSON', not {fmt!r}")
        safe_params = {"target": target, "type": fmt}
        for key, value in params.items():
            if key.upper() == "OC":
                raise ValueError("pass the OC key to the constructor, not as a parameter")
            if value is not None:
                safe_params[key] = str(value)
        url = f"{self.base_url}/{endpoint}"
        safe_url = f"{url}?{urlencode(safe_params)}"
        attempt = 0
        while True:
            try:
                return self._attempt(url, safe_url, safe_params)
            except LawGoError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    if exc.retryable:
                        logger.warning("law.go.kr: giving up on %s after %d attempts", safe_url, attempt + 1)
                    raise
                delay = self._backoff(attempt, getattr(exc, "retry_after", None))
                logger.warning(
                    "law.go.kr: %s for %s; retry %d/%d in %.2fs",
                    type(exc).__name__,
                    safe_url,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = self._jitter() * min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    def _throttle(self) -> None:
        if self.rate_limit_per_s <= 0:
            return
        wait = self._next_start - self._clock()
        if wait > 0:
            self._sleep(wait)

    def _safe(self, exc: BaseException) -> str:
        text = self.scrub_text(f"{type(exc).__name__}: {exc}")
        return text if len(text) <= 300 else text[:299] + "…"

    def _attempt(self, url: str, safe_url: str, safe_params: dict[str, str]) -> RawResponse:
        self._throttle()
        started = self._clock()
        if self.rate_limit_per_s > 0:
            self._next_start = started + 1.0 / self.rate_limit_per_s
        fetched_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        logger.debug("GET %s", safe_url)
        # Errors are raised after the except blocks so they carry no __context__: the requests exception's text
        # holds the full URL, OC included, and a chained traceback would print it.
        failure: LawGoError | None = None
        try:
            response = self.session.get(url, params={"OC": self._oc, **safe_params}, timeout=self.timeout)
            body = response.content
        except requests.Timeout:
            failure = LawGoTransientError(f"no answer within {self.timeout}s", url=safe_url)
        except requests.ConnectionError as exc:
            failure = LawGoTransientError(f"connection failed: {self._safe(exc)}", url=safe_url)
        except requests.RequestException as exc:  # broken chunked transfer, bad content encoding, …
            failure = LawGoTransientError(f"transfer failed: {self._safe(exc)}", url=safe_url)
        if failure is not None:
            raise failure
        elapsed = self._clock() - started
        status = response.status_code
        content_type = response.headers.get("Content-Type", "")
        logger.debug("%s → HTTP %d, %d bytes, %.2fs", safe_url, status, len(body), elapsed)
        if status >= 500 or status == 429:
            retry_after = response.headers.get("Retry-After", "").strip()
            wait = float(retry_after) if retry_after.isdigit() else None
            raise LawGoTransientError(f"HTTP {status}", url=safe_url, retry_after=wait)
        if status >= 300:
            raise LawGoHTTPError(status, response.reason or "", url=safe_url)
        problem = detect_error_body(body, content_type, url=safe_url)
        if problem is not None:
            raise problem
        return RawResponse(
            url_without_oc=safe_url,
            params_without_oc=dict(safe_params),
            status=status,
            content_type=content_type,
            body=body,
            fetched_at=fetched_at,
            elapsed=elapsed,
        )
