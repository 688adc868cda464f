"""Running the graph from code (the CLI's engine): a persistent instance, source observation, staleness.

Dagster's own CLI cannot select assets by stale status; this module asks the instance directly, the same
question the UI's "Materialize stale and missing" button asks.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime
from dagster._utils.error import SerializableErrorInfo

from lexdpr_pipeline.jobs import OBSERVE_JOB_NAME

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_FALLBACK_INSTANCE_YAML = "telemetry:\n  enabled: false\n"
PROFILE_ENV = "LEXDPR_DAGSTER_PROFILE"
#: The instance profiles: the dagster.yaml each writes into DAGSTER_HOME. sqlite (the default): history in sqlite
#: files under DAGSTER_HOME; postgres: run, event-log and schedule storage in PostgreSQL (dagster-postgres).
PROFILES: dict[str, Path] = {
    "sqlite": PROJECT_ROOT / "dagster.yaml",
    "postgres": PROJECT_ROOT / "deploy" / "dagster-postgres" / "dagster.yaml",
}
#: What the postgres profile's dagster.yaml reads from the environment (the password only ever from there).
POSTGRES_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def dagster_profile(environ: Mapping[str, str] | None = None) -> str | None:
    """The profile ``$LEXDPR_DAGSTER_PROFILE`` asks for (``sqlite`` | ``postgres``), None when unset."""
    raw = (os.environ if environ is None else environ).get(PROFILE_ENV, "").strip().lower()
    if raw and raw not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={raw!r}: expected one of {', '.join(PROFILES)}")
    return raw or None


def _env_refs(node: Any) -> set[str]:
    """The variables a dagster.yaml reads through ``{env: NAME}``."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {str(node["env"])}
        return {name for value in node.values() for name in _env_refs(value)}
    if isinstance(node, list):
        return {name for value in node for name in _env_refs(value)}
    return set()


def ensure_dagster_home(default: Path, profile: str | None = None) -> Path:
    """Use ``$DAGSTER_HOME`` if set, else ``default`` (``Settings.dagster_home``: ``{data_dir}/dagster_home``),
    created with the profile's dagster.yaml.

    This is what makes history, and therefore staleness, survive between CLI runs. ``profile`` (else
    ``$LEXDPR_DAGSTER_PROFILE``) chooses the dagster.yaml (:data:`PROFILES`); without one, a home's existing
    dagster.yaml is kept whatever it says (a DAGSTER_HOME folder holding a copy of deploy/dagster-postgres/dagster.yaml
    is the other way to the postgres profile), and a new home gets the sqlite one. A chosen profile replaces the other
    stock profile's file (the old storage's history stays where it was: nothing is migrated); a hand-edited
    dagster.yaml is left as it is, with a warning. Raises ``ValueError`` naming every ``{env: …}`` variable of the
    home's dagster.yaml that is unset (their values are never read here, let alone printed).
    """
    profile = profile or dagster_profile()
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown Dagster profile {profile!r}: expected one of {', '.join(PROFILES)}")
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    template = PROFILES[profile or "sqlite"]
    if not template.exists() and profile not in (None, "sqlite"):
        raise FileNotFoundError(f"the {profile} profile's dagster.yaml is missing: {template}")
    wanted = template.read_text(encoding="utf-8") if template.exists() else _FALLBACK_INSTANCE_YAML
    if not target.exists():
        target.write_text(wanted, encoding="utf-8")
    elif profile is not None and (current := target.read_text(encoding="utf-8")) != wanted:
        stock = {p.read_text(encoding="utf-8") for p in PROFILES.values() if p.exists()} | {_FALLBACK_INSTANCE_YAML}
        if current in stock:
            logger.warning(f"DAGSTER_HOME {home}: switching to the {profile} profile (history is not migrated)")
            target.write_text(wanted, encoding="utf-8")
        else:
            logger.warning(f"{target} is not the stock {profile} profile (edited by hand): left as it is")
    unset = sorted(n for n in _env_refs(yaml.safe_load(target.read_text(encoding="utf-8"))) if not os.environ.get(n))
    if unset:
        raise ValueError(f"{target} reads {', '.join(unset)} from the environment: set them (docs/DEPLOY.md)")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass(frozen=True)
class AssetState:
    key: dg.AssetKey
    status: str  # MISSING | STALE | FRESH
    causes: tuple[str, ...]

    @property
    def needs_run(self) -> bool:
        return self.status in {"MISSING", "STALE"}


def asset_states(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[AssetState]:
    """Stale status of every materializable asset, in dependency order, with human-readable causes."""
    return asset_states_in(instance, defs.resolve_asset_graph())


def asset_states_in(
    instance: dg.DagsterInstance, graph: Any, within: Iterable[dg.AssetKey] | None = None
) -> list[AssetState]:
    """:func:`asset_states` on an asset graph (a sensor has no ``Definitions``).

    Dagster (1.13) marks only the *direct* children of a changed asset stale: after a statute file changes,
    ``raw_statutes`` is stale but ``law_passages`` looks fresh until ``raw_statutes`` runs again. Here staleness
    flows down: an asset below a stale or missing parent is STALE too ("upstream … is stale"), so ``status`` shows
    everything a change will reach and one ``refresh`` brings it all up to date. With ``within``, it flows only
    through parents in that set (a job's selection).
    """
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    through = None if within is None else set(within)
    materializable = set(graph.materializable_asset_keys)
    states: list[AssetState] = []
    by_key: dict[dg.AssetKey, AssetState] = {}
    for key in [k for level in graph.toposorted_asset_keys_by_level for k in sorted(level) if k in materializable]:
        status = resolver.get_status(key)
        causes: tuple[str, ...] = ()
        if status == StaleStatus.STALE:
            causes = tuple(
                f"{c.reason}" + (f" ({c.dependency.asset_key.to_user_string()})" if c.dependency else "")
                for c in resolver.get_stale_causes(key)
            )
        elif status == StaleStatus.MISSING:
            causes = ("never materialized",)
        else:
            upstream = [
                by_key[p]
                for p in sorted(graph.get(key).parent_keys)
                if p in by_key and by_key[p].needs_run and (through is None or p in through)
            ]
            if upstream:
                status = StaleStatus.STALE
                causes = tuple(f"upstream {u.key.to_user_string()} is {u.status.lower()}" for u in upstream)
        state = AssetState(key, status.value, causes)
        by_key[key] = state
        states.append(state)
    return states


def observe_sources(
    instance: dg.DagsterInstance, defs: dg.Definitions, run_config: Mapping[str, Any] | None = None
) -> None:
    """Record a fresh observation (content fingerprint) of every observable source asset.

    Raises :class:`RunFailedError` (one-line reason) when the observation run fails.
    """
    job = defs.resolve_job_def(OBSERVE_JOB_NAME)
    result = job.execute_in_process(
        instance=instance, run_config=dict(run_config or {}), tags={"lexdpr/trigger": "observe"}, raise_on_error=False
    )
    if not result.success:
        raise RunFailedError(result.run_id, failure_reason(result))


def materialize(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    keys: Sequence[dg.AssetKey],
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize ``keys`` (and only those) in one run recorded in ``instance``.

    A failed step does not raise: the result says ``success=False`` and :func:`failure_reason` tells why. (With
    Dagster's default ``raise_on_error=True`` the user exception is re-raised inside Dagster's ``except`` block,
    so its ``__context__`` is the step error whose ``__cause__`` is that same exception: a cyclic chain that rich's
    traceback printer walks forever.)
    """
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance,
        asset_selection=list(keys),
        run_config=dict(run_config or {}),
        tags=dict(tags or {}),
        raise_on_error=False,
    )


class RunFailedError(Exception):
    """A Dagster run that failed; ``str()`` is the one line the CLI prints."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id}: FAILED — {reason}")
        self.run_id = run_id
        self.reason = reason


_WRAPPER_PREFIXES = ("dagster.", "dagster_")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+(?=\S)")


def _error_text(error: SerializableErrorInfo) -> str:
    """The message of an error without its ``module.Class:`` prefix, on one line."""
    text = " ".join(error.message.split())
    if error.cls_name and ":" in text:
        head, rest = text.split(":", 1)
        if head.rsplit(".", 1)[-1] == error.cls_name:
            text = rest.strip()
    return text


def _root_user_error(error: SerializableErrorInfo) -> SerializableErrorInfo:
    """The first error of the ``cause`` chain that is not a Dagster wrapper (the user code's own exception)."""
    seen = 0
    while error.cause is not None and seen < 20 and _is_wrapper(error):
        error, seen = error.cause, seen + 1
    return error


def _is_wrapper(error: SerializableErrorInfo) -> bool:
    head = error.message.split(":", 1)[0].strip()
    return head.startswith(_WRAPPER_PREFIXES) and error.cls_name != "Failure"


def one_line(text: str, budget: int = 240, hard_max: int = 300) -> str:
    """``text`` on one line: its first sentence, plus the next ones while they fit ``budget`` characters."""
    sentences = _SENTENCE_END.split(" ".join(text.split()))
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > budget:
            break
        out += " " + sentence
    return out if len(out) <= hard_max else out[: hard_max - 1] + "…"


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """One line on why a run failed: ``step: first sentence(s) of the user error`` (+ how many other steps)."""
    failures = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        description = data.user_failure_data.description if data.user_failure_data else None
        text = description or (_error_text(_root_user_error(data.error)) if data.error else "failed")
        failures.append(f"{event.step_key}: {one_line(text)}")
    if failures:
        more = len(failures) - 1
        return failures[0] + (f" (+{more} more failed step{'s' if more > 1 else ''})" if more else "")
    for event in result.all_events:
        if event.is_job_failure and event.job_failure_data and event.job_failure_data.error:
            return one_line(_error_text(_root_user_error(event.job_failure_data.error)))
    return "the run failed (see its logs in the Dagster UI)"


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per asset check of a (successful) run that failed with ERROR severity: ``asset:check — why``."""
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        why = one_line(evaluation.description or "failed (see the check's metadata in the Dagster UI)")
        lines.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} — {why}")
    return lines


def cli_console_logger(debug: bool) -> dg.LoggerDefinition:
    """Dagster's coloured console logger, without the step/run failure events (and their stack traces) unless
    ``debug``: the CLI prints the one-line reason itself. Dagster only uses a job's loggers that the run config
    names (else its default console logger): pair it with :func:`console_log_config`."""

    @dg.logger(
        config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
        description="Console logger of the lex-dpr CLI (failures summarized by the CLI).",
    )
    def console(init_context: dg.InitLoggerContext) -> logging.Logger:
        from dagster._utils.log import create_console_logger

        level = init_context.logger_config["log_level"]
        logger = create_console_logger("dagster", "DEBUG" if debug else level)
        if not debug:
            logger.addFilter(_drop_failure_events)
        return logger

    return console


def console_log_config(level: str) -> dict[str, Any]:
    """Run config that turns on the ``console`` logger at ``level``."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


_FAILURE_EVENTS = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
_ECHOED = "lexdpr_echoed"  # set on a record our own console handler printed


def _drop_failure_events(record: logging.LogRecord) -> bool:
    if getattr(record, _ECHOED, False):  # a lexdpr_pipeline record already on the console: don't print it twice
        return False
    event = getattr(record, "dagster_event", None)
    if getattr(event, "event_type", None) in _FAILURE_EVENTS:
        return False
    # "Dependencies for step X failed: [...]. Not executing." (a plain error log per skipped downstream step)
    message = (getattr(record, "dagster_meta", None) or {}).get("orig_message", "")
    return not (message.startswith("Dependencies for step ") and message.endswith("Not executing."))


def _mark_echoed(record: logging.LogRecord) -> bool:
    setattr(record, _ECHOED, True)
    return True


def mark_console_echoes(logger_name: str = "lexdpr_pipeline") -> None:
    """Tag each record the library's console handler prints, so that :func:`cli_console_logger` does not print it a
    second time (Dagster forwards the ``lexdpr_pipeline`` records, ``python_logs.managed_python_loggers``, to every
    run logger, and copies the record's extra attributes, this tag included). Call after ``configure_logging``."""
    for handler in logging.getLogger(logger_name).handlers:
        if type(handler) is logging.StreamHandler and _mark_echoed not in handler.filters:
            handler.addFilter(_mark_echoed)


def run_config_for(configs: Mapping[dg.AssetsDefinition | dg.OpDefinition, dg.Config]) -> dict[str, Any]:
    """Run config giving each asset's op (or each op) its typed config object.

    The op names come from the definitions and the shape from their ``dg.Config`` classes, so renaming an asset,
    an op or a config field breaks the caller at import or type-check time instead of leaving an ignored key.
    """
    ops: dict[str, dg.Config] = {}
    for target, config in configs.items():
        name = target.op.name if isinstance(target, dg.AssetsDefinition) else target.name
        ops[name] = config
    return {section: value for section, value in dg.RunConfig(ops=ops).to_config_dict().items() if value}


def missing_upstream(
    instance: dg.DagsterInstance, defs: dg.Definitions, keys: Iterable[dg.AssetKey]
) -> list[dg.AssetKey]:
    """The never-materialized assets among ``keys`` and everything upstream of them, in dependency order: what a
    command must materialize first (stale ones are left as they are: ``lex-dpr refresh`` brings those up to date)."""
    graph = defs.resolve_asset_graph()
    needed = dg.AssetSelection.assets(*keys).upstream().resolve(graph)
    return [s.key for s in asset_states(instance, defs) if s.status == "MISSING" and s.key in needed]


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any]:
    """Plain values of the latest materialization's metadata (rows, wall_time_s, …); ``{}`` if never materialized."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {name: getattr(value, "value", value) for name, value in event.asset_materialization.metadata.items()}
