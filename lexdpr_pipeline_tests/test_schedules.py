import dagster as dg

from lexdpr_pipeline.definitions import defs
from lexdpr_pipeline.schedules import refresh_downstream_after_ingest

RUN_ID = "5b0f6a1e-0d5c-4c6e-9f0b-0a1b2c3d4e5f"


def test_corpus_refresh_runs_an_incremental_ingest() -> None:
    schedule = defs.resolve_schedule_def("corpus_refresh")
    assert schedule.job_name == "ingest_job"
    request = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0]
    for asset in ("raw_statutes", "raw_admin_rules", "raw_precedents"):
        assert request.run_config["ops"][asset]["config"] == {"incremental": True}
    job = defs.resolve_job_def("ingest_job")
    assert dg.validate_run_config(job, request.run_config)  # the config fits the job's schema
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"raw_statutes", "raw_admin_rules", "raw_precedents"} <= selected


def test_after_ingest_only_stale_downstream_assets_are_requested() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        run = instance.create_run_for_job(
            defs.resolve_job_def("ingest_job"), run_id=RUN_ID, status=dg.DagsterRunStatus.SUCCESS
        )
        context = dg.build_run_status_sensor_context(
            sensor_name=refresh_downstream_after_ingest.name,
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=dg.DagsterEvent(
                event_type_value="PIPELINE_SUCCESS", job_name="ingest_job", event_specific_data=None
            ),
        )
        request = refresh_downstream_after_ingest(context)
    assert request.stale_assets_only is True and request.run_key == RUN_ID
    downstream = {
        k.to_user_string() for k in defs.resolve_job_def("downstream_refresh_job").asset_layer.selected_asset_keys
    }
    assert {"merged_corpus", "training_pairs", "dataset_splits"} <= downstream
    assert not downstream & {"raw_statutes", "raw_precedents"}
