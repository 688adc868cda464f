"""The corpus refresh (schedule + after-ingest sensor) and the retraining policy (sensor, optional schedule).

The sensors are evaluated against real instances: small stand-in assets named like the project's (so the real job
selections resolve on them) are materialized, changed and re-materialized, and the sensors read that history.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from pydantic import ValidationError

from lexdpr_pipeline.assets.ingest import GROUP as INGEST_GROUP
from lexdpr_pipeline.definitions import build_definitions, defs
from lexdpr_pipeline.jobs import REFRESH_SELECTION
from lexdpr_pipeline.orchestration import latest_metadata, materialize
from lexdpr_pipeline.pairs.splits import split_sizes
from lexdpr_pipeline.resources import project_resources
from lexdpr_pipeline.schedules import (
    MODEL_TRAIN_QUERIES,
    SPLITS_TRAIN_QUERIES,
    refresh_downstream_after_ingest,
    retrain_policy_sensor,
    retrain_schedule,
)
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline.storage import frame_content_hash
from lexdpr_pipeline_tests.index.corpus_slice import corpus_slice, with_changed_law

MODEL_ASSETS = {"trained_model", "model_evaluation"}


def _names(keys) -> set[str]:  # type: ignore[no-untyped-def]
    return {k.to_user_string() for k in keys}


def _job_assets(definitions: dg.Definitions, job: str) -> set[str]:
    return _names(definitions.resolve_job_def(job).asset_layer.selected_asset_keys)


def _materialization_count(instance: dg.DagsterInstance, key: str) -> int:
    return len(instance.fetch_materializations(dg.AssetKey(key), limit=100).records)


def _after_ingest(instance: dg.DagsterInstance, definitions: dg.Definitions) -> dg.RunRequest | dg.SkipReason:
    """Evaluate refresh_downstream_after_ingest as the daemon does after a successful ingest_job run."""
    run = instance.create_run_for_job(
        defs.resolve_job_def("ingest_job"), run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.SUCCESS
    )
    context = dg.build_run_status_sensor_context(
        sensor_name=refresh_downstream_after_ingest.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name="ingest_job"),
        repository_def=definitions.get_repository_def(),
    )
    return refresh_downstream_after_ingest(context)


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


def test_the_corpus_refresh_never_trains_and_the_retrain_job_covers_the_model() -> None:
    refresh = _job_assets(defs, "downstream_refresh_job")
    assert not refresh & (MODEL_ASSETS | {"hyperparameter_sweep", "base_model"})
    assert not refresh & {"raw_statutes", "raw_admin_rules", "raw_precedents"}
    assert {
        "law_passages",
        "admin_passages",
        "prec_passages",
        "merged_corpus",
        "bm25_index",
        "precedent_citations",
        "training_pairs",
        "dataset_splits",
        "passage_embeddings",
        "faiss_index",
    } <= refresh
    assert _job_assets(defs, "retrain_job") == MODEL_ASSETS | {"encoder_export", "passage_embeddings", "faiss_index"}
    assert refresh_downstream_after_ingest.job_name == "downstream_refresh_job"


def test_the_retrain_policy_and_schedule_are_off_unless_configured() -> None:
    dg.Definitions.validate_loadable(defs)
    policy = defs.resolve_sensor_def("retrain_when_pairs_grow")
    assert policy.job_name == "retrain_job"
    assert policy.default_status == dg.DefaultSensorStatus.STOPPED
    assert "retrain" not in {s.name for s in defs.get_repository_def().schedule_defs}
    with dg.instance_for_test() as instance:
        tick = policy.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert not tick.run_requests and "retrain_min_growth is not set" in (tick.skip_message or "")

    on = build_definitions(
        load_settings(overrides=["schedule.retrain_min_growth=0.2", "schedule.retrain_cron=0 4 1 * *"], environ={})
    )
    dg.Definitions.validate_loadable(on)
    assert on.resolve_sensor_def("retrain_when_pairs_grow").default_status == dg.DefaultSensorStatus.RUNNING
    schedule = on.resolve_schedule_def("retrain")
    assert (schedule.job_name, schedule.cron_schedule) == ("retrain_job", "0 4 1 * *")
    assert schedule.execution_timezone == "Asia/Seoul"
    with pytest.raises(ValidationError):
        load_settings(overrides=["schedule.retrain_min_growth=0"], environ={})


# --- the after-ingest refresh on a stand-in graph shaped like the project's ----------------------------------------


def _stand_in_graph(state: dict) -> dg.Definitions:
    """raw_statutes (group ingest) → law_passages → merged_corpus → dataset_splits → trained_model →
    model_evaluation; passage_embeddings(merged_corpus, trained_model) → faiss_index."""

    def out(value: str) -> dg.Output[str]:
        return dg.Output(value, data_version=dg.DataVersion(value))

    @dg.asset(group_name=INGEST_GROUP, code_version="1")
    def raw_statutes() -> dg.Output[str]:
        return out(f"statutes-{state['corpus']}")

    @dg.asset(code_version="1")
    def law_passages(raw_statutes: str) -> dg.Output[str]:
        return out(f"passages of {raw_statutes}")

    @dg.asset(code_version="1")
    def merged_corpus(law_passages: str) -> dg.Output[str]:
        return out(f"corpus of {law_passages}")

    @dg.asset(code_version="1")
    def dataset_splits(merged_corpus: str) -> dg.Output[str]:
        return out(f"splits of {merged_corpus}")

    @dg.asset(code_version="1")
    def trained_model(dataset_splits: str) -> dg.Output[str]:
        return out(f"model on {dataset_splits}")

    @dg.asset(code_version="1")
    def model_evaluation(trained_model: str, dataset_splits: str) -> dg.Output[str]:
        return out(f"evaluation of {trained_model}")

    @dg.asset(code_version="1")
    def passage_embeddings(merged_corpus: str, trained_model: str) -> dg.Output[str]:
        return dg.Output(
            f"{merged_corpus} by {trained_model}",
            data_version=dg.DataVersion(f"{merged_corpus} by {trained_model}"),
            metadata={"model": trained_model},
        )

    @dg.asset(code_version="1")
    def faiss_index(passage_embeddings: str) -> dg.Output[str]:
        return out(f"index of {passage_embeddings}")

    return dg.Definitions(
        assets=[
            raw_statutes,
            law_passages,
            merged_corpus,
            dataset_splits,
            trained_model,
            model_evaluation,
            passage_embeddings,
            faiss_index,
        ]
    )


def _run(instance: dg.DagsterInstance, definitions: dg.Definitions, keys) -> None:  # type: ignore[no-untyped-def]
    result = definitions.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey.from_coercible(k) for k in keys]
    )
    assert result.success


def test_after_ingest_refreshes_everything_below_a_change_with_the_current_model() -> None:
    state = {"corpus": 1}
    graph_defs = _stand_in_graph(state)
    with dg.instance_for_test() as instance:
        # First ingest, no model yet: the corpus side runs; what needs a model waits for one (never trains).
        _run(instance, graph_defs, ["raw_statutes"])
        request = _after_ingest(instance, graph_defs)
        assert isinstance(request, dg.RunRequest)
        assert [k.to_user_string() for k in request.asset_selection] == [
            "law_passages",
            "merged_corpus",
            "dataset_splits",
        ]
        assert request.tags["lexdpr/trigger"] == "corpus_refresh"

        everything = [k.to_user_string() for k in graph_defs.resolve_asset_graph().materializable_asset_keys]
        _run(instance, graph_defs, everything)
        assert _materialization_count(instance, "trained_model") == 1

        # An ingest that changed nothing: nothing to run, and a reason.
        _run(instance, graph_defs, ["raw_statutes"])
        skip = _after_ingest(instance, graph_defs)
        assert isinstance(skip, dg.SkipReason) and "nothing to refresh below ingest" in (skip.skip_message or "")

        # The corpus changed. Dagster marks only law_passages stale (its direct child): the plan still reaches
        # merged_corpus, splits, embeddings and index — and never trained_model / model_evaluation.
        state["corpus"] = 2
        _run(instance, graph_defs, ["raw_statutes"])
        request = _after_ingest(instance, graph_defs)
        assert isinstance(request, dg.RunRequest)
        selected = [k.to_user_string() for k in request.asset_selection]
        assert selected == ["law_passages", "merged_corpus", "dataset_splits", "passage_embeddings", "faiss_index"]
        assert set(selected) <= _names(REFRESH_SELECTION.resolve(graph_defs.resolve_asset_graph()))
        _run(instance, graph_defs, selected)
        assert _materialization_count(instance, "trained_model") == 1  # not retrained
        # The embeddings were made with the model trained on the first corpus: the stored, current one.
        assert latest_metadata(instance, dg.AssetKey("passage_embeddings"))["model"] == (
            "model on splits of corpus of passages of statutes-1"
        )


# --- the same, with the real embedding and index assets ---------------------------------------------------------


def _index_defs(tmp_path: Path, model_dir: Path, state: dict) -> dg.Definitions:
    """Stand-ins for ingest, corpus and model (a manifest of the tiny model); base_model, bm25_index,
    passage_embeddings and faiss_index are the project's own assets."""
    overrides = [f"paths.data_dir={tmp_path}", f"models.base_model={model_dir}", "embed.backend=torch"]
    settings = load_settings(overrides=overrides, environ={})

    @dg.asset(name="raw_statutes", group_name=INGEST_GROUP, code_version="1")
    def raw_statutes_stand_in() -> dg.Output[dict]:
        return dg.Output({"version": state["version"]}, data_version=dg.DataVersion(str(state["version"])))

    @dg.asset(name="merged_corpus", code_version="1")
    def merged_corpus_stand_in(raw_statutes: dict) -> dg.Output[pl.DataFrame]:
        frame = corpus_slice() if raw_statutes["version"] == 1 else with_changed_law(corpus_slice(), state["law"])
        return dg.Output(frame, data_version=dg.DataVersion(frame_content_hash(frame)))

    @dg.asset(name="trained_model", code_version="1")
    def trained_model_stand_in() -> dict:
        return {"path": str(model_dir), "content_hash": "tiny-trained-v1"}

    names = ("base_model", "encoder_export", "bm25_index", "passage_embeddings", "faiss_index")
    wanted = {dg.AssetKey(k) for k in names}
    real = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.key in wanted]  # as the project has them
    assert len(real) == len(wanted)
    return dg.Definitions(
        assets=[raw_statutes_stand_in, merged_corpus_stand_in, trained_model_stand_in, *real],
        resources=project_resources(settings),
    )


def test_a_corpus_change_encodes_only_changed_passages_with_the_current_model(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    law = "국가배상법"
    state = {"version": 1, "law": law}
    index_defs = _index_defs(tmp_path, tiny_model_dir, state)
    with dg.instance_for_test() as instance:
        everything = list(index_defs.resolve_asset_graph().materializable_asset_keys)
        assert materialize(instance, index_defs, everything).success

        state["version"] = 2  # one law re-worded upstream
        assert materialize(instance, index_defs, [dg.AssetKey("raw_statutes")]).success
        request = _after_ingest(instance, index_defs)
        assert isinstance(request, dg.RunRequest)
        assert _names(request.asset_selection) == {
            "merged_corpus",
            "encoder_export",  # its gate samples the corpus; its data version changes only with the model/choice
            "bm25_index",
            "passage_embeddings",
            "faiss_index",
        }
        assert materialize(instance, index_defs, list(request.asset_selection)).success

        assert _materialization_count(instance, "trained_model") == 1
        emb = latest_metadata(instance, dg.AssetKey("passage_embeddings"))
        n_law = corpus_slice().filter(pl.col("law_name") == law).height
        assert (emb["encoded"], emb["reused"]) == (n_law, corpus_slice().height - n_law)
        assert emb["model_path"] == str(tiny_model_dir)
        idx = latest_metadata(instance, dg.AssetKey("faiss_index"))
        assert idx["update"] == f"incremental (added {n_law}, removed {n_law})"


# --- the retrain policy -------------------------------------------------------------------------------------------


def _policy_graph(state: dict) -> dg.Definitions:
    """dataset_splits and trained_model stand-ins that record the real metadata keys (``record`` False: a model
    materialized before trained_model recorded its train-split size)."""

    @dg.asset(name="dataset_splits", code_version="1")
    def splits_stand_in() -> dg.Output[int]:
        n = state["train"]
        return dg.Output(n, data_version=dg.DataVersion(str(n)), metadata={SPLITS_TRAIN_QUERIES: n, "valid_queries": 9})

    @dg.asset(name="trained_model", code_version="1")
    def model_stand_in(dataset_splits: int) -> dg.Output[str]:
        metadata = {MODEL_TRAIN_QUERIES: dg.MetadataValue.int(dataset_splits)} if state["record"] else {}
        return dg.Output(f"model-{dataset_splits}", data_version=dg.DataVersion(str(dataset_splits)), metadata=metadata)

    @dg.asset(code_version="1")
    def passage_embeddings(trained_model: str) -> str:
        return f"embedded by {trained_model}"

    return dg.Definitions(assets=[splits_stand_in, model_stand_in, passage_embeddings])


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance):  # type: ignore[no-untyped-def]
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance))


def test_the_policy_metadata_keys_are_the_ones_the_assets_write() -> None:
    sizes = split_sizes(pl.DataFrame({"split": ["train", "train", "valid", "test"]}))
    assert {f"{k}_queries": v for k, v in sizes.items()}[SPLITS_TRAIN_QUERIES] == 2  # as dataset_splits writes them
    from lexdpr_pipeline.assets.training import TRAIN_QUERIES_KEY

    assert MODEL_TRAIN_QUERIES == TRAIN_QUERIES_KEY


@pytest.mark.parametrize("record", [True, False], ids=["model-metadata", "provenance-fallback"])
def test_the_retrain_policy_waits_for_enough_new_pairs(record: bool) -> None:
    state = {"train": 100, "record": record}
    graph_defs = _policy_graph(state)
    policy = retrain_policy_sensor(0.2)
    with dg.instance_for_test() as instance:
        assert "dataset_splits was never materialized" in _tick(policy, instance).skip_message
        _run(instance, graph_defs, ["dataset_splits"])
        assert "no trained model yet" in _tick(policy, instance).skip_message  # the first training is on purpose

        _run(instance, graph_defs, ["dataset_splits", "trained_model"])
        state["train"] = 119  # +19 %
        _run(instance, graph_defs, ["dataset_splits"])
        tick = _tick(policy, instance)
        assert not tick.run_requests
        assert "100 when the model was trained, 119 now (+19.0%" in tick.skip_message
        assert "below the threshold" in tick.skip_message

        state["train"] = 120  # +20 %: at the threshold
        _run(instance, graph_defs, ["dataset_splits"])
        splits_id = instance.fetch_materializations(dg.AssetKey("dataset_splits"), limit=1).records[0].storage_id
        tick = _tick(policy, instance)
        assert tick.skip_message is None and len(tick.run_requests) == 1
        request = tick.run_requests[0]
        assert request.run_key == f"pairs-growth:{splits_id}"  # once per dataset_splits materialization
        assert request.asset_selection is None and request.tags["lexdpr/trigger"] == "retrain_policy"
        assert policy.job_name == "retrain_job"

        # Not while a refresh (which embeds with the current model) is still running.
        busy = instance.create_run_for_job(
            defs.resolve_job_def("downstream_refresh_job"), status=dg.DagsterRunStatus.STARTED
        )
        tick = _tick(policy, instance)
        assert not tick.run_requests and f"waiting for downstream_refresh_job run {busy.run_id}" in tick.skip_message

        # Retrained on the grown splits: back below the threshold.
        instance.report_run_canceled(busy)
        _run(instance, graph_defs, ["trained_model"])
        assert "120 when the model was trained, 120 now (+0.0%" in _tick(policy, instance).skip_message


def test_the_retrain_schedule_runs_only_what_a_new_model_would_change() -> None:
    state = {"train": 100, "record": True}
    graph_defs = _policy_graph(state)
    schedule = retrain_schedule("0 4 * * 0", "Asia/Seoul")
    with dg.instance_for_test() as instance:
        _run(instance, graph_defs, ["dataset_splits", "trained_model", "passage_embeddings"])

        def tick():  # type: ignore[no-untyped-def]
            context = dg.build_schedule_context(instance=instance, repository_def=graph_defs.get_repository_def())
            return schedule.evaluate_tick(context)

        assert not tick().run_requests and "fresh" in tick().skip_message
        state["train"] = 101
        _run(instance, graph_defs, ["dataset_splits"])
        (request,) = tick().run_requests
        # trained_model is stale; passage_embeddings is not yet (its input has not changed) but will be: both run.
        assert [k.to_user_string() for k in request.asset_selection] == ["trained_model", "passage_embeddings"]
