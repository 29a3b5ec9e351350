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

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.trust import TrustConfig, TrustResult
from predict_pipeline.trust.config import ACCOUNT_KEYS, COMPONENTS, NARRATIVE_TYPES
from predict_pipeline.trust.measure import prepare_signals


def _frame(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    with conn.cursor() as cur:
        rows = cur.execute(sql, params).fetchall()
        columns = [c.name for c in cur.description or []]
    return pd.DataFrame(rows, columns=columns)


def _ns(values: pd.Series) -> np.ndarray:
    """UTC instants as int64 ns (NaT -> min int64, below every instant)."""
    return pd.DatetimeIndex(values).as_unit("ns").asi8


@dataclass(frozen=True, slots=True)
class TrustWindow:
    """Signals, snapshots and events of a range of intervals and the trailing window before its
    first, read once; `inputs` gives each interval the frames `load_inputs` would read for it.

    Rows are kept in (event_id, t, id) order, the order `measure` reads them in, so an
    interval's rows are one take that `measure` need not sort again; an event not ACTIVE stays
    in an interval's inputs only while it resolved at or after the interval's trailing window
    began.
    """

    signals: pd.DataFrame
    snapshots: pd.DataFrame
    events: pd.DataFrame
    trailing_window: timedelta
    signal_ns: np.ndarray  # fetched_at (rows in event order: not sorted)
    signal_active: np.ndarray  # the signal's event is ACTIVE
    signal_resolved_ns: np.ndarray  # the signal's event's resolved_at
    snapshot_ns: np.ndarray
    event_active: np.ndarray
    event_resolved_ns: np.ndarray

    def inputs(
        self, start: datetime, end: datetime
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        since = pd.Timestamp(start - self.trailing_window).value
        until = pd.Timestamp(end).value
        t = self.signal_ns
        rows = (
            (t >= since) & (t < until) & (self.signal_active | (self.signal_resolved_ns >= since))
        )
        signals = self.signals.take(np.flatnonzero(rows))
        signals.index = pd.RangeIndex(len(signals))  # a new frame: no second copy to renumber
        lo, hi = np.searchsorted(self.snapshot_ns, [since, until], side="right")
        events = self.events[self.event_active | (self.event_resolved_ns >= since)]
        return (
            signals,
            self.snapshots.iloc[lo:hi].reset_index(drop=True),
            events.reset_index(drop=True),
        )


def load_window(
    conn: psycopg.Connection, start: datetime, end: datetime, config: TrustConfig
) -> TrustWindow:
    """Signals and snapshots of [start, end) and the trailing window before it, and the events
    they concern (active ones, and those resolved since the window began: insider timing).

    A signal's raw_data is read only where stage 4 reads it, and NULL elsewhere: a trade's
    (an `outcome`), a VOLUME row's `volume_scope`, a post's or headline's account (ACCOUNT_KEYS).
    Parsing every row's JSON was a third of the read.
    """
    params = {
        "from": start - config.trailing_window,
        "start": start,
        "end": end,
        "narrative_types": list(NARRATIVE_TYPES),
        "account_keys": list(ACCOUNT_KEYS),
    }
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
                  s.reliability::float8 AS reliability, s.fetched_at, s.narrative,
                  CASE WHEN s.raw_data ? 'outcome'
                         OR s.signal_type = 'VOLUME' AND s.raw_data ? 'volume_scope'
                         OR s.signal_type = ANY(%(narrative_types)s::text[])
                            AND s.raw_data ?| %(account_keys)s::text[]
                       THEN s.raw_data END AS raw_data
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
    # validated and read once (times, weights, accounts, lifetime volumes) for every interval
    signals = prepare_signals(signals)
    event_code = pd.factorize(signals["event_id"], sort=True)[0]
    order = np.lexsort((signals["id_rank"].to_numpy(), signals["t"].to_numpy(), event_code))
    signals = signals.take(order)
    signals.index = pd.RangeIndex(len(signals))
    snapshots = snapshots.sort_values("snapshot_at", kind="stable", ignore_index=True)
    event_active = (events["status"] == "ACTIVE").to_numpy()
    event_resolved_ns = _ns(events["resolved_at"])
    position = pd.Index(events["event_id"]).get_indexer(signals["event_id"])
    return TrustWindow(
        signals=signals,
        snapshots=snapshots,
        events=events,
        trailing_window=config.trailing_window,
        signal_ns=_ns(signals["fetched_at"]),
        signal_active=event_active[position],
        signal_resolved_ns=event_resolved_ns[position],
        snapshot_ns=_ns(snapshots["snapshot_at"]),
        event_active=event_active,
        event_resolved_ns=event_resolved_ns,
    )


def load_inputs(
    conn: psycopg.Connection, start: datetime, end: datetime, config: TrustConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Signals and snapshots of the interval and its trailing window, and the events they
    concern (active ones, and those resolved since the window began: insider timing)."""
    return load_window(conn, start, end, config).inputs(start, end)


@dataclass(frozen=True, slots=True)
class TrustWrite:
    scores: int
    flags_new: int
    flags_updated: int
    flags_kept_reviewed: int


@dataclass(frozen=True, slots=True)
class ScoredInterval:
    start: datetime
    end: datetime
    result: TrustResult


def save_trust(
    conn: psycopg.Connection, result: TrustResult, end: datetime, *, start: datetime | None = None
) -> TrustWrite:
    """Write the interval's scores and flags, the events' current trust, and the trust score of
    the interval's snapshots. `start` defaults to the hour before `end` (the asset's intervals)."""
    return save_intervals(conn, [ScoredInterval(start or end - timedelta(hours=1), end, result)])


# Scores are updated in place (keyed by event and interval end) so the flags that point at them
# stay linked when an interval is re-run; the others are inserted. One statement per batch.
_UPSERT_SCORES = """
WITH n AS (
  SELECT * FROM unnest(%(event_id)s::uuid[], %(computed_at)s::timestamptz[],
                       %(overall_score)s::float8[], %(manipulation_risk)s::text[],
                       %(market_integrity)s::float8[], %(sentiment_authenticity)s::float8[],
                       %(source_diversity)s::float8[], %(volume_consistency)s::float8[],
                       %(temporal_consistency)s::float8[], %(flagged_activity)s::bool[],
                       %(flag_count)s::int[])
    AS n(event_id, computed_at, overall_score, manipulation_risk, market_integrity,
         sentiment_authenticity, source_diversity, volume_consistency, temporal_consistency,
         flagged_activity, flag_count)),
updated AS (
  UPDATE prediction_trust_scores t SET overall_score = n.overall_score,
    manipulation_risk = n.manipulation_risk, market_integrity = n.market_integrity,
    sentiment_authenticity = n.sentiment_authenticity, source_diversity = n.source_diversity,
    volume_consistency = n.volume_consistency, temporal_consistency = n.temporal_consistency,
    flagged_activity = n.flagged_activity, flag_count = n.flag_count
  FROM n WHERE t.event_id = n.event_id AND t.computed_at = n.computed_at
  RETURNING t.id, t.event_id, t.computed_at),
inserted AS (
  INSERT INTO prediction_trust_scores
    (overall_score, manipulation_risk, market_integrity, sentiment_authenticity,
     source_diversity, volume_consistency, temporal_consistency, flagged_activity, flag_count,
     event_id, computed_at)
  SELECT n.overall_score, n.manipulation_risk, n.market_integrity, n.sentiment_authenticity,
         n.source_diversity, n.volume_consistency, n.temporal_consistency, n.flagged_activity,
         n.flag_count, n.event_id, n.computed_at
  FROM n WHERE NOT EXISTS (SELECT 1 FROM updated u
                           WHERE u.event_id = n.event_id AND u.computed_at = n.computed_at)
  RETURNING id, event_id, computed_at)
SELECT id, event_id::text, computed_at FROM updated
UNION ALL SELECT id, event_id::text, computed_at FROM inserted"""

# The scores of the batch's intervals no longer computed (an event no longer scored there).
_STALE = """
SELECT t.id FROM prediction_trust_scores t
WHERE t.computed_at = ANY(%(ends)s::timestamptz[])
  AND NOT EXISTS (SELECT 1 FROM unnest(%(kept)s::uuid[]) k(id) WHERE k.id = t.id)"""

# The newest trust score of each event is its current one and the one before it the previous
# (read from the table: re-running an interval does not shift them; a backfill of old windows
# leaves newer state alone). As interval by interval: an event takes its last interval's score
# unless a score later than it exists (a stale one counts, as it still did then), and the
# previous is the newest before that, stale ones left out (deleted before then).
_EVENTS = """
WITH last AS (
  SELECT event_id, max(computed_at) AS computed_at
  FROM unnest(%(event_id)s::uuid[], %(computed_at)s::timestamptz[]) b(event_id, computed_at)
  GROUP BY event_id)
UPDATE prediction_events e SET
  previous_trust_score = (SELECT p.overall_score FROM prediction_trust_scores p
                          WHERE p.event_id = e.id AND p.computed_at < last.computed_at
                            AND p.id <> ALL(%(stale)s::uuid[])
                          ORDER BY p.computed_at DESC LIMIT 1),
  trust_score = t.overall_score, updated_at = now()
FROM last JOIN prediction_trust_scores t
  ON t.event_id = last.event_id AND t.computed_at = last.computed_at
WHERE e.id = last.event_id AND e.status = 'ACTIVE'
  AND NOT EXISTS (SELECT 1 FROM prediction_trust_scores later
                  WHERE later.event_id = e.id AND later.computed_at > last.computed_at)"""

_UPDATE_FLAGS = """
UPDATE prediction_trust_flags t SET trust_score_id = f.trust_score_id, severity = f.severity,
  description = f.description, evidence = f.evidence, related_signals = f.related_signals
FROM jsonb_to_recordset(%(flags)s::jsonb)
  AS f(i int, id uuid, event_id uuid, trust_score_id uuid, flag_type text, severity text,
       description text, evidence jsonb, related_signals uuid[])
WHERE t.id = f.id"""

_INSERT_FLAGS = """
INSERT INTO prediction_trust_flags
  (event_id, trust_score_id, flag_type, severity, description, evidence, related_signals)
SELECT event_id, trust_score_id, flag_type, severity, description, evidence, related_signals
FROM jsonb_to_recordset(%(flags)s::jsonb)
  AS f(i int, id uuid, event_id uuid, trust_score_id uuid, flag_type text, severity text,
       description text, evidence jsonb, related_signals uuid[])
ORDER BY f.i"""

_EXISTING_FLAGS = """
SELECT k.i, f.id, f.reviewed
FROM unnest(%(event_id)s::uuid[], %(flag_type)s::text[], %(dedup_key)s::text[])
  WITH ORDINALITY k(event_id, flag_type, dedup_key, i)
CROSS JOIN LATERAL (SELECT f.id, f.reviewed FROM prediction_trust_flags f
                    WHERE f.event_id = k.event_id AND f.flag_type = k.flag_type
                      AND f.evidence->>'dedup_key' = k.dedup_key
                    LIMIT 1) f"""

# The interval's snapshots carry its trust score: a backfill computes every snapshot of its
# range before any trust, so the event's current score they were written with is not theirs.
_SNAPSHOTS = """
UPDATE prediction_snapshots s SET trust_score = t.overall_score
FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) w(start_at, end_at)
JOIN prediction_trust_scores t ON t.computed_at = w.end_at
WHERE s.event_id = t.event_id AND s.snapshot_at > w.start_at AND s.snapshot_at <= w.end_at
  AND s.snapshot_at > %(first)s AND s.snapshot_at <= %(last)s
  AND s.trust_score IS DISTINCT FROM t.overall_score"""


def save_intervals(conn: psycopg.Connection, intervals: list[ScoredInterval]) -> TrustWrite:
    """Write the scores and flags of several intervals as `save_trust` one after the other
    would, with a fixed number of statements whatever the intervals, events and flags."""
    if not intervals:
        return TrustWrite(0, 0, 0, 0)
    scores = pd.concat([i.result.scores for i in intervals], ignore_index=True)
    columns: dict[str, list] = {
        "event_id": scores["event_id"].tolist(),
        "computed_at": [i.end for i in intervals for _ in range(len(i.result.scores))],
        "manipulation_risk": scores["manipulation_risk"].tolist(),
        "flagged_activity": scores["flagged_activity"].astype(bool).tolist(),
        "flag_count": scores["flag_count"].astype(int).tolist(),
    }
    for column in (*COMPONENTS, "overall_score"):
        # Python's round of Python floats, as the scores were always written
        columns[column] = [round(v, 4) for v in scores[column].tolist()]
    ends = [i.end for i in intervals]
    arrays = {name: _array(values) for name, values in columns.items()}
    with conn.transaction():
        written = conn.execute(_UPSERT_SCORES, arrays).fetchall()
        score_ids = {(event_id, at): score_id for score_id, event_id, at in written}
        stale = [
            i
            for (i,) in conn.execute(
                _STALE, {"ends": ends, "kept": _array([r[0] for r in written])}
            )
        ]
        conn.execute(
            _EVENTS,
            {
                "event_id": arrays["event_id"],
                "computed_at": arrays["computed_at"],
                "stale": stale,
            },
        )
        if stale:
            conn.execute(
                "UPDATE prediction_trust_flags SET trust_score_id = NULL"
                " WHERE trust_score_id = ANY(%s)",
                (stale,),
            )
            conn.execute("DELETE FROM prediction_trust_scores WHERE id = ANY(%s)", (stale,))
        new, updated, kept = _save_flags(conn, intervals, score_ids)
        conn.execute(
            _SNAPSHOTS,
            {
                "starts": [i.start for i in intervals],
                "ends": ends,
                "first": min(i.start for i in intervals),
                "last": max(ends),
            },
        )
    return TrustWrite(len(written), new, updated, kept)


def _array(values: list[Any]) -> str:
    """The values as one PostgreSQL array literal, bound as a single parameter and cast in the
    statement: psycopg dumps a list element by element in Python (2-3x slower at 24,000)."""
    items = []
    for value in values:
        if value is None:
            items.append("NULL")
        elif isinstance(value, str):
            items.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:  # numbers, booleans, UUIDs and datetimes: str() is PostgreSQL's input form
            items.append(str(value))
    return "{" + ",".join(items) + "}"


def _save_flags(
    conn: psycopg.Connection,
    intervals: list[ScoredInterval],
    score_ids: dict[tuple[str, datetime], uuid.UUID],
) -> tuple[int, int, int]:
    """Flags by their dedup key: new ones inserted, unreviewed ones updated, reviewed ones kept
    as the analyst left them. Returns (new, updated, kept)."""
    flags = [(i.end, flag) for i in intervals for flag in i.result.flags]
    if not flags:
        return 0, 0, 0
    existing = {
        i - 1: (flag_id, reviewed)
        for i, flag_id, reviewed in conn.execute(
            _EXISTING_FLAGS,
            {
                "event_id": [f.event_id for _, f in flags],
                "flag_type": [f.flag_type for _, f in flags],
                "dedup_key": [f.dedup_key for _, f in flags],
            },
        )
    }
    rows = []
    kept = 0
    for i, (end, flag) in enumerate(flags):
        found = existing.get(i)
        if found is not None and found[1]:
            kept += 1  # an analyst's review stands
            continue
        score_id = score_ids.get((flag.event_id, end))
        rows.append(
            {
                "i": i,
                "id": None if found is None else str(found[0]),
                "event_id": flag.event_id,
                "trust_score_id": None if score_id is None else str(score_id),
                "flag_type": flag.flag_type,
                "severity": flag.severity,
                "description": flag.description,
                "evidence": {**flag.evidence, "dedup_key": flag.dedup_key},
                "related_signals": flag.related_signals,
            }
        )
    updates = [r for r in rows if r["id"] is not None]
    inserts = [r for r in rows if r["id"] is None]
    if updates:
        conn.execute(
            _UPDATE_FLAGS,
            {"flags": Jsonb(updates)},
        )
    if inserts:
        conn.execute(
            _INSERT_FLAGS,
            {"flags": Jsonb(inserts)},
        )
    return len(inserts), len(updates), kept


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
