"""Feed runs, written here and nowhere else: a run started, a run finished (with its landing
record, the feed's health, breaker and auth state that follow), and runs that lost their
process closed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.ingestion.store import (
    FAILURE_STATUSES,
    SKIPPED,
    Feed,
    breaker_cool_off,
    save_cursor,
)
from predict_pipeline.model import FetchWindow

# avg_latency_ms is the mean duration of the feed's last N completed runs.
LATENCY_RUNS = 20
# A feed run still RUNNING this long after it started has lost its process (a fetch is
# bounded by its pages and each request's deadline; a push lands in seconds): the
# run-monitoring sweep closes it as FAILED. A run that does finish later overwrites that.
STALE_RUN_AFTER = timedelta(hours=2)


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
    # What the fetch says of itself: errors, mode, page counts (not the landing record).
    error_details: dict[str, Any] = field(default_factory=dict)
    cursor: str | None = None
    # The landing record (prediction_feed_run_landings): the window fetched (a push: the hour
    # it landed in) and the file its pages landed in, if any.
    window: FetchWindow | None = None
    landing_file: str | None = None

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
    re_enabled: bool = False  # a half-open probe succeeded


def auth_state(result: FeedRunResult) -> str | None:
    """The auth_status a run tells of: EXPIRED when the source said the credentials expired,
    INVALID for any other 401/403, ACTIVE when requests were answered, else None (unknown)."""
    if result.status == "AUTH_FAILED":
        errors = result.error_details.get("errors") or []
        expired = any(e.get("auth_expired") for e in errors if isinstance(e, dict))
        return "EXPIRED" if expired else "INVALID"
    if result.status in ("SUCCESS", "PARTIAL"):
        return "ACTIVE"
    return None


def finish_feed_run(
    conn: psycopg.Connection,
    feed: Feed,
    run_id: uuid.UUID,
    result: FeedRunResult,
    *,
    disable_after_failures: int,
    counts_toward_health: bool = True,
) -> FeedHealth:
    """Close the run and keep the feed's health current; auto-disable (audited) past the limit,
    and close the breaker of an auto-disabled feed whose probe succeeded (audited).

    A run that does not count toward health (a backfill: history is not the live feed; a
    SKIPPED fetch) leaves consecutive_failures, last_error and the breaker alone; what it says
    of the credentials (auth_status) still holds."""
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
    if result.window is not None:
        record_landing(conn, feed.id, run_id, result.window, result.landing_file)
    if feed.supports_pull:  # a push's refusal is the sender's signature, not our credentials
        _record_auth(conn, feed, auth_state(result), result.completed_at)
    counts = counts_toward_health and result.status != SKIPPED
    if not counts:
        row = conn.execute(
            "SELECT consecutive_failures FROM prediction_data_feeds WHERE id = %s", (feed.id,)
        ).fetchone()
        return FeedHealth(consecutive_failures=row[0] if row else 0, auto_disabled=False)
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
           RETURNING f.consecutive_failures, f.enabled, f.breaker_probe_at IS NOT NULL,
                     f.breaker_failed_probes""",
        {
            "failed": result.failed,
            "completed_at": result.completed_at,
            "error": result.error_message,
            "latency_runs": LATENCY_RUNS,
            "feed_id": feed.id,
        },
    ).fetchone()
    assert row is not None
    failures, enabled, breaker_open, failed_probes = row
    if result.cursor is not None and not result.failed:
        save_cursor(conn, feed.id, result.cursor)
    if not enabled and breaker_open:
        return _probed(conn, feed, run_id, result, failures, failed_probes)
    disabled = bool(enabled and failures >= disable_after_failures)
    if disabled:
        probe_at = result.completed_at + breaker_cool_off(0)
        conn.execute(
            "UPDATE prediction_data_feeds SET enabled = false, auto_disabled_at = %s,"
            " breaker_probe_at = %s, breaker_failed_probes = 0, updated_at = now() WHERE id = %s",
            (result.completed_at, probe_at, feed.id),
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
                "probe_at": probe_at.isoformat(),
            },
            previous_state={"enabled": True},
            new_state={"enabled": False},
        )
    return FeedHealth(consecutive_failures=failures, auto_disabled=disabled)


def record_landing(
    conn: psycopg.Connection,
    feed_id: uuid.UUID,
    run_id: uuid.UUID,
    window: FetchWindow,
    landing_file: str | None,
) -> None:
    """Stage 1's side of the landing record: what the run landed, for stage 2 to validate
    (PENDING until it does). A run is closed once; writing its record again changes nothing."""
    conn.execute(
        """INSERT INTO prediction_feed_run_landings
             (feed_run_id, feed_id, window_start, window_end, landing_file, validation_status)
           VALUES (%s, %s, %s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE 'PENDING' END)
           ON CONFLICT (feed_run_id) DO NOTHING""",
        (run_id, feed_id, window.start, window.end, landing_file, landing_file),
    )


def _probed(
    conn: psycopg.Connection,
    feed: Feed,
    run_id: uuid.UUID,
    result: FeedRunResult,
    failures: int,
    failed_probes: int,
) -> FeedHealth:
    """The half-open probe of an auto-disabled feed: success closes the breaker (the feed is
    enabled again, its counters reset); failure keeps it open and doubles the cool-off."""
    if result.failed:
        probe_at = result.completed_at + breaker_cool_off(failed_probes + 1)
        conn.execute(
            "UPDATE prediction_data_feeds SET breaker_probe_at = %s,"
            " breaker_failed_probes = breaker_failed_probes + 1, updated_at = now() WHERE id = %s",
            (probe_at, feed.id),
        )
        action = "feed.probe_failed"
        new_state = {"enabled": False, "probe_at": probe_at.isoformat()}
    else:
        conn.execute(
            "UPDATE prediction_data_feeds SET enabled = true, auto_disabled_at = NULL,"
            " breaker_probe_at = NULL, breaker_failed_probes = 0, consecutive_failures = 0,"
            " updated_at = now() WHERE id = %s",
            (feed.id,),
        )
        action, new_state = "feed.re_enabled", {"enabled": True}
    record_audit(
        conn,
        action=action,
        resource_type="prediction_data_feeds",
        resource_id=feed.id,
        severity="WARNING" if result.failed else "INFO",
        actor_type="system",
        details={
            "feed_name": feed.name,
            "source": feed.source,
            "probe_status": result.status,
            "probe_error": result.error_message,
            "failed_probes": failed_probes + (1 if result.failed else 0),
            "feed_run_id": str(run_id),
        },
        previous_state={"enabled": False},
        new_state=new_state,
    )
    return FeedHealth(
        consecutive_failures=failures if result.failed else 0,
        auto_disabled=False,
        re_enabled=not result.failed,
    )


def _record_auth(conn: psycopg.Connection, feed: Feed, state: str | None, at: datetime) -> None:
    """auth_status as the run found it. An expiry learnt from a refusal is dated no later than
    the refusal (auth_expires_at); credentials that work again clear an expiry already past."""
    if state is None:
        return
    conn.execute(
        """UPDATE prediction_data_feeds SET auth_status = %(state)s,
             auth_expires_at = CASE
               WHEN %(state)s = 'EXPIRED' THEN least(coalesce(auth_expires_at, %(at)s), %(at)s)
               WHEN %(state)s = 'ACTIVE' AND auth_expires_at <= %(at)s THEN NULL
               ELSE auth_expires_at END
           WHERE id = %(feed_id)s""",
        {"state": state, "at": at, "feed_id": feed.id},
    )


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
