"""Where the database is, and connections to it that fail fast with a useful message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from predict_pipeline.config import DAGSTER_DATABASE_URL_VAR, DATABASE_URL_VAR, Settings
from predict_pipeline.db import embedded
from predict_pipeline.db.rows import one_row

PIPELINE_ROLE = "predict_pipeline"
MAINTENANCE_ROLE = "predict_maintenance"
APP_ROLE = "predict_app"
CONNECT_TIMEOUT_S = 10


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be used; the message names the variable and the host."""


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    app_url: str  # libpq URL of the application database
    dagster_url: str  # SQLAlchemy URL for dagster-postgres (psycopg2 dialect, see NOTES)
    embedded: bool


def resolve_database(settings: Settings | None = None) -> DatabaseTarget:
    """A configured URL always wins; otherwise start the embedded server under the project."""
    settings = settings or Settings.from_env()
    if settings.database_url:
        describe_target(settings.database_url, DATABASE_URL_VAR)  # refuse malformed URLs now
        dagster_url = settings.dagster_database_url or settings.database_url
        describe_target(dagster_url, DAGSTER_DATABASE_URL_VAR)
        return DatabaseTarget(settings.database_url, dagster_storage_url(dagster_url), False)
    admin_url = embedded.start_embedded_server(settings.state_dir)
    return DatabaseTarget(
        app_url=embedded.with_database(admin_url, embedded.APP_DATABASE),
        dagster_url=dagster_storage_url(
            embedded.with_database(admin_url, embedded.DAGSTER_DATABASE)
        ),
        embedded=True,
    )


def dagster_storage_url(url: str) -> str:
    """SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3, which breaks Dagster's NOTIFY."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DatabaseUnavailable(f"not a PostgreSQL URL: {redact_url(url)}")
    return f"postgresql+psycopg2://{rest}"


def describe_target(url: str, var_name: str = DATABASE_URL_VAR) -> str:
    """'host:port/dbname' of a URL, for messages; raises DatabaseUnavailable if malformed."""
    try:
        if not url.startswith(("postgresql://", "postgres://")):
            raise psycopg.ProgrammingError("the scheme must be postgresql://")
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnavailable(
            f"{var_name} is not a valid PostgreSQL URL ({redact_url(url)}): {exc}"
        ) from None
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def redact_url(url: str) -> str:
    """Hide a password in a URL before it reaches a message or a log."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def connect(
    url: str,
    *,
    role: str | None = PIPELINE_ROLE,
    autocommit: bool = False,
    var_name: str = DATABASE_URL_VAR,
) -> psycopg.Connection:
    """Open a connection in UTC, acting as `role` (the pipeline's own role by default)."""
    target = describe_target(url, var_name)
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnavailable(f"{var_name}: cannot connect to {target}: {reason}") from None
    try:
        _act_as(conn, role)
    except psycopg.Error as exc:
        conn.close()
        raise DatabaseUnavailable(
            f"{var_name}: connected to {target} but cannot act as role {role!r} "
            f"(run `predict-pipeline db upgrade` first?): {str(exc).strip()}"
        ) from None
    conn.autocommit = autocommit
    return conn


def connection_pool(
    url: str,
    *,
    max_size: int,
    timeout: float,
    role: str | None = PIPELINE_ROLE,
    var_name: str = DATABASE_URL_VAR,
) -> ConnectionPool:
    """A bounded pool of autocommit connections set up as `connect` sets one up (UTC, `role`).

    Closed until the caller opens it; a caller waiting more than `timeout` seconds for a
    connection gets psycopg_pool.PoolTimeout. Each connection is checked as it is handed out,
    so one dropped by a database restart is replaced instead of failing a request.
    """
    describe_target(url, var_name)  # refuse a malformed URL now
    return ConnectionPool(
        url,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
        min_size=1,
        max_size=max_size,
        timeout=timeout,
        open=False,
        configure=lambda conn: _act_as(conn, role),
        check=ConnectionPool.check_connection,
        num_workers=1,
    )


def _act_as(conn: psycopg.Connection, role: str | None) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    if role is not None:
        current = conn.execute("SELECT current_user").fetchone()
        if current is None or current[0] != role:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


@contextmanager
def local_setting(conn: psycopg.Connection, name: str, value: str) -> Iterator[None]:
    """A server setting for the statements inside, then the caller's value again (the caller
    owns the transaction, so SET LOCAL alone would outlive the block). Inside a transaction."""
    before = one_row(conn.execute("SELECT current_setting(%s)", (name,)))[0]
    conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    try:
        yield
    finally:
        # A failed transaction takes no statement; its rollback restores the setting anyway.
        if conn.info.transaction_status != TransactionStatus.INERROR:
            conn.execute("SELECT set_config(%s, %s, true)", (name, before))
