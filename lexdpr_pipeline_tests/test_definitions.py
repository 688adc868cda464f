import dagster as dg

from lexdpr_pipeline.definitions import build_definitions, defs
from lexdpr_pipeline.settings import load_settings


def test_definitions_load_without_errors() -> None:
    # Resolving every job forces Dagster to validate the whole graph, resources and config schemas.
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {"ingest_job", "downstream_refresh_job", "observe_sources_job"} <= {j.name for j in repo.get_all_jobs()}
    graph = defs.resolve_asset_graph()
    ingest = {k.to_user_string() for k in graph.materializable_asset_keys}
    assert {"raw_statutes", "raw_admin_rules", "raw_precedents"} <= ingest
    for key in graph.materializable_asset_keys:
        assert graph.get(key).code_version, f"{key.to_user_string()} has no code_version"
    assert defs.resolve_schedule_def("corpus_refresh").cron_schedule == "0 3 * * 1"


def test_cron_is_configurable() -> None:
    custom = build_definitions(load_settings(overrides=["schedule.refresh_cron=0 4 * * *"], environ={}))
    assert custom.resolve_schedule_def("corpus_refresh").cron_schedule == "0 4 * * *"
