"""Logging through the standard ``logging`` module: level, optional JSON lines, optional log file — and the one
place secrets are scrubbed from text.

:func:`scrub_secrets` is the single scrubbing function: every law.go.kr exception message, quarantine reason, log
record and Dagster metadata text goes through it. It masks

- every secret in the process-wide registry (:func:`register_secret`; the law.go.kr client registers its ``OC`` key,
  :func:`configure_logging` its ``secrets``), raw and in its URL-encoded, double-encoded, HTML- and JSON-escaped
  forms, case-insensitively;
- any ``OC=…`` parameter whatever its spelling: ``oc=``, ``OC%3D…``, ``%4FC=…``, ``"OC": "…"``, ``<OC>…</OC>`` —
  also for keys nobody registered (a server echoing someone else's request).

A :class:`SecretRedactingFilter` applies it to log records. It sits on our handlers and, because Dagster attaches its
own handler to the ``lexdpr_pipeline`` logger (``python_logs.managed_python_loggers``), also on each emitting logger
(:func:`redacting_logger`): logger filters run before any handler sees the record.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

MASK = "***"

_REGISTRY: list[str] = []
_REGISTRY_LOCK = threading.Lock()

# The name "OC" (letters possibly percent-encoded), then "=" raw, percent-encoded (once or twice) or JSON-escaped;
# not preceded by a letter, so OCR=1 / DOC=2 / PROTOCOL=x stay. The value runs to the next separator: "&" raw or
# encoded (%26, %2526), whitespace, quotes, brackets, "\" (an escaped JSON separator).
_OC_NAME = r"(?<![A-Za-z])(?:O|%4F)(?:C|%43)(?:=|%3D|%253D|\\u003[dD])"
_OC_VALUE = r"(?:%(?!26|2526)|[^%&\s\"'<>\\,;)\]}])*"
_OC_PATTERNS = (
    rf"({_OC_NAME})({_OC_VALUE})",
    r"(\"OC\"\s*:\s*\")([^\"]*)",  # JSON: "OC": "…"
    r"(<OC>)([^<]*)",  # XML: <OC>…</OC>
)
_OC_TEXT = [re.compile(p, re.I) for p in _OC_PATTERNS]
_OC_BYTES = [re.compile(p.encode(), re.I) for p in _OC_PATTERNS]


def register_secret(secret: str | None) -> None:
    """Add ``secret`` to the process-wide list :func:`scrub_secrets` always masks (idempotent; blanks ignored)."""
    if not secret or not secret.strip():
        return
    with _REGISTRY_LOCK:
        for value in {secret, secret.strip()}:
            if value not in _REGISTRY:
                _REGISTRY.append(value)


def registered_secrets() -> tuple[str, ...]:
    with _REGISTRY_LOCK:
        return tuple(_REGISTRY)


def secret_forms(secret: str) -> set[str]:
    """The spellings of ``secret`` a server or a library may echo: raw, URL-encoded (``@`` → ``%40``, once, twice,
    every byte), ``+`` for spaces, HTML- and JSON-escaped."""
    every_byte = "".join(f"%{b:02X}" for b in secret.encode("utf-8"))
    once = quote(secret, safe="")
    forms = {
        secret,
        once,
        quote(secret),
        quote_plus(secret),
        quote(once, safe=""),
        every_byte,
        html.escape(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    return {f for f in forms if f}


@functools.lru_cache(maxsize=64)
def _secret_regex(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = sorted({f for s in secrets for f in secret_forms(s)}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, forms)), re.I) if forms else None


@functools.lru_cache(maxsize=64)
def _secret_regex_bytes(secrets: tuple[str, ...]) -> re.Pattern[bytes] | None:
    forms = sorted({f.encode("utf-8") for s in secrets for f in secret_forms(s)}, key=len, reverse=True)
    return re.compile(b"|".join(map(re.escape, forms))) if forms else None


def _all_secrets(extra: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*registered_secrets(), *(s for s in extra if s and s.strip())]))


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (plus ``secrets``) and every ``OC=…`` parameter masked as ``***``."""
    if not text:
        return text
    pattern = _secret_regex(_all_secrets(secrets))
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for oc in _OC_TEXT:
        text = oc.sub(lambda m: m.group(1) + MASK, text)
    return text


def scrub_secrets_bytes(data: bytes, secrets: Iterable[str] = ()) -> bytes:
    """:func:`scrub_secrets` for bytes that may not even be valid UTF-8 (a truncated body). Secrets are matched
    case-sensitively here: these are stored documents, whose text must not be masked by accident."""
    if not data:
        return data
    pattern = _secret_regex_bytes(_all_secrets(secrets))
    if pattern is not None:
        data = pattern.sub(MASK.encode(), data)
    for oc in _OC_BYTES:
        data = oc.sub(lambda m: m.group(1) + MASK.encode(), data)
    return data


class SecretRedactingFilter(logging.Filter):
    """Masks secrets in a record's message (and its traceback text) with :func:`scrub_secrets`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        return scrub_secrets(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


#: The filter every emitting logger of the law.go.kr source carries (see the module doc).
SECRET_FILTER = SecretRedactingFilter()


def redacting_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :data:`SECRET_FILTER` on it."""
    logger = logging.getLogger(name)
    if SECRET_FILTER not in logger.filters:
        logger.addFilter(SECRET_FILTER)
    return logger


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            payload["exc"] = record.exc_text
        elif record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


_HANDLER_TAG = "_lexdpr_handler"


def configure_logging(
    level: str = "INFO", json_format: bool = False, file: Path | None = None, secrets: Iterable[str] = ()
) -> None:
    """(Re)configure the ``lexdpr_pipeline`` logger tree; idempotent. ``secrets`` join the process-wide registry."""
    secrets = [s for s in secrets if s]
    for secret in secrets:
        register_secret(secret)
    logger = logging.getLogger("lexdpr_pipeline")
    logger.setLevel(level.upper())
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_TAG, False)]:
        logger.removeHandler(handler)
        handler.close()
    formatter: logging.Formatter = (
        JsonFormatter() if json_format else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    redactor = SecretRedactingFilter(secrets)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redactor)
        setattr(handler, _HANDLER_TAG, True)
        logger.addHandler(handler)
    logger.propagate = True
