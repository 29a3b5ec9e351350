"""Resolving events from settled markets, closing dispute windows, and reading what
calibration scores: every step set-based and audit-logged.

An ACTIVE event is resolved from its markets when every linked market that reported a
settlement reports the same outcome (`resolution_method = 'market_settled'`); when they
disagree the event is left open and an audit entry says which markets said what.
`final_probability` is the event's pooled probability at close (the last snapshot at or
before the close or resolution time); `market_final_probability` the settled markets' mean
last price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit

DEFAULT_DISPUTE_WINDOW = timedelta(hours=48)
EVENT_STATUS = {
    "YES": "RESOLVED_YES",
    "NO": "RESOLVED_NO",
    "AMBIGUOUS": "RESOLVED_AMBIGUOUS",
    "CANCELLED": "CANCELLED",
}


@dataclass(frozen=True, slots=True)
class ResolutionReport:
    resolved: list[tuple[str, str]]  # (event title, outcome)
    conflicts: list[str]  # event titles left open because markets disagree
    finalised: int


_SETTLED_SQL = """
SELECT ms.event_id, e.title, array_agg(DISTINCT ms.resolution ORDER BY ms.resolution),
       max(ms.resolved_at), avg(ms.last_price)::float8,
       jsonb_object_agg(ms.source || ':' || ms.source_event_id, ms.resolution),
       array_agg(DISTINCT ms.source_url) FILTER (WHERE ms.source_url IS NOT NULL),
       e.resolution_date,
       jsonb_object_agg(ms.source || ':' || ms.source_event_id, ms.resolution_probability)
         FILTER (WHERE ms.resolution_probability IS NOT NULL)
FROM predict_meta.market_settlements ms
JOIN prediction_events e ON e.id = ms.event_id AND e.status = 'ACTIVE'
WHERE NOT EXISTS (SELECT 1 FROM prediction_resolutions r WHERE r.event_id = ms.event_id)
GROUP BY ms.event_id, e.title, e.resolution_date
"""


def resolve_from_markets(
    conn: psycopg.Connection, *, now: datetime, dispute_window: timedelta = DEFAULT_DISPUTE_WINDOW
) -> ResolutionReport:
    resolved: list[tuple[str, str]] = []
    conflicts: list[str] = []
    for (
        event_id,
        title,
        outcomes,
        settled_at,
        market_p,
        by_market,
        urls,
        close,
        resolved_to,
    ) in conn.execute(_SETTLED_SQL).fetchall():
        if len(outcomes) > 1:
            _audit_conflict(conn, event_id, outcomes, by_market)
            conflicts.append(title)
            continue
        outcome = outcomes[0]
        resolved_at = min(settled_at, now) if settled_at else now
        close_at = min(close, resolved_at) if close else resolved_at
        final = conn.execute(
            "SELECT probability FROM prediction_snapshots WHERE event_id = %s"
            " AND snapshot_at <= %s ORDER BY snapshot_at DESC LIMIT 1",
            (event_id, close_at),
        ).fetchone()
        resolution_id = conn.execute(
            """INSERT INTO prediction_resolutions
                 (event_id, outcome, outcome_details, evidence_urls, final_probability,
                  market_final_probability, resolution_method, resolved_at, dispute_window_end)
               VALUES (%s, %s, %s, %s, %s, %s, 'market_settled', %s, %s) RETURNING id""",
            (
                event_id,
                outcome,
                settlement_details(by_market, resolved_to),
                urls,
                final[0] if final else None,
                None if market_p is None else round(market_p, 4),
                resolved_at,
                now + dispute_window,
            ),
        ).fetchone()[0]
        conn.execute(
            "UPDATE prediction_events SET status = %s, resolved_at = %s, updated_at = now()"
            " WHERE id = %s",
            (EVENT_STATUS[outcome], resolved_at, event_id),
        )
        record_audit(
            conn,
            action="event.resolved",
            resource_type="prediction_events",
            resource_id=event_id,
            actor_type="system",
            details={
                "method": "market_settled",
                "markets": by_market,
                "resolution_id": str(resolution_id),
            },
            previous_state={"status": "ACTIVE"},
            new_state={"status": EVENT_STATUS[outcome], "outcome": outcome},
        )
        resolved.append((title, outcome))
    return ResolutionReport(resolved, conflicts, finalise_resolutions(conn, now=now))


def settlement_details(by_market: dict[str, str], resolved_to: dict[str, float] | None) -> str:
    """`outcome_details` of a resolution from settled markets: the markets, and the probability
    each resolved to where it settled at neither 1 nor 0 (Manifold MKT, Kalshi scalar, a
    Polymarket split), which the outcome AMBIGUOUS alone would lose."""
    shares = resolved_to or {}
    return f"settled by {len(by_market)} market(s): " + ", ".join(
        f"{market} (resolved to probability {shares[market]:.4g})" if market in shares else market
        for market in sorted(by_market)
    )


def _audit_conflict(conn: psycopg.Connection, event_id, outcomes, by_market) -> None:
    """Once per distinct disagreement, not on every run."""
    seen = conn.execute(
        "SELECT 1 FROM prediction_audit_log WHERE action = 'event.resolution_conflict'"
        " AND resource_id = %s AND details->'markets' = %s",
        (event_id, Jsonb(by_market)),
    ).fetchone()
    if not seen:
        record_audit(
            conn,
            action="event.resolution_conflict",
            resource_type="prediction_events",
            resource_id=event_id,
            actor_type="system",
            severity="WARNING",
            details={
                "outcomes": outcomes,
                "markets": by_market,
                "reason": "settled markets disagree; the event was not auto-resolved",
            },
        )


def finalise_resolutions(conn: psycopg.Connection, *, now: datetime) -> int:
    """Resolutions whose dispute window closed with no open dispute become final."""
    rows = conn.execute(
        """UPDATE prediction_resolutions r SET is_final = true
           WHERE NOT r.is_final AND r.dispute_window_end <= %s
             AND NOT EXISTS (SELECT 1 FROM prediction_resolution_disputes d
                             WHERE d.resolution_id = r.id
                               AND d.status IN ('open', 'under_review'))
           RETURNING r.id, r.event_id""",
        (now,),
    ).fetchall()
    for resolution_id, event_id in rows:
        record_audit(
            conn,
            action="resolution.finalised",
            resource_type="prediction_resolutions",
            resource_id=resolution_id,
            actor_type="system",
            details={"event_id": str(event_id)},
            new_state={"is_final": True},
        )
    return len(rows)


_SCORED_SQL = """
SELECT r.event_id, e.category_id, r.outcome, r.final_probability::float8 AS final_probability,
       r.resolved_at, h.p_1d, h.p_7d, h.p_30d
FROM prediction_resolutions r
JOIN prediction_events e ON e.id = r.event_id
CROSS JOIN LATERAL (
  SELECT
    (SELECT probability::float8 FROM prediction_snapshots s WHERE s.event_id = r.event_id
       AND s.snapshot_at <= coalesce(least(e.resolution_date, r.resolved_at), r.resolved_at)
                            - interval '1 day' ORDER BY s.snapshot_at DESC LIMIT 1) AS p_1d,
    (SELECT probability::float8 FROM prediction_snapshots s WHERE s.event_id = r.event_id
       AND s.snapshot_at <= coalesce(least(e.resolution_date, r.resolved_at), r.resolved_at)
                            - interval '7 days' ORDER BY s.snapshot_at DESC LIMIT 1) AS p_7d,
    (SELECT probability::float8 FROM prediction_snapshots s WHERE s.event_id = r.event_id
       AND s.snapshot_at <= coalesce(least(e.resolution_date, r.resolved_at), r.resolved_at)
                            - interval '30 days' ORDER BY s.snapshot_at DESC LIMIT 1) AS p_30d
) h
"""


def resolved_events(conn: psycopg.Connection) -> pd.DataFrame:
    """Every resolution with its final and horizon probabilities, as calibration reads it."""
    with conn.cursor() as cur:
        rows = cur.execute(_SCORED_SQL).fetchall()
        columns = [c.name for c in cur.description or []]
    frame = pd.DataFrame(rows, columns=columns)
    frame["resolved_at"] = pd.to_datetime(frame["resolved_at"], utc=True)
    for column in ("final_probability", "p_1d", "p_7d", "p_30d"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame
