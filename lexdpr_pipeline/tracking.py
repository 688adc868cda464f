"""MLflow, used directly (no dagster-mlflow): one place that decides where runs go and how they are tagged.

The default store is a sqlite file under ``data/mlflow/`` (no server needed); artifacts go beside it in
``data/mlflow/artifacts``. ``MLFLOW_TRACKING_URI`` (or ``tracking.tracking_uri``) points anywhere else. Open the UI with
``mlflow ui --backend-store-uri sqlite:///data/mlflow/mlflow.db --port 5000`` (see README).

PostgreSQL (docs/DEPLOY.md, "PostgreSQL profile"): ``MLFLOW_TRACKING_URI=postgresql+psycopg://user@host:5432/db``, or
``LEXDPR_MLFLOW_DB_HOST`` / ``_PORT`` / ``_USER`` / ``_NAME`` alone; the password comes from
``LEXDPR_MLFLOW_DB_PASSWORD`` and is put into the URI in memory only (registered with the secret scrubber; whatever is
shown or stored uses :func:`mask_uri`). Database stores put artifacts under ``tracking.artifact_root``
(``LEXDPR_MLFLOW_ARTIFACT_ROOT``: a folder or an ``s3://``-style URI), else ``data/mlflow/artifacts``.

Runs made by a Dagster asset carry its run id (tag ``dagster_run_id``); with ``tracking.dagster_ui`` /
``LEXDPR_DAGSTER_UI`` set (e.g. ``http://127.0.0.1:3000``) they also link to it: tag ``dagster_run_url`` and a markdown
link in the run's description (``mlflow.note.content``), shown on the run's page in the MLflow UI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from lexdpr_pipeline.logging_setup import MASK, register_secret

if TYPE_CHECKING:
    import mlflow

    from lexdpr_pipeline.settings import Settings, TrackingSettings

UI_BASE_ENV = "LEXDPR_MLFLOW_UI"  # e.g. http://mlflow.internal:5000; default http://127.0.0.1:5000
DAGSTER_UI_ENV = "LEXDPR_DAGSTER_UI"  # e.g. http://127.0.0.1:3000; unset: no link to the Dagster run
DAGSTER_RUN_TAG = "dagster_run_id"
DAGSTER_RUN_URL_TAG = "dagster_run_url"
NOTE_TAG = "mlflow.note.content"  # the run description the MLflow UI renders as markdown
#: LEXDPR_MLFLOW_DB_HOST, _PORT (5432), _USER, _PASSWORD, _NAME: a PostgreSQL backend store built in memory
DB_ENV_PREFIX = "LEXDPR_MLFLOW_DB_"
DB_DRIVER = "postgresql+psycopg"  # psycopg 3 (psycopg[binary], the `postgres` extra)
_log = logging.getLogger(__name__)


def mask_uri(uri: str) -> str:
    """``uri`` with the password of its ``user:password@`` part shown as ``***`` (unchanged without one)."""
    return _with_password(uri, MASK)


def without_password(uri: str) -> str:
    """``uri`` without the password of its ``user:password@`` part (libpq then takes ``PGPASSWORD``)."""
    return _with_password(uri, None)


def _with_password(uri: str, password: str | None) -> str:
    try:
        parts = urlsplit(uri)
        old = parts.password
    except ValueError:
        return uri
    if old is None or "@" not in parts.netloc:
        return uri
    user, host = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0], parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}" if password is not None else f"{user}@{host}"))


def _is_postgres(uri: str) -> bool:
    return uri.split(":", 1)[0].lower().split("+", 1)[0] in ("postgresql", "postgres")


def database_uri(environ: Mapping[str, str]) -> str | None:
    """The PostgreSQL store ``LEXDPR_MLFLOW_DB_*`` describe (None without ``LEXDPR_MLFLOW_DB_HOST``), with the
    password when ``LEXDPR_MLFLOW_DB_PASSWORD`` is set. Raises ``ValueError`` naming what is missing."""
    host = environ.get(f"{DB_ENV_PREFIX}HOST", "").strip()
    if not host:
        return None
    user = environ.get(f"{DB_ENV_PREFIX}USER", "").strip()
    name = environ.get(f"{DB_ENV_PREFIX}NAME", "").strip()
    missing = [f"{DB_ENV_PREFIX}{k}" for k, v in (("USER", user), ("NAME", name)) if not v]
    if missing:
        raise ValueError(f"{DB_ENV_PREFIX}HOST is set: set {' and '.join(missing)} too")
    port = environ.get(f"{DB_ENV_PREFIX}PORT", "").strip() or "5432"
    if not port.isdigit():
        raise ValueError(f"{DB_ENV_PREFIX}PORT must be a number")
    uri = f"{DB_DRIVER}://{quote(user, safe='')}@{host}:{port}/{quote(name, safe='')}"
    return _add_password(uri, environ)


def _add_password(uri: str, environ: Mapping[str, str]) -> str:
    """A PostgreSQL ``uri`` without a password gets ``LEXDPR_MLFLOW_DB_PASSWORD`` (registered as a secret)."""
    password = environ.get(f"{DB_ENV_PREFIX}PASSWORD")
    if not password or not _is_postgres(uri):
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is not None or not parts.username:
        return uri
    register_secret(password)
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def resolve_uri(tracking: TrackingSettings, data_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """Where runs go, creating nothing: ``tracking.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the
    ``LEXDPR_MLFLOW_DB_*`` store, else sqlite under ``data_dir/mlflow``. May hold a password: show :func:`mask_uri`."""
    env = os.environ if environ is None else environ
    uri = tracking.tracking_uri or env.get("MLFLOW_TRACKING_URI") or database_uri(env)
    if not uri:
        return f"sqlite:///{Path(data_dir) / 'mlflow' / 'mlflow.db'}"
    return _add_password(uri, env)


def _artifact_root(uri: str, configured: str | None, data_dir: Path) -> str | None:
    """Where a new experiment's artifacts go: ``configured`` (a folder or a URI such as ``s3://bucket/prefix``), else,
    for a database store, beside a sqlite file or ``data_dir/mlflow/artifacts``; None (the server's choice) for a
    tracking server."""
    if configured:
        return configured.rstrip("/") if "://" in configured else Path(configured).expanduser().resolve().as_uri()
    if uri.startswith("sqlite:///"):
        # Artifacts beside a local sqlite store (MLflow would otherwise use ./mlruns in the working directory).
        return (Path(uri[len("sqlite:///") :]).parent.resolve() / "artifacts").as_uri()
    if "+" in uri.split("://", 1)[0] or _is_postgres(uri) or uri.split(":", 1)[0] in ("mysql", "mssql"):
        return (Path(data_dir).resolve() / "mlflow" / "artifacts").as_uri()
    return None


@dataclass(frozen=True)
class TrackingTarget:
    uri: str  # the connection URI, possibly with a password from the environment: show or store display_uri
    artifact_root: str | None  # new experiments' artifact location (None: the tracking server's)
    experiment: str
    ui_base: str
    dagster_ui: str | None = None  # base URL of the Dagster UI, for links from MLflow runs to Dagster runs

    @property
    def display_uri(self) -> str:
        """The URI with its password masked: for logs, metadata and printed output."""
        return mask_uri(self.uri)

    def __repr__(self) -> str:
        return (
            f"TrackingTarget(uri={self.display_uri!r}, artifact_root={self.artifact_root!r}, "
            f"experiment={self.experiment!r}, ui_base={self.ui_base!r}, dagster_ui={self.dagster_ui!r})"
        )

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def dagster_run_url(self, dagster_run_id: str) -> str | None:
        return f"{self.dagster_ui.rstrip('/')}/runs/{dagster_run_id}" if self.dagster_ui else None


def tracking_target(settings: Settings, environ: Mapping[str, str] | None = None) -> TrackingTarget:
    return target_for(settings.tracking, settings.data_dir, environ)


def target_for(tracking: TrackingSettings, data_dir: Path, environ: Mapping[str, str] | None = None) -> TrackingTarget:
    """Where runs go, from the ``tracking`` section alone (the default sqlite store lives under ``data_dir``)."""
    env = os.environ if environ is None else environ
    uri = resolve_uri(tracking, data_dir, env)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return TrackingTarget(
        uri,
        _artifact_root(uri, tracking.artifact_root, data_dir),
        tracking.experiment,
        env.get(UI_BASE_ENV, "http://127.0.0.1:5000"),
        tracking.dagster_ui or env.get(DAGSTER_UI_ENV) or None,
    )


def dagster_link_tags(target: TrackingTarget, tags: Mapping[str, str]) -> dict[str, str]:
    """``dagster_run_url`` and a description linking to the Dagster run, for tags that name one (``dagster_run_id``)
    when the Dagster UI is known; ``{}`` otherwise. A description given in ``tags`` is kept, the link put first."""
    run_id = tags.get(DAGSTER_RUN_TAG)
    url = target.dagster_run_url(run_id) if run_id else None
    if url is None:
        return {}
    asset = f" (asset `{tags['dagster_asset_key']}`)" if tags.get("dagster_asset_key") else ""
    note = f"Dagster run [{run_id}]({url}){asset}"
    if tags.get(NOTE_TAG):
        note = f"{note}\n\n{tags[NOTE_TAG]}"
    return {DAGSTER_RUN_URL_TAG: url, NOTE_TAG: note}


def _quiet_mlflow() -> None:
    # alembic/mlflow print migrations and an emoji-laden banner at INFO on every new sqlite store.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.store.sql_store"):
        logging.getLogger(name).setLevel(logging.WARNING)


def experiment_id(target: TrackingTarget, name: str | None = None) -> str:
    import mlflow

    _quiet_mlflow()
    mlflow.set_tracking_uri(target.uri)
    name = name or target.experiment
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return mlflow.create_experiment(name, artifact_location=target.artifact_root and f"{target.artifact_root}/{name}")


@dataclass
class RunHandle:
    run_id: str
    experiment_id: str
    url: str


@contextmanager
def start_run(
    target: TrackingTarget,
    *,
    run_name: str,
    tags: Mapping[str, str] | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    experiment: str | None = None,
) -> Iterator[tuple[mlflow.ActiveRun, RunHandle]]:
    """An MLflow run on ``target``; marked FAILED if the body raises (and the error re-raised)."""
    import mlflow

    exp = experiment_id(target, experiment)
    all_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
    all_tags.update(dagster_link_tags(target, all_tags))
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=all_tags, nested=nested) as run:
        yield run, RunHandle(run.info.run_id, exp, target.run_url(exp, run.info.run_id))


def end_run(status: str, tags: Mapping[str, str] | None = None) -> None:
    """End the active run with ``status`` (``FAILED``, ``KILLED`` …), setting ``tags`` first; inside a
    :func:`start_run` block the block's own end is then a no-op."""
    import mlflow

    if tags:
        mlflow.set_tags(dict(tags))
    mlflow.end_run(status)


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts → ``a.b`` keys; values as strings cut to MLflow's 6000-character limit."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    flat = flat_params(params)
    items = list(flat.items())
    for i in range(0, len(items), 90):  # the store takes at most 100 params per batch
        mlflow.log_params(dict(items[i : i + 90]))


def safe_metric_name(name: str) -> str:
    """MLflow allows alphanumerics, ``_ - . space : /``; ``@`` is not among them."""
    return name.replace("@", "_at_")


def log_metrics(metrics: Mapping[str, float], *, step: int | None = None, prefix: str = "") -> None:
    import mlflow

    clean = {safe_metric_name(f"{prefix}{k}"): float(v) for k, v in metrics.items()}
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_artifact_or_path(path: Path, *, max_mb: int, artifact_path: str) -> str:
    """Log a file or folder as an artifact when it is small enough, else only record where it is."""
    import mlflow

    path = Path(path)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    if size <= max_mb * 1024 * 1024:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
        return "artifact"
    mlflow.set_tag(f"{artifact_path}.path", str(path.resolve()))
    mlflow.log_param(f"{artifact_path}.size_mb", round(size / 1024 / 1024, 1))
    return "path"
