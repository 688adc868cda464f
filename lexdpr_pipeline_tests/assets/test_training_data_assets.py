"""The corpus and training-data stages end to end in Dagster, on a small real slice with a tiny tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lexdpr_pipeline.definitions import build_definitions
from lexdpr_pipeline.orchestration import materialize
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.conftest import CORPUS

LAWS = ["민법", "민사소송법"]


def _civil_precedents_citing(law: str, n: int) -> list[Path]:
    out = []
    for path in sorted((CORPUS / "precedent-kr" / "민사" / "대법원").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        refs = text.split("## 참조조문", 1)[-1].split("##", 1)[0]
        if f"{law} 제" in refs and "## 판결요지" in text and "## 참조판례" in text:
            out.append(path)
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    for law in LAWS:
        shutil.copytree(CORPUS / "legalize-kr" / "kr" / law, root / "legalize-kr" / "kr" / law)
    dest = root / "precedent-kr" / "민사" / "대법원"
    dest.mkdir(parents=True)
    for path in _civil_precedents_citing("민법", 40):
        shutil.copy(path, dest / path.name)
    return root


@dg.asset(code_version="probe-1", io_manager_key="probe_io")
def after_splits(dataset_splits: pl.DataFrame) -> int:
    """Stands in for training: must not run when a blocking check on dataset_splits fails."""
    return dataset_splits.height


def _defs(mirror: Path, data: Path, tokenizer_dir: Path, *extra: str) -> dg.Definitions:
    settings = load_settings(
        overrides=[
            f"paths.mirror_dir={mirror}",
            f"paths.data_dir={data}",
            f"models.base_model={tokenizer_dir}",
            "text.max_tokens=128",
            "text.overlap=16",
            "text.prec_body_max_chunks=2",
            "pairs.min_pairs=20",
            # The graph goes on to training, evaluation and the indexes: keep those tiny here.
            "train.template=none",
            "train.batch_size=8",
            "train.max_steps=4",
            "eval.ks=[1,10]",
            *extra,
        ],
        environ={},
    )
    return dg.Definitions.merge(
        build_definitions(settings), dg.Definitions(assets=[after_splits], resources={"probe_io": dg.mem_io_manager})
    )


def _all_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    return list(defs.resolve_asset_graph().materializable_asset_keys)


@pytest.fixture(scope="module")
def built(mirror: Path, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    data = tmp_path_factory.mktemp("data")
    defs = _defs(mirror, data, tiny_model_dir)
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(instance, defs, _all_keys(defs))
        yield result, data


def test_graph_runs_and_every_check_passes(built) -> None:
    result, data = built
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    # The digit split shares its period with training (training decisions cite test decisions): the leak check
    # reports that as a warning there, and blocks only with the temporal split (test_leakage.py).
    leak = evaluations.pop("no_heldout_decision_in_training")
    assert leak.passed or leak.severity == dg.AssetCheckSeverity.WARN
    # A 3-step training of a random tiny model may lose a type to its base: a warning unless eval.forgetting_blocks.
    forgot = evaluations.pop("fine_tuned_keeps_the_base_on_valid")
    assert forgot.passed or forgot.severity == dg.AssetCheckSeverity.WARN
    checks = {name: e.passed for name, e in evaluations.items()}
    assert checks == {
        "raw_statutes_completeness": True,
        "raw_admin_rules_completeness": True,
        "raw_precedents_completeness": True,
        "ids_exist_in_corpus": True,
        "no_positive_among_negatives": True,
        "no_document_spans_splits": True,
        "every_split_non_empty": True,
        "minimum_pair_count": True,
        "faiss_index_matches_corpus": True,
        "faiss_recall_at_10": True,
        "encoder_export_quality_gate": True,  # embed.backend=auto never chooses an export that failed the gate
    }
    # The whole graph ran: a model was trained, evaluated, and its index published for search.
    assert (data / "indexes" / "CURRENT.json").exists()
    table = pl.read_parquet(data / "tables" / "model_evaluation.parquet")
    assert {"fine-tuned", "base (zero-shot)", "bm25"} < set(table["system"])  # + the hybrids (test_fusion_tuning)
    splits = pl.read_parquet(data / "tables" / "dataset_splits.parquet")
    assert set(splits["split"]) == {"train", "valid", "test"}
    assert {"law", "prec", "cross_law"} <= set(splits["query_type"])
    assert (splits["negative_ids"].list.len() == 4).mean() > 0.95
    corpus = pl.read_parquet(data / "tables" / "merged_corpus.parquet")
    assert corpus["n_tokens"].max() <= 128  # the budget, measured with the model's (tiny) tokenizer
    assert (data / "reports" / "training_data" / "pairs_report.md").exists()


def test_statute_passage_reads_like_a_citation(built) -> None:
    _, data = built
    law = pl.read_parquet(data / "tables" / "law_passages.parquet")
    art = law.filter(pl.col("title") == "민법 제750조(불법행위의 내용)")
    assert art.height == 1
    assert art["text"][0].startswith("민법 제750조(불법행위의 내용) 고의 또는 과실로")


def test_failing_blocking_check_stops_downstream(mirror: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    defs = _defs(mirror, tmp_path, tiny_model_dir, "pairs.min_pairs=1000000")
    with dg.DagsterInstance.ephemeral() as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, asset_selection=_all_keys(defs), raise_on_error=False)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["minimum_pair_count"] is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "dataset_splits" in materialized and "after_splits" not in materialized


def test_dense_negative_miner_through_the_asset(mirror: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    # A random tiny model scores many positives below unrelated passages; with the default 5% margin it may keep
    # no candidate at all, so this wiring test turns the margin off (the margin itself is tested in pairs/).
    defs = _defs(
        mirror,
        tmp_path,
        tiny_model_dir,
        "pairs.negative_miner=dense",
        "pairs.max_queries=60",
        "pairs.dense_relative_margin=0",
    )
    with dg.DagsterInstance.ephemeral() as instance:
        graph = defs.resolve_asset_graph()
        keys = [
            k
            for k in dg.AssetSelection.assets("dataset_splits").upstream().resolve(graph)
            if k in graph.materializable_asset_keys
        ]
        result = materialize(instance, defs, keys)
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
        meta = instance.get_latest_materialization_event(dg.AssetKey("training_pairs")).asset_materialization.metadata
        assert meta["negative_miner"].value == "dense"
        removed = meta["hard_negatives"].value["removed_by_rule"]  # the false-negative rules ran and were counted
        assert "| dense_margin | " in meta["negatives_removed_by_rule"].value
        assert removed["dense_margin"] > 0  # margin 0 still drops candidates scoring above the positive
    pairs = pl.read_parquet(tmp_path / "tables" / "training_pairs.parquet")
    assert pairs.height == 60 and pairs["negative_ids"].list.len().sum() > 0
    assert pairs["negatives_removed"].struct.field("shares_citation").sum() == removed["shares_citation"]


def test_analyze_pairs_cli_reads_the_materialized_tables(
    built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from lexdpr_pipeline.cli import app

    _, data = built
    monkeypatch.setenv("LEXDPR_DATA_DIR", str(data))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["--set", "text.tokenizer=whitespace", "analyze-pairs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    splits = pl.read_parquet(data / "tables" / "dataset_splits.parquet")
    assert f"{splits.height} queries" in result.output and "## Citation resolution" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "pairs_report.md",
        "per_query_counts.png",
        "query_types.png",
        "splits.png",
        "token_lengths.png",
    ]
    missing = CliRunner().invoke(app, ["--set", f"paths.data_dir={tmp_path / 'empty'}", "analyze-pairs"])
    assert missing.exit_code == 1 and "gen-data" in missing.output


def test_analyze_pairs_writes_the_report_the_asset_wrote(
    built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """One report function: the CLI, reading the stored tables, writes what dataset_splits wrote; lengths are
    counted against train.max_seq_length (256 by default) and the base model's own limit (the tiny model: 128)."""
    from typer.testing import CliRunner

    from lexdpr_pipeline.cli import app

    result, data = built
    monkeypatch.chdir(tmp_path)  # no ./.env or ./lexdpr.yaml: the defaults, as the asset's settings
    monkeypatch.delenv("LEXDPR_CONFIG", raising=False)
    monkeypatch.setenv("LEXDPR_DATA_DIR", str(data))
    out = tmp_path / "again"
    cli = CliRunner().invoke(app, ["--set", f"models.base_model={tiny_model_dir}", "analyze-pairs", "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    by_asset = (data / "reports" / "training_data" / "pairs_report.md").read_text(encoding="utf-8")
    assert (out / "pairs_report.md").read_text(encoding="utf-8") == by_asset
    assert "| > 256 (train) | > 128 (model) |" in by_asset
    mat = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == ["dataset_splits"])
    summary = mat.materialization.metadata["summary"].value
    corpus = pl.read_parquet(data / "tables" / "merged_corpus.parquet")
    assert summary["passages_over_model_max_seq_length"] == int((corpus["n_tokens"] > 128).sum())
    assert summary["passages_over_train_max_seq_length"] == 0  # passages are chunked to text.max_tokens=128


def test_pairs_report_metadata_shows_its_images_inline(built) -> None:
    """Dagster's markdown view cannot follow the report's relative links to its PNGs: they are inlined there."""
    result, data = built
    mat = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == ["dataset_splits"])
    shown = mat.materialization.metadata["report"].value
    on_disk = (data / "reports" / "training_data" / "pairs_report.md").read_text(encoding="utf-8")
    n_images = on_disk.count("![")
    assert n_images >= 4 and shown.count("](data:image/png;base64,") == n_images
    assert "](query_types.png)" in on_disk and "](query_types.png)" not in shown
