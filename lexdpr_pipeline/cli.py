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


# training and evaluation ------------------------------------------------------------------------------------------


def _with_missing_upstream(instance, defs, key):
    """``key`` plus whichever of its upstream assets were never materialized (stale ones are left as they are:
    ``lex-dpr refresh`` is the command that brings everything up to date)."""
    import dagster as dg

    from lexdpr_pipeline.orchestration import asset_states

    graph = defs.resolve_asset_graph()
    upstream = dg.AssetSelection.assets(key).upstream().resolve(graph)
    missing = [s.key for s in asset_states(instance, defs) if s.status == "MISSING" and s.key in upstream]
    return [*[k for k in missing if k != key], key]


def _train(overrides: list[str], test_run: bool, trigger: str) -> None:
    import dagster as dg

    from lexdpr_pipeline.orchestration import latest_metadata

    instance, defs = _instance_and_defs(_settings())
    key = dg.AssetKey("trained_model")
    keys = _with_missing_upstream(instance, defs, key)
    if len(keys) > 1:
        console.print(f"[dim]also materializing missing upstream: {', '.join(k.to_user_string() for k in keys[:-1])}")
    config = {"ops": {"trained_model": {"config": {"overrides": overrides, "test_run": test_run}}}}
    _run(keys, config, trigger=trigger, instance=instance, defs=defs)
    meta = latest_metadata(instance, key)
    console.print(
        f"model: {meta.get('model_path')}\n"
        f"valid nDCG@10: {meta.get('valid_ndcg@10')}  train pairs/s: {meta.get('train_pairs_per_s')}  "
        f"reused: {meta.get('reused_existing')}\n"
        f"MLflow run: {meta.get('mlflow_url')} ({meta.get('mlflow_tracking_uri')})"
    )


def _train_overrides(**flags: Any) -> list[str]:
    return [f"train.{name}={value}" for name, value in flags.items() if value is not None]


@app.command()
def train(
    epochs: Annotated[float | None, typer.Option(help="train.epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="train.max_steps (overrides epochs)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="train.batch_size")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="train.learning_rate")] = None,
    temperature: Annotated[float | None, typer.Option(help="train.temperature (scale = 1/temperature)")] = None,
    loss: Annotated[str | None, typer.Option(help="train.loss: mnrl or cached_mnrl")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapter or full fine-tuning")] = None,
    template: Annotated[str | None, typer.Option(help="train.template: e5, bge, none, custom")] = None,
) -> None:
    """Fine-tune the bi-encoder: materialize ``trained_model`` (settings from --config/--set plus these flags)."""
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
) -> None:
    """Evaluate: materialize ``model_evaluation`` (fine-tuned vs zero-shot base vs BM25) and print the table."""
    import dagster as dg
    from rich.markdown import Markdown

    from lexdpr_pipeline.orchestration import latest_metadata

    instance, defs = _instance_and_defs(_settings())
    key = dg.AssetKey("model_evaluation")
    if not show:
        _run(_with_missing_upstream(instance, defs, key), trigger="eval", instance=instance, defs=defs)
    meta = latest_metadata(instance, key)
    if not meta:
        console.print("no evaluation yet: run `lex-dpr eval`")
        raise typer.Exit(1)
    console.print(Markdown(str(meta.get("report", ""))))
    for name in ("eval_corpus_passages", "report_path", "per_query_ranks", "mlflow_run_url"):
        if meta.get(name) is not None:
            console.print(f"{name}: {meta[name]}")


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

    from lexdpr_pipeline.assets.sweeps import INPUTS, SWEEP_KEY
    from lexdpr_pipeline.orchestration import asset_states, latest_metadata
    from lexdpr_pipeline.sweeps.space import load_spec

    _choice(strategy, ("grid", "random", "tpe"), "--strategy")
    try:
        load_spec(sweep_file).with_budget(trials, timeout, strategy)
    except ValueError as exc:
        console.print(f"[red]sweep file error:[/red] {exc}")
        raise typer.Exit(2) from exc
    instance, defs = _instance_and_defs(_settings())
    needed = dg.AssetSelection.assets(*INPUTS).upstream().resolve(defs.resolve_asset_graph())
    missing = [st.key for st in asset_states(instance, defs) if st.status == "MISSING" and st.key in needed]
    if missing:
        console.print(f"[dim]materializing missing upstream: {', '.join(k.to_user_string() for k in missing)}")
        _run(missing, trigger="sweep", instance=instance, defs=defs)
    config = {"sweep_file": str(sweep_file.resolve()), "n_trials": trials, "timeout_s": timeout, "strategy": strategy}
    run_config = {"ops": {"hyperparameter_sweep": {"config": {k: v for k, v in config.items() if v is not None}}}}
    started = time.perf_counter()
    result = defs.resolve_job_def("sweep_job").execute_in_process(
        instance=instance, run_config=run_config, tags={"lexdpr/trigger": "sweep"}, raise_on_error=False
    )
    elapsed = time.perf_counter() - started
    console.print(f"run {result.run_id}: {'success' if result.success else 'FAILED'} in {elapsed:.1f}s")
    if not result.success:
        raise typer.Exit(1)
    meta = latest_metadata(instance, SWEEP_KEY)
    console.print(Markdown(str(meta.get("summary", ""))))
    console.print(Markdown(str(meta.get("trials_table", ""))))
    for name in ("best_config", "sweep_dir", "mlflow_url"):
        if meta.get(name):
            console.print(f"{name}: {meta[name]}")
    if meta.get("best_config"):
        console.print(f"train with the best settings: lex-dpr --config {meta['best_config']} train")


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
        console.print(f"[red]cannot load the search index:[/red] {exc}")
        console.print("build it with `lex-dpr refresh --select '*faiss_index'` (see docs/DEPLOY.md)")
        raise typer.Exit(1) from exc


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
    from lexdpr_pipeline.models.biencoder import BiEncoder
    from lexdpr_pipeline.search.embed_file import resolve_model

    try:
        chosen = resolve_model(settings, model)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]no model:[/red] {exc}")
        raise typer.Exit(1) from exc
    Console(stderr=True).print(f"[dim]model {chosen.path} ({chosen.origin})[/dim]")
    return BiEncoder.load(chosen.path), chosen


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
    port: Annotated[int | None, typer.Option(help="Port (api.port, default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (api.workers).")] = None,
) -> None:
    """Serve the HTTP API (FastAPI + uvicorn): /health, /search, /embed/query, /embed/passage, /admin/reload,
    OpenAPI at /docs. The API key comes from LEXDPR_API_KEY only. See docs/API.md and docs/DEPLOY.md."""
    import json
    import os

    import uvicorn

    from lexdpr_pipeline.api.app import OVERRIDES_ENV

    settings = _settings()  # fail here, not in a worker, on a bad configuration
    host = host or settings.api.host
    if settings.api.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] listening on {host} without an API key (set LEXDPR_API_KEY)")
    # Workers build the app from the environment: hand them the same config file and --set overrides.
    if state.config is not None:
        os.environ["LEXDPR_CONFIG"] = str(state.config.resolve())
    os.environ[OVERRIDES_ENV] = json.dumps(state.overrides)
    uvicorn.run(
        "lexdpr_pipeline.api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port or settings.api.port,
        workers=workers or settings.api.workers,
        proxy_headers=True,
        forwarded_allow_ips=settings.api.forwarded_allow_ips,
        # uvicorn kills a worker that misses a 5 s ping; loading Kiwi at startup can hold the GIL that long
        timeout_worker_healthcheck=settings.api.worker_healthcheck_s,
        access_log=False,  # the app logs each request itself (method, path, status, latency; no headers)
        log_level=settings.logging.level.lower(),
    )


if __name__ == "__main__":  # pragma: no cover
    app()
