"""How ``lex-dpr api`` runs uvicorn: :func:`uvicorn_options`.

- Proxy headers: uvicorn replaces the client address with ``X-Forwarded-For`` only when the connection comes from a
  proxy in ``api.trusted_proxies`` (default: none). Trusting ``127.0.0.1`` by default, as uvicorn itself does, would
  let anyone on the host (or any client of a proxy that passes the header through) pick a new address per request
  and so a fresh rate-limit bucket.
- Malformed HTTP (e.g. ``Content-Length: abc``) is refused by uvicorn's parser before the app sees the request;
  :class:`JsonErrorProtocol` makes that ``400`` carry the API's error shape instead of uvicorn's plain text.
- Metrics of several workers: :func:`metrics_dir` gives them one ``PROMETHEUS_MULTIPROC_DIR`` (see api/metrics.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lexdpr_pipeline.settings import ApiSettings

#: uvicorn ``http=`` import string of :class:`JsonErrorProtocol` (a string, so worker processes import it).
JSON_ERROR_PROTOCOL = "lexdpr_pipeline.api.server:JsonErrorProtocol"

BAD_REQUEST_BODY = json.dumps(
    {"error": {"code": "bad_request", "message": "malformed HTTP request (e.g. an invalid Content-Length header)"}}
).encode("utf-8")


def uvicorn_options(api: ApiSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that follow the API settings."""
    trusted = list(api.trusted_proxies)
    return {
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": ",".join(trusted) if trusted else None,
        "http": JSON_ERROR_PROTOCOL,
    }


@contextmanager
def metrics_dir(workers: int) -> Iterator[Path | None]:
    """For ``workers`` > 1: ``PROMETHEUS_MULTIPROC_DIR`` set to a new private folder while the server runs (the
    spawned workers inherit it and write their metric files there; removed afterwards), so ``/metrics`` adds up every
    worker. A ``PROMETHEUS_MULTIPROC_DIR`` already set is used as it is (emptying it between runs is then the
    operator's job). One worker: nothing to share, yields None (unless the variable was set)."""
    from lexdpr_pipeline.api.metrics import MULTIPROC_ENV

    preset = os.environ.get(MULTIPROC_ENV)
    if preset:
        Path(preset).mkdir(parents=True, exist_ok=True)
        yield Path(preset)
        return
    if workers <= 1:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="lexdpr-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _json_400_httptools(self: Any, msg: str) -> None:
    content = [b"HTTP/1.1 400 Bad Request\r\n"]
    for name, value in self.server_state.default_headers:
        content.extend([name, b": ", value, b"\r\n"])
    content.extend(
        [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(BAD_REQUEST_BODY)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            BAD_REQUEST_BODY,
        ]
    )
    self.transport.write(b"".join(content))
    self.transport.close()


def _json_400_h11(self: Any, msg: str) -> None:
    import h11

    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BAD_REQUEST_BODY)).encode("ascii")),
        (b"connection", b"close"),
    ]
    for event in (
        h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
        h11.Data(data=BAD_REQUEST_BODY),
        h11.EndOfMessage(),
    ):
        self.transport.write(self.conn.send(event))
    self.transport.close()


try:  # the parser uvicorn's "auto" would pick
    import httptools  # noqa: F401
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base

    _send_400 = _json_400_httptools
except ImportError:  # pragma: no cover - httptools is installed with uvicorn[standard]
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base

    _send_400 = _json_400_h11


class JsonErrorProtocol(_Base):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol (httptools, else h11) whose "invalid HTTP request" answer is the API's JSON
    error shape (``{"error": {"code": "bad_request", "message": …}}``)."""

    def send_400_response(self, msg: str) -> None:
        _send_400(self, msg)
