"""``lex-dpr``: the command line. Thin: every command runs Dagster assets or prints settings."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lexdpr_pipeline.settings import Settings, dump, load_settings

app = typer.Typer(
    help="LexDPR: Korean legal dense passage retrieval — ingest, train, index and search.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = Console(soft_wrap=True)


@dataclass
class _State:
    config: Path | None = None
    overrides: list[str] = field(default_factory=list)


state = _State()


@app.callback()
def main(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Config YAML (else $LEXDPR_CONFIG or ./lexdpr.yaml).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a setting, e.g. --set ingest.max_items=50 (repeatable)."),
    ] = None,
) -> None:
    state.config = config
    state.overrides = list(set_ or [])


def _settings() -> Settings:
    try:
        return load_settings(state.config, state.overrides)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _instance_and_defs(settings: Settings):
    import dagster as dg

    from lexdpr_pipeline.definitions import build_definitions
    from lexdpr_pipeline.orchestration import ensure_dagster_home

    home = ensure_dagster_home(settings)
    console.print(f"[dim]DAGSTER_HOME={home}[/dim]")
    return dg.DagsterInstance.get(), build_definitions(settings)


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (defaults < YAML < environment < --set), secrets masked."""
    typer.echo(dump(_settings()), nl=False)


def _print_states(states, instance=None) -> None:
    from lexdpr_pipeline.orchestration import latest_metadata

    table = Table(title="asset status")
    for col in ("asset", "status", "why", "rows", "wall s"):
        table.add_column(col)
    for st in states:
        color = {"FRESH": "green", "STALE": "yellow", "MISSING": "red"}[st.status]
        meta = latest_metadata(instance, st.key) if instance is not None else {}
        rows = meta.get("rows", meta.get("passages", ""))
        table.add_row(
            st.key.to_user_string(),
            f"[{color}]{st.status}[/{color}]",
            "; ".join(st.causes),
            str(rows),
            str(meta.get("wall_time_s", "")),
        )
    console.print(table)


@app.command()
def status() -> None:
    """Show every asset's status (FRESH / STALE / MISSING) and why, after observing the source mirrors."""
    from lexdpr_pipeline.orchestration import asset_states, observe_sources

    instance, defs = _instance_and_defs(_settings())
    observe_sources(instance, defs)
    _print_states(asset_states(instance, defs), instance)


def _run(keys, run_config: dict[str, Any] | None = None, *, trigger: str, instance=None, defs=None) -> None:
    from lexdpr_pipeline.orchestration import materialize, observe_sources

    if instance is None or defs is None:
        instance, defs = _instance_and_defs(_settings())
    started = time.perf_counter()
    observe_sources(instance, defs)  # so each materialization records the mirror version it read
    result = materialize(instance, defs, keys, run_config, tags={"lexdpr/trigger": trigger})
    elapsed = time.perf_counter() - started
    console.print(f"run {result.run_id}: {'success' if result.success else 'FAILED'} in {elapsed:.1f}s")
    if not result.success:
        raise typer.Exit(1)


def _refresh(select: str | None, dry_run: bool, trigger: str) -> None:
    import dagster as dg

    from lexdpr_pipeline.orchestration import asset_states, materialize, observe_sources

    settings = _settings()
    instance, defs = _instance_and_defs(settings)
    observe_sources(instance, defs)
    states = asset_states(instance, defs)
    if select is not None:
        wanted = dg.AssetSelection.from_string(select).resolve(defs.resolve_asset_graph())
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
    result = materialize(instance, defs, [s.key for s in todo], tags={"lexdpr/trigger": trigger})
    ran = sorted(
        {e.asset_key.to_user_string() for e in result.get_asset_materialization_events() if e.asset_key},
    )
    console.print(
        f"run {result.run_id}: {'success' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s;"
        f" materialized {', '.join(ran) or 'nothing'}"
    )
    if not result.success:
        raise typer.Exit(1)


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
    report = _settings().reports_dir / "training_data" / "pairs_report.md"
    if report.exists():
        console.print(f"pairs report: {report}")


@app.command("analyze-pairs")
def analyze_pairs(
    out: Annotated[
        Path | None, typer.Option(help="Folder for the report (default data/reports/training_data).")
    ] = None,
) -> None:
    """Statistics of the materialized training pairs: query types, positives/negatives per query, token lengths,
    per-split numbers, citation resolution — a markdown report with PNG histograms, printed here."""
    import polars as pl

    from lexdpr_pipeline.models.base import resolve_base_model
    from lexdpr_pipeline.pairs.report import write_pairs_report
    from lexdpr_pipeline.text.chunking import token_counter_name

    settings = _settings()
    tables = settings.tables_dir
    needed = ["dataset_splits", "merged_corpus", "precedent_citations"]
    missing = [n for n in needed if not (tables / f"{n}.parquet").exists()]
    if missing:
        console.print(f"[red]missing {', '.join(missing)}[/red]: run `lex-dpr gen-data` first")
        raise typer.Exit(1)
    splits, corpus, citations = (pl.read_parquet(tables / f"{n}.parquet") for n in needed)
    model_path = None
    if settings.text.tokenizer == "model":
        model_path = resolve_base_model(settings.models.base_model, settings.data_dir / "models").path
    report = write_pairs_report(
        splits,
        corpus,
        citations,
        out or settings.reports_dir / "training_data",
        settings,
        token_counter_name(settings.text.tokenizer, model_path),
    )
    console.print(report.markdown)
    console.print(f"\nwritten: {report.markdown_path} (+ {len(report.images)} PNG plots)")


@app.command("materialize")
def materialize_cmd(
    select: Annotated[str, typer.Option(help="Dagster asset selection, e.g. 'group:ingest' or 'raw_statutes+'.")] = "*",
    limit: Annotated[int | None, typer.Option(help="Max items per ingest asset (demo runs).")] = None,
    source: Annotated[str | None, typer.Option(help="Ingest source: mirror or api.")] = None,
) -> None:
    """Materialize assets (default: the whole graph), recorded in the persistent instance."""
    import dagster as dg

    from lexdpr_pipeline.assets.ingest import INGEST_ASSETS
    from lexdpr_pipeline.orchestration import ops_config

    instance, defs = _instance_and_defs(_settings())
    graph = defs.resolve_asset_graph()
    keys = [k for k in dg.AssetSelection.from_string(select).resolve(graph) if k in graph.materializable_asset_keys]
    names = [a.key.path[-1] for a in INGEST_ASSETS if a.key in keys]
    config = ops_config(names, {"max_items": limit, "source": source})
    _run(keys, config, trigger="materialize", instance=instance, defs=defs)


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
    limit: Annotated[int | None, typer.Option(help="Max precedents to fetch.")] = None,
    full: Annotated[bool, typer.Option(help="Ignore the incremental state and list everything.")] = False,
) -> None:
    """Crawl precedents from the law.go.kr API (needs LAW_GO_KR_OC) through the raw_precedents asset."""
    import dagster as dg

    from lexdpr_pipeline.orchestration import ops_config

    config = {
        "source": "api",
        "since": _iso(since),
        "until": _iso(until),
        "max_items": limit,
        "incremental": not full,
    }
    _run([dg.AssetKey("raw_precedents")], ops_config(["raw_precedents"], config), trigger="crawl-precedents")


if __name__ == "__main__":  # pragma: no cover
    app()
