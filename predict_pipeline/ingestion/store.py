"""Feeds in Postgres: what the fetch stage reads of them, their cursors, schedules, quotas and
states (enable, disable, pause, resume). Their runs are written by ingestion/runs.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from croniter import croniter
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.plans import plan_limits

FAILURE_STATUSES = ("FAILED", "TIMEOUT", "RATE_LIMITED", "AUTH_FAILED")
# A fetch that is no fault of the feed (replay mode without a recording): never a failure.
SKIPPED = "SKIPPED"
# An auto-disabled feed's breaker is half-open after this cool-off: one probe poll re-enables
# it on success; each failed probe doubles the cool-off, up to BREAKER_MAX_COOL_OFF.
BREAKER_COOL_OFF = timedelta(hours=1)
BREAKER_MAX_COOL_OFF = timedelta(hours=24)
# Sources whose status keeps their feeds from being fetched (or pushed to), and from new feeds.
CLOSED_SOURCE_STATUSES = ("DISABLED",)


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
    source_status: str = "ACTIVE"  # prediction_data_sources.status
    rate_limit_rpd: int | None = None
    paused_at: datetime | None = None
    auto_disabled_at: datetime | None = None
    breaker_probe_at: datetime | None = None
    breaker_failed_probes: int = 0
    auth_status: str | None = None

    @property
    def probing(self) -> bool:
        """Auto-disabled and due a half-open probe (its breaker is not closed by hand)."""
        return not self.enabled and self.breaker_probe_at is not None

    def effective_config(self) -> dict[str, Any]:
        """The source's defaults overlaid with the feed's own configuration."""
        return {**(self.default_config or {}), **(self.config or {})}


_FEED_COLUMNS = """
    f.id, f.name, f.user_id, s.source_id AS source, s.adapter_type, f.config, s.config_schema,
    s.default_config, f.credentials_encrypted, f.poll_interval_minutes, f.cron_expression,
    f.next_run_at, f.enabled, f.consecutive_failures, s.supports_pull, s.supports_backfill,
    s.rate_limit_rpm, fs.cursor, f.default_signal_type, f.default_weight::float8 AS default_weight,
    f.event_mapping_mode, f.manual_event_mappings, coalesce(s.status, 'ACTIVE') AS source_status,
    s.rate_limit_rpd, f.paused_at, f.auto_disabled_at, f.breaker_probe_at,
    f.breaker_failed_probes, f.auth_status
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
    probes: bool = False,
    with_paused: bool = False,
) -> list[Feed]:
    """Feeds that may be fetched: enabled, not paused (unless `with_paused`: a pause stops
    polling, not a history asked for), of a source that is not DISABLED; the named ones, or
    those due before a time (pollable sources only: push-only feeds are never polled), or all
    (ordered by name). With `probes`, the auto-disabled feeds instead (their breaker open), and
    `due_before` selects those whose half-open probe is due."""
    conditions = [
        "NOT f.enabled AND f.breaker_probe_at IS NOT NULL" if probes else "f.enabled",
        "TRUE" if with_paused else "f.paused_at IS NULL",
        "coalesce(s.status, 'ACTIVE') <> ALL(%s)",
    ]
    params: list[Any] = [list(CLOSED_SOURCE_STATUSES)]
    if feed_ids is not None:
        conditions.append("f.id = ANY(%s)")
        params.append(list(feed_ids))
    if due_before is not None:
        conditions.append("s.supports_pull")
        due_at = "f.breaker_probe_at" if probes else "f.next_run_at"
        conditions.append(f"({due_at} IS NULL OR {due_at} <= %s)")
        params.append(due_before)
    if backfill_only:
        conditions.append("s.supports_backfill")
    query = f"SELECT {_FEED_COLUMNS} {_FEED_FROM} WHERE {' AND '.join(conditions)} ORDER BY f.name"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [Feed(**row) for row in rows]


def claim_probe(conn: psycopg.Connection, feed: Feed, now: datetime) -> datetime:
    """A probe is launched: its next one waits a full cool-off, so a probe run that never
    finishes does not keep the feed's breaker from being tried again."""
    probe_at = now + breaker_cool_off(feed.breaker_failed_probes)
    conn.execute(
        "UPDATE prediction_data_feeds SET breaker_probe_at = %s, updated_at = now() WHERE id = %s",
        (probe_at, feed.id),
    )
    return probe_at


def requests_left_today(
    conn: psycopg.Connection, sources: list[str], now: datetime
) -> dict[str, int]:
    """Requests each of these sources may still send (rate_limit_rpd less what its feeds' live
    runs sent over the 24 hours before `now`); sources without a daily limit are left out."""
    rows = conn.execute(
        """SELECT s.source_id, s.rate_limit_rpd - coalesce(sum(r.request_count), 0)::int
           FROM prediction_data_sources s
           LEFT JOIN prediction_data_feeds f ON f.source_id = s.id
           LEFT JOIN prediction_feed_runs r ON r.feed_id = f.id
             AND r.started_at > %s AND r.started_at <= %s
             AND r.error_details->>'quota' IS DISTINCT FROM 'false'
           WHERE s.source_id = ANY(%s) AND s.rate_limit_rpd IS NOT NULL
           GROUP BY s.source_id, s.rate_limit_rpd""",
        (now - timedelta(days=1), now, sources),
    ).fetchall()
    return {source: max(0, left) for source, left in rows}


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
    checked by the database for every path); FeedStateError for a DEPRECATED or DISABLED
    source (its existing feeds go on, or stop, but it takes no new ones)."""
    with plan_limits(), conn.transaction():
        source = conn.execute(
            "SELECT source_id, coalesce(status, 'ACTIVE') FROM prediction_data_sources"
            " WHERE id = %s",
            (source_id,),
        ).fetchone()
        if source is not None and source[1] != "ACTIVE":
            raise FeedStateError(f"source {source[0]} is {source[1]}: it takes no new feeds")
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


def breaker_cool_off(failed_probes: int) -> timedelta:
    """How long an auto-disabled feed waits before its next probe, after this many failed ones."""
    return min(BREAKER_COOL_OFF * 2 ** min(failed_probes, 16), BREAKER_MAX_COOL_OFF)


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


# What `feeds enable|disable|pause|resume` do to a feed, and the audit action of each.
FEED_ACTIONS = {
    "enable": "feed.enabled",
    "disable": "feed.disabled",
    "pause": "feed.paused",
    "resume": "feed.resumed",
}


class FeedStateError(ValueError):
    """A feed that cannot be found (for this user) or cannot take the change."""


@dataclass(frozen=True, slots=True)
class FeedStateChange:
    feed_id: uuid.UUID
    name: str
    action: str
    changed: bool  # False: the feed was already so (nothing written, nothing audited)
    enabled: bool
    paused: bool
    next_run_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "feed_id": str(self.feed_id),
            "name": self.name,
            "action": self.action,
            "changed": self.changed,
            "enabled": self.enabled,
            "paused": self.paused,
            "next_run_at": self.next_run_at.isoformat() if self.next_run_at else None,
        }


def change_feed_state(
    conn: psycopg.Connection,
    feed_id: uuid.UUID,
    action: str,
    *,
    now: datetime,
    owner: uuid.UUID | None = None,
) -> FeedStateChange:
    """Enable (closing its breaker: counters reset, due now), disable (by hand: never probed),
    pause (kept as is, not polled) or resume (due now) a feed, audited; with `owner`, only a
    feed of that user's. Doing what is already so changes nothing."""
    if action not in FEED_ACTIONS:
        raise FeedStateError(f"unknown action {action!r}")
    with conn.transaction():
        row = conn.execute(
            """SELECT f.name, f.enabled, f.paused_at, f.user_id, coalesce(s.status, 'ACTIVE'),
                      s.source_id, s.supports_pull, f.auto_disabled_at, f.consecutive_failures
               FROM prediction_data_feeds f JOIN prediction_data_sources s ON s.id = f.source_id
               WHERE f.id = %s FOR UPDATE OF f""",
            (feed_id,),
        ).fetchone()
        if row is None or (owner is not None and row[3] != owner):
            whose = "" if owner is None else " of this user"
            raise FeedStateError(f"no feed {feed_id}{whose}")
        name, enabled, paused_at, user_id, source_status, source, pull, auto_at, failures = row
        if action == "enable" and not enabled and source_status in CLOSED_SOURCE_STATUSES:
            raise FeedStateError(f"source {source} is {source_status}: its feeds stay disabled")
        due = now if pull else None
        if action == "enable":
            changed = not enabled
            sql = """UPDATE prediction_data_feeds SET enabled = true, auto_disabled_at = NULL,
                       breaker_probe_at = NULL, breaker_failed_probes = 0,
                       consecutive_failures = 0, next_run_at = %(due)s, updated_at = now()
                     WHERE id = %(id)s"""
            before, after = {"enabled": False}, {"enabled": True}
        elif action == "disable":
            changed = enabled
            sql = """UPDATE prediction_data_feeds SET enabled = false, auto_disabled_at = NULL,
                       breaker_probe_at = NULL, breaker_failed_probes = 0, updated_at = now()
                     WHERE id = %(id)s"""
            before, after = {"enabled": True}, {"enabled": False}
        elif action == "pause":
            changed = paused_at is None
            sql = """UPDATE prediction_data_feeds SET paused_at = %(now)s, updated_at = now()
                     WHERE id = %(id)s"""
            before, after = {"paused": False}, {"paused": True}
        else:
            changed = paused_at is not None
            sql = """UPDATE prediction_data_feeds SET paused_at = NULL,
                       next_run_at = CASE WHEN enabled THEN %(due)s ELSE next_run_at END,
                       updated_at = now()
                     WHERE id = %(id)s"""
            before, after = {"paused": True}, {"paused": False}
        if changed:
            conn.execute(sql, {"id": feed_id, "now": now, "due": due})
            record_audit(
                conn,
                action=FEED_ACTIONS[action],
                resource_type="prediction_data_feeds",
                resource_id=feed_id,
                actor_type="user" if owner is not None else "service",
                actor_id=owner,
                details={
                    "feed_name": name,
                    "source": source,
                    "owner": str(user_id),
                    **({"was_auto_disabled_at": auto_at.isoformat()} if auto_at else {}),
                    **({"consecutive_failures": failures} if action == "enable" else {}),
                },
                previous_state=before,
                new_state=after,
            )
        state = conn.execute(
            "SELECT enabled, paused_at IS NOT NULL, next_run_at FROM prediction_data_feeds"
            " WHERE id = %s",
            (feed_id,),
        ).fetchone()
    assert state is not None
    return FeedStateChange(feed_id, name, action, changed, state[0], state[1], state[2])
