"""CI's whole-graph check: materialize every asset the way users do, then prove that reruns are stale-only.

    .venv/bin/python scripts/graph_check.py          # scripts/test.sh runs it after pytest (LEXDPR_GRAPH_CHECK=0 skips)
    .venv/bin/python scripts/graph_check.py --keep   # keep the temp folder (data, DAGSTER_HOME, logs) to inspect

On a tiny configuration (configs/ci_tiny.yaml): a temp copy of a few small laws and ten decisions of ../shared/corpus,
a tiny random-init model built on the fly (lexdpr_pipeline_tests/tiny_model.py), three training steps. With a
persistent temp DAGSTER_HOME, as scripts/main.sh does:

    dagster job execute -m lexdpr_pipeline.definitions -j observe_sources_job
    dagster asset materialize -m lexdpr_pipeline.definitions --select '*'

then the proofs, each PASS or FAIL (any FAIL: exit 1):
  a. nothing changed: `lex-dpr refresh --dry-run` and `lex-dpr refresh` say "everything is fresh: nothing to run",
     and no asset's latest materialization changes in the instance;
  b. one character appended to an article of one statute file of the temp copy: `lex-dpr status` shows as STALE exactly
     raw_statutes and its downstream assets (from the Definitions' asset graph), each with a cause that names its
     upstream change, and every other asset FRESH; `lex-dpr refresh --dry-run` lists the same set;
  c. `lex-dpr refresh` materializes exactly that set, after which nothing is stale.
Verdicts come from the commands' output and the instance, never from timings; the wall time of each phase is printed.
Every command runs in a temp working directory: the Dagster CLI lets a ./.env override the environment, and the
repository's .env names the user's own DAGSTER_HOME.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
BIN = Path(sys.executable).parent
CONFIG = ROOT / "configs" / "ci_tiny.yaml"
DEFS_MODULE = "lexdpr_pipeline.definitions"
COMMAND_TIMEOUT_S = 900  # only a hang reaches it

#: The slice: small laws that the decisions below cite, and ten 대법원 decisions (two citing each other).
LAWS = [
    "국가배상법",
    "이자제한법",
    "가등기담보등에관한법률",
    "주택임대차보호법",
    "상가건물임대차보호법",
    "소송촉진등에관한특례법",
]
DECISIONS = [
    "2016다267920",
    "2016다259769",
    "2017다202296",
    "2003다12717",
    "2015다59801",
    "2013다30356",
    "2021다210195",
    "92다47328",
    "2016다260097",
    "2020다280715",
]
TOUCHED_LAW = "이자제한법"  # proof b appends one character to this law's file
CHANGED_SOURCE = "raw_statutes"
FRESH_LINE = "everything is fresh: nothing to run"
TODO_LINE = re.compile(r"^\s+(\S+): (MISSING|STALE) — (.*)$")


class Check:
    """Phase timings, commands and PASS/FAIL verdicts, printed as they come and summed up at the end."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.phases: list[tuple[str, float]] = []
        self.verdicts: list[tuple[str, bool]] = []
        self.logs = work / "logs"
        self.logs.mkdir()

    def run(self, name: str, args: list[str], cwd: Path | None = None) -> str:
        """Run a command (stdout+stderr to logs/<name>.log); a failed command ends the check."""
        log = self.logs / f"{len(self.phases):02d}-{name}.log"
        print(f"\n== {name}: {' '.join(args)}", flush=True)
        started = time.perf_counter()
        with log.open("w", encoding="utf-8") as out:
            proc = subprocess.run(
                args,
                cwd=cwd or self.work,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        wall = time.perf_counter() - started
        self.phases.append((name, wall))
        text = log.read_text(encoding="utf-8")
        print(f"   {wall:6.1f}s  exit {proc.returncode}  (log: {log})", flush=True)
        if proc.returncode != 0:
            print("\n".join(text.splitlines()[-40:]))
            self.verdict(f"{name} exits 0", False)
            raise SystemExit(self.summary())
        return text

    def timed(self, name: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        value = fn()
        self.phases.append((name, time.perf_counter() - started))
        return value

    def verdict(self, what: str, ok: bool, detail: str = "") -> bool:
        self.verdicts.append((what, ok))
        print(f"   {'PASS' if ok else 'FAIL'}  {what}" + (f"\n         {detail}" if detail and not ok else ""))
        return ok

    def summary(self) -> int:
        print("\n== graph check: wall time per phase")
        for name, wall in self.phases:
            print(f"   {wall:7.1f}s  {name}")
        print(f"   {sum(w for _, w in self.phases):7.1f}s  total")
        failed = [what for what, ok in self.verdicts if not ok]
        print(f"== graph check: {len(self.verdicts) - len(failed)} of {len(self.verdicts)} proofs PASS")
        for what in failed:
            print(f"   FAIL  {what}")
        return 1 if failed else 0


def copy_slice(dest: Path) -> Path:
    """The slice, as plain writable files (the shared corpus is read-only); returns the touched statute file."""
    for law in LAWS:
        src = CORPUS / "legalize-kr" / "kr" / law
        files = sorted(src.glob("*.md"))
        if not files:
            raise SystemExit(f"graph check: no statute files for {law} under {src}")
        for path in files:
            target = dest / "legalize-kr" / "kr" / law / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    for case_no in DECISIONS:
        found = sorted((CORPUS / "precedent-kr").rglob(f"{case_no}.md"))
        if not found:
            raise SystemExit(f"graph check: decision {case_no} not found under {CORPUS / 'precedent-kr'}")
        target = dest / found[0].relative_to(CORPUS)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], target)
    return sorted((dest / "legalize-kr" / "kr" / TOUCHED_LAW).glob("*.md"))[0]


def append_to_first_article(path: Path) -> str:
    """Append one character to the first article's first line of text; returns that line.

    Not at the end of the file: that is the 부칙 (addenda), which the statute reader does not keep, so raw_statutes
    would come out identical (same data version) and, rightly, nothing below it would change."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    heading = next((i for i, line in enumerate(lines) if line.startswith("##### 제")), None)
    body = next((j for j in range(heading + 1, len(lines)) if lines[j].strip()), None) if heading is not None else None
    if body is None:
        raise SystemExit(f"graph check: no article text in {path}")
    lines[body] = lines[body].rstrip("\n") + "다\n"
    path.write_text("".join(lines), encoding="utf-8")
    return lines[body].strip()


def status_table(text: str) -> dict[str, tuple[str, str]]:
    """``lex-dpr status``'s table → {asset: (status, why)} (rich box rows: │ asset │ status │ why │ rows │ wall s │)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃|").split("│")]
        if len(cells) >= 3 and cells[1] in {"FRESH", "STALE", "MISSING"}:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def dry_run_todo(text: str) -> dict[str, tuple[str, str]]:
    """``lex-dpr refresh --dry-run``'s list → {asset: (status, why)}."""
    return {m[1]: (m[2], m[3]) for line in text.splitlines() if (m := TODO_LINE.match(line))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="Keep the temp folder (printed) for inspection.")
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"graph check: ../shared/corpus is missing (expected at {CORPUS})", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="lexdpr-graph-check-"))
    try:
        return _check(work)
    finally:
        if args.keep:
            print(f"graph check: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _check(work: Path) -> int:
    started = time.perf_counter()
    home = work / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXDPR", "LAW_GO_KR", "DAGSTER", "MLFLOW"))}
    env.update(
        LEXDPR_CONFIG=str(CONFIG),
        DAGSTER_HOME=str(home),
        LEXDPR_MIRROR_DIR=str(work / "mirror"),
        LEXDPR_DATA_DIR=str(work / "data"),
        LEXDPR__MODELS__BASE_MODEL=str(work / "tiny" / "model"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        COLUMNS="400",  # rich tables on one line each
    )
    chk = Check(work, env)
    print(f"graph check in {work} (config {CONFIG.relative_to(ROOT)}, DAGSTER_HOME {home})")
    touched = chk.timed("copy the corpus slice", lambda: copy_slice(work / "mirror"))
    chk.run(
        "build the tiny model", [sys.executable, "-m", "lexdpr_pipeline_tests.tiny_model", str(work / "tiny")], ROOT
    )

    dagster = [str(BIN / "dagster")]
    location = ["-m", DEFS_MODULE, "-d", str(ROOT)]
    chk.run("observe sources", [*dagster, "job", "execute", *location, "-j", "observe_sources_job"])
    chk.run("materialize '*'", [*dagster, "asset", "materialize", *location, "--select", "*"])

    # In-process from here on: the graph (expected sets) and the instance (what materialized). Imported late so that
    # the commands above start without this process holding the instance.
    import dagster as dg

    from lexdpr_pipeline.definitions import build_definitions
    from lexdpr_pipeline.settings import load_settings

    defs = build_definitions(load_settings(environ=env))
    graph = defs.resolve_asset_graph()
    every = {k.to_user_string() for k in graph.materializable_asset_keys}
    # the sweep asset is declared only (reported by sweep_job): never part of '*' nor of a refresh
    expected = {
        k.to_user_string()
        for k in dg.AssetSelection.assets(CHANGED_SOURCE).downstream().resolve(graph)
        if k in graph.materializable_asset_keys
    }

    def latest() -> dict[str, tuple[str, float] | None]:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            out: dict[str, tuple[str, float] | None] = {}
            for name in sorted(every):
                event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(name))
                out[name] = (event.run_id, event.timestamp) if event is not None else None
            return out

    after_main = latest()
    missing = sorted(k for k, v in after_main.items() if v is None)
    done = [k for k, v in after_main.items() if v is not None]
    print(f"   materialized {len(done)} of {len(every)} assets: {', '.join(done)}")
    chk.verdict("materialize '*' materialized every asset", not missing, f"never materialized: {missing}")

    lex = [str(BIN / "lex-dpr")]
    print("\n-- proof a: nothing changed → nothing runs")
    out = chk.run("refresh --dry-run (unchanged)", [*lex, "refresh", "--dry-run"])
    chk.verdict(f"refresh --dry-run says '{FRESH_LINE}'", FRESH_LINE in out, _todo_text(out))
    out = chk.run("refresh (unchanged)", [*lex, "refresh"])
    chk.verdict(f"refresh says '{FRESH_LINE}'", FRESH_LINE in out, _todo_text(out))
    changed = sorted(k for k, v in latest().items() if v != after_main[k])
    chk.verdict("refresh materialized nothing (instance)", not changed, f"materialized again: {changed}")

    print(f"\n-- proof b: one character appended to an article of {touched.relative_to(work)}")
    changed_line = append_to_first_article(touched)
    print(f"   now: {changed_line}")
    out = chk.run("status (statute touched)", [*lex, "status"])
    table = status_table(out)
    stale = {k for k, (status, _) in table.items() if status == "STALE"}
    print(f"   expected STALE ({len(expected)}): {', '.join(sorted(expected))}")
    print(f"   status  STALE ({len(stale)}): {', '.join(sorted(stale))}")
    chk.verdict("status lists every asset", set(table) == every, f"missing: {sorted(every - set(table))}")
    chk.verdict(
        f"status: STALE = {CHANGED_SOURCE} + downstream, all else FRESH",
        stale == expected and all(table[k][0] == "FRESH" for k in every - expected if k in table),
        f"unexpected STALE: {sorted(stale - expected)}; not STALE: {sorted(expected - stale)}; "
        f"not FRESH: {sorted(k for k in every - expected if k in table and table[k][0] != 'FRESH')}",
    )
    causes = {k: table[k][1] for k in sorted(stale)}
    for name, why in causes.items():
        print(f"     {name}: {why}")
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.materializable_asset_keys
    }
    unexplained = [k for k, why in causes.items() if not _names_changed_parent(why, parents[k], stale)]
    chk.verdict(
        "status: each STALE asset's cause names the upstream change (the mirror, or a stale/updated parent)",
        bool(causes) and not unexplained,
        f"no upstream named for: {unexplained}",
    )
    out = chk.run("refresh --dry-run (statute touched)", [*lex, "refresh", "--dry-run"])
    todo = dry_run_todo(out)
    chk.verdict(
        "refresh --dry-run lists the same set",
        set(todo) == expected and all(s == "STALE" for s, _ in todo.values()),
        f"listed: {sorted(todo)}",
    )

    print("\n-- proof c: lex-dpr refresh → exactly that set runs, then everything is fresh")
    before = latest()
    chk.run("refresh (statute touched)", [*lex, "refresh"])
    changed = {k for k, v in latest().items() if v != before[k]}
    print(f"   materialized ({len(changed)}): {', '.join(sorted(changed))}")
    chk.verdict("refresh materialized exactly the stale set (instance)", changed == expected, f"got {sorted(changed)}")
    out = chk.run("refresh --dry-run (after refresh)", [*lex, "refresh", "--dry-run"])
    chk.verdict(f"afterwards refresh --dry-run says '{FRESH_LINE}'", FRESH_LINE in out, _todo_text(out))
    print(f"\ngraph check wall time: {time.perf_counter() - started:.1f}s")
    return chk.summary()


def _todo_text(out: str) -> str:
    todo = dry_run_todo(out)
    last = out.strip().splitlines()[-1:] or ["(no output)"]
    return "; ".join(f"{k}: {s} — {why}" for k, (s, why) in todo.items()) or last[0]


def _names_changed_parent(why: str, parents: set[str], stale: set[str]) -> bool:
    """The cause names a parent that changed: the touched mirror (raw_statutes) or a parent that is itself stale."""
    named = set(re.findall(r"[A-Za-z_][\w]*", why))
    return bool(named & (parents & stale)) or ("legalize_kr_mirror" in parents and "legalize_kr_mirror" in named)


if __name__ == "__main__":
    raise SystemExit(main())
