"""``lex-dpr eval --model PATH [--base PATH]``: any model folder scored against the base, BM25 and their hybrids
with the stored queries and corpus, in process (Typer's CliRunner); the tables come from the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexdpr_pipeline import cli
from lexdpr_pipeline.artifacts import ArtifactStore, Bm25IndexManifest
from lexdpr_pipeline.evaluation.report import REPORT_FILE
from lexdpr_pipeline.evaluation.tracked import REPORTS_GROUP, ModelRef, model_report_dir
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.storage import write_parquet
from lexdpr_pipeline_tests.evaluation.conftest import corpus_frame, splits_frame

runner = CliRunner(env={"COLUMNS": "200"})  # rich wraps error panels to the terminal: a fixed width


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("LEXDPR", "LAW_GO_KR", "DAGSTER_HOME", "MLFLOW")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LEXDPR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli.console, "width", 200)
    return tmp_path / "data"


def _store_tables(store: ArtifactStore, tmp_path: Path) -> None:
    corpus = corpus_frame()
    write_parquet(splits_frame(), store.table_path("dataset_splits"))
    write_parquet(corpus, store.table_path("merged_corpus"))
    index = BM25Index.build(corpus["passage_id"].to_list(), corpus["text"].to_list())
    Bm25IndexManifest(str(index.save(tmp_path / "bm25")), corpus.height, "bm25-hash").write(
        store.table_path("bm25_index", ".json")
    )


def test_eval_model_scores_a_folder_against_base_bm25_and_hybrids(
    data: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(data)
    _store_tables(store, tmp_path)

    def no_dagster(settings):  # every table is stored: nothing to materialize
        raise AssertionError("eval --model materialized something although every table was there")

    monkeypatch.setattr(cli, "_instance_and_defs", no_dagster)
    result = runner.invoke(
        cli.app, ["--set", "eval.ks=[1,10]", "eval", "--model", str(tiny_model_dir), "--base", str(tiny_model_dir)]
    )
    assert result.exit_code == 0, result.output
    for system in ("fine-tuned", "base (zero-shot)", "bm25", "hybrid rrf (fine-tuned+bm25)", "hybrid weighted (base"):
        assert system in result.output
    assert "eval_corpus: whole merged_corpus (20 passages)" in result.output
    assert "fusion chosen on valid (fine-tuned)" in result.output and "mlflow_run_url: http" in result.output

    model = ModelRef.folder(tiny_model_dir)
    params = store.find_fusion_params(model.version)  # --base is the same folder: the model under test's choice
    assert params is not None and params.dense_system == "fine-tuned" and params.chosen_on == "valid"
    report = model_report_dir(store, model) / REPORT_FILE
    assert report.is_file() and f"fine-tuned model**: {tiny_model_dir}" in report.read_text(encoding="utf-8")
    assert not (store.report_path(REPORTS_GROUP) / REPORT_FILE).exists()  # the asset's report is left alone


def test_eval_model_materializes_missing_tables_first(
    data: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(cli, "_instance_and_defs", lambda settings: (None, None))
    monkeypatch.setattr(cli, "_with_missing_upstream", lambda instance, defs, run: run)

    def fake_run(keys, *args, **kwargs):
        ran.append([k.to_user_string() for k in keys])
        raise SystemExit(3)

    monkeypatch.setattr(cli, "_run", fake_run)
    result = runner.invoke(cli.app, ["eval", "--model", str(tiny_model_dir)])
    assert result.exit_code == 3
    assert ran == [["dataset_splits", "merged_corpus", "bm25_index", "base_model"]]


def test_eval_model_arguments(data: Path, tmp_path: Path) -> None:
    assert runner.invoke(cli.app, ["eval", "--base", str(tmp_path)]).exit_code == 2  # --base needs --model
    missing = runner.invoke(cli.app, ["eval", "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "model folder" in missing.output
