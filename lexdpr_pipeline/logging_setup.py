"""Logging through the standard ``logging`` module: level, optional JSON lines, optional log file.

A :class:`SecretRedactingFilter` masks every configured secret (the ``OC`` key) in any record, as a last line of
defence behind the code that never logs it in the first place.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

_OC_PARAM = re.compile(r"(?i)(\bOC=)[^&\s\"'<>]+")


class SecretRedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _OC_PARAM.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


_HANDLER_TAG = "_lexdpr_handler"


def configure_logging(
    level: str = "INFO", json_format: bool = False, file: Path | None = None, secrets: Iterable[str] = ()
) -> None:
    """(Re)configure the ``lexdpr_pipeline`` logger tree; idempotent."""
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
