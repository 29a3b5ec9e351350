"""The rule sensor's tick: which rules fire on the events that changed, throttled and logged.

One query joins the events whose state changed since the cursor (new snapshots, trust scores,
resolutions — all of which touch `prediction_events.updated_at` — and new flags) to the
enabled, unexpired rules whose scope covers them; the reference semantics of every trigger
(`triggers.evaluate`) decide the firings. Each firing is throttled under a row lock on its rule
(so two concurrent ticks cannot both pass a cooldown) and written as one
`prediction_rule_executions` row: PENDING when it fires (the actions job runs it) or its
SKIPPED_* status. A firing already logged (same rule, event and state) is not logged twice.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.rules import RuleError
from predict_pipeline.rules.throttle import decide, utc_day_start, validate_throttle
from predict_pipeline.rules.triggers import (
    CampaignLink,
    EventState,
    NewFlag,
    evaluate,
    validate_rule,
)

# A tick looks at this many changed events at most; the cursor carries on from there.
MAX_EVENTS_PER_TICK = 50_000

_CANDIDATES_SQL = """
WITH changed AS (
  SELECT id AS event_id FROM prediction_events
  WHERE updated_at > %(since)s AND updated_at <= %(until)s
  UNION
  SELECT event_id FROM prediction_trust_flags
  WHERE created_at > %(since)s AND created_at <= %(until)s
  LIMIT %(limit)s
)
SELECT r.id AS rule_id, r.name AS rule_name, r.user_id, r.trigger_type, r.trigger_params,
       r.cooldown_minutes, r.max_fires_per_day, r.active_hours,
       e.id AS event_id, e.title, e.updated_at, e.current_probability, e.previous_probability,
       e.sentiment_score, e.previous_sentiment, e.trust_score, e.previous_trust_score,
       e.divergence, e.previous_divergence, e.status,
       ce.campaign_id, ce.relationship, ce.probability_threshold
FROM changed c
JOIN prediction_events e ON e.id = c.event_id
JOIN prediction_rules r ON r.enabled
  AND (r.expires_at IS NULL OR r.expires_at > %(until)s)
  AND (r.scope_type = 'all'
       OR (r.scope_type = 'event' AND r.scope_id = e.id)
       OR (r.scope_type = 'category' AND r.scope_id = e.category_id)
       OR (r.scope_type = 'tag' AND r.scope_tag = ANY(e.tags))
       OR (r.scope_type = 'campaign' AND EXISTS (
             SELECT 1 FROM prediction_campaign_events x
             WHERE x.campaign_id = r.scope_id AND x.event_id = e.id)))
LEFT JOIN prediction_campaign_events ce
  ON r.scope_type = 'campaign' AND ce.campaign_id = r.scope_id AND ce.event_id = e.id
-- A set-based first cut of each trigger's condition, so only plausible firings reach the
-- reference evaluation; rules whose params are malformed pass through to be reported.
WHERE CASE r.trigger_type
  WHEN 'PROBABILITY_CROSSES_ABOVE' THEN
    jsonb_typeof(r.trigger_params->'threshold') IS DISTINCT FROM 'number'
    OR (e.previous_probability < (r.trigger_params->>'threshold')::numeric
        AND (r.trigger_params->>'threshold')::numeric <= e.current_probability)
  WHEN 'PROBABILITY_CROSSES_BELOW' THEN
    jsonb_typeof(r.trigger_params->'threshold') IS DISTINCT FROM 'number'
    OR (e.previous_probability > (r.trigger_params->>'threshold')::numeric
        AND (r.trigger_params->>'threshold')::numeric >= e.current_probability)
  WHEN 'TRUST_BELOW' THEN
    jsonb_typeof(r.trigger_params->'threshold') IS DISTINCT FROM 'number'
    OR (e.previous_trust_score >= (r.trigger_params->>'threshold')::numeric
        AND e.trust_score < (r.trigger_params->>'threshold')::numeric)
  WHEN 'EVENT_RESOLVED' THEN e.status <> 'ACTIVE'
  WHEN 'DIVERGENCE_AT_LEAST' THEN e.divergence IS DISTINCT FROM e.previous_divergence
  WHEN 'SENTIMENT_SHIFT' THEN e.sentiment_score IS DISTINCT FROM e.previous_sentiment
  WHEN 'FLAG_RAISED' THEN EXISTS (
    SELECT 1 FROM prediction_trust_flags f WHERE f.event_id = e.id
      AND f.created_at > %(since)s AND f.created_at <= %(until)s)
  WHEN 'CAMPAIGN_THRESHOLD' THEN ce.event_id IS NOT NULL
  ELSE true END
"""

_STATUS_OUTCOME = {
    "RESOLVED_YES": "YES",
    "RESOLVED_NO": "NO",
    "RESOLVED_AMBIGUOUS": "AMBIGUOUS",
    "CANCELLED": "CANCELLED",
}


@dataclass(slots=True)
class TickReport:
    evaluated: int = 0  # (rule, event) pairs evaluated
    fired: list[uuid.UUID] = field(default_factory=list)  # PENDING executions to run
    skipped: dict[str, int] = field(default_factory=dict)
    invalid_rules: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0


def evaluate_tick(conn: psycopg.Connection, *, since: datetime, until: datetime) -> TickReport:
    """Evaluate every rule in scope of the events changed in (since, until]; the caller owns
    the transaction."""
    report = TickReport()
    _validate_changed_rules(conn, since, report)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _CANDIDATES_SQL, {"since": since, "until": until, "limit": MAX_EVENTS_PER_TICK}
        ).fetchall()
    if rows:
        _evaluate_rows(conn, rows, since, until, report)
    for rule_id, reason in report.invalid_rules.items():
        _log_invalid(conn, rule_id, reason, until)
    return report


def _evaluate_rows(
    conn: psycopg.Connection,
    rows: list[dict[str, Any]],
    since: datetime,
    until: datetime,
    report: TickReport,
) -> None:
    event_ids = list({r["event_id"] for r in rows})
    flags = _new_flags(conn, event_ids, since, until)
    windows = _windows(rows)
    history = _probabilities_ago(conn, event_ids, windows["minutes"], until)
    volumes = _volumes(conn, event_ids, windows["hours"], until)
    for row in rows:
        trigger = validate_rule(row["trigger_type"], row["trigger_params"])
        if isinstance(trigger, RuleError):
            report.invalid_rules[str(row["rule_id"])] = trigger.reason
            continue
        state = EventState(
            event_id=str(row["event_id"]),
            as_of=row["updated_at"],
            title=row["title"],
            current_probability=row["current_probability"],
            previous_probability=row["previous_probability"],
            probabilities_ago=history.get(row["event_id"], {}),
            sentiment_score=row["sentiment_score"],
            previous_sentiment=row["previous_sentiment"],
            trust_score=row["trust_score"],
            previous_trust_score=row["previous_trust_score"],
            divergence=row["divergence"],
            previous_divergence=row["previous_divergence"],
            volume=volumes.get(row["event_id"], {}).get("latest"),
            median_volumes={
                h: v for h, v in volumes.get(row["event_id"], {}).items() if h != "latest"
            },
            new_flags=tuple(flags.get(row["event_id"], ())),
            resolution=_STATUS_OUTCOME.get(row["status"]),
            campaign_link=CampaignLink(
                str(row["campaign_id"]), row["relationship"], row["probability_threshold"]
            )
            if row["campaign_id"]
            else None,
        )
        report.evaluated += 1
        firing = evaluate(trigger, state)
        if firing is None:
            continue
        _log_firing(conn, row, firing, until, report)


def _validate_changed_rules(conn: psycopg.Connection, since: datetime, report: TickReport) -> None:
    """Rules created or edited since the last tick are checked whether or not anything fired,
    so a broken rule is reported even while its events are quiet."""
    for rule_id, trigger_type, params in conn.execute(
        "SELECT id, trigger_type, trigger_params FROM prediction_rules"
        " WHERE enabled AND updated_at > %s",
        (since,),
    ):
        trigger = validate_rule(trigger_type, params)
        if isinstance(trigger, RuleError):
            report.invalid_rules[str(rule_id)] = trigger.reason


def _windows(rows: list[dict[str, Any]]) -> dict[str, set[int]]:
    minutes: set[int] = set()
    hours: set[int] = set()
    for row in rows:
        params = row["trigger_params"] if isinstance(row["trigger_params"], dict) else {}
        if row["trigger_type"] == "PROBABILITY_SHIFT" and isinstance(
            params.get("window_minutes"), int
        ):
            minutes.add(params["window_minutes"])
        if row["trigger_type"] == "VOLUME_SPIKE" and isinstance(params.get("window_hours"), int):
            hours.add(params["window_hours"])
    return {"minutes": minutes, "hours": hours}


def _new_flags(conn, event_ids, since, until) -> dict[Any, list[NewFlag]]:
    found: dict[Any, list[NewFlag]] = defaultdict(list)
    for event_id, flag_id, flag_type, severity in conn.execute(
        "SELECT event_id, id, flag_type, severity FROM prediction_trust_flags"
        " WHERE event_id = ANY(%s) AND created_at > %s AND created_at <= %s",
        (event_ids, since, until),
    ):
        found[event_id].append(NewFlag(str(flag_id), flag_type, severity))
    return found


def _probabilities_ago(conn, event_ids, windows: set[int], until) -> dict[Any, dict[int, Any]]:
    """Per event and window, the probability at or before `until - window` (one query a window)."""
    found: dict[Any, dict[int, Any]] = defaultdict(dict)
    for minutes in sorted(windows):
        for event_id, probability in conn.execute(
            "SELECT DISTINCT ON (event_id) event_id, probability FROM prediction_snapshots"
            " WHERE event_id = ANY(%s) AND snapshot_at <= %s"
            " ORDER BY event_id, snapshot_at DESC",
            (event_ids, until - timedelta(minutes=minutes)),
        ):
            found[event_id][minutes] = probability
    return found


def _volumes(conn, event_ids, windows: set[int], until) -> dict[Any, dict[Any, Any]]:
    """Per event: the latest snapshot's volume, and the median before it per window."""
    if not windows:
        return {}
    found: dict[Any, dict[Any, Any]] = defaultdict(dict)
    longest = max(windows)
    rows = conn.execute(
        "SELECT event_id, snapshot_at, volume FROM prediction_snapshots"
        " WHERE event_id = ANY(%s) AND snapshot_at > %s AND snapshot_at <= %s"
        " ORDER BY event_id, snapshot_at",
        (event_ids, until - timedelta(hours=longest + 1), until),
    ).fetchall()
    series: dict[Any, list[tuple[datetime, int]]] = defaultdict(list)
    for event_id, at, volume in rows:
        series[event_id].append((at, volume))
    for event_id, points in series.items():
        latest_at, latest = points[-1]
        found[event_id]["latest"] = latest
        for hours in windows:
            before = sorted(v for at, v in points[:-1] if at > latest_at - timedelta(hours=hours))
            if before:
                middle = len(before) // 2
                found[event_id][hours] = (
                    before[middle] if len(before) % 2 else (before[middle - 1] + before[middle]) / 2
                )
    return found


def _log_firing(conn, row: dict[str, Any], firing, now: datetime, report: TickReport) -> None:
    """Throttle under the rule's row lock and write the execution; a known state is skipped."""
    rule = conn.execute(
        "SELECT last_fired_at FROM prediction_rules WHERE id = %s FOR UPDATE", (row["rule_id"],)
    ).fetchone()
    if conn.execute(
        "SELECT 1 FROM prediction_rule_executions WHERE rule_id = %s AND event_id = %s"
        " AND trigger_snapshot->>'state_key' = %s",
        (row["rule_id"], row["event_id"], firing.state_key),
    ).fetchone():
        report.duplicates += 1
        return
    throttle = validate_throttle(
        cooldown_minutes=row["cooldown_minutes"],
        max_fires_per_day=row["max_fires_per_day"],
        active_hours=row["active_hours"],
    )
    if isinstance(throttle, RuleError):
        report.invalid_rules[str(row["rule_id"])] = throttle.reason
        return
    fired_today = conn.execute(
        "SELECT count(*) FROM prediction_rule_executions WHERE rule_id = %s"
        " AND started_at >= %s AND status NOT LIKE 'SKIPPED%%'",
        (row["rule_id"], utc_day_start(now)),
    ).fetchone()[0]
    decision = decide(throttle, now=now, last_fired_at=rule[0], fires_today=fired_today)
    snapshot = {**firing.trigger_snapshot, "state_key": firing.state_key}
    status = "PENDING" if decision == "FIRE" else decision
    execution_id = conn.execute(
        "INSERT INTO prediction_rule_executions (rule_id, event_id, trigger_snapshot, status,"
        " started_at, completed_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (
            row["rule_id"],
            row["event_id"],
            Jsonb(snapshot),
            status,
            now,
            None if decision == "FIRE" else now,
        ),
    ).fetchone()[0]
    if decision != "FIRE":
        report.skipped[decision] = report.skipped.get(decision, 0) + 1
        return
    conn.execute(
        "UPDATE prediction_rules SET last_fired_at = %s, fire_count = coalesce(fire_count, 0) + 1,"
        " updated_at = now() WHERE id = %s",
        (now, row["rule_id"]),
    )
    record_audit(
        conn,
        action="rule.fired",
        resource_type="prediction_rules",
        resource_id=row["rule_id"],
        actor_type="system",
        details={
            "execution_id": str(execution_id),
            "event_id": str(row["event_id"]),
            "trigger_type": row["trigger_type"],
            "state_key": firing.state_key,
        },
    )
    report.fired.append(execution_id)


def _log_invalid(conn, rule_id: str, reason: str, now: datetime) -> None:
    """An invalid rule is skipped with its reason recorded once (not on every tick)."""
    if conn.execute(
        "SELECT 1 FROM prediction_rule_executions WHERE rule_id = %s AND status = 'FAILED'"
        " AND error_message = %s",
        (rule_id, f"invalid rule: {reason}"),
    ).fetchone():
        return
    conn.execute(
        "INSERT INTO prediction_rule_executions (rule_id, trigger_snapshot, status, started_at,"
        " completed_at, error_message) VALUES (%s, %s, 'FAILED', %s, %s, %s)",
        (rule_id, Jsonb({"invalid": True}), now, now, f"invalid rule: {reason}"),
    )


def refresh_rules_active(conn: psycopg.Connection, now: datetime) -> None:
    """prediction_usage_metrics.rules_active of the calendar month for every rule owner."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    conn.execute(
        """INSERT INTO prediction_usage_metrics (user_id, period_start, period_end, rules_active)
           SELECT user_id, %(start)s, %(end)s, count(*) FILTER (WHERE enabled)
           FROM prediction_rules GROUP BY user_id
           ON CONFLICT (user_id, period_start) DO UPDATE
             SET rules_active = EXCLUDED.rules_active, updated_at = now()""",
        {"start": start, "end": end},
    )
