"""Manual resolution and the dispute workflow of prediction_resolutions, every step audited.

A resolution can be disputed until its dispute window ends (`is_disputed` becomes true);
a dispute goes open → under_review → upheld | dismissed (the outcome stands) | overturned (the
outcome changes, the event's status follows, and the next calibration uses it). A window that
closes with no open dispute makes the resolution final (`finalise_resolutions`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from predict_pipeline.audit import record_audit
from predict_pipeline.calibration.resolutions import (
    DEFAULT_DISPUTE_WINDOW,
    EVENT_STATUS,
    score_resolutions,
)
from predict_pipeline.db.rows import one_row

OUTCOMES = tuple(EVENT_STATUS)
DECISIONS = ("upheld", "dismissed", "overturned")


class WorkflowError(ValueError):
    """A step the workflow does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class Step:
    resolution_id: uuid.UUID
    event_id: uuid.UUID
    outcome: str
    dispute_id: uuid.UUID | None = None


def resolve_manually(
    conn: psycopg.Connection,
    event_id: uuid.UUID,
    outcome: str,
    *,
    evidence_urls: list[str],
    resolved_by: uuid.UUID | None,
    details: str | None,
    now: datetime,
    dispute_window: timedelta = DEFAULT_DISPUTE_WINDOW,
) -> Step:
    if outcome not in OUTCOMES:
        raise WorkflowError(f"outcome must be one of {', '.join(OUTCOMES)}")
    with conn.transaction():
        event = conn.execute(
            "SELECT status, resolution_date FROM prediction_events WHERE id = %s FOR UPDATE",
            (event_id,),
        ).fetchone()
        if event is None:
            raise WorkflowError(f"no event {event_id}")
        if conn.execute(
            "SELECT 1 FROM prediction_resolutions WHERE event_id = %s", (event_id,)
        ).fetchone():
            raise WorkflowError(f"event {event_id} is already resolved; dispute it instead")
        resolution_id = one_row(
            conn.execute(
                """INSERT INTO prediction_resolutions
                 (event_id, outcome, outcome_details, evidence_urls,
                  market_final_probability, resolved_by, resolution_method, resolved_at,
                  dispute_window_end)
               VALUES (%(event)s, %(outcome)s, %(details)s, %(urls)s,
                 (SELECT round(avg(last_price), 4) FROM predict_meta.market_settlements
                    WHERE event_id = %(event)s),
                 %(by)s, 'manual', %(now)s, %(window_end)s)
               RETURNING id""",
                {
                    "event": event_id,
                    "outcome": outcome,
                    "details": details,
                    "urls": evidence_urls or None,
                    "by": resolved_by,
                    "now": now,
                    "window_end": now + dispute_window,
                },
            )
        )[0]
        _set_event_status(conn, event_id, outcome, now)
        # Scored as every resolution is: the last observation at or before close.
        score_resolutions(conn, now=now, resolution_ids=[resolution_id], created={resolution_id})
        record_audit(
            conn,
            action="event.resolved",
            resource_type="prediction_events",
            resource_id=event_id,
            actor_type="user" if resolved_by else "service",
            actor_id=resolved_by,
            details={
                "method": "manual",
                "evidence_urls": evidence_urls,
                "resolution_id": str(resolution_id),
            },
            previous_state={"status": event[0]},
            new_state={"status": EVENT_STATUS[outcome], "outcome": outcome},
        )
    return Step(resolution_id, event_id, outcome)


def open_dispute(
    conn: psycopg.Connection,
    event_id: uuid.UUID,
    *,
    disputed_by: uuid.UUID,
    reason: str,
    evidence_urls: list[str],
    now: datetime,
) -> Step:
    with conn.transaction():
        resolution = conn.execute(
            "SELECT id, outcome, dispute_window_end, is_final FROM prediction_resolutions"
            " WHERE event_id = %s FOR UPDATE",
            (event_id,),
        ).fetchone()
        if resolution is None:
            raise WorkflowError(f"event {event_id} has no resolution to dispute")
        resolution_id, outcome, window_end, is_final = resolution
        if is_final or (window_end is not None and now >= window_end):
            raise WorkflowError(
                f"the dispute window of event {event_id} closed at {window_end:%Y-%m-%d %H:%M} UTC"
            )
        dispute_id = one_row(
            conn.execute(
                "INSERT INTO prediction_resolution_disputes (resolution_id, event_id, disputed_by,"
                " reason, evidence_urls, created_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (resolution_id, event_id, disputed_by, reason, evidence_urls or None, now),
            )
        )[0]
        conn.execute(
            "UPDATE prediction_resolutions SET is_disputed = true WHERE id = %s", (resolution_id,)
        )
        record_audit(
            conn,
            action="resolution.disputed",
            resource_type="prediction_resolution_disputes",
            resource_id=dispute_id,
            actor_type="user",
            actor_id=disputed_by,
            details={
                "resolution_id": str(resolution_id),
                "reason": reason,
                "evidence_urls": evidence_urls,
            },
            new_state={"status": "open"},
        )
    return Step(resolution_id, event_id, outcome, dispute_id)


def review_dispute(
    conn: psycopg.Connection, dispute_id: uuid.UUID, *, reviewer: uuid.UUID, now: datetime
) -> Step:
    with conn.transaction():
        dispute = _dispute(conn, dispute_id, allowed=("open",))
        conn.execute(
            "UPDATE prediction_resolution_disputes SET status = 'under_review', reviewed_by = %s"
            " WHERE id = %s",
            (reviewer, dispute_id),
        )
        record_audit(
            conn,
            action="dispute.under_review",
            resource_type="prediction_resolution_disputes",
            resource_id=dispute_id,
            actor_type="user",
            actor_id=reviewer,
            previous_state={"status": "open"},
            new_state={"status": "under_review"},
        )
    return Step(dispute[1], dispute[2], dispute[3], dispute_id)


def close_dispute(
    conn: psycopg.Connection,
    dispute_id: uuid.UUID,
    *,
    decision: str,
    reviewer: uuid.UUID,
    notes: str,
    new_outcome: str | None,
    now: datetime,
) -> Step:
    if decision not in DECISIONS:
        raise WorkflowError(f"decision must be one of {', '.join(DECISIONS)}")
    if (decision == "overturned") != (new_outcome is not None):
        raise WorkflowError("an overturned dispute needs --outcome; upheld/dismissed take none")
    if new_outcome is not None and new_outcome not in OUTCOMES:
        raise WorkflowError(f"outcome must be one of {', '.join(OUTCOMES)}")
    with conn.transaction():
        status, resolution_id, event_id, outcome = _dispute(
            conn, dispute_id, allowed=("open", "under_review")
        )
        conn.execute(
            "UPDATE prediction_resolution_disputes SET status = %s, reviewed_by = %s,"
            " review_notes = %s, reviewed_at = %s WHERE id = %s",
            (decision, reviewer, notes, now, dispute_id),
        )
        final_outcome = outcome
        # new_outcome is given exactly when the decision is "overturned" (checked above)
        if new_outcome is not None and new_outcome != outcome:
            final_outcome = new_outcome
            conn.execute(
                "UPDATE prediction_resolutions SET outcome = %s WHERE id = %s",
                (new_outcome, resolution_id),
            )
            _set_event_status(conn, event_id, new_outcome, None)
        conn.execute(
            """UPDATE prediction_resolutions SET is_disputed = EXISTS (
                 SELECT 1 FROM prediction_resolution_disputes
                 WHERE resolution_id = %(id)s AND status IN ('open', 'under_review'))
               WHERE id = %(id)s""",
            {"id": resolution_id},
        )
        record_audit(
            conn,
            action=f"dispute.{decision}",
            resource_type="prediction_resolution_disputes",
            resource_id=dispute_id,
            actor_type="user",
            actor_id=reviewer,
            severity="ALERT" if decision == "overturned" else "INFO",
            details={"resolution_id": str(resolution_id), "notes": notes},
            previous_state={"status": status, "outcome": outcome},
            new_state={"status": decision, "outcome": final_outcome},
        )
    return Step(resolution_id, event_id, final_outcome, dispute_id)


def _dispute(
    conn: psycopg.Connection, dispute_id: uuid.UUID, *, allowed: tuple[str, ...]
) -> tuple[str, uuid.UUID, uuid.UUID, str]:
    row = conn.execute(
        "SELECT d.status, d.resolution_id, d.event_id, r.outcome"
        " FROM prediction_resolution_disputes d"
        " JOIN prediction_resolutions r ON r.id = d.resolution_id WHERE d.id = %s FOR UPDATE",
        (dispute_id,),
    ).fetchone()
    if row is None:
        raise WorkflowError(f"no dispute {dispute_id}")
    if row[0] not in allowed:
        raise WorkflowError(f"dispute {dispute_id} is {row[0]}; expected {' or '.join(allowed)}")
    return row


def _set_event_status(
    conn: psycopg.Connection, event_id: uuid.UUID, outcome: str, resolved_at: datetime | None
) -> None:
    conn.execute(
        "UPDATE prediction_events SET status = %s, resolved_at = coalesce(%s, resolved_at),"
        " updated_at = now() WHERE id = %s",
        (EVENT_STATUS[outcome], resolved_at, event_id),
    )
