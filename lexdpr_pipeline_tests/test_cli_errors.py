"""How ``lex-dpr`` fails: one line and a non-zero exit, never a hang; numbers validated; ``./.env`` read; the
evaluation table readable at 80 columns. In process (Typer's CliRunner); see test_cli_failures.py for the real
entry point against a failing law.go.kr."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from typer.testing import CliRunner

from lexdpr_pipeline import cli
from lexdpr_pipeline.orchestration import (
    cli_console_logger,
    console_log_config,
    failure_reason,
    materialize,
    one_line,
)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean directory (no ./.env, no lexdpr.yaml) and none of the project's variables; whatever a command sets
    in ``os.environ`` is undone after the test."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("LEXDPR", "LAW_GO_KR", "DAGSTER_HOME")):
            monkeypatch.delenv(name)
    for name in ("LEXDPR_CONFIG", "DAGSTER_HOME", "LAW_GO_KR_OC"):  # registered, so a value set later is removed
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("LEXDPR_DATA_DIR", str(tmp_path / "data"))


# a run that fails --------------------------------------------------------------------------------------------------


class UpstreamError(Exception):
    pass


@dg.asset
def flaky() -> None:
    raise UpstreamError(
        "law.go.kr rejected the request: user verification failed (사용자 정보 검증에 실패하였습니다.). Register "
        "this server's public IP address for your OC at https://open.law.go.kr and wait for the approval, then check "
        "that LAW_GO_KR_OC holds the e-mail id of that account and nothing else at all."
    )


@dg.asset
def refused() -> None:
    raise dg.Failure(description="The law.go.kr API needs an OC key: set LAW_GO_KR_OC or use source=mirror.")


@dg.asset(deps=[flaky])
def downstream() -> None:
    pass


def test_a_failed_run_returns_and_says_why_in_one_line() -> None:
    defs = dg.Definitions(assets=[flaky, downstream])
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(instance, defs, [dg.AssetKey("flaky"), dg.AssetKey("downstream")])
    assert not result.success  # no exception: Dagster's re-raise is what made the chain cyclic
    reason = failure_reason(result)
    assert "\n" not in reason and len(reason) <= 300
    assert reason.startswith("flaky: law.go.kr rejected the request: user verification failed (사용자 정보")
    assert "UpstreamError" not in reason and "Dagster" not in reason


def test_a_dagster_failure_reads_as_its_description() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(instance, dg.Definitions(assets=[refused]), [dg.AssetKey("refused")])
        assert failure_reason(result) == (
            "refused: The law.go.kr API needs an OC key: set LAW_GO_KR_OC or use source=mirror."
        )
        both = materialize(
            instance, dg.Definitions(assets=[refused, flaky]), [dg.AssetKey("refused"), dg.AssetKey("flaky")]
        )
    assert failure_reason(both).endswith("(+1 more failed step)")


def test_one_line_keeps_whole_sentences_within_the_budget() -> None:
    text = "First part. Second\n part is here. " + "Third " * 60 + "end."
    assert one_line(text) == "First part. Second part is here."
    assert one_line("x" * 500).endswith("…") and len(one_line("x" * 500)) == 300


def test_the_cli_console_logger_drops_failure_events_but_keeps_warnings(capfd: pytest.CaptureFixture[str]) -> None:
    @dg.asset
    def warns(context) -> None:  # no annotation: Dagster rejects a string one
        context.log.warning("a warning users should see")
        raise UpstreamError("broken")

    defs = dg.Definitions(assets=[warns], loggers={"console": cli_console_logger(debug=False)})
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(instance, defs, [dg.AssetKey("warns")], console_log_config("INFO"))
    assert not result.success
    err = capfd.readouterr().err
    assert "a warning users should see" in err
    assert "STEP_FAILURE" not in err and "Stack Trace" not in err and "RUN_FAILURE" not in err


# the CLI: one line, exit status ------------------------------------------------------------------------------------


def _cyclic_error() -> RuntimeError:
    """The shape Dagster's raise_on_error made: the error's context is a wrapper whose cause is the error."""
    inner = RuntimeError("law.go.kr rejected the OC key (사용자 정보 검증에 실패하였습니다)")
    outer = ValueError("step failed")
    outer.__cause__ = inner
    inner.__context__ = outer
    return inner


def test_an_unexpected_cyclic_exception_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(settings):
        raise _cyclic_error()

    monkeypatch.setattr(cli, "_instance_and_defs", boom)
    result = runner.invoke(cli.app, ["status"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == ["error: RuntimeError: law.go.kr rejected the OC key (사용자 정보 검증에 실패하였습니다)"]
    assert cli.app.pretty_exceptions_enable is False  # rich's traceback printer never sees a chain


def test_debug_adds_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(settings):
        raise _cyclic_error()

    monkeypatch.setattr(cli, "_instance_and_defs", boom)
    result = runner.invoke(cli.app, ["--debug", "status"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: RuntimeError: law.go.kr rejected")
    monkeypatch.setenv("LEXDPR_LOG_LEVEL", "DEBUG")
    assert "Traceback (most recent call last)" in runner.invoke(cli.app, ["status"]).output


def test_a_secret_never_reaches_the_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAW_GO_KR_OC", "CliSecretKey42")

    def boom(settings):
        raise RuntimeError("GET http://x/lawSearch.do?OC=CliSecretKey42&target=prec failed for CliSecretKey42")

    monkeypatch.setattr(cli, "_instance_and_defs", boom)
    result = runner.invoke(cli.app, ["--debug", "status"])
    assert result.exit_code == 1 and "error: RuntimeError: GET" in result.output
    assert "CliSecretKey42" not in result.output


def test_missing_oc_is_one_line_exit_2_before_any_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(cli.app, ["crawl-precedents", "--limit", "3"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("the law.go.kr API needs an OC key: set LAW_GO_KR_OC")
    assert not (tmp_path / "data" / "dagster_home").exists()  # nothing ran

    monkeypatch.setenv("LEXDPR_INGEST_SOURCE", "api")
    result = runner.invoke(cli.app, ["materialize", "--select", "group:ingest", "--limit", "3"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("the law.go.kr API needs an OC key")
    assert "or use --source mirror" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["crawl-precedents", "--limit", "-5"], "--limit"),
        (["crawl-precedents", "--limit", "0"], "--limit"),
        (["materialize", "--limit", "0"], "--limit"),
        (["materialize", "--source", "web"], "--source"),
        (["train", "--max-steps", "0"], "--max-steps"),
        (["train", "--batch-size", "0"], "--batch-size"),
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--temperature", "0"], "--temperature"),
        (["search", "q", "--top-k", "0"], "--top-k"),
        (["search", "q", "--batch-size", "0"], "--batch-size"),
        (["embed", "-i", "a.txt", "-t", "query", "-o", "b.npy", "--batch-size", "0"], "--batch-size"),
        (["api", "--port", "0"], "--port"),
        (["api", "--port", "70000"], "--port"),
        (["api", "--workers", "0"], "--workers"),
        (["sweep", "--trials", "0"], "--trials"),
        (["sweep", "--timeout", "0"], "--timeout"),
        (["crawl-precedents", "--since", "2024-02-01", "--until", "2024-01-01"], "--since"),
    ],
)
def test_bad_numbers_exit_2_naming_the_option(args: list[str], option: str) -> None:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output


def test_bad_settings_exit_2_with_one_line_per_field() -> None:
    result = runner.invoke(
        cli.app,
        ["--set", "ingest.max_items=-5", "--set", "api.port=0", "--set", "train.warmup_ratio=2", "config", "show"],
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("configuration error: ") for line in lines)
    assert "ingest.max_items: Input should be greater than or equal to 1 (got -5)" in lines[0]
    assert "api.port" in result.output and "train.warmup_ratio" in result.output


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("LEXDPR__TRAIN__BATCH_SIZE", "0"),
        ("LEXDPR__LAWGO__RATE_LIMIT_PER_S", "-1"),
        ("LEXDPR__SEARCH__DENSE_WEIGHT", "1.5"),
        ("LEXDPR__TEXT__OVERLAP", "256"),  # not below text.max_tokens
        ("LEXDPR__EVAL__KS", "[0, 10]"),
        ("LEXDPR__PAIRS__TEST_DIGITS", "[10]"),
        ("LEXDPR__API__WORKERS", "0"),
        ("LEXDPR__INDEX__RECALL_FLOOR", "1.2"),
    ],
)
def test_numeric_settings_from_the_environment_are_validated(
    where: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(where, value)
    result = runner.invoke(cli.app, ["config", "show"])
    assert result.exit_code == 2
    dotted = where.removeprefix("LEXDPR__").lower().replace("__", ".")
    assert result.output.startswith(f"configuration error: {dotted}")


def test_bad_numbers_in_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"embed": {"batch_size": 0}, "lawgo": {"timeout_s": 0}}), encoding="utf-8")
    result = runner.invoke(cli.app, ["--config", str(config), "config", "show"])
    assert result.exit_code == 2
    assert sorted(line.split(":")[1].strip() for line in result.output.strip().splitlines()) == [
        "embed.batch_size",
        "lawgo.timeout_s",
    ]


def test_a_bad_selection_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(cli.app, ["materialize", "--select", "no_such_asset"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("bad --select 'no_such_asset'")


# ./.env: the run the main job made ---------------------------------------------------------------------------------


def test_config_show_reads_the_dotenv_of_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEXDPR_DATA_DIR")
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    data = project / "data" / "demo"
    (data / "indexes").mkdir(parents=True)
    (data / "indexes" / "CURRENT.json").write_text("{}", encoding="utf-8")
    (project / "configs" / "demo.yaml").write_text(yaml.safe_dump({"paths": {"data_dir": str(data)}}), "utf-8")
    (project / ".env").write_text(
        f"DAGSTER_HOME={data / 'dagster_home'}\nLEXDPR_CONFIG=configs/demo.yaml\nLAW_GO_KR_OC=DotenvKey99\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(project)
    result = runner.invoke(cli.app, ["config", "show"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["paths"]["data_dir"] == str(data)
    assert shown["lawgo"]["oc"] == "**********" and "DotenvKey99" not in result.output

    # the real environment wins over .env
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"paths": {"data_dir": str(tmp_path / "elsewhere")}}), encoding="utf-8")
    monkeypatch.setenv("LEXDPR_CONFIG", str(other))
    shown = yaml.safe_load(runner.invoke(cli.app, ["config", "show"]).output)
    assert shown["paths"]["data_dir"] == str(tmp_path / "elsewhere")


def test_no_index_error_names_the_config_and_how_to_pick_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEXDPR_DATA_DIR")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text(yaml.safe_dump({"paths": {"data_dir": "data/demo"}}), "utf-8")
    (tmp_path / ".env").write_text("LEXDPR_CONFIG=configs/demo.yaml\n", encoding="utf-8")
    result = runner.invoke(cli.app, ["search", "손해배상"])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "cannot load the search index" in out
    assert "config: configs/demo.yaml (from ./.env)" in out
    assert f"data dir: {tmp_path / 'data' / 'demo'}" in out
    assert "--config FILE" in out and "LEXDPR_CONFIG" in out

    (tmp_path / ".env").unlink()
    out = " ".join(runner.invoke(cli.app, ["search", "손해배상"]).output.split())
    assert "config: defaults (no config file)" in out


# eval --show at 80 columns -----------------------------------------------------------------------------------------


def _report() -> str:
    import polars as pl

    from lexdpr_pipeline.evaluation.report import markdown_tables

    metrics = ["ndcg@10", "recall@100", "mrr@10", "accuracy@1", "recall@10", "accuracy@5"]
    rows = []
    for split in ("valid", "test"):
        for group in ("all", "type:cross_law", "type:prec", "source:admrul"):
            for system in ("fine-tuned", "base (zero-shot)", "bm25"):
                rows.append(
                    {"system": system, "split": split, "group": group, "n_queries": 123} | dict.fromkeys(metrics, 0.5)
                )
    return "# Retrieval evaluation\n\n- **model**: tiny\n\n" + markdown_tables(pl.DataFrame(rows))


def test_eval_show_is_readable_in_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    import lexdpr_pipeline.orchestration as orchestration

    report = _report()
    monkeypatch.setattr(cli, "_instance_and_defs", lambda settings: (None, None))
    monkeypatch.setattr(orchestration, "latest_metadata", lambda instance, key: {"report": report, "report_path": "r"})
    monkeypatch.setattr(cli.console, "width", 80)
    result = runner.invoke(cli.app, ["eval", "--show"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    headers = ["group", "system", "queries", "ndcg@10", "recall@100", "mrr@10", "accuracy@1", "recall@10", "accuracy@5"]
    for header in headers:
        assert any(re.search(rf"(^|\s){re.escape(header)}(\s|$)", line) for line in lines), header
    for value in ("base (zero-shot)", "type:cross_law", "source:admrul"):  # cells whole too
        assert value in result.output
    assert "…" not in result.output


def test_info_prints_the_mlflow_ui_command_of_the_run_in_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEXDPR_DATA_DIR")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text(yaml.safe_dump({"paths": {"data_dir": "data/demo"}}), "utf-8")
    (tmp_path / ".env").write_text(
        f"DAGSTER_HOME={tmp_path / 'data' / 'demo' / 'dagster_home'}\nLEXDPR_CONFIG=configs/demo.yaml\n", "utf-8"
    )
    result = runner.invoke(cli.app, ["info"])
    assert result.exit_code == 0, result.output
    data = tmp_path / "data" / "demo"
    assert f"mlflow ui --backend-store-uri sqlite:///{data / 'mlflow' / 'mlflow.db'} --port 5000" in result.output
    assert f"DAGSTER_HOME: {data / 'dagster_home'}" in result.output
    assert "config:       configs/demo.yaml (from ./.env)" in result.output
    assert not (tmp_path / "data").exists()  # it only reads


def test_a_missing_config_named_by_dotenv_says_so(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEXDPR_CONFIG=configs/gone.yaml\n", encoding="utf-8")
    result = runner.invoke(cli.app, ["config", "show"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "configuration error: config file configs/gone.yaml does not exist (named by ./.env; pick another with "
        "--config FILE or LEXDPR_CONFIG=FILE)"
    )
