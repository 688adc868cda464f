"""``lex-dpr``: the command line. Thin: every command runs Dagster assets or prints settings.

Failures end in one line on stderr and a non-zero exit (1: the run or the command failed; 2: bad usage or
configuration); the full traceback only with ``--debug`` or ``LEXDPR_LOG_LEVEL=DEBUG``. Rich's pretty tracebacks
stay off: an exception chain can be cyclic (Dagster re-raises a user error inside its own ``except``), and rich's
printer then never finishes.

Like the Dagster CLI, ``lex-dpr`` reads ``./.env``, but only ``LEXDPR_CONFIG``, ``DAGSTER_HOME`` and
``LAW_GO_KR_OC``, and never over the real environment: after ``bash scripts/main.sh`` (which writes them there)
every command finds the run the main job made.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from lexdpr_pipeline.settings import Settings, config_file_path, dump, load_settings

#: The keys of ./.env the CLI uses (the environment wins over .env; .env wins over ./lexdpr.yaml).
DOTENV_KEYS = ("LEXDPR_CONFIG", "DAGSTER_HOME", "LAW_GO_KR_OC")
_SECRET_ENV = ("LAW_GO_KR_OC", "LEXDPR_API_KEY")


class _OneLineErrors(TyperGroup):
    """Any unexpected exception of a command → ``error: Type: message`` on one line and exit 1 (2 for a bad
    configuration); the traceback only in debug mode. Usage errors and ``typer.Exit`` pass through untouched."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            _fail(f"error: {type(exc).__name__}: {exc}", _exit_code(exc), exc)


app = typer.Typer(
    cls=_OneLineErrors,
    help="LexDPR: Korean legal dense passage retrieval — ingest, train, index and search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = Console(soft_wrap=True)


@dataclass
class _State:
    config: Path | None = None
    config_origin: str = "defaults"  # where the config file came from, for error messages
    overrides: list[str] = field(default_factory=list)
    debug: bool = False
    dotenv: dict[str, str] = field(default_factory=dict)  # the DOTENV_KEYS values taken from ./.env


state = _State()


def _debug() -> bool:
    return state.debug or os.environ.get("LEXDPR_LOG_LEVEL", "").strip().upper() == "DEBUG"


def _scrub(text: str) -> str:
    """``text`` without any secret the CLI knows of (last line of defence: messages are scrubbed at the source)."""
    from lexdpr_pipeline.logging_setup import scrub_secrets

    secrets = [v.strip() for k in _SECRET_ENV for v in (os.environ.get(k), state.dotenv.get(k)) if v and v.strip()]
    return scrub_secrets(text, secrets)


def _one_line(text: str) -> str:
    from lexdpr_pipeline.orchestration import one_line

    return one_line(_scrub(text), budget=300, hard_max=400)


def _fail(message: str, code: int = 1, exc: BaseException | None = None) -> NoReturn:
    """Print ``message`` on one line to stderr (the traceback first in debug mode) and exit with ``code``."""
    if exc is not None and _debug():
        sys.stderr.write(_scrub("".join(traceback.format_exception(exc))))
    typer.echo(_one_line(message), err=True)
    raise typer.Exit(code)


def _exit_code(exc: BaseException) -> int:
    """2 for a configuration or run-config error (the user must change an input), else 1."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 2
    try:
        from dagster import DagsterInvalidConfigError
    except ImportError:  # pragma: no cover
        return 1
    return 2 if isinstance(exc, DagsterInvalidConfigError) else 1


def _read_dotenv(path: Path = Path(".env")) -> dict[str, str]:
    """The DOTENV_KEYS of ``path`` (``./.env``) that the environment does not set."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    values = dotenv_values(path)
    return {k: str(values[k]) for k in DOTENV_KEYS if values.get(k) and not os.environ.get(k)}


def _choose_run(config: Path | None, overrides: list[str]) -> None:
    """Which config file (and Dagster instance) this invocation uses: --config, $LEXDPR_CONFIG, ./.env's
    LEXDPR_CONFIG, ./lexdpr.yaml, or the defaults. .env's DAGSTER_HOME belongs to .env's run, so it is used only when
    nothing else chose the config or the data dir."""
    state.dotenv = _read_dotenv()
    if config is not None:
        state.config, state.config_origin = config, "--config"
    elif os.environ.get("LEXDPR_CONFIG"):
        state.config, state.config_origin = None, "LEXDPR_CONFIG"
    elif "LEXDPR_CONFIG" in state.dotenv:
        state.config, state.config_origin = Path(state.dotenv["LEXDPR_CONFIG"]), "./.env"
    else:
        local = config_file_path(None, {})
        state.config, state.config_origin = None, ("./lexdpr.yaml" if local is not None else "defaults")
    run_chosen_elsewhere = (
        state.config_origin in ("--config", "LEXDPR_CONFIG")
        or any(os.environ.get(k) for k in ("LEXDPR_DATA_DIR", "LEXDPR__PATHS__DATA_DIR"))
        or any(o.strip().startswith("paths.data_dir") for o in overrides)
    )
    if run_chosen_elsewhere:
        state.dotenv.pop("DAGSTER_HOME", None)
    if "LAW_GO_KR_OC" in state.dotenv:  # read from the process environment at run time (dg.EnvVar)
        os.environ["LAW_GO_KR_OC"] = state.dotenv["LAW_GO_KR_OC"]


def _config_description() -> str:
    """``configs/demo.yaml (from ./.env)``, ``defaults``, … — for messages."""
    path = config_file_path(state.config)
    if path is None:
        return "defaults (no config file)"
    return f"{path} (from {state.config_origin})"


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config YAML (else $LEXDPR_CONFIG, LEXDPR_CONFIG in ./.env, ./lexdpr.yaml)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a setting, e.g. --set ingest.max_items=50 (repeatable)."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Full tracebacks and every Dagster event (also LEXDPR_LOG_LEVEL=DEBUG).")
    ] = False,
) -> None:
    state.overrides = list(set_ or [])
    state.debug = debug
    _choose_run(config, state.overrides)


def _config_error_lines(exc: Exception) -> list[str]:
    """One line per bad setting for a pydantic error, else the message on one line."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return [" ".join(str(exc).split())]
    from lexdpr_pipeline.settings import SECRET_SETTINGS

    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        got = ""
        if "input" in err and where not in SECRET_SETTINGS and not isinstance(err["input"], dict | list):
            shown = repr(err["input"])
            got = f" (got {shown if len(shown) <= 60 else shown[:59] + '…'})"
        lines.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}{got}")
    return lines


def _settings() -> Settings:
    try:
        settings = load_settings(state.config, state.overrides)
    except (ValueError, FileNotFoundError) as exc:
        lines = _config_error_lines(exc)
        if isinstance(exc, FileNotFoundError) and state.config_origin in ("./.env", "LEXDPR_CONFIG"):
            lines[-1] += f" (named by {state.config_origin}; pick another with --config FILE or LEXDPR_CONFIG=FILE)"
        if _debug():
            sys.stderr.write(_scrub("".join(traceback.format_exception(exc))))
        for line in lines:
            typer.echo(_scrub(f"configuration error: {line}"), err=True)
        raise typer.Exit(2) from None
    if settings.logging.level.upper() == "DEBUG":
        state.debug = True
    return settings


def _instance_and_defs(settings: Settings):
    import dagster as dg

    from lexdpr_pipeline.definitions import build_definitions
    from lexdpr_pipeline.orchestration import cli_console_logger, ensure_dagster_home, mark_console_echoes

    if "DAGSTER_HOME" in state.dotenv and not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = state.dotenv["DAGSTER_HOME"]
    home = ensure_dagster_home(settings.dagster_home)
    console.print(f"[dim]DAGSTER_HOME={home}[/dim]")
    # Dagster's console logger, minus the failure events' stack traces (the CLI prints the one-line reason).
    defs = dg.Definitions.merge(
        build_definitions(settings), dg.Definitions(loggers={"console": cli_console_logger(_debug())})
    )
    mark_console_echoes()  # and not the library's log lines twice
    return dg.DagsterInstance.get(), defs


def _log_config(run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """``run_config`` plus the CLI's console logger (INFO, or DEBUG with every event in debug mode)."""
    from lexdpr_pipeline.orchestration import console_log_config

    return {**(run_config or {}), **console_log_config("DEBUG" if _debug() else "INFO")}


def _run_failed(result) -> NoReturn:
    """``run …: FAILED — step: reason`` on one line, exit 1."""
    from lexdpr_pipeline.orchestration import failure_reason

    _fail(f"run {result.run_id}: FAILED — {failure_reason(result)}", 1)


def _observe(instance, defs) -> None:
    from lexdpr_pipeline.orchestration import RunFailedError, observe_sources

    try:
        observe_sources(instance, defs, _log_config())
    except RunFailedError as exc:
        _fail(str(exc), 1)


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (defaults < YAML < environment < --set), secrets masked."""
    typer.echo(dump(_settings()), nl=False)


@config_app.command("init")
def config_init(
    path: Annotated[Path, typer.Argument(help="The file to write.")] = Path("lexdpr.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a commented starter config: every setting with its default, description and environment variable."""
    from lexdpr_pipeline.settings import starter_yaml
    from lexdpr_pipeline.storage import atomic_write_text

    if path.is_dir():
        _fail(f"{path} is a folder: name the file to write, e.g. {path / 'lexdpr.yaml'}", 2)
    if path.exists() and not force:
        _fail(f"{path} already exists: not overwritten (pass --force to replace it)", 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, starter_yaml())
    typer.echo(f"wrote {path.resolve()}: every setting at its default; edit it, or delete what you do not change")


@app.command()
def info() -> None:
    """Where this invocation's run lives: config file (and where it came from), data dir, DAGSTER_HOME, the search
    index, the MLflow store, and the `mlflow ui` command that opens it. Reads nothing but the settings."""
    from lexdpr_pipeline.artifacts import ArtifactStore
    from lexdpr_pipeline.tracking import UI_BASE_ENV, mask_uri, resolve_uri, without_password

    settings = _settings()
    home = os.environ.get("DAGSTER_HOME") or state.dotenv.get("DAGSTER_HOME") or str(settings.dagster_home)
    index = ArtifactStore.from_settings(settings).pointer_path
    # as tracking.tracking_target decides, without creating the store's folder; a password never printed
    store_uri = resolve_uri(settings.tracking, settings.data_dir)
    uri, ui_uri = mask_uri(store_uri), without_password(store_uri)  # `mlflow ui`: libpq reads $PGPASSWORD
    port = os.environ.get(UI_BASE_ENV, "http://127.0.0.1:5000").rstrip("/").rsplit(":", 1)[-1]
    rows = [
        ("config", _config_description()),
        ("data dir", str(settings.data_dir)),
        ("DAGSTER_HOME", str(Path(home).resolve())),
        (
            "search index",
            f"{index}" + ("" if index.exists() else " (missing: lex-dpr refresh --select '*faiss_index')"),
        ),
        ("MLflow store", uri),
        ("MLflow UI", f"mlflow ui --backend-store-uri {ui_uri}" + (f" --port {port}" if port.isdigit() else "")),
    ]
    for name, value in rows:
        typer.echo(f"{name + ':':<14}{value}")


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each database or server.")] = 3.0,
) -> None:
    """Check this setup: the active profile (DAGSTER_HOME and its storage, the MLflow store — passwords masked),
    whether the Dagster storage and MLflow answer, the published index and its files, the base model, the mirrors
    and the law.go.kr key (set or not), with the command that fixes each missing piece. Exit 1 when a required piece
    is missing. Never prints a secret."""
    import json

    from lexdpr_pipeline.doctor import format_report, run_doctor

    settings = _settings()
    home = os.environ.get("DAGSTER_HOME") or state.dotenv.get("DAGSTER_HOME") or str(settings.dagster_home)
    report = run_doctor(settings, dagster_home=Path(home), config=_config_description(), timeout_s=timeout)
    text = json.dumps(report.to_dict(), ensure_ascii=False, indent=2) if as_json else format_report(report)
    typer.echo(_scrub(text))
    raise typer.Exit(0 if report.ok else 1)


def _print_states(states, instance=None) -> None:
    from lexdpr_pipeline.assets.common import PASSAGES_KEY, ROWS_KEY, WALL_TIME_KEY
    from lexdpr_pipeline.orchestration import latest_metadata

    table = Table(title="asset status")
    for col in ("asset", "status", "why", "rows", "wall s"):
        table.add_column(col)
    for st in states:
        color = {"FRESH": "green", "STALE": "yellow", "MISSING": "red"}[st.status]
        meta = latest_metadata(instance, st.key) if instance is not None else {}
        rows = meta.get(ROWS_KEY, meta.get(PASSAGES_KEY, ""))
        table.add_row(
            st.key.to_user_string(),
            f"[{color}]{st.status}[/{color}]",
            "; ".join(st.causes),
            str(rows),
            str(meta.get(WALL_TIME_KEY, "")),
        )
    console.print(table)


@app.command()
def status() -> None:
    """Show every asset's status (FRESH / STALE / MISSING) and why, after observing the source mirrors."""
    from lexdpr_pipeline.orchestration import asset_states

    instance, defs = _instance_and_defs(_settings())
    _observe(instance, defs)
    _print_states(asset_states(instance, defs), instance)


def _run(keys, run_config: dict[str, Any] | None = None, *, trigger: str, instance=None, defs=None) -> None:
    from lexdpr_pipeline.orchestration import materialize

    if instance is None or defs is None:
        instance, defs = _instance_and_defs(_settings())
    started = time.perf_counter()
    _observe(instance, defs)  # so each materialization records the mirror version it read
    result = materialize(instance, defs, keys, _log_config(run_config), tags={"lexdpr/trigger": trigger})
    if not result.success:
        _run_failed(result)
    console.print(f"run {result.run_id}: success in {time.perf_counter() - started:.1f}s")
    _checks_failed(result)


def _checks_failed(result) -> None:
    """A run whose steps succeeded but whose ERROR-severity checks failed (e.g. too many documents missing from a
    crawl) still fails the command: one line per failed check, exit 1."""
    from lexdpr_pipeline.orchestration import failed_checks

    lines = failed_checks(result)
    for line in lines[:-1]:
        typer.echo(_one_line(f"check FAILED — {line}"), err=True)
    if lines:
        _fail(f"run {result.run_id}: check FAILED — {lines[-1]}", 1)


def _refresh(select: str | None, dry_run: bool, trigger: str) -> None:
    from lexdpr_pipeline.orchestration import asset_states, materialize

    settings = _settings()
    instance, defs = _instance_and_defs(settings)
    _observe(instance, defs)
    states = asset_states(instance, defs)
    if select is not None:
        wanted = _select(select, defs.resolve_asset_graph())
        states = [s for s in states if s.key in wanted]
    todo = [s for s in states if s.needs_run]
    if not todo:
        console.print("[green]everything is fresh: nothing to run[/green]")
        return
    console.print(f"{len(todo)} of {len(states)} assets need a run:")
    for st in todo:
        console.print(f"  {st.key.to_user_string()}: {st.status} — {'; '.join(st.causes)}")
    if dry_run:
        return
    started = time.perf_counter()
    result = materialize(instance, defs, [s.key for s in todo], _log_config(), tags={"lexdpr/trigger": trigger})
    if not result.success:
        _run_failed(result)
    ran = sorted(
        {e.asset_key.to_user_string() for e in result.get_asset_materialization_events() if e.asset_key},
    )
    console.print(
        f"run {result.run_id}: success in {time.perf_counter() - started:.1f}s;"
        f" materialized {', '.join(ran) or 'nothing'}"
    )
    _checks_failed(result)


@app.command()
def refresh(
    dry_run: Annotated[bool, typer.Option(help="Only print what would run and why.")] = False,
    select: Annotated[
        str | None, typer.Option(help="Limit to a Dagster asset selection, e.g. '*dataset_splits'.")
    ] = None,
) -> None:
    """Materialize only the stale or missing assets (after re-fingerprinting the source mirrors)."""
    _refresh(select, dry_run, "refresh")


@app.command("gen-data")
def gen_data(
    dry_run: Annotated[bool, typer.Option(help="Only print what would run and why.")] = False,
) -> None:
    """Build the training data (passages, corpus, citations, pairs with hard negatives, splits, report): every
    stale or missing asset up to ``dataset_splits``. Tune it with --set text.…/pairs.… (see `config show`)."""
    _refresh("*dataset_splits", dry_run, "gen-data")
    if not dry_run:
        _print_report_location()


def _print_report_location() -> None:
    from lexdpr_pipeline.artifacts import ArtifactStore
    from lexdpr_pipeline.pairs.report import REPORT_FILE, report_dir

    report = report_dir(ArtifactStore.from_settings(_settings())) / REPORT_FILE
    if report.exists():
        console.print(f"pairs report: {report}")


@app.command("analyze-pairs")
def analyze_pairs(
    out: Annotated[
        Path | None, typer.Option(help="Folder for the report (default data/reports/training_data).")
    ] = None,
) -> None:
    """Statistics of the materialized training pairs: query types, positives/negatives per query, token lengths,
    per-split numbers, citation resolution — a markdown report with PNG histograms, printed here. The same report
    the dataset_splits asset writes (one library function), from the stored tables."""
    from lexdpr_pipeline.artifacts import ArtifactStore
    from lexdpr_pipeline.models.resolve import resolve_base_model
    from lexdpr_pipeline.pairs.build import report_args
    from lexdpr_pipeline.pairs.report import report_dir, write_pairs_report

    settings = _settings()
    store = ArtifactStore.from_settings(settings)
    needed = ["dataset_splits", "merged_corpus", "precedent_citations"]
    missing = [n for n in needed if not store.has_table(n)]
    if missing:
        console.print(f"[red]missing {', '.join(missing)}[/red]: run `lex-dpr gen-data` first")
        raise typer.Exit(1)
    splits, corpus, citations = (store.read_table(n) for n in needed)
    base = resolve_base_model(settings.models.base_model, store)
    report = write_pairs_report(
        splits,
        corpus,
        citations,
        out or report_dir(store),
        pairs=settings.pairs,
        train=settings.train,
        **report_args(settings.text, base),
    )
    console.print(report.markdown)
    console.print(f"\nwritten: {report.markdown_path} (+ {len(report.images)} PNG plots)")


@app.command("materialize")
def materialize_cmd(
    select: Annotated[str, typer.Option(help="Dagster asset selection, e.g. 'group:ingest' or 'raw_statutes+'.")] = "*",
    limit: Annotated[int | None, typer.Option(min=1, help="Max items per ingest asset (demo runs).")] = None,
    source: Annotated[str | None, typer.Option(help="Ingest source: mirror or api.")] = None,
) -> None:
    """Materialize assets (default: the whole graph), recorded in the persistent instance. --limit and --source
    are the ingest assets' run config (ingest.max_items / ingest.source for this run)."""
    from lexdpr_pipeline.assets.ingest import INGEST_ASSETS, IngestConfig, ingest_settings
    from lexdpr_pipeline.orchestration import run_config_for

    _choice(source, _INGEST_SOURCES, "--source")
    settings = _settings()
    overrides = [f"ingest.{k}={v}" for k, v in {"source": source, "max_items": limit}.items() if v is not None]
    effective = _checked_overrides(ingest_settings, settings, overrides)
    instance, defs = _instance_and_defs(settings)
    graph = defs.resolve_asset_graph()
    keys = [k for k in _select(select, graph) if k in graph.materializable_asset_keys]
    if not keys:
        _fail(f"--select {select!r} matches no materializable asset (see `lex-dpr status`)", 2)
    ingest = [a for a in INGEST_ASSETS if a.key in keys]
    if ingest and effective.ingest.source == "api":
        _require_oc("or use --source mirror")
    config = run_config_for(dict.fromkeys(ingest, IngestConfig(overrides=overrides))) if overrides else None
    _run(keys, config, trigger="materialize", instance=instance, defs=defs)


_INGEST_SOURCES = ("mirror", "api")


def _checked_overrides(apply, settings: Settings, overrides: list[str]) -> Settings:  # type: ignore[no-untyped-def]
    """``apply(settings, overrides)`` (the run config's overrides, as the asset will apply them): a bad key or value
    fails here, one line per bad setting and exit 2, before any run is recorded."""
    try:
        return apply(settings, overrides)
    except ValueError as exc:
        for line in _config_error_lines(exc):
            typer.echo(_scrub(f"configuration error: {line}"), err=True)
        raise typer.Exit(2) from None


def _select(select: str, graph) -> set:  # type: ignore[no-untyped-def]
    """The asset keys of a Dagster selection string; a bad one is a usage error (exit 2)."""
    import dagster as dg

    try:
        return set(dg.AssetSelection.from_string(select).resolve(graph))
    except Exception as exc:
        _fail(f"bad --select {select!r}: {type(exc).__name__}: {exc}", 2, exc)


def _require_oc(alternative: str) -> None:
    """Exit 2 with one line when the law.go.kr key is missing (before any run is recorded)."""
    if not (os.environ.get("LAW_GO_KR_OC") or "").strip():
        _fail(
            "the law.go.kr API needs an OC key: set LAW_GO_KR_OC (the e-mail id of your open.law.go.kr account) "
            f"in the environment or in ./.env, {alternative}",
            2,
        )


def _iso(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a YYYY-MM-DD date") from exc


@app.command("crawl-precedents")
def crawl_precedents(
    since: Annotated[
        str | None, typer.Option(help="First 선고일자 (YYYY-MM-DD); default: last successful crawl.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last 선고일자 (YYYY-MM-DD).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Max precedents to fetch.")] = None,
    full: Annotated[bool, typer.Option(help="Ignore the incremental state and list everything.")] = False,
) -> None:
    """Crawl precedents from the law.go.kr API (needs LAW_GO_KR_OC) through the raw_precedents asset."""
    from lexdpr_pipeline.assets.ingest import IngestConfig, ingest_settings, raw_precedents
    from lexdpr_pipeline.orchestration import run_config_for

    start, end = _iso(since), _iso(until)
    if start and end and start > end:
        raise typer.BadParameter(f"--since {start} is after --until {end}")
    settings = _settings()  # a bad configuration fails here, in one line per bad setting
    overrides = ["ingest.source=api", *([f"ingest.max_items={limit}"] if limit is not None else [])]
    _checked_overrides(ingest_settings, settings, overrides)
    _require_oc("or read the precedent-kr mirror: lex-dpr materialize --select raw_precedents --source mirror")
    config = IngestConfig(overrides=overrides, since=start, until=end, incremental=not full)
    _run([raw_precedents.key], run_config_for({raw_precedents: config}), trigger="crawl-precedents")


# training and evaluation ------------------------------------------------------------------------------------------


def _with_missing_upstream(instance, defs, run: list, needs: tuple = ()) -> list:  # type: ignore[no-untyped-def]
    """The assets ``run`` (materialized anyway) after the never-materialized ones they or ``needs`` (inputs of a
    job that is not an asset, e.g. the sweep's) depend on, in dependency order, printing the latter: the one
    "also materialize missing upstream" of every command (stale ones are left as they are: ``lex-dpr refresh`` is
    the command that brings everything up to date)."""
    from lexdpr_pipeline.orchestration import missing_upstream

    missing = [k for k in missing_upstream(instance, defs, [*run, *needs]) if k not in run]
    if missing:
        console.print(f"[dim]also materializing missing upstream: {', '.join(k.to_user_string() for k in missing)}")
    return [*missing, *run]


def _train(overrides: list[str], test_run: bool, trigger: str) -> None:
    from lexdpr_pipeline.orchestration import latest_metadata, run_config_for
    from lexdpr_pipeline.settings import with_overrides

    settings = _settings()
    _checked_overrides(with_overrides, settings, overrides)  # the flags as settings: a bad value fails here
    instance, defs = _instance_and_defs(settings)
    from lexdpr_pipeline.assets import training as t  # after the definitions: the training stack is loaded then

    keys = _with_missing_upstream(instance, defs, [t.trained_model.key])
    config = run_config_for({t.trained_model: t.TrainRunConfig(overrides=overrides, test_run=test_run)})
    _run(keys, config, trigger=trigger, instance=instance, defs=defs)
    meta = latest_metadata(instance, t.trained_model.key)
    console.print(
        f"model: {meta.get(t.MODEL_PATH_KEY)}\n"
        f"valid nDCG@10: {meta.get(t.VALID_NDCG_KEY)}  train pairs/s: {meta.get(t.PAIRS_PER_S_KEY)}  "
        f"reused: {meta.get(t.REUSED_KEY)}\n"
        f"MLflow run: {meta.get(t.MLFLOW_URL_KEY)} ({meta.get(t.MLFLOW_URI_KEY)})"
    )


def _positive(value: float | None, option: str) -> None:
    if value is not None and not value > 0:  # also NaN
        raise typer.BadParameter(f"{value} is not > 0", param_hint=option)


def _train_overrides(**flags: Any) -> list[str]:
    return [f"train.{name}={value}" for name, value in flags.items() if value is not None]


@app.command()
def train(
    epochs: Annotated[float | None, typer.Option(help="train.epochs (> 0)")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="train.max_steps (overrides epochs)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="train.batch_size")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="train.learning_rate (> 0)")] = None,
    temperature: Annotated[float | None, typer.Option(help="train.temperature (> 0; scale = 1/temperature)")] = None,
    loss: Annotated[str | None, typer.Option(help="train.loss: mnrl or cached_mnrl")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapter or full fine-tuning")] = None,
    template: Annotated[str | None, typer.Option(help="train.template: e5, bge, none, custom")] = None,
) -> None:
    """Fine-tune the bi-encoder: materialize ``trained_model`` (settings from --config/--set plus these flags)."""
    _positive(epochs, "--epochs")
    _positive(lr, "--lr")
    _positive(temperature, "--temperature")
    _choice(loss, ("mnrl", "cached_mnrl"), "--loss")
    flags = _train_overrides(
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=lr,
        temperature=temperature,
        loss=loss,
        lora=None if lora is None else str(lora).lower(),
        template=template,
    )
    _train(flags, test_run=False, trigger="train")


@app.command("smoke-train")
def smoke_train() -> None:
    """Train a few steps on a small sample end to end (train.test_run): checks data, model, MLflow in minutes."""
    _train([], test_run=True, trigger="smoke-train")


@app.command("eval")
def eval_cmd(
    show: Annotated[bool, typer.Option("--show", help="Print the latest evaluation without running one.")] = False,
    model: Annotated[
        Path | None, typer.Option("--model", help="Score this model folder (vs base, BM25, hybrids) instead.")
    ] = None,
    base: Annotated[Path | None, typer.Option("--base", help="With --model: the base model folder to compare.")] = None,
) -> None:
    """Evaluate: materialize ``model_evaluation`` (fine-tuned vs zero-shot base vs BM25 vs hybrids) and print the
    table; ``--model PATH`` scores any model folder the same way (same queries, corpus and plan)."""
    from lexdpr_pipeline.orchestration import latest_metadata

    settings = _settings()
    if base is not None and model is None:
        raise typer.BadParameter("--base needs --model", param_hint="--base")
    if model is not None:
        _eval_model(settings, model, base)
        return
    instance, defs = _instance_and_defs(settings)
    from lexdpr_pipeline.assets import evaluation as e  # after the definitions: the model stack is loaded then

    key = e.model_evaluation.key
    if not show:
        _run(_with_missing_upstream(instance, defs, [key]), trigger="eval", instance=instance, defs=defs)
    meta = latest_metadata(instance, key)
    if not meta:
        console.print("no evaluation yet: run `lex-dpr eval`")
        raise typer.Exit(1)
    _print_report(str(meta.get(e.REPORT_KEY, "")))
    for name in (e.CORPUS_KEY, e.CORPUS_PASSAGES_KEY, e.REPORT_PATH_KEY, e.RANKS_KEY, e.MLFLOW_RUN_URL_KEY):
        if meta.get(name) is not None:
            console.print(f"{name}: {meta[name]}")


def _eval_model(settings: Settings, model: Path, base: Path | None) -> None:
    """``eval --model``: the tables it reads are materialized first when missing, then the library evaluates."""
    from lexdpr_pipeline.artifacts import ArtifactStore

    for path, option in ((model, "--model"), (base, "--base")):
        if path is not None and not path.is_dir():
            raise typer.BadParameter(f"{path} is not a model folder", param_hint=option)
    store = ArtifactStore.from_settings(settings)
    needed = ["dataset_splits", "merged_corpus", *(["bm25_index"] if settings.eval.compare_bm25 else [])]
    needed += ["base_model"] if base is None and settings.eval.compare_base else []
    missing = [a for a in needed if not (store.has_table(a) or store.table_path(a, ".json").is_file())]
    if missing:
        import dagster as dg

        instance, defs = _instance_and_defs(settings)
        keys = [dg.AssetKey(a) for a in missing]
        _run(_with_missing_upstream(instance, defs, keys), trigger="eval", instance=instance, defs=defs)
    from lexdpr_pipeline.evaluation.tracked import evaluate_model_folder

    result = evaluate_model_folder(settings.eval, settings.tracking, store, model, base)
    run = result.run
    if run.report is not None:
        _print_report(run.report.markdown)
        console.print(f"report_path: {run.report.markdown_path}")
    console.print(f"eval_corpus: {run.corpus_label}\nper_query_ranks: {run.ranks_path}")
    for system, params in result.fusion_params.items():
        console.print(f"fusion chosen on valid ({system}): {params.by_source}")
    console.print(f"mlflow_run_url: {result.mlflow_url}")


def _md_cells(line: str) -> list[str]:
    """The cells of a markdown table row (``\\|`` is a literal bar)."""
    import re

    inner = line.strip().removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _fitted_tables(headers: list[str], rows: list[list[str]], width: int) -> list[Table]:
    """The table as one or more rich tables no wider than ``width``: the key columns (group, system, queries: every
    header without an ``@``) on each, the metric columns spread over them. Headers are never cut or wrapped."""
    from rich import box
    from rich.cells import cell_len

    widths = [max([cell_len(h), *(cell_len(r[i]) for r in rows if i < len(r))]) for i, h in enumerate(headers)]
    keys = [i for i, h in enumerate(headers) if "@" not in h]
    metrics = [i for i, h in enumerate(headers) if "@" in h]

    def table_width(cols: list[int]) -> int:  # box.SIMPLE: 1 char between/around columns, padding 1 each side
        return sum(widths[i] + 3 for i in cols) + 1

    chunks: list[list[int]] = []
    for i in metrics:
        if chunks and table_width(keys + chunks[-1] + [i]) <= width:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    if len(chunks) > 1:  # as many tables as needed, the metrics spread evenly over them (3+3, not 4+2)
        per, extra = divmod(len(metrics), len(chunks))
        sizes = [per + (n < extra) for n in range(len(chunks))]
        even = [metrics[sum(sizes[:n]) : sum(sizes[: n + 1])] for n in range(len(chunks))]
        if all(table_width(keys + chunk) <= width for chunk in even):
            chunks = even
    tables = []
    for chunk in chunks or [[]]:
        cols = keys + chunk
        table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
        for i in cols:
            justify = "right" if i in metrics or headers[i] == "queries" else "left"
            table.add_column(headers[i], no_wrap=True, min_width=widths[i], justify=justify)  # type: ignore[arg-type]
        for row in rows:
            table.add_row(*(row[i] if i < len(row) else "" for i in cols))
        tables.append(table)
    return tables


def _print_report(markdown: str) -> None:
    """A markdown report on the console: text through rich's Markdown, each table fitted to the terminal width
    (split into several when needed; every header stays whole: ``lex-dpr eval --show`` in 80 columns)."""
    from rich.markdown import Markdown

    text: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i <= len(lines):
        line = lines[i] if i < len(lines) else None
        if line is not None and line.lstrip().startswith("|"):
            if text:
                console.print(Markdown("\n".join(text)))
                text = []
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            rows = [_md_cells(b) for b in block if not set(b.replace("|", "").strip()) <= set("-: ")]
            if rows:
                for n, table in enumerate(_fitted_tables(rows[0], rows[1:], console.width)):
                    if n:
                        console.print()
                    console.print(table)
            continue
        if line is None:
            break
        text.append(line)
        i += 1
    if any(t.strip() for t in text):
        console.print(Markdown("\n".join(text)))


@app.command("sweep")
def sweep_cmd(
    sweep_file: Annotated[
        Path,
        typer.Option(
            "--config",
            help="The sweep file (search space, strategy, budget). The settings file is the global option: "
            "`lex-dpr --config SETTINGS.yaml sweep --config SWEEP.yaml`.",
        ),
    ] = Path("configs/sweep.yaml"),
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Budget: total trials, counting those already stored.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Start no new trial after this many seconds.")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="grid, random or tpe (overrides the file).")] = None,
) -> None:
    """Hyperparameter sweep (Optuna + MLflow) over train.* settings, scored on the valid split: runs `sweep_job`
    (recorded in Dagster as asset hyperparameter_sweep). Run it again to resume. Then train with the best settings:
    `lex-dpr --config data/sweeps/NAME/best.yaml train`."""
    import dagster as dg
    from rich.markdown import Markdown

    from lexdpr_pipeline.orchestration import latest_metadata, run_config_for
    from lexdpr_pipeline.sweeps.space import load_spec

    _choice(strategy, ("grid", "random", "tpe"), "--strategy")
    try:
        load_spec(sweep_file).with_budget(trials, timeout, strategy)
    except ValueError as exc:
        console.print(f"[red]sweep file error:[/red] {exc}")
        raise typer.Exit(2) from exc
    instance, defs = _instance_and_defs(_settings())
    from lexdpr_pipeline.assets import sweeps as sw  # after the definitions: the training stack is loaded then

    missing = _with_missing_upstream(instance, defs, [], needs=tuple(dg.AssetKey(name) for name in sw.INPUTS))
    if missing:
        _run(missing, trigger="sweep", instance=instance, defs=defs)
    config = sw.SweepRunConfig(
        sweep_file=str(sweep_file.resolve()),
        n_trials=trials,
        timeout_s=timeout,
        strategy=sw.SweepStrategy(strategy) if strategy else None,
    )
    run_config = run_config_for({sw.hyperparameter_sweep_op: config})
    started = time.perf_counter()
    result = defs.resolve_job_def(sw.sweep_job.name).execute_in_process(
        instance=instance, run_config=_log_config(run_config), tags={"lexdpr/trigger": "sweep"}, raise_on_error=False
    )
    if not result.success:
        _run_failed(result)
    console.print(f"run {result.run_id}: success in {time.perf_counter() - started:.1f}s")
    meta = latest_metadata(instance, sw.SWEEP_KEY)
    console.print(Markdown(str(meta.get(sw.SUMMARY_KEY, ""))))
    console.print(Markdown(str(meta.get(sw.TRIALS_TABLE_KEY, ""))))
    for name in (sw.BEST_CONFIG_KEY, sw.SWEEP_DIR_KEY, sw.MLFLOW_URL_KEY):
        if meta.get(name):
            console.print(f"{name}: {meta[name]}")
    if meta.get(sw.BEST_CONFIG_KEY):
        console.print(f"train with the best settings: lex-dpr --config {meta[sw.BEST_CONFIG_KEY]} train")


# search, embeddings, API ------------------------------------------------------------------------------------------

_MODES = ("dense", "bm25", "hybrid")
_SOURCES = ("law", "admrul", "prec")
_EMBED_TYPES = ("query", "passage")


def _load_engine(settings: Settings):
    """The search engine over the published index (data/indexes/CURRENT.json). CLI tests replace this function."""
    from lexdpr_pipeline.search.engine import load_engine

    try:
        return load_engine(settings)
    except (FileNotFoundError, ValueError) as exc:
        if _debug():
            sys.stderr.write(_scrub("".join(traceback.format_exception(exc))))
        typer.echo(_one_line(f"cannot load the search index: {exc}"), err=True)
        typer.echo(f"  config: {_config_description()}; data dir: {settings.data_dir}", err=True)
        typer.echo(
            "  build it with `lex-dpr refresh --select '*faiss_index'` (see docs/DEPLOY.md), or pick another run with "
            "--config FILE, LEXDPR_CONFIG=FILE or LEXDPR_CONFIG=FILE in ./.env",
            err=True,
        )
        raise typer.Exit(1) from None


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> str | None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=option)
    return value


def _search_filters(
    sources: list[str] | None,
    laws: list[str] | None,
    law_ids: list[str] | None,
    courts: list[str] | None,
    case_types: list[str] | None,
    date_from: str | None,
    date_to: str | None,
):
    for src in sources or []:
        _choice(src, _SOURCES, "--source")
    start, end = _iso(date_from), _iso(date_to)
    if start and end and start > end:
        raise typer.BadParameter(f"--from {start} is after --to {end}")
    if not any([sources, laws, law_ids, courts, case_types, start, end]):
        return None
    from lexdpr_pipeline.search.engine import SearchFilters

    return SearchFilters(
        sources=sources or None,
        law_ids=law_ids or None,
        law_names=laws or None,
        courts=courts or None,
        case_types=case_types or None,
        date_from=dt.date.fromisoformat(start) if start else None,
        date_to=dt.date.fromisoformat(end) if end else None,
    )


def _print_hits(hits) -> None:
    from rich.markup import escape

    if not hits:
        console.print("[yellow]no results[/yellow]")
    for hit in hits:
        parts = [f"dense {hit.dense_score:.4f}" if hit.dense_score is not None else None]
        parts.append(f"bm25 {hit.bm25_score:.2f}" if hit.bm25_score is not None else None)
        detail = " · ".join(p for p in parts if p)
        where = hit.passage_id if hit.passage_id != hit.doc_id else hit.doc_id  # law:…:750 or prec:…#2
        console.print(
            f"[bold]{hit.rank:>3}.[/bold] [cyan]{hit.score:.4f}[/cyan]"
            + (f" [dim]({detail})[/dim]" if detail else "")
            + f"  [bold]{escape(hit.title)}[/bold]  [dim]{escape(where)}[/dim]"
        )
        console.print(f"      {escape(hit.snippet)}", highlight=False)


@app.command("search")
def search_cmd(
    query: Annotated[str | None, typer.Argument(help="The query (leave out with --queries).")] = None,
    queries: Annotated[
        Path | None, typer.Option("--queries", help='Batch: JSONL file of {"qid", "text"} lines.', dir_okay=False)
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Batch: results JSONL to write.")] = None,
    top_k: Annotated[
        int | None, typer.Option("--top-k", "-k", min=1, help="Results per query (default 10; batch 100).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="dense, bm25 or hybrid (default: search.mode).")] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="law, admrul or prec (repeatable).")] = None,
    law: Annotated[list[str] | None, typer.Option("--law", help="Statute name, e.g. 민법 (repeatable).")] = None,
    law_id: Annotated[list[str] | None, typer.Option("--law-id", help="법령ID / 행정규칙ID (repeatable).")] = None,
    court: Annotated[list[str] | None, typer.Option("--court", help="Court, e.g. 대법원 (repeatable).")] = None,
    case_type: Annotated[list[str] | None, typer.Option("--case-type", help="Case type (repeatable).")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="Date on or after (YYYY-MM-DD).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Date on or before (YYYY-MM-DD).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Drop results scoring below this.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch: queries per search_many call.")] = 32,
) -> None:
    """Search the published index: one query (a numbered list, or --json), or a JSONL file of queries
    (--queries in.jsonl --output out.jsonl). One result per document (its best passage), best first."""
    import json

    if (query is None) == (queries is None):
        raise typer.BadParameter("give either a query or --queries FILE")
    if queries is not None and output is None:
        raise typer.BadParameter("--queries needs --output FILE", param_hint="--output")
    if queries is not None and not queries.is_file():
        raise typer.BadParameter(f"{queries} does not exist", param_hint="--queries")
    _choice(mode, _MODES, "--mode")
    filters = _search_filters(source, law, law_id, court, case_type, date_from, date_to)
    settings = _settings()
    engine = _load_engine(settings)
    if queries is not None and output is not None:
        from lexdpr_pipeline.search.batch import run_batch_search

        err = Console(stderr=True, soft_wrap=True)
        report = run_batch_search(
            engine,
            queries,
            output,
            top_k=top_k or 100,
            mode=mode,
            filters=filters,
            threshold=threshold,
            batch_size=batch_size,
        )
        err.print(report.summary(), highlight=False)
        err.print(f"written: {output}")
        if report.searched == 0 and report.lines > 0:
            raise typer.Exit(1)
        return
    hits = engine.search(query, top_k=top_k or 10, mode=mode, filters=filters, threshold=threshold)
    if json_out:
        versions = getattr(engine, "versions", {}) or {}
        payload = {
            "query": query,
            "mode": mode or settings.search.mode,
            "index_version": versions.get("index_version"),
            "results": [hit.to_dict() for hit in hits],
        }
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    else:
        _print_hits(hits)


def _encoder(settings: Settings, model: Path | None):
    from lexdpr_pipeline.artifacts import ArtifactStore
    from lexdpr_pipeline.models.encoders import load_encoder
    from lexdpr_pipeline.models.resolve import model_for_serving

    try:
        chosen = model_for_serving(
            settings.embed.model, settings.models.base_model, ArtifactStore.from_settings(settings), model
        )
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]no model:[/red] {exc}")
        raise typer.Exit(1) from exc
    Console(stderr=True).print(f"[dim]model {chosen.path} ({chosen.origin}, {chosen.backend})[/dim]")
    return load_encoder(chosen.path, chosen.backend, chosen.export_path, threads=settings.embed.threads), chosen


@app.command("embed")
def embed_cmd(
    input_: Annotated[
        Path, typer.Option("--input", "-i", help='JSONL ({"id", "text"}) or text (one per line).', dir_okay=False)
    ],
    type_: Annotated[str, typer.Option("--type", "-t", help="query or passage (which template applies).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="out.npy (matrix) or out.npz (ids + embeddings).")],
    model: Annotated[
        Path | None, typer.Option(help="Model folder (default: the served index's model, else embed.model).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Texts per forward pass (embed.batch_size).")] = None,
) -> None:
    """Embed every text of a file with the bi-encoder; bad lines are skipped and reported."""
    from lexdpr_pipeline.search.embed_file import read_texts, write_embeddings

    _choice(type_, _EMBED_TYPES, "--type")
    if output.suffix.lower() not in {".npy", ".npz"}:
        raise typer.BadParameter("must end in .npy or .npz", param_hint="--output")
    if not input_.is_file():
        raise typer.BadParameter(f"{input_} does not exist", param_hint="--input")
    settings = _settings()
    texts = read_texts(input_)
    err = Console(stderr=True, soft_wrap=True)
    err.print(texts.summary(), highlight=False)
    if not texts.texts:
        err.print("[red]nothing to embed[/red]")
        raise typer.Exit(1)
    if texts.skipped and output.suffix.lower() == ".npy":
        err.print("[yellow]rows of the .npy are the kept lines only; use .npz to get their ids[/yellow]")
    encoder, chosen = _encoder(settings, model)
    encode = encoder.encode_queries if type_ == "query" else encoder.encode_passages
    started = time.perf_counter()
    matrix = encode(texts.texts, batch_size=batch_size or settings.embed.batch_size, progress=True)
    write_embeddings(output, matrix, texts.ids, chosen.version)
    err.print(f"written: {output} ({matrix.shape[0]}×{matrix.shape[1]}) in {time.perf_counter() - started:.1f}s")


@app.command("embed-text")
def embed_text_cmd(
    texts: Annotated[list[str], typer.Argument(help="One or more texts.")],
    type_: Annotated[str, typer.Option("--type", "-t", help="query or passage (which template applies).")],
    model: Annotated[
        Path | None, typer.Option(help="Model folder (default: the served index's model, else embed.model).")
    ] = None,
) -> None:
    """Embed texts and print JSON: {"model", "model_version", "type", "dim", "embeddings": [[…], …]}."""
    import json

    _choice(type_, _EMBED_TYPES, "--type")
    encoder, chosen = _encoder(_settings(), model)
    matrix = encoder.encode_queries(texts) if type_ == "query" else encoder.encode_passages(texts)
    payload = {
        "model": chosen.path,
        "model_version": chosen.version,
        "type": type_,
        "dim": int(matrix.shape[1]),
        "embeddings": matrix.tolist(),
    }
    typer.echo(json.dumps(payload, ensure_ascii=False))


@app.command("api")
def api_cmd(
    host: Annotated[str | None, typer.Option(help="Bind address (api.host, default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (api.port, default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (api.workers).")] = None,
) -> None:
    """Serve the HTTP API (FastAPI + uvicorn): /health, /search, /embed/query, /embed/passage, /admin/reload,
    OpenAPI at /docs. The API key comes from LEXDPR_API_KEY only. See docs/API.md and docs/DEPLOY.md."""
    import json
    import os

    import uvicorn

    from lexdpr_pipeline.api.app import OVERRIDES_ENV
    from lexdpr_pipeline.api.server import metrics_dir, uvicorn_options

    settings = _settings()  # fail here, not in a worker, on a bad configuration
    host = host or settings.api.host
    if settings.api.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] listening on {host} without an API key (set LEXDPR_API_KEY)")
    # Workers build the app from the environment: hand them the same config file and --set overrides.
    if state.config is not None:
        os.environ["LEXDPR_CONFIG"] = str(state.config.resolve())
    os.environ[OVERRIDES_ENV] = json.dumps(state.overrides)
    workers = workers or settings.api.workers
    with metrics_dir(workers):  # workers > 1: one PROMETHEUS_MULTIPROC_DIR, so /metrics adds up every worker
        uvicorn.run(
            "lexdpr_pipeline.api.app:create_app_from_env",
            factory=True,
            host=host,
            port=port or settings.api.port,
            workers=workers,
            # X-Forwarded-For only from api.trusted_proxies (default: none); malformed HTTP in the error shape
            **uvicorn_options(settings.api),
            # uvicorn kills a worker that misses a 5 s ping; loading Kiwi at startup can hold the GIL that long
            timeout_worker_healthcheck=settings.api.worker_healthcheck_s,
            access_log=False,  # the app logs each request itself (method, path, status, latency; no headers)
            log_level=settings.logging.level.lower(),
        )


if __name__ == "__main__":  # pragma: no cover
    app()
