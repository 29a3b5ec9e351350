"""Trust scores and flags in Postgres: the frames an interval is scored from, and its writes.

Re-running an interval updates its scores in place (keyed by event and `computed_at` = the
interval's end) and its flags by their dedup key (`evidence.dedup_key`); a flag an analyst
reviewed is never overwritten. The newest interval's overall score becomes the event's
`trust_score`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.trust import TrustConfig, TrustResult


def _frame(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    with conn.cursor() as cur:
        rows = cur.execute(sql, params).fetchall()
        columns = [c.name for c in cur.description or []]
    return pd.DataFrame(rows, columns=columns)


def load_inputs(
    conn: psycopg.Connection, start: datetime, end: datetime, config: TrustConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Signals and snapshots of the interval and its trailing window, and the events they
    concern (active ones, and those resolved since the window began: insider timing)."""
    params = {"from": start - config.trailing_window, "start": start, "end": end}
    events = _frame(
        conn,
        """SELECT e.id::text AS event_id, e.status, e.resolution_date, e.resolved_at,
                  r.outcome
           FROM prediction_events e LEFT JOIN prediction_resolutions r ON r.event_id = e.id
           WHERE e.status = 'ACTIVE' OR e.resolved_at >= %(from)s""",
        params,
    )
    signals = _frame(
        conn,
        """SELECT s.id::text AS id, s.event_id::text AS event_id, s.source, s.source_event_id,
                  s.signal_type, s.value::float8 AS value, s.weight::float8 AS weight,
                  s.reliability::float8 AS reliability, s.fetched_at, s.narrative, s.raw_data
           FROM prediction_signals s
           JOIN prediction_events e ON e.id = s.event_id
           WHERE s.fetched_at >= %(from)s AND s.fetched_at < %(end)s
             AND (e.status = 'ACTIVE' OR e.resolved_at >= %(from)s)""",
        params,
    )
    snapshots = _frame(
        conn,
        """SELECT event_id::text AS event_id, snapshot_at, probability::float8 AS probability,
                  sentiment_score::float8 AS sentiment_score, volume, signal_count
           FROM prediction_snapshots
           WHERE snapshot_at > %(from)s AND snapshot_at <= %(end)s""",
        params,
    )
    for frame, columns in (
        (signals, ("fetched_at",)),
        (snapshots, ("snapshot_at",)),
        (events, ("resolution_date", "resolved_at")),
    ):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return signals, snapshots, events


@dataclass(frozen=True, slots=True)
class TrustWrite:
    scores: int
    flags_new: int
    flags_updated: int
    flags_kept_reviewed: int


def save_trust(
    conn: psycopg.Connection, result: TrustResult, end: datetime, *, start: datetime | None = None
) -> TrustWrite:
    """Write the interval's scores and flags, the events' current trust, and the trust score of
    the interval's snapshots. `start` defaults to the hour before `end` (the asset's intervals)."""
    # Scores are updated in place (keyed by event and interval end) so the flags that point
    # at them stay linked when an interval is re-run.
    existing = {
        str(event_id): score_id
        for score_id, event_id in conn.execute(
            "SELECT id, event_id FROM prediction_trust_scores WHERE computed_at = %s", (end,)
        )
    }
    score_ids: dict[str, uuid.UUID] = {}
    with conn.cursor() as cur:
        for row in result.scores.itertuples(index=False):
            values = (
                round(row.overall_score, 4),
                row.manipulation_risk,
                round(row.market_integrity, 4),
                round(row.sentiment_authenticity, 4),
                round(row.source_diversity, 4),
                round(row.volume_consistency, 4),
                round(row.temporal_consistency, 4),
                bool(row.flagged_activity),
                int(row.flag_count),
            )
            if row.event_id in existing:
                score_ids[row.event_id] = existing[row.event_id]
                cur.execute(
                    """UPDATE prediction_trust_scores SET overall_score = %s,
                         manipulation_risk = %s, market_integrity = %s,
                         sentiment_authenticity = %s, source_diversity = %s,
                         volume_consistency = %s, temporal_consistency = %s,
                         flagged_activity = %s, flag_count = %s WHERE id = %s""",
                    (*values, existing[row.event_id]),
                )
            else:
                score_ids[row.event_id] = cur.execute(
                    """INSERT INTO prediction_trust_scores
                         (overall_score, manipulation_risk, market_integrity,
                          sentiment_authenticity, source_diversity, volume_consistency,
                          temporal_consistency, flagged_activity, flag_count, event_id,
                          computed_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                    (*values, row.event_id, end),
                ).fetchone()[0]
    stale = [i for e, i in existing.items() if e not in score_ids]
    if stale:
        conn.execute(
            "UPDATE prediction_trust_flags SET trust_score_id = NULL"
            " WHERE trust_score_id = ANY(%s)",
            (stale,),
        )
        conn.execute("DELETE FROM prediction_trust_scores WHERE id = ANY(%s)", (stale,))
    new = updated = kept = 0
    for flag in result.flags:
        existing = conn.execute(
            "SELECT id, reviewed FROM prediction_trust_flags WHERE event_id = %s"
            " AND flag_type = %s AND evidence->>'dedup_key' = %s",
            (flag.event_id, flag.flag_type, flag.dedup_key),
        ).fetchone()
        evidence = Jsonb({**flag.evidence, "dedup_key": flag.dedup_key})
        if existing is None:
            conn.execute(
                """INSERT INTO prediction_trust_flags
                     (event_id, trust_score_id, flag_type, severity, description, evidence,
                      related_signals)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (
                    flag.event_id,
                    score_ids.get(flag.event_id),
                    flag.flag_type,
                    flag.severity,
                    flag.description,
                    evidence,
                    flag.related_signals,
                ),
            )
            new += 1
        elif existing[1]:
            kept += 1  # an analyst's review stands
        else:
            conn.execute(
                """UPDATE prediction_trust_flags SET trust_score_id = %s, severity = %s,
                     description = %s, evidence = %s, related_signals = %s WHERE id = %s""",
                (
                    score_ids.get(flag.event_id),
                    flag.severity,
                    flag.description,
                    evidence,
                    flag.related_signals,
                    existing[0],
                ),
            )
            updated += 1
    # The newest trust score of each event is its current one and the one before it the
    # previous (read from the table: re-running an interval does not shift them; a backfill
    # of old windows leaves newer state alone).
    conn.execute(
        """UPDATE prediction_events e SET
             previous_trust_score = (SELECT p.overall_score FROM prediction_trust_scores p
                                     WHERE p.event_id = e.id AND p.computed_at < %(end)s
                                     ORDER BY p.computed_at DESC LIMIT 1),
             trust_score = t.overall_score, updated_at = now()
           FROM prediction_trust_scores t
           WHERE t.event_id = e.id AND t.computed_at = %(end)s AND e.status = 'ACTIVE'
             AND NOT EXISTS (SELECT 1 FROM prediction_trust_scores later
                             WHERE later.event_id = e.id AND later.computed_at > %(end)s)""",
        {"end": end},
    )
    # The interval's snapshots carry its trust score: a backfill computes every snapshot of its
    # range before any trust, so the event's current score they were written with is not theirs.
    conn.execute(
        """UPDATE prediction_snapshots s SET trust_score = t.overall_score
           FROM prediction_trust_scores t
           WHERE t.computed_at = %(end)s AND s.event_id = t.event_id
             AND s.snapshot_at > %(start)s AND s.snapshot_at <= %(end)s
             AND s.trust_score IS DISTINCT FROM t.overall_score""",
        {"start": start or end - timedelta(hours=1), "end": end},
    )
    return TrustWrite(len(score_ids), new, updated, kept)


def unreviewed_flags(
    conn: psycopg.Connection,
    limit: int = 50,
    *,
    user: uuid.UUID | None = None,
    org: uuid.UUID | None = None,
) -> list[tuple]:
    """Flags awaiting review, newest first: on every event (the operator's view), or only on
    the events `user` (with their orgs) or `org` can see (predict_sees_event)."""
    return conn.execute(
        """SELECT f.id, f.created_at, e.title, f.flag_type, f.severity, f.description
           FROM prediction_trust_flags f JOIN prediction_events e ON e.id = f.event_id
           CROSS JOIN (SELECT %(user)s::uuid AS viewer,
                              CASE WHEN %(org)s::uuid IS NOT NULL THEN ARRAY[%(org)s::uuid]
                                   ELSE predict_user_orgs(%(user)s) END AS orgs) v
           WHERE NOT f.reviewed
             AND (%(user)s::uuid IS NULL AND %(org)s::uuid IS NULL
                  OR predict_sees_event(v.viewer, v.orgs, e.is_public, e.org_id, e.created_by))
           ORDER BY f.created_at DESC LIMIT %(limit)s""",
        {"user": user, "org": org, "limit": limit},
    ).fetchall()


def review_flag(
    conn: psycopg.Connection,
    flag_id: uuid.UUID,
    *,
    notes: str,
    reviewer: uuid.UUID | None,
    now: datetime,
) -> None:
    with conn.transaction():
        row = conn.execute(
            "SELECT reviewed, flag_type, event_id FROM prediction_trust_flags WHERE id = %s"
            " FOR UPDATE",
            (flag_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"no flag {flag_id}")
        if row[0]:
            raise LookupError(f"flag {flag_id} is already reviewed")
        conn.execute(
            "UPDATE prediction_trust_flags SET reviewed = true, reviewed_by = %s,"
            " reviewed_at = %s, review_notes = %s WHERE id = %s",
            (reviewer, now, notes, flag_id),
        )
        record_audit(
            conn,
            action="trust_flag.reviewed",
            resource_type="prediction_trust_flags",
            resource_id=flag_id,
            actor_type="user" if reviewer else "service",
            actor_id=reviewer,
            details={"flag_type": row[1], "event_id": str(row[2]), "notes": notes},
            previous_state={"reviewed": False},
            new_state={"reviewed": True},
        )
