"""Schemathesis against the HTTP API over a tiny real index, through a real uvicorn server on 127.0.0.1.

Used by ``scripts/schemathesis_api.py`` (the full run) and by ``test_schemathesis.py`` (a bounded, deterministic
run). The server runs as ``lex-dpr api`` would run it (its uvicorn options, an API key), with the rate limits off so
that schemathesis tests the API rather than the limiter (the 429s have tests of their own).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lexdpr_pipeline.api.app import create_app
from lexdpr_pipeline.api.server import uvicorn_options
from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline_tests.api.servers import running_server
from lexdpr_pipeline_tests.api.tiny_index import build_tiny_index

API_KEY = "schemathesis-key"
#: Every check, positive and negative data.
BASE_ARGS = ["--checks", "all", "--mode", "all", "--no-color"]


def run_schemathesis(data_dir: Path, model_dir: Path, extra: list[str], *, capture: bool = False) -> tuple[int, str]:
    """Build the tiny index under ``data_dir``, serve it, run ``schemathesis run … BASE_ARGS extra``; returns the
    exit status and (when ``capture``) the output."""
    build_tiny_index(data_dir, model_dir, "v1")
    settings = Settings.model_validate(
        {
            "paths": {"data_dir": str(data_dir)},
            "api": {
                "api_key": API_KEY,
                "rate_limit_per_minute": None,
                "reload_rate_limit_per_minute": None,
                "reload_check_s": 0,
            },
        }
    )
    cli = Path(sys.executable).with_name("schemathesis")
    if "--generation-deterministic" not in extra:  # (which implies it) no example database in the working tree
        extra = ["--generation-database", "none", *extra]
    with running_server(create_app(settings), **uvicorn_options(settings.api)) as base:
        command = [str(cli), "run", f"{base}/openapi.json", *BASE_ARGS, "-H", f"X-API-Key: {API_KEY}", *extra]
        # run in data_dir: whatever schemathesis / hypothesis write (caches, reports) stays out of the working tree
        done = subprocess.run(command, cwd=data_dir, capture_output=capture, text=True, timeout=3600, check=False)
    return done.returncode, (done.stdout or "") + (done.stderr or "")
