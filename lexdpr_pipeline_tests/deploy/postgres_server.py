"""A throw-away PostgreSQL cluster for tests: ``initdb`` into a temp folder, ``pg_ctl start`` on a free 127.0.0.1 port.

initdb and postgres refuse to run as root (as CI is): then both run as the ``postgres`` OS user (Debian's package
creates it) through ``runuser``, in a folder that user owns. :func:`start` returns a reason string instead of a server
when the binaries or that user are missing, for the caller's ``pytest.skip``; a cluster that is there but does not
start is an error.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: The superuser the cluster is created with (password authentication over TCP, like a real server).
SUPERUSER = "lexdpr"
START_TIMEOUT_S = 120  # only a hang reaches it
INSTALL_HINT = "apt-get install postgresql (as root; .ci/run does it when apt is available)"


def find_bin_dir() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``: on PATH, else Debian's newest
    ``/usr/lib/postgresql/<major>/bin``."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0)
    )
    candidates += reversed(versions)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path  # data/, the socket, the log
    port: int
    password: str
    run_as: str | None  # the OS user running the cluster (None: this process's own)
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    def conninfo(self, db: str = "postgres") -> str:
        """A libpq connection string (psycopg.connect); keep it out of logs: it holds the password."""
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={db}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        _run(
            self, [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"], check=False
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        log = self.root / "postgres.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _run(server: PostgresServer, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["runuser", "-u", server.run_as, "--", *args] if server.run_as else args
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=server.root, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{server.log_tail()}")
    return proc


def start() -> PostgresServer | str:
    """A running cluster, or why there cannot be one here (for ``pytest.skip``)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return f"no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql: {INSTALL_HINT}"
    run_as = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            return f"running as root and there is no `postgres` OS user to run initdb/postgres as: {INSTALL_HINT}"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` (util-linux) is missing: cannot start postgres as the postgres user"
        run_as = owner.pw_name
    # /tmp, not $TMPDIR, when postgres runs as another user: it must be able to reach the folder
    root = Path(tempfile.mkdtemp(prefix="lexdpr-pg-", dir="/tmp" if run_as and Path("/tmp").is_dir() else None))
    server = PostgresServer(bin_dir, root, _free_port(), "pw-" + secrets.token_hex(8), run_as)
    if run_as:
        owner = pwd.getpwnam(run_as)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    pwfile = root / "pwfile"
    pwfile.write_text(server.password + "\n")
    pwfile.chmod(0o600)
    if run_as:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    try:
        _run(
            server,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )
        pwfile.unlink()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        _run(
            server,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-l",
                str(root / "postgres.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
        )
    except BaseException:
        server.stop()
        raise
    return server
