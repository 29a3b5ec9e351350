"""The embedded default: PostgreSQL 16 from the `pgserver` wheel, data under the project."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

APP_DATABASE = "predict"
DAGSTER_DATABASE = "dagster"


def start_embedded_server(state_dir: Path) -> str:
    """Start (or reuse) the embedded server and return its admin URL (unix socket).

    The server is left running for other processes (cleanup_mode=None): step processes and
    the Dagster daemon reuse it through the URL the launcher puts in the environment.
    """
    with warnings.catch_warnings():
        # platformdirs warns about a missing XDG_RUNTIME_DIR; pgserver does not need it.
        warnings.simplefilter("ignore")
        # Imported here: starting a server is never an import-time side effect.
        from pgserver.postgres_server import get_server

    pgdata = state_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Two launchers starting the same data directory at once would race in initdb.
    with open(state_dir / ".pgserver.lock", "w") as lock, _flock(lock):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = get_server(pgdata, cleanup_mode=None)
        admin_url = server.get_uri()
        for name in (APP_DATABASE, DAGSTER_DATABASE):
            create_database_if_missing(admin_url, name)
    return admin_url


def create_database_if_missing(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (keeps host, socket dir, options)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def _flock(handle):
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def stop_embedded_server(state_dir: Path, timeout_s: float = 30.0) -> bool:
    """Fast-shutdown the embedded server of `state_dir`; False when none was running."""
    pid_file = state_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)  # SIGINT = PostgreSQL's "fast" shutdown
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    raise TimeoutError(f"embedded PostgreSQL (pid {pid}) did not stop within {timeout_s:.0f} s")
