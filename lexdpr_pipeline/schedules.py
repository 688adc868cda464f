"""The scheduled corpus refresh and the retraining policy.

A corpus change (``corpus_refresh`` → ``ingest_job`` → ``refresh_downstream_after_ingest``) refreshes passages,
BM25, pairs, splits and the embeddings/index of changed passages with the *current* model; it never trains.
Training runs only when asked, when ``schedule.retrain_min_growth`` says the training pairs grew enough
(``retrain_when_pairs_grow``), or on ``schedule.retrain_cron`` (``retrain``).

Why not ``RunRequest(stale_assets_only=True)`` alone: Dagster marks only the direct children of a changed asset
stale (``merged_corpus`` is not stale until ``law_passages`` is re-materialized), so it would refresh one level per
run. :func:`refresh_plan` takes the stale or missing assets *and* everything below them within a job's selection
(:func:`lexdpr_pipeline.orchestration.asset_states_in`, the staleness ``lex-dpr status`` / ``refresh`` use too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import (
    extract_data_provenance_from_entry,
)

from lexdpr_pipeline.assets.ingest import INGEST_ASSETS
from lexdpr_pipeline.assets.training import TRAIN_QUERIES_KEY
from lexdpr_pipeline.jobs import (
    REFRESH_SELECTION,
    RETRAIN_SELECTION,
    TRAINED_MODEL_KEY,
    downstream_refresh_job,
    ingest_job,
    retrain_job,
)
from lexdpr_pipeline.orchestration import asset_states_in

TRIGGER_TAG = "lexdpr/trigger"
DATASET_SPLITS_KEY = dg.AssetKey("dataset_splits")
#: dataset_splits' metadata: queries in its train split (``{split}_queries``, assets/training_data.py).
SPLITS_TRAIN_QUERIES = "train_queries"
#: trained_model's metadata: train-split queries of the dataset_splits it was trained from.
MODEL_TRAIN_QUERIES = TRAIN_QUERIES_KEY
#: Runs that write the model-dependent assets: the retrain policy waits while one of them is queued or running.
_BUSY_JOBS = (downstream_refresh_job.name, retrain_job.name)
_BUSY_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
POLICY_INTERVAL_S = 300


def corpus_refresh_schedule(cron: str, timezone: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="corpus_refresh",
        job=ingest_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        run_config={"ops": {a.key.path[-1]: {"config": {"incremental": True}} for a in INGEST_ASSETS}},
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Weekly by default (schedule.refresh_cron): incremental crawl, then refresh_downstream_after_"
        "ingest refreshes what changed below ingest with the current model (no retraining).",
    )


@dataclass
class RefreshPlan:
    """What to materialize (in dependency order), and what cannot run yet and why."""

    keys: list[dg.AssetKey] = field(default_factory=list)
    held_back: dict[dg.AssetKey, str] = field(default_factory=dict)

    def describe(self) -> str:
        names = ", ".join(k.to_user_string() for k in self.keys) or "nothing"
        held = "; ".join(f"{k.to_user_string()} ({why})" for k, why in self.held_back.items())
        return names + (f"; held back: {held}" if held else "")


def refresh_plan(instance: dg.DagsterInstance, graph: BaseAssetGraph, candidates: Iterable[dg.AssetKey]) -> RefreshPlan:
    """The stale or missing assets among ``candidates``, plus every candidate below one of them (its input will
    change when they run). A candidate is held back, with its descendants, when a parent outside the plan was never
    materialized: e.g. ``passage_embeddings`` before any ``trained_model`` exists (the refresh never trains)."""
    wanted = set(candidates)
    states = {s.key: s for s in asset_states_in(instance, graph, within=wanted)}
    plan = RefreshPlan()
    planned: set[dg.AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        if key not in wanted or key not in states or not states[key].needs_run:
            continue
        parents = graph.get(key).parent_keys
        blocked = sorted(p.to_user_string() for p in parents if p in plan.held_back)
        never = sorted(
            p.to_user_string()
            for p in parents
            if p not in planned
            and p not in plan.held_back
            and graph.get(p).is_materializable
            and instance.get_latest_materialization_event(p) is None
        )
        if blocked or never:
            plan.held_back[key] = "; ".join(
                ([f"{', '.join(never)} never materialized"] if never else [])
                + ([f"needs {', '.join(blocked)}"] if blocked else [])
            )
            continue
        plan.keys.append(key)
        planned.add(key)
    return plan


def _repository(context: dg.RunStatusSensorContext | dg.ScheduleEvaluationContext) -> dg.RepositoryDefinition:
    repo = context.repository_def
    if repo is None:
        raise dg.DagsterInvariantViolationError(f"{type(context).__name__} without a repository_def")
    return repo


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_job],
    request_job=downstream_refresh_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful ingest: the stale assets below ingest and everything under them — passages, "
    "corpus, BM25, citations, pairs, splits, and embeddings + FAISS index of the changed passages with the current "
    "model. Never trained_model or model_evaluation (see retrain_job).",
)
def refresh_downstream_after_ingest(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    graph = _repository(context).asset_graph
    plan = refresh_plan(context.instance, graph, REFRESH_SELECTION.resolve(graph, allow_missing=True))
    context.log.info(f"after ingest run {context.dagster_run.run_id}: {plan.describe()}")
    if not plan.keys:
        return dg.SkipReason(
            f"nothing to refresh below ingest after run {context.dagster_run.run_id}: {plan.describe()}"
        )
    return dg.RunRequest(
        run_key=context.dagster_run.run_id,
        asset_selection=plan.keys,
        tags={TRIGGER_TAG: "corpus_refresh", "lexdpr/ingest_run": context.dagster_run.run_id},
    )


@dataclass(frozen=True)
class PairsGrowth:
    """Train-split queries now vs when the current model was trained."""

    trained_on: int
    now: int
    splits_storage_id: int

    @property
    def growth(self) -> float:
        return (self.now - self.trained_on) / self.trained_on if self.trained_on > 0 else float("inf")


def _int_metadata(event: dg.EventLogEntry | None, name: str) -> int | None:
    materialization = event.asset_materialization if event else None
    value = materialization.metadata.get(name) if materialization else None
    value = getattr(value, "value", value)
    return int(value) if isinstance(value, int | float) else None


def _splits_event_read_by(instance: dg.DagsterInstance, model_event: dg.EventLogEntry) -> dg.EventLogEntry | None:
    """The dataset_splits materialization a trained_model materialization read (Dagster's data provenance)."""
    provenance = extract_data_provenance_from_entry(model_event)
    storage_id = provenance.input_storage_ids.get(DATASET_SPLITS_KEY) if provenance else None
    if storage_id is None:
        return None
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DATASET_SPLITS_KEY, storage_ids=[storage_id]), limit=1
    )
    return result.records[0].event_log_entry if result.records else None


def pairs_growth(instance: dg.DagsterInstance) -> PairsGrowth | str:
    """How much the train split grew since the current model was trained, or why that cannot be told."""
    splits = instance.fetch_materializations(DATASET_SPLITS_KEY, limit=1).records
    if not splits:
        return "dataset_splits was never materialized"
    now = _int_metadata(splits[0].event_log_entry, SPLITS_TRAIN_QUERIES)
    if now is None:
        return f"the latest dataset_splits materialization has no {SPLITS_TRAIN_QUERIES!r} metadata"
    model = instance.get_latest_materialization_event(TRAINED_MODEL_KEY)
    if model is None:
        return "no trained model yet: train the first one on purpose (UI retrain_job or `lex-dpr train`)"
    trained_on = _int_metadata(model, MODEL_TRAIN_QUERIES)
    if trained_on is None:  # a model materialized before trained_model recorded it: ask its provenance
        trained_on = _int_metadata(_splits_event_read_by(instance, model), SPLITS_TRAIN_QUERIES)
    if trained_on is None:
        return "cannot tell how many train pairs the current model was trained on: retrain it once on purpose"
    return PairsGrowth(trained_on=trained_on, now=now, splits_storage_id=splits[0].storage_id)


def _busy_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    for job_name in _BUSY_JOBS:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=_BUSY_STATUSES), limit=1)
        if runs:
            return runs[0]
    return None


def retrain_policy_sensor(min_growth: float | None) -> dg.SensorDefinition:
    """``retrain_when_pairs_grow``: retrain_job once the train split grew by ``min_growth`` (a share) since the
    current model was trained. Running by default only when a threshold is set; ``None`` never retrains."""

    @dg.sensor(
        name="retrain_when_pairs_grow",
        job=retrain_job,
        minimum_interval_seconds=POLICY_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING if min_growth is not None else dg.DefaultSensorStatus.STOPPED,
        description="Retrain policy (schedule.retrain_min_growth): run retrain_job when the train split of "
        "dataset_splits has grown by at least that share since the current model was trained; once per "
        "dataset_splits materialization, never while a refresh or retraining is in flight.",
    )
    def retrain_when_pairs_grow(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        if min_growth is None:
            return dg.SkipReason(
                "schedule.retrain_min_growth is not set: retraining only when asked (UI retrain_job, lex-dpr train)"
            )
        growth = pairs_growth(context.instance)
        if isinstance(growth, str):
            return dg.SkipReason(growth)
        summary = (
            f"train pairs {growth.trained_on} when the model was trained, {growth.now} now "
            f"({growth.growth:+.1%}; schedule.retrain_min_growth {min_growth:.1%})"
        )
        if growth.growth < min_growth:
            return dg.SkipReason(f"{summary}: below the threshold")
        busy = _busy_run(context.instance)
        if busy is not None:
            return dg.SkipReason(f"{summary}: waiting for {busy.job_name} run {busy.run_id} ({busy.status.value})")
        return dg.RunRequest(
            run_key=f"pairs-growth:{growth.splits_storage_id}",
            tags={TRIGGER_TAG: "retrain_policy", "lexdpr/retrain_reason": summary[:200]},
        )

    return retrain_when_pairs_grow


def retrain_schedule(cron: str, timezone: str) -> dg.ScheduleDefinition:
    """``retrain`` on ``schedule.retrain_cron``: retrain_job's stale or missing assets and everything under them
    (a fresh model is not trained again); skipped when all are fresh."""

    @dg.schedule(
        name="retrain",
        job=retrain_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"schedule.retrain_cron ({cron}): retrain_job when trained_model (or what depends on it) is "
        "stale or missing.",
    )
    def retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        graph = _repository(context).asset_graph
        plan = refresh_plan(context.instance, graph, RETRAIN_SELECTION.resolve(graph, allow_missing=True))
        if not plan.keys:
            return dg.SkipReason(f"the model and what depends on it are fresh: {plan.describe()}")
        return dg.RunRequest(asset_selection=plan.keys, tags={TRIGGER_TAG: "retrain_schedule"})

    return retrain
