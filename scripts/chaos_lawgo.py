"""Chaos test of `lex-dpr crawl-precedents` against a hostile local law.go.kr (the fake DRF server of the tests).

    .venv/bin/python scripts/chaos_lawgo.py                     # every scenario, markdown table on stdout
    .venv/bin/python scripts/chaos_lawgo.py --only happy --only wrong-key --keep /tmp/chaos

Each scenario gets a fresh data dir and DAGSTER_HOME, a fault plan on the fake server (500s, HTTP-200 maintenance
pages, truncated or garbage bodies, slow answers, a wrong key, an unreachable URL, 404s, servers echoing the request
with the key in it) and one `lex-dpr crawl-precedents` subprocess (timeout: --timeout; a hang is reported as
"timeout"). The table says, per scenario: the precedents listed (expected), the distinct ones in
raw_precedents.parquet (got), the listed ones not in it (lost), duplicate rows, the exit code, the wall time, the
missing count and completeness check of the run, and whether the key (raw, URL-encoded, double-encoded) is found in
any file of the data dir or DAGSTER_HOME (sqlite run history and compute logs included) or in the CLI's output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lexdpr_pipeline_tests.fake_lawgo import DrfCorpus, FakeLawGo, serve  # noqa: E402

OC = "SeCrEt.OC@4711"  # an e-mail id with "@": sent (and echoed) as %40
SHARED_LAWGO = ROOT.parent / "shared" / "lawgo"
N_SYNTHETIC = 144  # + the 6 reconstructed precedents = 150: two listing pages of 100
CLIENT_ENV = {  # fast failure handling, so the whole table takes minutes
    "LAW_GO_KR_RATE_LIMIT": "0",
    "LEXDPR__LAWGO__TIMEOUT_S": "1",
    "LEXDPR__LAWGO__MAX_RETRIES": "3",
    "LEXDPR__LAWGO__BACKOFF_BASE_S": "0.05",
    "LEXDPR__LAWGO__BACKOFF_MAX_S": "0.2",
}


@dataclass
class Scenario:
    name: str
    plan: Callable[[FakeLawGo, list[str]], None]  # sets the fault plan, given the listed keys
    oc: str = OC  # the key the CLI is given (the server accepts OC)
    base_url: str | None = None  # None: the fake server


def _queue(fake: FakeLawGo, keys: list[str], faults: list[str]) -> None:
    """Each of ``keys`` gets ``faults`` on its first requests, then normal answers."""
    for key in keys:
        fake.faults[("prec", key)] = list(faults)


def scenarios() -> list[Scenario]:
    def five_hundreds(fake: FakeLawGo, listed: list[str]) -> None:
        fake.faults[("prec", "search")] = ["500", "503"]
        _queue(fake, listed[::10], ["500", "500"])

    def maintenance(fake: FakeLawGo, listed: list[str]) -> None:
        fake.faults[("prec", "search")] = ["maintenance"]
        _queue(fake, listed[::7], ["maintenance"])

    def truncated_once(fake: FakeLawGo, listed: list[str]) -> None:
        for i, key in enumerate(listed[:26]):
            fake.faults[("prec", key)] = ["truncated"] if i % 2 else ["truncated-utf8", "truncated:2000"]

    def truncated_always(fake: FakeLawGo, listed: list[str]) -> None:
        for key in listed[:3]:
            fake.always[("prec", key)] = "truncated-utf8"

    def listing_once(fake: FakeLawGo, listed: list[str]) -> None:
        fake.faults[("prec", "search:1")] = ["truncated"]
        fake.faults[("prec", "search:2")] = ["truncated-utf8", "garbage"]

    def listing_always(fake: FakeLawGo, listed: list[str]) -> None:
        fake.always[("prec", "search:2")] = "truncated-utf8"

    def slow(fake: FakeLawGo, listed: list[str]) -> None:
        fake.slow_s = 2.5
        fake.faults[("prec", "search")] = ["timeout"]
        _queue(fake, listed[:4], ["timeout"])

    def not_found_404(fake: FakeLawGo, listed: list[str]) -> None:
        fake.always[("prec", "search")] = "404"

    def document_404(fake: FakeLawGo, listed: list[str]) -> None:
        fake.always[("prec", listed[5])] = "404"

    def garbage(fake: FakeLawGo, listed: list[str]) -> None:
        fake.faults[("prec", "search")] = ["garbage"]
        for key in listed[:3]:
            fake.always[("prec", key)] = "garbage"

    def echo_documents(fake: FakeLawGo, listed: list[str]) -> None:
        shapes = ["echo-text", "echo-urlencoded", "echo-json", "echo-envelope", "echo-notfound"]
        for key, shape in zip(listed, shapes, strict=False):
            fake.always[("prec", key)] = shape  # quarantined / not found: the run goes on
        fake.faults[("prec", listed[10])] = ["echo-title", "echo-500"]  # retried, then fine
        fake.faults[("prec", "search")] = ["echo-text", "echo-title"]

    def echo_listing(fake: FakeLawGo, listed: list[str]) -> None:
        fake.always[("prec", "search:1")] = "echo-urlencoded"

    def echo_auth(fake: FakeLawGo, listed: list[str]) -> None:
        fake.faults[("prec", listed[20])] = ["echo-auth"]

    def echo_reason(fake: FakeLawGo, listed: list[str]) -> None:
        fake.faults[("prec", "search")] = ["echo-reason"]

    return [
        Scenario("happy path", lambda fake, listed: None),
        Scenario("500/503s then OK", five_hundreds),
        Scenario("maintenance page then OK", maintenance),
        Scenario("truncated documents, once or twice", truncated_once),
        Scenario("truncated documents, always (3)", truncated_always),
        Scenario("truncated listing pages, then OK", listing_once),
        Scenario("truncated listing page 2, always", listing_always),
        Scenario("slow answers (2.5 s > timeout 1 s)", slow),
        Scenario("wrong key", lambda fake, listed: None, oc="WrongKey-0000"),
        Scenario("unreachable base URL", lambda fake, listed: None, base_url="http://127.0.0.1:1/DRF"),
        Scenario("404 on the listing", not_found_404),
        Scenario("404 on one document", document_404),
        Scenario("garbage bodies (listing once, 3 documents always)", garbage),
        Scenario("key echo: documents (5 shapes) + listing", echo_documents),
        Scenario("key echo: listing page, always", echo_listing),
        Scenario("key echo: auth envelope", echo_auth),
        Scenario("key echo: HTTP reason phrase", echo_reason),
    ]


def key_found(oc: str, texts: list[str], roots: list[Path]) -> bool:
    once = quote(oc, safe="")
    forms = {f.lower().encode() for f in (oc, once, quote_plus(oc), quote(once, safe=""))}

    def has(data: bytes) -> bool:
        low = data.lower()
        return any(f in low for f in forms)

    if any(has(t.encode("utf-8", "replace")) for t in texts):
        return True
    return any(has(p.read_bytes()) for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


def run_outcome(home: Path) -> tuple[str, str]:
    """``(missing, check)`` of the run's raw_precedents materialization, from the scenario's DAGSTER_HOME."""
    import dagster as dg

    if not (home / "history").exists():
        return "-", "-"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_precedents"))
        missing = "-"
        if event is not None and event.asset_materialization is not None:
            value = event.asset_materialization.metadata.get("missing")
            missing = str(getattr(value, "value", "-"))
        check = "-"
        key = dg.AssetCheckKey(dg.AssetKey("raw_precedents"), "raw_precedents_completeness")
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        if records:
            passed = getattr(records[0].evaluation, "passed", None)  # None: planned, not run (the asset failed)
            check = "not run" if passed is None else ("pass" if passed else "FAIL")
    return missing, check


_ERROR = re.compile(r"(law\.go\.kr (rejected|did not|answered|returned|has no)|Error|FAILED|Traceback)")
_RUN_ID = re.compile(r"^run [0-9a-f-]{36}: ")
_STAMP = re.compile(r"^\S+ \S+ (\+0000 - dagster - \w+ - \S+ - \S+ - (\S+ - )?|\w+ \S+: )")


def summary(out: str, code: str) -> str:
    """The line a user would read: the error for a failed run, the crawl's summary for a successful one."""
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if code == "0":
        picked = [ln for ln in lines if "records; fetched" in ln]
    else:
        picked = [ln for ln in lines if _ERROR.search(ln) and "Traceback" not in ln] or lines
    text = _RUN_ID.sub("", _STAMP.sub("", picked[-1])) if picked else ""
    return text if len(text) <= 220 else text[:219] + "…"


def run_scenario(scenario: Scenario, corpus: DrfCorpus, workdir: Path, timeout: int) -> dict[str, str]:
    import polars as pl

    folder = workdir / scenario.name.replace(" ", "_").replace("/", "-")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "home").mkdir(parents=True)
    fake = FakeLawGo(corpus, oc=OC)
    listed = list(fake.listed["prec"])
    scenario.plan(fake, sorted(listed, key=int))
    with serve(fake):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXDPR", "LAW_GO_KR", "DAGSTER"))}
        env |= CLIENT_ENV | {
            "DAGSTER_HOME": str(folder / "home"),
            "LEXDPR_DATA_DIR": str(folder / "data"),
            "LAW_GO_KR_OC": scenario.oc,
            "LAW_GO_KR_BASE_URL": scenario.base_url or fake.base_url,
        }
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(Path(sys.executable).parent / "lex-dpr"), "crawl-precedents", "--full"],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            code, out = str(proc.returncode), proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            code = "timeout"
            out = "".join(x.decode() if isinstance(x, bytes) else (x or "") for x in (exc.stdout, exc.stderr))
        wall = time.perf_counter() - started
    (folder / "cli_output.txt").write_text(out, encoding="utf-8")
    table = folder / "data" / "tables" / "raw_precedents.parquet"
    ids = pl.read_parquet(table, columns=["prec_id"])["prec_id"].to_list() if table.exists() else []
    expected = {f"prec:{k}" for k in listed}
    got = set(ids) & expected
    missing, check = run_outcome(folder / "home")
    return {
        "scenario": scenario.name,
        "expected": str(len(expected)),
        "got": str(len(got)),
        "lost": str(len(expected - got)),
        "duplicated": str(len(ids) - len(set(ids))),
        "exit": code,
        "wall s": f"{wall:.1f}",
        "missing (meta)": missing,
        "check": check,
        "key found": "YES" if key_found(OC, [out], [folder / "data", folder / "home"]) else "no",
        "what the user sees": summary(out, code),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="run only scenarios whose name contains this (repeatable)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per CLI run before it counts as a hang")
    parser.add_argument("--keep", type=Path, help="keep each scenario's data dir, DAGSTER_HOME and output here")
    args = parser.parse_args()

    corpus = DrfCorpus.load(SHARED_LAWGO)
    start = dt.date(2019, 1, 2)
    for i in range(N_SYNTHETIC):
        corpus.add_precedent(3_000_000 + i, start + dt.timedelta(days=3 * i))
    chosen = [s for s in scenarios() if not args.only or any(o.lower() in s.name.lower() for o in args.only)]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="chaos-lawgo-"))
    rows = []
    try:
        for scenario in chosen:
            print(f"… {scenario.name}", file=sys.stderr, flush=True)
            rows.append(run_scenario(scenario, corpus, workdir, args.timeout))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    columns = list(rows[0]) if rows else []
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |")


if __name__ == "__main__":
    main()
