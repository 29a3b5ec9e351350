"""Plans: what a user's subscription (or, without one, the default plan) lets their feeds,
rules, events, campaigns and org members do.

The rules live in SQL (sql/0041_plans.sql), so every path obeys them: limits are checked by
triggers when rows are created (SQLSTATE PL001, one line), and the pipeline asks
`predict_plan_holds_live` which items to hold (a plan not in force holds a user's feeds and
rules; past a limit, the newest items beyond it). This module turns the limit error into a
PlanLimitError, reads the holds, and records when a hold begins and ends (one audit entry each,
not one per skipped tick).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from predict_pipeline.audit import record_audits

PLAN_LIMIT_SQLSTATE = "PL001"
# Tables the held items are rows of, as audit entries name them.
RESOURCE_TYPES = {
    "feed": "prediction_data_feeds",
    "rule": "prediction_rules",
    "event": "prediction_events",
    "campaign": "prediction_campaigns",
    "member": "prediction_org_members",
}
# Concurrent recorders (the feeds and rules sensors) take turns.
_RECORD_LOCK_KEY = 7_242_031_041


class PlanLimitError(RuntimeError):
    """Creating this would take a user past a limit of their plan (a one-line message)."""


@contextmanager
def plan_limits() -> Iterator[None]:
    """Raise a plan limit refused by the database as a PlanLimitError."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate == PLAN_LIMIT_SQLSTATE:
            raise PlanLimitError(exc.diag.message_primary or str(exc)) from None
        raise


@dataclass(frozen=True, slots=True)
class Hold:
    kind: str
    resource_id: uuid.UUID
    user_id: uuid.UUID
    reason: str
    held_since: datetime


@dataclass(slots=True)
class HoldChanges:
    held: list[Hold] = field(default_factory=list)  # began now
    released: list[Hold] = field(default_factory=list)  # ended now: the item resumes
    changed: list[Hold] = field(default_factory=list)  # still held, for another reason

    def of(self, kind: str) -> HoldChanges:
        return HoldChanges(
            [h for h in self.held if h.kind == kind],
            [h for h in self.released if h.kind == kind],
            [h for h in self.changed if h.kind == kind],
        )

    def __bool__(self) -> bool:
        return bool(self.held or self.released or self.changed)


def live_holds(
    conn: psycopg.Connection,
    kind: str,
    at: datetime,
    ids: Sequence[uuid.UUID] | None = None,
) -> dict[uuid.UUID, str]:
    """The items of a kind the plans hold at `at` (of `ids` when given), with the reason."""
    rows = conn.execute(
        "SELECT resource_id, reason FROM predict_plan_holds_live(%s)"
        " WHERE kind = %s AND (%s::uuid[] IS NULL OR resource_id = ANY(%s::uuid[]))",
        (at, kind, None if ids is None else list(ids), None if ids is None else list(ids)),
    ).fetchall()
    return dict(rows)


_RECORD_SQL = """
WITH live AS (SELECT * FROM predict_plan_holds_live(%(at)s)),
released AS (
  DELETE FROM predict_meta.plan_holds h
  WHERE NOT EXISTS (SELECT 1 FROM live l WHERE l.kind = h.kind AND l.resource_id = h.resource_id)
  RETURNING 'released' AS change, h.kind, h.resource_id, h.user_id, h.reason, h.held_since
),
changed AS (
  UPDATE predict_meta.plan_holds h SET reason = l.reason
  FROM live l
  WHERE l.kind = h.kind AND l.resource_id = h.resource_id AND l.reason <> h.reason
  RETURNING 'changed' AS change, h.kind, h.resource_id, h.user_id, h.reason, h.held_since
),
held AS (
  INSERT INTO predict_meta.plan_holds (kind, resource_id, user_id, reason, held_since)
  SELECT kind, resource_id, user_id, reason, %(at)s FROM live
  ON CONFLICT (kind, resource_id) DO NOTHING
  RETURNING 'held' AS change, kind, resource_id, user_id, reason, held_since
)
SELECT * FROM released UNION ALL SELECT * FROM changed UNION ALL SELECT * FROM held
"""

_ACTIONS = {"held": "plan.hold", "released": "plan.release", "changed": "plan.hold_changed"}


def record_plan_holds(conn: psycopg.Connection, at: datetime) -> HoldChanges:
    """Bring predict_meta.plan_holds up to the plans at `at`, set-based, and audit each hold
    that began, ended or changed its reason; returns those changes."""
    changes = HoldChanges()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_RECORD_LOCK_KEY,))
        rows = conn.execute(_RECORD_SQL, {"at": at}).fetchall()
        entries: dict[tuple[str, str], list] = defaultdict(list)
        for change, kind, resource_id, user_id, reason, held_since in rows:
            hold = Hold(kind, resource_id, user_id, reason, held_since)
            getattr(changes, change).append(hold)
            entries[(_ACTIONS[change], RESOURCE_TYPES[kind])].append(
                (
                    resource_id,
                    {
                        "kind": kind,
                        "user_id": str(user_id),
                        "reason": reason,
                        "held_since": held_since.isoformat(),
                    },
                )
            )
        for (action, resource_type), batch in entries.items():
            record_audits(
                conn,
                action=action,
                resource_type=resource_type,
                entries=batch,
                severity="WARNING" if action != "plan.release" else "INFO",
                actor_type="system",
            )
    return changes


def recorded_holds(conn: psycopg.Connection, kind: str) -> list[tuple[uuid.UUID, str, str]]:
    """The recorded holds of a kind as (id, name, reason), for sensors' skip reasons."""
    name = {
        "feed": "(SELECT name FROM prediction_data_feeds WHERE id = h.resource_id)",
        "rule": "(SELECT name FROM prediction_rules WHERE id = h.resource_id)",
    }.get(kind, "h.resource_id::text")
    return [
        (rid, label or str(rid), reason)
        for rid, label, reason in conn.execute(
            f"SELECT h.resource_id, {name}, h.reason FROM predict_meta.plan_holds h"  # noqa: S608
            " WHERE h.kind = %s ORDER BY h.held_since, h.resource_id",
            (kind,),
        )
    ]


def describe_holds(holds: list[tuple[uuid.UUID, str, str]], noun: str, limit: int = 5) -> str:
    """'2 feeds held by plan: kalshi feed (the subscription is cancelled); …'"""
    shown = "; ".join(f"{name} ({reason})" for _, name, reason in holds[:limit])
    more = f"; and {len(holds) - limit} more" if len(holds) > limit else ""
    plural = noun if len(holds) == 1 else f"{noun}s"
    return f"{len(holds)} {plural} held by plan: {shown}{more}"
