"""Rows at chosen ages in a real database, and the retention job bound to it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.db.connection import MAINTENANCE_ROLE, connect
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.retention import (
    RETENTION_ASSETS,
    RetentionResource,
    retention_job,
    retention_run_config,
)
from tests.support.feeds import USER_ID

NOW = datetime.now(UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def months_back(months: int) -> datetime:
    """The first instant of the UTC month `months` before this one."""
    year, month = divmod(NOW.year * 12 + NOW.month - 1 - months, 12)
    return datetime(year, month + 1, 1, tzinfo=UTC)


@pytest.fixture
def maint(db_url) -> Iterator[psycopg.Connection]:
    with connect(db_url, role=MAINTENANCE_ROLE, autocommit=True) as conn:
        yield conn


@pytest.fixture
def world(admin_conn) -> dict[str, uuid.UUID]:
    """A user with a feed, a rule and two events."""
    admin_conn.execute(
        "INSERT INTO auth.users (id, email) VALUES (%s, 'retention@example.com')", (USER_ID,)
    )
    feed = admin_conn.execute(
        """INSERT INTO prediction_data_feeds (source_id, user_id, name)
           SELECT id, %s, 'kalshi feed' FROM prediction_data_sources WHERE source_id = 'kalshi'
           RETURNING id""",
        (USER_ID,),
    ).fetchone()[0]
    rule = admin_conn.execute(
        "INSERT INTO prediction_rules (user_id, name, scope_type, trigger_type)"
        " VALUES (%s, 'watch', 'all', 'TRUST_BELOW') RETURNING id",
        (USER_ID,),
    ).fetchone()[0]
    events = [
        admin_conn.execute(
            "INSERT INTO prediction_events (title, slug, created_by) VALUES (%s, %s, %s)"
            " RETURNING id",
            (f"Event {i}", f"event-{i}-{uuid.uuid4().hex[:6]}", USER_ID),
        ).fetchone()[0]
        for i in range(2)
    ]
    return {"feed": feed, "rule": rule, "event": events[0], "event2": events[1]}


def feed_run(conn, feed_id, created_at: datetime, written: int = 0) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_feed_runs (feed_id, started_at, created_at, status,"
        " signals_written) VALUES (%s, %s, %s, 'SUCCESS', %s) RETURNING id",
        (feed_id, created_at, created_at, written),
    ).fetchone()[0]


def unmatched(conn, feed_id, created_at: datetime, status: str, run_id=None) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_unmatched_signals (feed_id, feed_run_id, source_event_id,"
        " signal_type, value, status, created_at)"
        " VALUES (%s, %s, %s, 'MARKET_PRICE', 0.5, %s, %s) RETURNING id",
        (feed_id, run_id, f"M-{uuid.uuid4().hex[:6]}", status, created_at),
    ).fetchone()[0]


def rule_execution(conn, rule_id, started_at: datetime) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_rule_executions (rule_id, trigger_snapshot, status, started_at)"
        " VALUES (%s, %s, 'COMPLETED', %s) RETURNING id",
        (rule_id, Jsonb({"p": 0.5}), started_at),
    ).fetchone()[0]


def ensure_partitions(conn, start: datetime, end: datetime) -> None:
    conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (start, end)).fetchall()


def snapshot(conn, event_id, at: datetime, *, signals=1, volume=0, probability=0.5):
    return conn.execute(
        "INSERT INTO prediction_snapshots (event_id, snapshot_at, signal_count, volume,"
        " probability) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (event_id, at, signals, volume, probability),
    ).fetchone()[0]


def audit(conn, created_at: datetime, action: str = "test.action") -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_audit_log (actor_type, action, resource_type, details,"
        " actor_ip, created_at) VALUES ('service', %s, 'test', %s, '10.0.0.1', %s)"
        " RETURNING id",
        (action, Jsonb({"n": 1, "text": "é"}), created_at),
    ).fetchone()[0]


@pytest.fixture
def run_retention(db_url, dagster_instance, tmp_path):
    """Run the real retention_job (in process) against the test database."""

    def run(*, dry_run: bool = False, archive_url: str | None = None, **policy):
        defs = dg.Definitions(
            assets=RETENTION_ASSETS,
            jobs=[retention_job],
            resources={
                "database": PostgresResource(url=db_url),
                "retention": RetentionResource(),
            },
        )
        # Run config replaces the resource's whole config: the archive goes in it too.
        config = retention_run_config(
            dry_run=dry_run, archive_url=archive_url or str(tmp_path / "archive"), **policy
        )
        return defs.resolve_job_def("retention_job").execute_in_process(
            run_config=config,
            instance=dagster_instance,
            raise_on_error=False,
        )

    return run


def step_counts(result) -> dict[str, dict[str, int]]:
    """Per retention asset, the integer metadata of its materialisation, or of its observation
    in a dry run (which materialises nothing: each step is exactly one of the two)."""
    counts = {}
    for asset in RETENTION_ASSETS:
        materialised = result.asset_materializations_for_node(asset.op.name)
        observed = result.asset_observations_for_node(asset.op.name)
        [event] = materialised + observed
        counts[asset.op.name] = {
            k: v.value
            for k, v in event.metadata.items()
            if isinstance(v.value, int) and not isinstance(v.value, bool)
        }
    return counts
