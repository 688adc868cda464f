"""Typed errors of the law.go.kr DRF API, and the detection of its HTTP-200 error bodies.

The DRF API answers most failures with HTTP 200: a JSON "user verification failed" envelope for an
unregistered IP or a bad key, ``<Law>일치하는 … 없습니다</Law>`` for an unknown id, an HTML page during
maintenance. :func:`detect_error_body` turns such a body into the matching exception so callers never
mistake it for data.

Every message says what the user should do, and none carries the ``OC`` key: :class:`LawGoError` passes its message
and URL through :func:`lexdpr_pipeline.logging_setup.scrub_secrets` (the client registers its key there), so even a
server that echoes the request into an error body (an HTML title, an auth envelope, a plain-text body) cannot put the
key into an exception, a log record, a quarantine reason or Dagster's run history.
"""

from __future__ import annotations

import json
import re

from lexdpr_pipeline.logging_setup import scrub_secrets

OPEN_API_SITE = "https://open.law.go.kr"


class LawGoError(Exception):
    """Base of every law.go.kr API error. ``retryable`` says whether repeating the request may help."""

    retryable: bool = False

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(scrub_secrets(message))
        self.url = scrub_secrets(url)  # request URL *without* the OC key ("" when not known)


class LawGoAuthError(LawGoError):
    """The API rejected the caller (``사용자 정보 검증에 실패하였습니다``) or no key is configured."""

    def __init__(self, detail: str = "", *, url: str = "") -> None:
        message = (
            "law.go.kr rejected the request: user verification failed"
            + (f" ({detail})" if detail else "")
            + ". Register this server's public IP address and/or domain for your OC at "
            f"{OPEN_API_SITE} (OPEN API 신청 → 서버장비의 IP주소/도메인주소), wait for the approval, and check that "
            "LAW_GO_KR_OC holds the e-mail id of that account (g4c@korea.kr → g4c)."
        )
        super().__init__(message + (f" Request: {url}" if url else ""), url=url)


class LawGoNotFoundError(LawGoError):
    """No document matches the requested id (``일치하는 … 없습니다``)."""

    def __init__(self, detail: str = "", *, url: str = "") -> None:
        message = (
            "law.go.kr has no document for this request"
            + (f" ({detail})" if detail else "")
            + ". Check the id: lawService.do wants MST (법령일련번호) or ID (법령ID) for laws, 판례일련번호 for "
            "precedents and 행정규칙일련번호 (not 행정규칙ID) for admin rules; the listing may also be stale."
        )
        super().__init__(message + (f" Request: {url}" if url else ""), url=url)


class LawGoMaintenanceError(LawGoError):
    """An HTML page came back instead of XML/JSON (maintenance or error page). Retryable."""

    retryable = True

    def __init__(self, detail: str = "", *, url: str = "") -> None:
        message = (
            "law.go.kr returned an HTML page instead of XML/JSON (maintenance or a server error page)"
            + (f": {detail}" if detail else "")
            + ". Retry later; if it persists, check https://www.law.go.kr and the notices on "
            f"{OPEN_API_SITE}, or try type=XML when JSON was requested."
        )
        super().__init__(message + (f" Request: {url}" if url else ""), url=url)


class LawGoTransientError(LawGoError):
    """Timeout, connection failure, 5xx or 429: a retry may succeed."""

    retryable = True

    def __init__(self, detail: str, *, url: str = "", retry_after: float | None = None) -> None:
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if any
        message = (
            f"law.go.kr did not answer properly ({detail}). This is usually temporary: rerun later (finished "
            "downloads are kept), or raise lawgo.timeout_s / lawgo.max_retries and lower lawgo.rate_limit_per_s."
        )
        super().__init__(message + (f" Request: {url}" if url else ""), url=url)


class LawGoMalformedResponseError(LawGoError):
    """The body could not be parsed or lacks required structure; ``reason`` says why.

    Not retried by the client (a parser raises it); the crawler fetches a body that fails to parse again a bounded
    number of times (a truncated transfer), then quarantines it and says where (``quarantined``). The message claims
    a quarantined copy only when ``quarantined`` names it.
    """

    def __init__(self, reason: str, *, url: str = "", quarantined: str | None = None) -> None:
        self.reason = scrub_secrets(reason)
        self.quarantined = quarantined
        # The path goes into the first sentence: a one-line summary (the CLI's) keeps it.
        kept = f" (kept in quarantine as {quarantined})" if quarantined else ""
        message = (
            f"law.go.kr returned a body that cannot be used{kept}: {self.reason}. If many bodies fail the same way "
            "the API format may have changed — report it" + (" with the quarantined file." if quarantined else ".")
        )
        super().__init__(message + (f" Request: {url}" if url else ""), url=url)


class LawGoHTTPError(LawGoError):
    """A 4xx answer other than 429 (bad request, forbidden, …). Not retryable."""

    def __init__(self, status: int, detail: str = "", *, url: str = "") -> None:
        self.status = status
        message = (
            f"law.go.kr answered HTTP {status}"
            + (f" ({detail})" if detail else "")
            + ". Check lawgo.base_url (default https://www.law.go.kr/DRF) and the request parameters; HTTP 403 "
            f"can also mean this server's IP is not registered for your OC at {OPEN_API_SITE}."
        )
        super().__init__(message + (f" Request: {url}" if url else ""), url=url)


_XML_DECL = r"(?:\ufeff)?\s*(?:<\?xml[^>]*\?>)?\s*"
_NO_MATCH_XML = re.compile(_XML_DECL + r"<Law>\s*(.*?)\s*</Law>\s*$", re.S)
_HTML_START = re.compile(
    r"(?:\ufeff)?\s*(?:<!--.*?-->\s*)*<(?:!DOCTYPE\s+html|html[\s>]|head[\s>]|body[\s>])", re.S | re.I
)
_FAILURE_XML = re.compile(_XML_DECL + r"<(\w+)>\s*<result>(.*?)</result>\s*<msg>(.*?)</msg>", re.S)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.S | re.I)
_AUTH_HINTS = ("사용자 정보 검증", "검증에 실패", "인증", "IP주소", "도메인주소")
# Error envelopes are tiny; real documents can be megabytes. Only small bodies are decoded in full.
_SMALL = 16_384


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(scrub_secrets(text).split())  # scrubbed before the cut: no prefix of a key survives it
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _envelope_error(result: str, msg: str, url: str) -> LawGoError:
    both = f"{result} {msg}"
    if any(hint in both for hint in _AUTH_HINTS):
        return LawGoAuthError(_short(result), url=url)
    return LawGoMalformedResponseError(f"API error envelope: {_short(both)}", url=url)


def detect_error_body(body: bytes, content_type: str = "", *, url: str = "") -> LawGoError | None:
    """The typed error an HTTP-200 ``body`` stands for, or ``None`` when it looks like a document.

    Recognized: empty body (transient), HTML page (maintenance), JSON ``{"result": …, "msg": …}`` and XML
    ``<…><result>…</result><msg>…</msg>`` failure envelopes (auth when they mention user verification),
    ``<Law>일치하는 …</Law>`` / ``{"Law": "일치하는 …"}`` (not found) and ``{}`` (not found).
    """
    if not body.strip():
        return LawGoTransientError("empty body with HTTP 200", url=url)
    head = body[:4096].decode("utf-8", errors="replace")
    # The body decides; the Content-Type only adds detail (labels are not reliable enough to classify on).
    if _HTML_START.match(head):
        title = _TITLE.search(head)
        detail = _short(title.group(1)) if title else (content_type or "")
        return LawGoMaintenanceError(detail, url=url)
    if len(body) > _SMALL:
        return None
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return None  # not an envelope; the parser reports the broken JSON
        if not isinstance(obj, dict):
            return None
        if not obj:
            return LawGoNotFoundError("empty JSON object", url=url)
        if set(obj) == {"Law"} and isinstance(obj["Law"], str):
            return LawGoNotFoundError(_short(obj["Law"]), url=url)
        if "result" in obj and "msg" in obj and len(obj) <= 3:
            return _envelope_error(str(obj["result"]), str(obj["msg"]), url)
        return None
    m = _NO_MATCH_XML.match(text)
    if m:
        return LawGoNotFoundError(_short(m.group(1)), url=url)
    m = _FAILURE_XML.match(text)
    if m:
        return _envelope_error(m.group(2), m.group(3), url)
    return None
