"""The PostgreSQL profile (docs/DEPLOY.md): Dagster's run, event-log and schedule storage and MLflow's backend store on
a real PostgreSQL that this module starts (postgres_server.py), passwords only ever from the environment.

Skipped, with the reason, only where no PostgreSQL server can be run (no binaries, or root without a postgres user)
or the `postgres` extra (dagster-postgres, psycopg) is not installed; scripts/setup.sh and .ci/run install both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from typer.testing import CliRunner

from lexdpr_pipeline import orchestration, tracking
from lexdpr_pipeline.settings import Settings, TrackingSettings, load_settings
from lexdpr_pipeline_tests.conftest import CORPUS, REPO_ROOT
from lexdpr_pipeline_tests.deploy import postgres_server

PROFILE_YAML = REPO_ROOT / "deploy" / "dagster-postgres" / "dagster.yaml"
BIN = Path(sys.executable).parent
LAWS = ["국가배상법", "이자제한법"]
DECISIONS = ["2016다267920", "2016다259769", "2017다202296"]
TOUCHED_LAW = "이자제한법"
TINY_GRAPH = ["raw_statutes", "raw_admin_rules", "raw_precedents", "precedent_citations"]
SECRET = "S3cret/pw@with:odd%chars"  # the MLflow password of the unit tests: needs quoting in a URI
CLI_TIMEOUT_S = 600  # only a hang reaches it


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres_server.PostgresServer]:
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -c constraints.txt -e '.[postgres]'")
    server = postgres_server.start()
    if isinstance(server, str):
        pytest.skip(f"no PostgreSQL for the postgres profile tests: {server}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def pg_env(pg_server: postgres_server.PostgresServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh database and the DAGSTER_PG_* variables that point the postgres profile at it."""
    db = pg_server.create_database(f"dagster_{uuid.uuid4().hex[:12]}")
    values = {
        "DAGSTER_PG_HOST": pg_server.host,
        "DAGSTER_PG_PORT": str(pg_server.port),
        "DAGSTER_PG_USER": pg_server.user,
        "DAGSTER_PG_PASSWORD": pg_server.password,
        "DAGSTER_PG_DB": db,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture()
def mirror(tmp_path: Path) -> Path:
    """Two small laws and three decisions of ../shared/corpus, as writable files."""
    dest = tmp_path / "mirror"
    for law in LAWS:
        for path in sorted((CORPUS / "legalize-kr" / "kr" / law).glob("*.md")):
            (dest / "legalize-kr" / "kr" / law).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / "legalize-kr" / "kr" / law / path.name)
    for case_no in DECISIONS:
        found = sorted((CORPUS / "precedent-kr").rglob(f"{case_no}.md"))
        assert found, f"{case_no} is not in ../shared/corpus"
        (dest / found[0].relative_to(CORPUS)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], dest / found[0].relative_to(CORPUS))
    return dest


def _postgres_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed: pip install -e '.[postgres]'")
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert orchestration.ensure_dagster_home(tmp_path / "unused", profile="postgres") == home.resolve()
    return home


def _edit_first_article(law_dir: Path) -> None:
    """One character more in the first article's text (not the 부칙, which the statute reader does not keep)."""
    path = sorted(law_dir.glob("*.md"))[0]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    heading = next(i for i, line in enumerate(lines) if line.startswith("##### 제"))
    body = next(j for j in range(heading + 1, len(lines)) if lines[j].strip())
    lines[body] = lines[body].rstrip("\n") + "다\n"
    path.write_text("".join(lines), encoding="utf-8")


def _states(home: Path, defs: dg.Definitions) -> dict[str, str]:
    """Stale status from a new instance object on the same database (a restart, as far as Dagster knows)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return {s.key.to_user_string(): s.status for s in orchestration.asset_states(instance, defs)}


def _no_password_in_files(folder: Path, password: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), f"the password is in {path}"


# ---------------------------------------------------------------------------------------- profile (no database)


def test_profile_yaml_takes_every_connection_setting_from_the_environment() -> None:
    config = yaml.safe_load(PROFILE_YAML.read_text(encoding="utf-8"))
    db = config["storage"]["postgres"]["postgres_db"]
    assert db == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "scheme": "postgresql+psycopg2",  # SQLAlchemy 2.1's bare postgresql:// is psycopg 3: NOTIFY fails on it
    }
    assert set(orchestration.POSTGRES_ENV) == {ref["env"] for ref in db.values() if isinstance(ref, dict)}
    assert config["telemetry"] == {"enabled": False}  # the default profile's settings, kept
    assert config["python_logs"] == yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["python_logs"]


def test_profile_yaml_passes_dagsters_instance_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.instance.config import dagster_instance_config

    for name in orchestration.POSTGRES_ENV:
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    shutil.copyfile(PROFILE_YAML, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # raises on a shape Dagster does not accept
    assert config["storage"]["postgres"]["postgres_db"]["port"] == {"env": "DAGSTER_PG_PORT"}
    (tmp_path / "dagster.yaml").write_text(PROFILE_YAML.read_text().replace("hostname:", "host_name:"))
    with pytest.raises(dg.DagsterInvalidConfigError):  # the check is real: a misspelled key fails it
        dagster_instance_config(str(tmp_path))


def test_profile_selection_writes_switches_and_keeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv(orchestration.PROFILE_ENV, raising=False)
    for name in orchestration.POSTGRES_ENV:
        monkeypatch.delenv(name, raising=False)
    sqlite_yaml = (REPO_ROOT / "dagster.yaml").read_text(encoding="utf-8")
    target = home / "dagster.yaml"

    orchestration.ensure_dagster_home(tmp_path / "unused")  # no profile asked for: sqlite stays the default
    assert target.read_text(encoding="utf-8") == sqlite_yaml

    monkeypatch.setenv(orchestration.PROFILE_ENV, "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", SECRET)
    with pytest.raises(ValueError) as unset:  # every missing variable named, no value shown
        orchestration.ensure_dagster_home(tmp_path / "unused")
    message = str(unset.value)
    assert all(n in message for n in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB"))
    assert "DAGSTER_PG_PASSWORD" not in message and SECRET not in message
    assert target.read_text(encoding="utf-8") == PROFILE_YAML.read_text(encoding="utf-8")  # switched from sqlite

    for name in orchestration.POSTGRES_ENV:
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    orchestration.ensure_dagster_home(tmp_path / "unused")
    assert SECRET not in target.read_text(encoding="utf-8")

    monkeypatch.delenv(orchestration.PROFILE_ENV)  # a home holding the postgres profile keeps it without the setting
    orchestration.ensure_dagster_home(tmp_path / "unused")
    assert target.read_text(encoding="utf-8") == PROFILE_YAML.read_text(encoding="utf-8")

    target.write_text(sqlite_yaml + "# edited by hand\n", encoding="utf-8")  # a hand-edited file is never replaced
    orchestration.ensure_dagster_home(tmp_path / "unused", profile="postgres")
    assert target.read_text(encoding="utf-8").endswith("# edited by hand\n")

    monkeypatch.setenv(orchestration.PROFILE_ENV, "mysql")
    with pytest.raises(ValueError, match="LEXDPR_DAGSTER_PROFILE"):
        orchestration.ensure_dagster_home(tmp_path / "unused")


# ------------------------------------------------------------------------------------- MLflow URI (no database)


def test_mlflow_db_env_builds_a_postgres_uri_that_is_shown_masked(tmp_path: Path) -> None:
    env = {
        "LEXDPR_MLFLOW_DB_HOST": "db.internal",
        "LEXDPR_MLFLOW_DB_USER": "ml",
        "LEXDPR_MLFLOW_DB_PASSWORD": SECRET,
        "LEXDPR_MLFLOW_DB_NAME": "mlflow",
    }
    target = tracking.target_for(TrackingSettings(), tmp_path, env)
    quoted = "S3cret%2Fpw%40with%3Aodd%25chars"
    assert target.uri == f"postgresql+psycopg://ml:{quoted}@db.internal:5432/mlflow"
    import sqlalchemy

    assert sqlalchemy.make_url(target.uri).password == SECRET  # what the driver gets back
    assert target.display_uri == "postgresql+psycopg://ml:***@db.internal:5432/mlflow"
    assert SECRET not in repr(target) and quoted not in repr(target)
    assert tracking.without_password(target.uri) == "postgresql+psycopg://ml@db.internal:5432/mlflow"
    assert target.artifact_root == (tmp_path.resolve() / "mlflow" / "artifacts").as_uri()  # not ./mlruns
    from lexdpr_pipeline.logging_setup import scrub_secrets

    assert SECRET not in scrub_secrets(f"connect failed: {target.uri}")  # registered with the scrubber

    with pytest.raises(ValueError, match="LEXDPR_MLFLOW_DB_NAME"):
        tracking.target_for(TrackingSettings(), tmp_path, {"LEXDPR_MLFLOW_DB_HOST": "h", "LEXDPR_MLFLOW_DB_USER": "u"})


def test_mlflow_uri_precedence_password_and_artifact_root(tmp_path: Path) -> None:
    password_only = {"LEXDPR_MLFLOW_DB_PASSWORD": SECRET}
    # a password-free URI from MLFLOW_TRACKING_URI gets the password in memory; a URI that has one keeps it
    uri = tracking.target_for(
        TrackingSettings(), tmp_path, {"MLFLOW_TRACKING_URI": "postgresql+psycopg://u@h:6543/d", **password_only}
    ).uri
    assert uri.startswith("postgresql+psycopg://u:S3cret%2F") and uri.endswith("@h:6543/d")
    kept = tracking.target_for(TrackingSettings(tracking_uri="postgresql://u:other@h/d"), tmp_path, password_only).uri
    assert kept == "postgresql://u:other@h/d"
    # the setting beats MLFLOW_TRACKING_URI, which beats LEXDPR_MLFLOW_DB_*; sqlite stays the default
    env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "LEXDPR_MLFLOW_DB_HOST": "h"}
    assert tracking.target_for(TrackingSettings(tracking_uri="sqlite:///x.db"), tmp_path, env).uri == "sqlite:///x.db"
    server = tracking.target_for(TrackingSettings(), tmp_path, env)
    assert server.uri == "http://mlflow:5000" and server.artifact_root is None  # the server's own artifact store
    assert tracking.target_for(TrackingSettings(), tmp_path, {}).uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    # an S3-style or folder artifact root, from the setting (LEXDPR_MLFLOW_ARTIFACT_ROOT)
    s3 = load_settings(environ={"LEXDPR_MLFLOW_ARTIFACT_ROOT": "s3://bucket/lexdpr/"}).tracking
    assert tracking.target_for(s3, tmp_path, {"MLFLOW_TRACKING_URI": "postgresql://u@h/d"}).artifact_root == (
        "s3://bucket/lexdpr"
    )
    folder = TrackingSettings(artifact_root=str(tmp_path / "art"))
    assert tracking.target_for(folder, tmp_path, {}).artifact_root == (tmp_path / "art").resolve().as_uri()


def test_info_masks_the_mlflow_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lexdpr_pipeline.cli import app

    monkeypatch.chdir(tmp_path)
    for name in ("LEXDPR_CONFIG", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEXDPR_DATA_DIR", str(tmp_path / "data"))
    for key, value in {"HOST": "db", "PORT": "5433", "USER": "ml", "NAME": "runs", "PASSWORD": SECRET}.items():
        monkeypatch.setenv(f"LEXDPR_MLFLOW_DB_{key}", value)
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "postgresql+psycopg://ml:***@db:5433/runs" in result.output
    assert "mlflow ui --backend-store-uri postgresql+psycopg://ml@db:5433/runs" in result.output  # PGPASSWORD
    assert "S3cret" not in result.output


# ----------------------------------------------------------------------------------------- on a real PostgreSQL


def test_tiny_graph_on_postgres_and_staleness_survives_a_restart(
    pg_env: dict[str, str], mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from lexdpr_pipeline.definitions import build_definitions

    home = _postgres_home(tmp_path, monkeypatch)
    settings = load_settings(
        environ={"LEXDPR_MIRROR_DIR": str(mirror), "LEXDPR_DATA_DIR": str(tmp_path / "data")}, config_file=None
    )
    defs = build_definitions(settings)
    keys = [dg.AssetKey(k) for k in TINY_GRAPH]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        assert [type(s).__name__ for s in storages] == [
            "PostgresRunStorage",
            "PostgresEventLogStorage",
            "PostgresScheduleStorage",
        ]
        orchestration.observe_sources(instance, defs)
        result = orchestration.materialize(instance, defs, keys)
        assert result.success, orchestration.failure_reason(result)

    states = _states(home, defs)  # a new instance object: everything it knows comes from the database
    assert {k: states[k] for k in TINY_GRAPH} == dict.fromkeys(TINY_GRAPH, "FRESH")

    _edit_first_article(mirror / "legalize-kr" / "kr" / TOUCHED_LAW)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        orchestration.observe_sources(instance, defs)
    assert _states(home, defs)["raw_statutes"] == "STALE"  # the changed source, seen after another restart
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = orchestration.materialize(instance, defs, [dg.AssetKey("raw_statutes")])
        assert result.success, orchestration.failure_reason(result)
    states = _states(home, defs)
    assert states["raw_statutes"] == "FRESH" and states["raw_precedents"] == "FRESH"
    assert states["precedent_citations"] == "STALE"  # its statutes input changed

    with psycopg.connect(postgres_conninfo(pg_env)) as conn:  # and it all sits in PostgreSQL, not in sqlite files
        runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone()[0]
        materialized = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            (dg.AssetKey("raw_statutes").to_string(),),
        ).fetchone()[0]
        leaked = conn.execute(
            "SELECT count(*) FROM event_logs WHERE event LIKE %s", (f"%{pg_env['DAGSTER_PG_PASSWORD']}%",)
        )
        assert leaked.fetchone()[0] == 0
    assert runs == 4 and materialized == 2  # observe, materialize, observe, materialize
    assert not list(home.rglob("*.db"))
    _no_password_in_files(home, pg_env["DAGSTER_PG_PASSWORD"])


def test_two_concurrent_cli_materializations_both_record(
    pg_env: dict[str, str], mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `dagster asset materialize` processes of different assets at once, on one PostgreSQL-backed instance."""
    home = _postgres_home(tmp_path, monkeypatch)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXDPR", "LAW_GO_KR", "MLFLOW"))}
    env.update(
        LEXDPR_MIRROR_DIR=str(mirror),
        LEXDPR_DATA_DIR=str(tmp_path / "data"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO_ROOT),
    )
    location = ["-m", "lexdpr_pipeline.definitions", "-d", str(REPO_ROOT)]
    assets = ["raw_statutes", "raw_precedents"]
    procs = {
        asset: subprocess.Popen(  # cwd: a temp folder, so that the repository's .env cannot redirect DAGSTER_HOME
            [str(BIN / "dagster"), "asset", "materialize", *location, "--select", asset],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for asset in assets
    }
    try:
        outputs = {asset: proc.communicate(timeout=CLI_TIMEOUT_S)[0] for asset, proc in procs.items()}
    finally:
        for proc in procs.values():  # only after a hang: nothing is left running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for asset, proc in procs.items():
        assert proc.returncode == 0, f"materialize {asset} failed:\n{outputs[asset][-4000:]}"
        assert pg_env["DAGSTER_PG_PASSWORD"] not in outputs[asset]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        by_asset = {}
        for asset in assets:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            assert event is not None, f"{asset} has no materialization in the instance"
            by_asset[asset] = event.run_id
            run = instance.get_run_by_id(event.run_id)
            assert run is not None and run.asset_selection == {dg.AssetKey(asset)}  # each run recorded its own asset
        assert set(by_asset.values()) == {r.run_id for r in runs}
        assert {dg.AssetKey(a) for a in assets} <= set(instance.get_asset_keys())
    _no_password_in_files(home, pg_env["DAGSTER_PG_PASSWORD"])


def test_mlflow_run_lands_in_postgres(
    pg_server: postgres_server.PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    db = pg_server.create_database(f"mlflow_{uuid.uuid4().hex[:12]}")
    env = {
        "LEXDPR_MLFLOW_DB_HOST": pg_server.host,
        "LEXDPR_MLFLOW_DB_PORT": str(pg_server.port),
        "LEXDPR_MLFLOW_DB_USER": pg_server.user,
        "LEXDPR_MLFLOW_DB_PASSWORD": pg_server.password,
        "LEXDPR_MLFLOW_DB_NAME": db,
        "LEXDPR_MLFLOW_UI": "http://mlflow.internal:5000",
    }
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings.model_validate({"paths": {"data_dir": str(tmp_path / "data")}})
    target = tracking.tracking_target(settings, env)
    assert target.uri.startswith("postgresql+psycopg://") and pg_server.password not in target.display_uri
    artifact = tmp_path / "report.md"
    artifact.write_text("# report\n", encoding="utf-8")
    import mlflow

    try:
        with tracking.start_run(target, run_name="pg-check", tags={"dagster_run_id": "abc"}) as (_, handle):
            tracking.log_params({"train": {"lr": 0.01}})
            tracking.log_metrics({"ndcg@10": 0.5})
            tracking.log_artifact_or_path(artifact, max_mb=1, artifact_path="reports")
    finally:
        mlflow.set_tracking_uri(None)  # set_tracking_uri exported the URI to MLFLOW_TRACKING_URI: take it back
    assert handle.url == f"http://mlflow.internal:5000/#/experiments/{handle.experiment_id}/runs/{handle.run_id}"

    with psycopg.connect(pg_server.conninfo(db)) as conn:
        status, name, artifact_uri = conn.execute(
            "SELECT status, name, artifact_uri FROM runs WHERE run_uuid = %s", (handle.run_id,)
        ).fetchone()
        metric = conn.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'ndcg_at_10'", (handle.run_id,))
        assert metric.fetchone()[0] == pytest.approx(0.5)
        param = conn.execute("SELECT value FROM params WHERE run_uuid = %s AND key = 'train.lr'", (handle.run_id,))
        assert param.fetchone()[0] == "0.01"
        experiment = conn.execute("SELECT name FROM experiments WHERE experiment_id = %s", (int(handle.experiment_id),))
        assert experiment.fetchone()[0] == "lexdpr"
    assert (status, name) == ("FINISHED", "pg-check")
    # the artifacts under the data folder's artifact root (not ./mlruns of the working directory)
    root = tmp_path / "data" / "mlflow" / "artifacts"
    assert artifact_uri.startswith(root.resolve().as_uri())
    assert (root / "lexdpr" / handle.run_id / "artifacts" / "reports" / "report.md").is_file()


def postgres_conninfo(pg_env: dict[str, str]) -> str:
    return (
        f"host={pg_env['DAGSTER_PG_HOST']} port={pg_env['DAGSTER_PG_PORT']} user={pg_env['DAGSTER_PG_USER']} "
        f"password={pg_env['DAGSTER_PG_PASSWORD']} dbname={pg_env['DAGSTER_PG_DB']}"
    )
