"""``lex-dpr doctor``: the profile, what is missing (exit 1) or all in place (exit 0), and never a secret."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexdpr_pipeline import doctor
from lexdpr_pipeline.cli import app
from lexdpr_pipeline.doctor import Check, check_dagster, dagster_storage, mask_uri, run_doctor
from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline_tests.api.servers import free_port
from lexdpr_pipeline_tests.api.tiny_index import build_tiny_index

OC = "oc-key-Zq81xTT"
DB_PASSWORD = "pg-Pass-77wrZ"
MLFLOW_PASSWORD = "mlf-Pass-31kQv"
runner = CliRunner()

POSTGRES_YAML = """\
telemetry:
  enabled: false
storage:
  postgres:
    postgres_db:
      username: {env: DAGSTER_PG_USER}
      password: {env: DAGSTER_PG_PASSWORD}
      hostname: {env: DAGSTER_PG_HOST}
      db_name: {env: DAGSTER_PG_DB}
      port: %d
"""


@pytest.fixture()
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./lexdpr.yaml or ./.env of the repo
    for name in ("LEXDPR_CONFIG", "MLFLOW_TRACKING_URI", "LEXDPR_API_KEY", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEXDPR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEXDPR_MIRROR_DIR", str(tmp_path / "mirror"))
    monkeypatch.setenv("LAW_GO_KR_OC", OC)
    return tmp_path


def _no_secret(text: str) -> None:
    for secret in (OC, DB_PASSWORD, MLFLOW_PASSWORD):
        assert secret not in text
        assert secret.lower() not in text.lower()


def test_fresh_setup_reports_what_is_missing_with_exit_1(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = free_port()  # nothing listens there
    home = cli_env / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(POSTGRES_YAML % closed, encoding="utf-8")
    monkeypatch.setenv("DAGSTER_PG_USER", "lexdpr")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", DB_PASSWORD)
    monkeypatch.setenv("DAGSTER_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_DB", "dagster")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql+psycopg://lexdpr:{MLFLOW_PASSWORD}@127.0.0.1:{closed}/ml")

    result = runner.invoke(app, ["doctor", "--timeout", "2"])
    out = result.output
    assert result.exit_code == 1, out
    _no_secret(out)
    assert f"postgres at lexdpr@127.0.0.1:{closed}/dagster" in out  # the profile, from DAGSTER_HOME's dagster.yaml
    assert f"postgresql+psycopg://lexdpr:***@127.0.0.1:{closed}/ml" in out  # the MLflow store, masked
    assert "law.go.kr key:   yes" in out
    for line in ("MISSING  dagster_storage", "MISSING  mlflow", "MISSING  index", "MISSING  base_model"):
        assert line in out, out
    assert "MISSING  mirror_dir" in out  # ingest.source=mirror needs it
    assert "index: lex-dpr refresh --select '*faiss_index'" in out
    assert "base_model: lex-dpr materialize --select base_model" in out
    assert "mirror_dir: export LEXDPR_MIRROR_DIR=" in out
    monkeypatch.delenv("LAW_GO_KR_OC")
    no_key = runner.invoke(app, ["doctor", "--timeout", "2"]).output
    assert "lawgo_key (optional): set LAW_GO_KR_OC (your law.go.kr OC id) in the environment or ./.env" in no_key
    monkeypatch.setenv("LAW_GO_KR_OC", OC)

    as_json = runner.invoke(app, ["doctor", "--json", "--timeout", "2"])
    assert as_json.exit_code == 1
    _no_secret(as_json.output)
    report = json.loads(as_json.output)
    assert report["ok"] is False and report["profile"]["dagster_storage"] == "postgres"
    assert {m["name"] for m in report["missing"]} == {"dagster_storage", "mlflow", "index", "base_model", "mirror_dir"}
    assert all(m["fix"] for m in report["missing"])


def test_prepared_setup_is_ok_with_exit_0(cli_env: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    data = cli_env / "data"
    build_tiny_index(data, tiny_model_dir, "v1")
    (cli_env / "mirror" / "legalize-kr").mkdir(parents=True)
    history = cli_env / "home" / "storage" / "history"
    history.mkdir(parents=True)
    with sqlite3.connect(history / "runs.db") as conn:  # a Dagster run history (sqlite)
        conn.execute("CREATE TABLE runs (id INTEGER)")
    (data / "mlflow").mkdir(parents=True)
    with sqlite3.connect(data / "mlflow" / "mlflow.db") as conn:  # an MLflow store
        conn.execute("CREATE TABLE experiments (id INTEGER)")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", DB_PASSWORD)  # set, though sqlite does not use it

    result = runner.invoke(app, ["--set", f"models.base_model={tiny_model_dir}", "doctor"])
    out = result.output
    assert result.exit_code == 0, out
    _no_secret(out)
    assert "MISSING" not in out and "all required pieces are in place" in out
    assert f"sqlite in {(cli_env / 'home' / 'storage').resolve()}" in out
    assert "run history readable" in out and "store readable" in out
    assert "index index-v1 (flat, 8 passages, torch)" in out
    assert "(legalize-kr)" in out

    report = json.loads(runner.invoke(app, ["--set", f"models.base_model={tiny_model_dir}", "doctor", "--json"]).output)
    assert report["ok"] is True and report["missing"] == []

    # a file of the published index disappears: exit 1, and the fix
    pointer = json.loads((data / "indexes" / "CURRENT.json").read_text(encoding="utf-8"))
    shutil.rmtree(pointer["faiss_path"])
    broken = runner.invoke(app, ["--set", f"models.base_model={tiny_model_dir}", "doctor"])
    assert broken.exit_code == 1 and "files of the published index are missing: faiss" in broken.output


def test_secrets_a_driver_echoes_are_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an error message that quotes the password (some drivers do) comes out masked."""
    uri = f"postgresql+psycopg://u:{MLFLOW_PASSWORD}@db:5432/ml"
    monkeypatch.setattr(doctor, "check_mlflow", lambda u, t: Check("mlflow", False, f"cannot log in to {u}", fix=u))
    monkeypatch.setenv("LAW_GO_KR_OC", OC)
    settings = Settings.model_validate({"paths": {"data_dir": str(tmp_path)}, "tracking": {"tracking_uri": uri}})
    report = run_doctor(settings, dagster_home=tmp_path / "home", environ={"LAW_GO_KR_OC": OC})
    text = json.dumps(report.to_dict()) + doctor.format_report(report)
    _no_secret(text)
    assert "cannot log in to postgresql+psycopg://u:***@db:5432/ml" in text


def test_mlflow_store_from_the_lexdpr_mlflow_db_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor probes the store training would use: the LEXDPR_MLFLOW_DB_* PostgreSQL one (password masked), and
    reports incomplete variables as a failed check instead of crashing."""
    probed: list[str] = []
    monkeypatch.setattr(doctor, "check_mlflow", lambda u, t: probed.append(u) or Check("mlflow", True, "probed"))
    settings = Settings.model_validate({"paths": {"data_dir": str(tmp_path)}})
    env = {
        "LEXDPR_MLFLOW_DB_HOST": "db.internal",
        "LEXDPR_MLFLOW_DB_USER": "lexdpr",
        "LEXDPR_MLFLOW_DB_NAME": "mlflow",
        "LEXDPR_MLFLOW_DB_PASSWORD": MLFLOW_PASSWORD,
    }
    report = run_doctor(settings, dagster_home=tmp_path / "home", environ=env)
    assert probed == [f"postgresql+psycopg://lexdpr:{MLFLOW_PASSWORD}@db.internal:5432/mlflow"]
    text = json.dumps(report.to_dict()) + doctor.format_report(report)
    _no_secret(text)
    assert "postgresql+psycopg://lexdpr:***@db.internal:5432/mlflow" in text
    incomplete = run_doctor(settings, dagster_home=tmp_path / "home", environ={"LEXDPR_MLFLOW_DB_HOST": "db"})
    mlflow = next(c for c in incomplete.to_dict()["checks"] if c["name"] == "mlflow")
    assert not mlflow["ok"] and "LEXDPR_MLFLOW_DB_USER" in mlflow["detail"]


def test_mask_uri() -> None:
    assert mask_uri("postgresql+psycopg://user:p%40ss@host:5432/db") == "postgresql+psycopg://user:***@host:5432/db"
    assert mask_uri("https://admin:pw@mlflow.internal:5000") == "https://admin:***@mlflow.internal:5000"
    assert mask_uri("sqlite:////data/mlflow/mlflow.db") == "sqlite:////data/mlflow/mlflow.db"
    assert mask_uri("http://mlflow:5000") == "http://mlflow:5000"


def test_dagster_yaml_profiles(tmp_path: Path) -> None:
    assert dagster_storage(tmp_path, {}).kind == "sqlite"  # no dagster.yaml: Dagster's default
    (tmp_path / "dagster.yaml").write_text(POSTGRES_YAML % 5432, encoding="utf-8")
    env = {"DAGSTER_PG_USER": "u", "DAGSTER_PG_PASSWORD": DB_PASSWORD, "DAGSTER_PG_HOST": "db", "DAGSTER_PG_DB": "d"}
    storage = dagster_storage(tmp_path, env)
    assert storage.kind == "postgres" and storage.description == "postgres at u@db:5432/d"
    assert DB_PASSWORD in storage.secrets and DB_PASSWORD not in storage.description
    unset = dagster_storage(tmp_path, {k: v for k, v in env.items() if k != "DAGSTER_PG_PASSWORD"})
    check = check_dagster(unset, 1.0)
    assert not check.ok and "DAGSTER_PG_PASSWORD is not set" in check.detail and "DAGSTER_PG_PASSWORD" in check.fix
    (tmp_path / "dagster.yaml").write_text(
        "storage:\n  sqlite:\n    base_dir: {env: LEXDPR_TEST_BASE}\n", encoding="utf-8"
    )
    assert dagster_storage(tmp_path, {"LEXDPR_TEST_BASE": str(tmp_path / "s")}).sqlite_dir == tmp_path / "s"
