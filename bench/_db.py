"""Benchmark databases: a fresh, fully migrated database on the embedded server (or on the
server of PREDICT_BENCH_DATABASE_URL), dropped afterwards."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predict_pipeline.config import Settings
from predict_pipeline.db.connection import connect
from predict_pipeline.db.embedded import start_embedded_server, with_database
from predict_pipeline.db.migrations import upgrade

# PREDICT_BENCH_FULL=1: every bench at its issue's full size (over an hour on 2 cores); the
# default sizes keep `make bench` within 20 minutes and print the same ratios.
FULL = os.environ.get("PREDICT_BENCH_FULL") == "1"


def admin_url() -> str:
    return os.environ.get("PREDICT_BENCH_DATABASE_URL") or start_embedded_server(
        Settings.from_env().state_dir / "bench"
    )


def psql_binary() -> str:
    """The psql of the embedded server's PostgreSQL (same version), else the system one."""
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(bundled) if bundled.exists() else (shutil.which("psql") or "psql")


@contextmanager
def fresh_database() -> Iterator[str]:
    admin = admin_url()
    name = f"pp_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(admin, name)
    try:
        with connect(url, role=None, autocommit=True) as conn:
            upgrade(conn)
            # The benches' users have no subscription: measured without plan limits, as an
            # installation without billing runs (the plan filters still run in every query).
            conn.execute(
                "UPDATE predict_meta.default_plan SET max_events = NULL, max_rules = NULL,"
                " max_campaigns_per_month = NULL, max_feeds = NULL, max_team_members = NULL,"
                " realtime_enabled = true"
            )
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
