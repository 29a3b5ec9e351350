"""Feed runs and their landing records, written here and nowhere else: a run started, a run
finished (with its landing record, the feed's health, breaker and auth state that follow),
runs that lost their process closed, and what stage 2 found in a run's landed pages (its
counts, its events, VALIDATED or FAILED). The rule tick credits runs with their triggers."""

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


def feed_run_for_file(
    conn: psycopg.Connection, feed_id: str, landing_file: str
) -> uuid.UUID | None:
    """The run that landed a file, from its landing record (backfill pages carry no run id, to
    stay identical; a backfill file fetched again belongs to its latest run)."""
    row = conn.execute(
        """SELECT l.feed_run_id FROM prediction_feed_run_landings l
           JOIN prediction_feed_runs r ON r.id = l.feed_run_id
           WHERE l.feed_id = %s AND l.landing_file = %s
           ORDER BY r.started_at DESC LIMIT 1""",
        (feed_id, landing_file),
    ).fetchone()
    return row[0] if row else None


def record_run_events(conn: psycopg.Connection, events_by_run: dict[Any, set[Any]]) -> None:
    """Which events each feed run wrote signals for: the rule tick that evaluates them credits
    the run with its triggers evaluated and fired."""
    pairs = [(run, event) for run, events in events_by_run.items() if run for event in events]
    if not pairs:
        return
    runs, events = zip(*pairs, strict=True)
    conn.execute(
        "INSERT INTO predict_meta.feed_run_events (feed_run_id, event_id)"
        " SELECT * FROM unnest(%s::uuid[], %s::uuid[]) ON CONFLICT DO NOTHING",
        (list(runs), list(events)),
    )


def record_run_counts(
    conn: psycopg.Connection,
    feed_run_id: uuid.UUID | str,
    counts: dict[str, int],
    validation: dict[str, Any],
    validated_at: datetime,
) -> None:
    """First validation of a run sets its counts; a re-run only adds rows it newly wrote. The
    run's landing record keeps what was rejected and when it was validated."""
    conn.execute(
        """UPDATE prediction_feed_runs SET
             signals_valid = CASE WHEN first THEN %(valid)s ELSE signals_valid END,
             signals_deduplicated = CASE WHEN first THEN %(deduplicated)s
                                         ELSE signals_deduplicated END,
             signals_matched = CASE WHEN first THEN %(matched)s ELSE signals_matched END,
             signals_unmatched = CASE WHEN first THEN %(unmatched)s ELSE signals_unmatched END,
             signals_written = CASE WHEN first THEN %(written)s
                                    ELSE signals_written + %(written)s END,
             events_updated = CASE WHEN first THEN %(events)s
                                   ELSE greatest(events_updated, %(events)s) END
           FROM (SELECT l.validated_at IS NULL AS first FROM prediction_feed_runs r
                 LEFT JOIN prediction_feed_run_landings l ON l.feed_run_id = r.id
                 WHERE r.id = %(id)s) AS state
           WHERE id = %(id)s""",
        {**counts, "id": feed_run_id},
    )
    conn.execute(
        """UPDATE prediction_feed_run_landings SET validated_at = %s, records_rejected = %s,
             rejected_reasons = %s, rejected_samples = %s
           WHERE feed_run_id = %s""",
        (
            validated_at,
            validation["rejected"],
            Jsonb(validation["reasons"]),
            Jsonb(validation["samples"]),
            feed_run_id,
        ),
    )


def record_files_validated(
    conn: psycopg.Connection, feed_id: str, landing_files: list[str], validated_at: datetime
) -> None:
    """The runs behind these files are VALIDATED; a run an earlier validation failed gets back
    the status and message its fetch left."""
    conn.execute(
        """WITH landed AS (
             UPDATE prediction_feed_run_landings l
             SET validation_status = 'VALIDATED', validated_at = %(at)s,
                 validation_error = NULL, fetch_status = NULL, fetch_error_message = NULL
             FROM (SELECT feed_run_id, fetch_status, fetch_error_message
                   FROM prediction_feed_run_landings
                   WHERE feed_id = %(feed)s AND landing_file = ANY(%(files)s)) before
             WHERE l.feed_run_id = before.feed_run_id
             RETURNING l.feed_run_id, before.fetch_status, before.fetch_error_message)
           UPDATE prediction_feed_runs r
           SET status = landed.fetch_status, error_message = landed.fetch_error_message
           FROM landed
           WHERE r.id = landed.feed_run_id AND landed.fetch_status IS NOT NULL""",
        {"at": validated_at, "feed": feed_id, "files": landing_files},
    )


def record_files_failed(
    conn: psycopg.Connection, feed_id: str, landing_files: list[str], error: str
) -> None:
    """The feed's write was rolled back: the runs behind these files are FAILED with the
    reason, their landing records say why, and keep the status and message the fetch left (a
    second failure keeps the first one's), for a later validation that writes to give back."""
    conn.execute(
        """WITH landed AS (
             UPDATE prediction_feed_run_landings l
             SET validation_status = 'FAILED', validation_error = %(error)s,
                 fetch_status = coalesce(l.fetch_status, r.status),
                 fetch_error_message = CASE WHEN l.fetch_status IS NULL THEN r.error_message
                                            ELSE l.fetch_error_message END
             FROM prediction_feed_runs r
             WHERE r.id = l.feed_run_id AND l.feed_id = %(feed)s
               AND l.landing_file = ANY(%(files)s)
             RETURNING l.feed_run_id)
           UPDATE prediction_feed_runs SET status = 'FAILED', error_message = %(message)s
           WHERE id IN (SELECT feed_run_id FROM landed)""",
        {
            "error": error,
            "message": f"writing signals failed, nothing was written: {error}",
            "feed": feed_id,
            "files": landing_files,
        },
    )
