"""A real uvicorn server on 127.0.0.1 in a thread, for the tests that need real HTTP (chunked bodies, malformed
requests, proxy headers)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app: Any, **options: Any) -> Iterator[str]:
    """Serve ``app`` (uvicorn ``Config`` ``options`` on top of quiet defaults); yields the base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, **{"host": "127.0.0.1", "port": port, "log_level": "warning", "access_log": False, **options}
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive(), "uvicorn did not stop"


def raw_exchange(base_url: str, request: bytes, *, timeout: float = 30) -> bytes:
    """Send ``request`` as it is on a new connection; read until the server closes it or a full response arrived."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if sep and length is not None and len(body) >= length:
                break
        return data
