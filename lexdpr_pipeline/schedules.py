"""The scheduled corpus refresh: crawl incrementally, then materialize only what became stale downstream."""

import dagster as dg

from lexdpr_pipeline.assets.ingest import INGEST_ASSETS
from lexdpr_pipeline.jobs import downstream_refresh_job, ingest_job


def corpus_refresh_schedule(cron: str, timezone: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="corpus_refresh",
        job=ingest_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        run_config={"ops": {a.key.path[-1]: {"config": {"incremental": True}} for a in INGEST_ASSETS}},
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Weekly by default (schedule.refresh_cron): incremental crawl, then the stale-only sensor.",
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_job],
    request_job=downstream_refresh_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful ingest, materialize only the downstream assets that became stale.",
)
def refresh_downstream_after_ingest(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=context.dagster_run.run_id, stale_assets_only=True)
