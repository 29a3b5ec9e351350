"""Feeds, feed runs and feed health in Postgres: what the fetch stage reads and writes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from croniter import croniter
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.plans import plan_limits

FAILURE_STATUSES = ("FAILED", "TIMEOUT", "RATE_LIMITED", "AUTH_FAILED")
# avg_latency_ms is the mean duration of the feed's last N completed runs.
LATENCY_RUNS = 20
# A feed run still RUNNING this long after it started has lost its process (a fetch is
# bounded by its pages and each request's deadline; a push lands in seconds): the
# run-monitoring sweep closes it as FAILED. A run that does finish later overwrites that.
STALE_RUN_AFTER = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class Feed:
    id: uuid.UUID
    name: str
    user_id: uuid.UUID
    source: str  # prediction_data_sources.source_id, e.g. "kalshi"
    adapter_type: str
    config: dict[str, Any]
    config_schema: dict[str, Any] | None
    default_config: dict[str, Any] | None
    credentials_encrypted: dict[str, Any] | None
    poll_interval_minutes: int | None
    cron_expression: str | None
    next_run_at: datetime | None
    enabled: bool
    consecutive_failures: int
    supports_pull: bool
    supports_backfill: bool
    rate_limit_rpm: int | None
    cursor: str | None
    default_signal_type: str | None = None
    default_weight: float | None = None
    event_mapping_mode: str | None = None
    manual_event_mappings: dict[str, Any] | None = None

    def effective_config(self) -> dict[str, Any]:
        """The source's defaults overlaid with the feed's own configuration."""
        return {**(self.default_config or {}), **(self.config or {})}


_FEED_COLUMNS = """
    f.id, f.name, f.user_id, s.source_id AS source, s.adapter_type, f.config, s.config_schema,
    s.default_config, f.credentials_encrypted, f.poll_interval_minutes, f.cron_expression,
    f.next_run_at, f.enabled, f.consecutive_failures, s.supports_pull, s.supports_backfill,
    s.rate_limit_rpm, fs.cursor, f.default_signal_type, f.default_weight::float8 AS default_weight,
    f.event_mapping_mode, f.manual_event_mappings
"""
_FEED_FROM = """
    FROM prediction_data_feeds f
    JOIN prediction_data_sources s ON s.id = f.source_id
    LEFT JOIN predict_meta.feed_state fs ON fs.feed_id = f.id
"""


def load_feeds(
    conn: psycopg.Connection,
    *,
    feed_ids: list[uuid.UUID] | None = None,
    due_before: datetime | None = None,
    backfill_only: bool = False,
) -> list[Feed]:
    """Enabled feeds: the named ones, or those due before a time, or all (ordered by name)."""
    conditions = ["f.enabled"]
    params: list[Any] = []
    if feed_ids is not None:
        conditions.append("f.id = ANY(%s)")
        params.append(list(feed_ids))
    if due_before is not None:
        conditions.append("(f.next_run_at IS NULL OR f.next_run_at <= %s)")
        params.append(due_before)
    if backfill_only:
        conditions.append("s.supports_backfill")
    query = f"SELECT {_FEED_COLUMNS} {_FEED_FROM} WHERE {' AND '.join(conditions)} ORDER BY f.name"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [Feed(**row) for row in rows]


def create_feed(
    conn: psycopg.Connection,
    *,
    feed_id: uuid.UUID,
    source_id: uuid.UUID,
    user_id: uuid.UUID,
    name: str,
    config: dict[str, Any],
    poll_interval_minutes: int | None = None,
    cron_expression: str | None = None,
    credentials_encrypted: dict[str, Any] | None = None,
    event_mapping_mode: str | None = None,
) -> uuid.UUID:
    """Insert a feed; PlanLimitError when its owner's plan has no room for another (max_feeds,
    checked by the database for every path)."""
    with plan_limits(), conn.transaction():
        conn.execute(
            """INSERT INTO prediction_data_feeds
                 (id, source_id, user_id, name, config, poll_interval_minutes, cron_expression,
                  credentials_encrypted, event_mapping_mode)
               VALUES (%s, %s, %s, %s, %s, coalesce(%s, 15), %s, %s, coalesce(%s, 'auto'))""",
            (
                feed_id,
                source_id,
                user_id,
                name,
                Jsonb(config),
                poll_interval_minutes,
                cron_expression,
                Jsonb(credentials_encrypted) if credentials_encrypted else None,
                event_mapping_mode,
            ),
        )
    return feed_id


def load_feed(conn: psycopg.Connection, feed_id: uuid.UUID) -> Feed | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_FEED_COLUMNS} {_FEED_FROM} WHERE f.id = %s",
            (feed_id,),
        ).fetchone()
    return Feed(**row) if row else None


def start_feed_run(conn: psycopg.Connection, feed_id: uuid.UUID, started_at: datetime) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO prediction_feed_runs (feed_id, started_at, status)"
        " VALUES (%s, %s, 'RUNNING') RETURNING id",
        (feed_id, started_at),
    ).fetchone()
    assert row is not None
    return row[0]


@dataclass(slots=True)
class FeedRunResult:
    """What one fetch of one feed did, as recorded in prediction_feed_runs."""

    status: str
    started_at: datetime
    completed_at: datetime
    request_count: int = 0
    bytes_received: int = 0
    rate_limit_remaining: int | None = None
    signals_fetched: int = 0
    error_message: str | None = None
    error_details: dict[str, Any] = field(default_factory=dict)
    cursor: str | None = None

    @property
    def duration_ms(self) -> int:
        return int((self.completed_at - self.started_at).total_seconds() * 1000)

    @property
    def failed(self) -> bool:
        return self.status in FAILURE_STATUSES


@dataclass(frozen=True, slots=True)
class FeedHealth:
    consecutive_failures: int
    auto_disabled: bool


def finish_feed_run(
    conn: psycopg.Connection,
    feed: Feed,
    run_id: uuid.UUID,
    result: FeedRunResult,
    *,
    disable_after_failures: int,
) -> FeedHealth:
    """Close the run and keep the feed's health current; auto-disable (audited) past the limit."""
    conn.execute(
        """UPDATE prediction_feed_runs
           SET completed_at = %s, duration_ms = %s, status = %s, signals_fetched = %s,
               request_count = %s, bytes_received = %s, rate_limit_remaining = %s,
               error_message = %s, error_details = %s
           WHERE id = %s""",
        (
            result.completed_at,
            result.duration_ms,
            result.status,
            result.signals_fetched,
            result.request_count,
            result.bytes_received,
            result.rate_limit_remaining,
            result.error_message,
            Jsonb(result.error_details) if result.error_details else None,
            run_id,
        ),
    )
    row = conn.execute(
        """UPDATE prediction_data_feeds f
           SET last_successful_run = CASE WHEN %(failed)s THEN f.last_successful_run
                                          ELSE %(completed_at)s END,
               last_error = %(error)s,
               consecutive_failures = CASE WHEN %(failed)s THEN f.consecutive_failures + 1
                                           ELSE 0 END,
               avg_latency_ms = (
                 SELECT round(avg(r.duration_ms))::int FROM (
                   SELECT duration_ms FROM prediction_feed_runs
                   WHERE feed_id = f.id AND duration_ms IS NOT NULL
                   ORDER BY started_at DESC LIMIT %(latency_runs)s) r),
               updated_at = now()
           WHERE f.id = %(feed_id)s
           RETURNING f.consecutive_failures, f.enabled""",
        {
            "failed": result.failed,
            "completed_at": result.completed_at,
            "error": result.error_message,
            "latency_runs": LATENCY_RUNS,
            "feed_id": feed.id,
        },
    ).fetchone()
    assert row is not None
    failures, enabled = row
    if result.cursor is not None and not result.failed:
        save_cursor(conn, feed.id, result.cursor)
    disabled = bool(enabled and failures >= disable_after_failures)
    if disabled:
        conn.execute(
            "UPDATE prediction_data_feeds SET enabled = false, auto_disabled_at = %s,"
            " updated_at = now() WHERE id = %s",
            (result.completed_at, feed.id),
        )
        record_audit(
            conn,
            action="feed.auto_disabled",
            resource_type="prediction_data_feeds",
            resource_id=feed.id,
            severity="WARNING",
            actor_type="system",
            details={
                "feed_name": feed.name,
                "source": feed.source,
                "consecutive_failures": failures,
                "threshold": disable_after_failures,
                "last_status": result.status,
                "last_error": result.error_message,
                "feed_run_id": str(run_id),
            },
            previous_state={"enabled": True},
            new_state={"enabled": False},
        )
    return FeedHealth(consecutive_failures=failures, auto_disabled=disabled)


def close_stale_runs(
    conn: psycopg.Connection, now: datetime, older_than: timedelta = STALE_RUN_AFTER
) -> list[uuid.UUID]:
    """Close the runs left RUNNING past `older_than` as FAILED with the reason (their feeds'
    last_error says it too); returns their ids."""
    reason = (
        f"left RUNNING for over {older_than}: closed by the run-monitoring sweep (the process "
        "running it stopped before it could finish)"
    )
    rows = conn.execute(
        """WITH closed AS (
             UPDATE prediction_feed_runs SET status = 'FAILED', completed_at = %(now)s,
               duration_ms = least(extract(epoch FROM %(now)s - started_at) * 1000,
                                   2147483647)::int,
               error_message = %(reason)s,
               error_details = coalesce(error_details, '{}'::jsonb)
                 || jsonb_build_object('closed_by', 'run_monitoring', 'closed_at', %(now)s)
             WHERE status = 'RUNNING' AND started_at < %(cutoff)s
             RETURNING id, feed_id),
           feeds AS (
             UPDATE prediction_data_feeds SET last_error = %(reason)s, updated_at = now()
             WHERE id IN (SELECT feed_id FROM closed))
           SELECT id FROM closed""",
        {"now": now, "cutoff": now - older_than, "reason": reason},
    ).fetchall()
    return [row[0] for row in rows]


def save_cursor(conn: psycopg.Connection, feed_id: uuid.UUID, cursor: str) -> None:
    conn.execute(
        """INSERT INTO predict_meta.feed_state (feed_id, cursor, updated_at)
           VALUES (%s, %s, now())
           ON CONFLICT (feed_id) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()""",
        (feed_id, cursor),
    )


def next_run_after(feed: Feed, now: datetime) -> datetime:
    """The next due time: the cron expression when set, else the poll interval (UTC)."""
    if feed.cron_expression:
        return croniter(feed.cron_expression, now).get_next(datetime)
    return now + timedelta(minutes=feed.poll_interval_minutes or 15)


def advance_next_run(conn: psycopg.Connection, feed: Feed, now: datetime) -> datetime:
    due = next_run_after(feed, now)
    conn.execute(
        "UPDATE prediction_data_feeds SET next_run_at = %s, updated_at = now() WHERE id = %s",
        (due, feed.id),
    )
    return due
