"""Test databases on real PostgreSQL servers: the embedded one always, and the server named by
PREDICT_TEST_DATABASE_URL too when it is set (CI sets it), so both PostgreSQL 16 and 15 run.

Each test that asks for `db_url` gets its own database cloned from a migrated template.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.db.embedded import start_embedded_server, with_database
from predict_pipeline.db.migrations import upgrade
from predict_pipeline.http import HttpClient
from predict_pipeline.ingestion.landing import LandingZone
from tests.support.feeds import USER_ID
from tests.support.http_server import ScriptedServer

FIXTURES = PROJECT_ROOT / "fixtures"  # recorded real payloads, shared with the demo
TEST_STATE_DIR = Path(os.environ.get("PREDICT_TEST_STATE_DIR", PROJECT_ROOT / "var" / "test"))
EXTERNAL_URL = os.environ.get("PREDICT_TEST_DATABASE_URL")
SERVERS = ["embedded", *(["external"] if EXTERNAL_URL else [])]


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session", params=SERVERS)
def pg_admin_url(request) -> str:
    """Admin URL of one server under test (the test id says which)."""
    if request.param == "external":
        assert EXTERNAL_URL is not None
        return EXTERNAL_URL
    TEST_STATE_DIR.mkdir(parents=True, exist_ok=True)
    return start_embedded_server(TEST_STATE_DIR)


@pytest.fixture(scope="session")
def template_db(pg_admin_url) -> Iterator[str]:
    """A database migrated once per server; per-test databases are cloned from it."""
    name = f"pp_template_{os.getpid()}"
    with _admin(pg_admin_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_admin_url, name)
    with connect(url, role=None, autocommit=True) as conn:
        upgrade(conn)
        lift_default_plan(conn)
    yield name
    with _admin(pg_admin_url) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def lift_default_plan(conn: psycopg.Connection) -> None:
    """The suite's users have no subscription row: they run as an installation without billing
    would configure it (no limits, realtime). tests/test_plans.py restores the shipped free
    plan (FREE_PLAN) where it tests it."""
    conn.execute(
        "UPDATE predict_meta.default_plan SET tier = 'unbilled', max_events = NULL,"
        " max_rules = NULL, max_campaigns_per_month = NULL, max_feeds = NULL,"
        " max_team_members = NULL, realtime_enabled = true"
    )


@pytest.fixture
def empty_db_url(pg_admin_url) -> Iterator[str]:
    """A fresh, empty database (nothing migrated)."""
    yield from _scratch_database(pg_admin_url, template=None)


@pytest.fixture
def db_url(pg_admin_url, template_db) -> Iterator[str]:
    """A fresh database with the full schema (admin URL; use connect(role=...) to act as a role)."""
    yield from _scratch_database(pg_admin_url, template=template_db)


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url, template_db) -> Iterator[str]:
    """One database with the full schema shared by a module's tests: for tests that prove a
    call changed nothing, or only read."""
    yield from _scratch_database(pg_admin_url, template=template_db)


def _scratch_database(admin_url: str, template: str | None) -> Iterator[str]:
    name = f"pp_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with _admin(admin_url) as admin:
        admin.execute(create)
    try:
        yield with_database(admin_url, name)
    finally:
        with _admin(admin_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def admin_conn(db_url) -> Iterator[psycopg.Connection]:
    """Autocommit connection as the login (owner) role to a fresh migrated database."""
    with connect(db_url, role=None, autocommit=True) as conn:
        yield conn


@pytest.fixture
def dagster_instance(db_url):
    """A Dagster instance whose run/event/schedule storage is the test's Postgres database."""
    import dagster as dg

    from predict_pipeline.db.connection import dagster_storage_url
    from predict_pipeline.defs.storage import storage_config

    overrides = {"storage": storage_config(dagster_storage_url(db_url))}
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


# ---------------------------------------------------------------------------------------
# Feeds, a scripted HTTP server and a landing zone (stages 1 and 2)


@pytest.fixture
def conn(db_url) -> Iterator[psycopg.Connection]:
    """The pipeline's own connection (autocommit, as fetch_window expects)."""
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as pipeline:
        pipeline.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, 'feeds@example.com')", (USER_ID,)
        )
        yield pipeline


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps) -> Iterator[HttpClient]:
    """Fast retries (recorded sleeps), short read timeout, loopback allowed for the server."""
    with HttpClient(
        timeout=(1.0, 0.5),
        max_retries=2,
        allow_private_hosts=("127.0.0.1",),
        sleep=sleeps.append,
        rng=lambda: 0.5,
    ) as http:
        yield http


@pytest.fixture
def landing(tmp_path) -> LandingZone:
    return LandingZone(str(tmp_path / "landing"))
