"""Load test of the HTTP API with wrk: requests/s and p50/p95/p99 of POST /search per mode and concurrency, and an
index hot swap in the middle of a run (zero failed requests expected).

    .venv/bin/python scripts/load_test.py --config configs/demo.yaml          # the index that config publishes
    .venv/bin/python scripts/load_test.py --config configs/full.yaml --duration 30 --json out.json

Starts ``lex-dpr api --workers N`` on a free 127.0.0.1 port (rate limit off, no API key), waits for /health, then
runs ``wrk`` (Debian: ``apt-get install wrk``) for each mode in ``--modes`` at each ``--clients`` count, rotating
real Korean legal queries. The swap run re-publishes the served pointer (same index, new ``created_at``) after a
sixth of its duration; every worker reloads it (``api.reload_check_s``) while serving. wrk and the server share the
machine's cores, so on a small machine the figures are a lower bound of what the server does alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lexdpr_pipeline.artifacts import ArtifactStore  # noqa: E402
from lexdpr_pipeline.settings import load_settings  # noqa: E402

QUERIES = [
    "불법행위로 인한 손해배상 책임의 범위",
    "임대차 보증금 반환 청구",
    "민법 제750조",
    "국가배상 공무원의 직무상 불법행위",
    "가등기담보 청산금 지급",
    "이자제한법 최고이자율 초과 부분",
    "채무불이행으로 인한 손해배상",
    "소멸시효 중단 사유",
]
LUA = """
local queries = %s
local mode = os.getenv("LOAD_MODE") or "hybrid"
local i = 0
request = function()
  i = i + 1
  local body = '{"query": "' .. queries[(i %% #queries) + 1] .. '", "top_k": 10, "mode": "' .. mode .. '"}'
  return wrk.format("POST", "/search", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'LOADJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, ' ..
    '"non_2xx": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--modes", default="dense,hybrid")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--duration", type=int, default=20, help="seconds per run")
    p.add_argument(
        "--swap-duration",
        type=int,
        help="seconds of the hot-swap run (default: 3 x --duration); it must outlast a worker's reload of the index "
        "(about a minute for the whole sample index on 2 busy cores), or the run ends before any swap completes",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wrk(url: str, lua: Path, mode: str, clients: int, duration: int) -> dict:
    threads = max(1, min(2, clients))
    cmd = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration}s", "--timeout", "30s", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LOAD_MODE": mode}, check=True)
    match = re.search(r"LOADJSON (\{.*\})", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no figures:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(match.group(1))
    return {
        "mode": mode,
        "clients": clients,
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p95_ms": round(raw["p95_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "failed": raw["non_2xx"] + raw["socket_errors"],
    }


def _republish(pointer: Path, after_s: float) -> threading.Thread:
    """Re-publish the pointer (same index, a new created_at) after ``after_s``: the workers' hot swap."""

    def swap() -> None:
        time.sleep(after_s)
        data = json.loads(pointer.read_text(encoding="utf-8"))
        data["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        tmp = pointer.with_suffix(".swap.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(pointer)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    return thread


def _metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def run(args: argparse.Namespace) -> dict:
    settings = load_settings(config_file=args.config)
    pointer = ArtifactStore.from_settings(settings).pointer_path
    if not pointer.is_file():
        raise SystemExit(f"no published index at {pointer}: materialize faiss_index with {args.config} first")
    port = _free_port()
    env = {**os.environ, "LEXDPR_CONFIG": str(args.config), "LEXDPR_LOG_LEVEL": "WARNING"}
    env.pop("LEXDPR_API_KEY", None)
    cmd = [str(ROOT / ".venv" / "bin" / "lex-dpr"), "--set", "api.rate_limit_per_minute=0", "--set"]
    cmd += ["api.reload_check_s=1", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    rows: list[dict] = []
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the API did not come up")
            time.sleep(1)
        with tempfile.TemporaryDirectory() as tmp:
            lua = Path(tmp) / "search.lua"
            lua.write_text(LUA % ("{" + ", ".join(json.dumps(q, ensure_ascii=False) for q in QUERIES) + "}"))
            versions = httpx.get(f"{base}/health", timeout=5).json()
            print(f"API on {base}, {args.workers} workers; index: {json.dumps(versions, ensure_ascii=False)[:300]}")
            for mode in args.modes.split(","):
                _wrk(f"{base}/search", lua, mode, 2, 3)  # warm-up (every worker's engine and caches)
                for clients in [int(c) for c in args.clients.split(",")]:
                    row = _wrk(f"{base}/search", lua, mode, clients, args.duration)
                    rows.append(row)
                    print(json.dumps(row, ensure_ascii=False), flush=True)
            before = _metric(httpx.get(f"{base}/metrics", timeout=10).text, "lexdpr_index_reloads_total")
            swap_duration = args.swap_duration or 3 * args.duration
            swap = _republish(pointer, swap_duration / 6)
            row = _wrk(f"{base}/search", lua, "hybrid", 8, swap_duration)
            swap.join()
            time.sleep(2)
            after = _metric(httpx.get(f"{base}/metrics", timeout=10).text, "lexdpr_index_reloads_total")
            row = {**row, "hot_swap": True, "reloads_during_run": after - before}
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    print("\n| mode | clients | requests/s | p50 ms | p95 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        swap_note = f" (hot swap mid-run, {r['reloads_during_run']:g} reloads)" if r.get("hot_swap") else ""
        print(
            f"| {r['mode']}{swap_note} | {r['clients']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p95_ms']} "
            f"| {r['p99_ms']} | {r['failed']} |"
        )
    out = {"config": str(args.config), "workers": args.workers, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    run(_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
