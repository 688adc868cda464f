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


def test_model_steps_are_tagged_and_limited_by_the_executor() -> None:
    from lexdpr_pipeline.assets.common import COMPUTE_TAG

    graph = defs.resolve_asset_graph()
    tagged = {
        key.to_user_string()
        for key in graph.executable_asset_keys
        if (graph.get(key).assets_def.op.tags or {}).get(COMPUTE_TAG) == "model"
    }
    assert {"base_model", "trained_model", "model_evaluation", "passage_embeddings"} <= tagged
    assert "merged_corpus" not in tagged
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "lexdpr_multiprocess"
    assert defs.resolve_job_def("sweep_job").executor_def.name == "lexdpr_multiprocess"


def test_model_steps_never_overlap_in_a_multiprocess_run(tmp_path, monkeypatch) -> None:
    """Real subprocess execution: the two model-tagged steps run one after the other, the untagged step beside them."""
    from lexdpr_pipeline_tests.assets.concurrency_job import concurrency_job

    monkeypatch.setenv("LEXDPR_TEST_SPANS", str(tmp_path))
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(concurrency_job), instance=instance)
        assert result.success
    spans = {p.name: tuple(map(float, p.read_text().split())) for p in tmp_path.iterdir() if p.is_file()}
    assert set(spans) == {"model_a", "model_b", "plain"}
    (a0, a1), (b0, b1) = spans["model_a"], spans["model_b"]
    assert a1 <= b0 or b1 <= a0, f"model steps overlapped: {spans}"
    first_model_end = min(a1, b1)
    assert spans["plain"][0] < first_model_end, f"the untagged step waited for a model step: {spans}"
