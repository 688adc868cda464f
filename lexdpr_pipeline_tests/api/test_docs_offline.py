"""/docs and /redoc work without the internet: every asset they load is served by the app itself (from the
``fastapi-offline`` wheel), checked on the HTML and in a headless Chromium that can resolve no host but 127.0.0.1."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lexdpr_pipeline.api.app import DOCS_STATIC, create_app, docs_assets_dir
from lexdpr_pipeline_tests.api.fakes import FakeEngine
from lexdpr_pipeline_tests.api.helpers import API_KEY, Loader, make_settings
from lexdpr_pipeline_tests.api.servers import running_server

ENDPOINTS = ("/search", "/embed/query", "/embed/passage", "/health", "/admin/reload")
_URL_ATTR = re.compile(r"""(?:src|href|spec-url|url)\s*[=:]\s*["']([^"']+)["']""")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(make_client, page: str) -> None:
    # a key and a tight rate limit: the pages and their assets stay open and unlimited, like /docs always was
    client = make_client(api_key=API_KEY, rate_limit_per_minute=1)
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    urls = set(_URL_ATTR.findall(html))
    assert "/openapi.json" in urls
    assets = {u for u in urls if u.startswith(DOCS_STATIC + "/")}
    assert assets >= {f"{DOCS_STATIC}/favicon.png"}
    assert (f"{DOCS_STATIC}/swagger-ui-bundle.js" in assets) == (page == "/docs")
    assert (f"{DOCS_STATIC}/redoc.standalone.js" in assets) == (page == "/redoc")
    for url in sorted(urls):
        for _ in range(2):  # twice: over the rate limit of 1 a minute if the assets were counted
            got = client.get(url)
            assert got.status_code == 200 and got.content, url
    assert client.post("/search", json={"query": "x"}).status_code == 401  # the key still guards the API


def test_docs_assets_ship_in_the_package() -> None:
    folder = docs_assets_dir()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert (folder / name).stat().st_size > 50_000, name  # the real bundles, not stubs


def test_docs_static_serves_nothing_else(make_client) -> None:
    client = make_client(api_key=API_KEY)
    missing = client.get(f"{DOCS_STATIC}/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get(f"{DOCS_STATIC}/%2e%2e/core.py").status_code in (401, 404)  # no way out of the folder


def _dump_dom(chromium: str, url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran, in a Chromium that resolves no host but 127.0.0.1 (no network)."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_render_in_a_browser_without_network(tmp_path: Path, page: str) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed: scripts/setup.sh installs it (apt-get install chromium, as root)")
    requested: list[str] = []
    app = create_app(make_settings(tmp_path, api_key=API_KEY, rate_limit_per_minute=1), Loader(FakeEngine()))

    async def recording(scope, receive, send) -> None:
        if scope["type"] == "http":
            requested.append(scope["path"])
        await app(scope, receive, send)

    with running_server(recording) as base:
        dom = _dump_dom(chromium, base + page, tmp_path / "profile")
    # the page itself only names /openapi.json: the endpoints are in the DOM only if the viewer's JavaScript ran,
    # fetched the schema and rendered it
    if page == "/docs":
        rendered = set(re.findall(r'data-path="([^"]+)"', dom))
        assert set(ENDPOINTS) <= rendered, rendered
    else:
        assert all(path in dom for path in ENDPOINTS), [p for p in ENDPOINTS if p not in dom]
        assert "redoc-wrap" in dom  # ReDoc's own markup
    script = "swagger-ui-bundle.js" if page == "/docs" else "redoc.standalone.js"
    assert {"/openapi.json", f"{DOCS_STATIC}/{script}"} <= set(requested), requested
