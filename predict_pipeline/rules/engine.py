"""The rule sensor's tick: which rules fire on the events that changed, throttled and logged.

The tick is set-based from end to end, so 10,000 rules over 10,000 changed events stay far
inside a sensor's time budget:

1. The changed events: state written since the cursor (new snapshots, trust scores and
   resolutions all touch `prediction_events.updated_at`) or a new trust flag.
2. One query joins them to the enabled, unexpired rules in scope (a hash join per scope type:
   event, category, tag, campaign, all) that may see them (tenancy, below) and applies every
   trigger's condition in SQL, with the
   probability `window_minutes` ago and the trailing median volume looked up once per event and
   window. The conditions mirror `triggers.evaluate` (exact numeric arithmetic, as there), which
   then confirms each candidate and builds its firing; the two are held equal by a test.
3. Firings are throttled under row locks on their rules (two concurrent ticks cannot both pass a
   cooldown) by one statement that decides them with window functions over each rule's firings
   (the closed form of `throttle.decide` applied one by one; held equal by a test), inserts
   them as `prediction_rule_executions` rows against a unique (rule, event, state) index —
   PENDING when they fire (the actions job runs them) or their SKIPPED_* status — and updates
   the rules' firing bookkeeping; one more statement audits them.
4. The feed runs whose signals changed these events are credited with the pairs evaluated and
   the firings (`triggers_evaluated` / `triggers_fired`).

Tenancy: the tick runs as the pipeline's BYPASSRLS role, so it applies visibility itself
(sql/0050, `predict_pipeline.tenancy`): a personal rule sees the events its owner can see, an
org rule public events and its org's (while its owner is a member), a system rule public events
only; a campaign-scoped rule is live only if it sees its campaign. `_confirm` checks every
candidate again with the Python statement of the same rules, as it does the trigger conditions.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audits
from predict_pipeline.db.connection import local_setting
from predict_pipeline.db.rows import one_row
from predict_pipeline.model import RESOLUTIONS
from predict_pipeline.rules import RuleError
from predict_pipeline.rules.throttle import utc_day_start, validate_throttle
from predict_pipeline.rules.tick_sql import (
    CANDIDATE_COLUMNS,
    CANDIDATES_SQL,
    CHANGED_SQL,
    IN_SCOPE_COUNTS_SQL,
    KEYS_SQL,
    LATEST_EDGES_SQL,
    LIVE_SQL,
)
from predict_pipeline.rules.trigger_schemas import (
    DIVERGENCE_LEVELS,
    SEVERITIES,
    TRIGGER_TYPES,
    ValidatedTrigger,
    validate_rule,
)
from predict_pipeline.rules.triggers import (
    CampaignLink,
    EventState,
    Firing,
    MarketEdge,
    NewFlag,
    evaluate,
)
from predict_pipeline.tenancy import Viewer, rule_viewer, sees_campaign, sees_event

# A tick looks at this many changed events at most; the cursor carries on from the last change
# it covered.
MAX_EVENTS_PER_TICK = 50_000
# Memory per sort of the tick: 50,000 changed events' firings sort in memory (4 MB spilled
# 100 MB to temporary files).
TICK_WORK_MEM = "64MB"

_RULES_SQL = """
SELECT r.id AS rule_id, r.name AS rule_name, r.user_id, r.org_id, r.is_system, r.scope_type,
       r.trigger_type, r.trigger_params, r.cooldown_minutes, r.max_fires_per_day,
       r.active_hours, c.user_id AS campaign_owner, c.org_id AS campaign_org
FROM prediction_rules r
LEFT JOIN prediction_campaigns c ON r.scope_type = 'campaign' AND c.id = r.scope_id
WHERE r.id = ANY(%s::uuid[])
"""

_EVENTS_SQL = """
SELECT id AS event_id, title, updated_at, current_probability, previous_probability,
       sentiment_score, previous_sentiment, trust_score, previous_trust_score,
       divergence, previous_divergence, status, is_public, org_id, created_by
FROM prediction_events WHERE id = ANY(%s::uuid[])
"""

# The stages' one definition of membership (held members skipped), as the tick's SQL reads it.
_MEMBERSHIPS_SQL = """
SELECT u, predict_user_orgs(u) FROM unnest(%s::uuid[]) AS u
"""

_STATUS_OUTCOME = {
    "RESOLVED_YES": "YES",
    "RESOLVED_NO": "NO",
    "RESOLVED_AMBIGUOUS": "AMBIGUOUS",
    "CANCELLED": "CANCELLED",
}


@dataclass(slots=True)
class TickReport:
    evaluated: int = 0  # (rule, event) pairs in scope, each evaluated
    fired: list[uuid.UUID] = field(default_factory=list)  # PENDING executions to run
    run_keys: dict[uuid.UUID, str] = field(default_factory=dict)  # rule:event:state per firing
    skipped: dict[str, int] = field(default_factory=dict)
    invalid_rules: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    # Candidates of the SQL that the reference's visibility refused (0 unless the two differ).
    refused_unseen: int = 0
    changed_events: int = 0
    # Where the next tick starts: `until`, or the last change covered when the tick was capped.
    covered_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Candidate:
    rule: dict[str, Any]
    trigger: ValidatedTrigger
    firing: Firing


def evaluate_tick(
    conn: psycopg.Connection,
    *,
    since: datetime,
    until: datetime,
    max_events: int = MAX_EVENTS_PER_TICK,
    cadence: str | None = None,
) -> TickReport:
    """Evaluate every rule in scope of the events changed in (since, until]; the caller owns
    the transaction. Only rules their owners' plans let run are evaluated (not held, and of
    the `cadence`: 'realtime', 'hourly' or None for both; see predict_tick_rules), on events
    and campaigns the plans do not hold."""
    report = TickReport(covered_until=until)
    _validate_changed_rules(conn, since, report)
    changed = conn.execute(
        CHANGED_SQL, {"since": since, "until": until, "limit": max_events}
    ).fetchall()
    if len(changed) == max_events:
        # Capped: events changed at the last time seen may lie beyond the cap, so the next
        # tick starts just before that time and sees them all.
        last = changed[-1][1]
        changed = [row for row in changed if row[1] < last] or changed
        report.covered_until = changed[-1][1]
    events = [event_id for event_id, _ in changed]
    report.changed_events = len(events)
    if events:
        params = _params(since, until, events) | {"cadence": cadence}
        # The tick's sorts and CTEs of tens of thousands of firings fit in memory, not on disk.
        with local_setting(conn, "work_mem", TICK_WORK_MEM):
            # The rules and event keys once, in temporary tables both queries below read.
            conn.execute(
                "DROP TABLE IF EXISTS pg_temp.tick_live, pg_temp.tick_keys, pg_temp.tick_counts"
            )
            conn.execute(LIVE_SQL, params)
            conn.execute(KEYS_SQL, params)
            _analyze_tick_tables(conn)
            # Kept in the database: the feed runs' credit joins them there.
            conn.execute(IN_SCOPE_COUNTS_SQL)
            report.evaluated = one_row(
                conn.execute("SELECT coalesce(sum(evaluated), 0)::bigint FROM tick_counts")
            )[0]
            rows = [
                dict(zip(CANDIDATE_COLUMNS, row, strict=True))
                for row in conn.execute(CANDIDATES_SQL, params)
            ]
            confirmed = _confirm(conn, rows, since, until, report)
            fired_events = _log_firings(conn, confirmed, until, report)
            _credit_feed_runs(conn, events, fired_events, until)
            conn.execute("DROP TABLE pg_temp.tick_live, pg_temp.tick_keys, pg_temp.tick_counts")
    for rule_id, reason in report.invalid_rules.items():
        _log_invalid(conn, rule_id, reason, until)
    return report


def _analyze_tick_tables(conn: psycopg.Connection) -> None:
    """Statistics of the tick's temporary tables, which autovacuum never analyzes: without them
    the planner takes the look-back joins for a few rows and nest-loops them (1.6 s of the
    tick's 3 s at 1,000 changed events). A small sample is enough for join sizes."""
    with local_setting(conn, "default_statistics_target", "10"):
        conn.execute("ANALYZE pg_temp.tick_live, pg_temp.tick_keys")


def _params(since: datetime, until: datetime, events: list[Any]) -> dict[str, Any]:
    return {
        "since": since,
        "until": until,
        "events": events,
        "levels": list(DIVERGENCE_LEVELS),
        "severities": list(SEVERITIES),
        "outcomes": list(RESOLUTIONS),
        "types": list(TRIGGER_TYPES),
    }


def _confirm(
    conn: psycopg.Connection,
    rows: list[dict[str, Any]],
    since: datetime,
    until: datetime,
    report: TickReport,
) -> list[_Candidate]:
    """The reference evaluation of each candidate the SQL found; builds the firings."""
    if not rows:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        rules = {
            r["rule_id"]: r for r in cur.execute(_RULES_SQL, (list({r["rule_id"] for r in rows}),))
        }
        events = {
            e["event_id"]: e
            for e in cur.execute(_EVENTS_SQL, (list({r["event_id"] for r in rows}),))
        }
    owners = list({r["user_id"] for r in rules.values()})
    # Each owner to the org ids predict_user_orgs returns (a uuid[]).
    memberships: dict[uuid.UUID, list[uuid.UUID]] = dict(
        conn.execute(_MEMBERSHIPS_SQL, (owners,)).fetchall()
    )
    flag_events = [
        r["event_id"] for r in rows if rules[r["rule_id"]]["trigger_type"] == "FLAG_RAISED"
    ]
    flags = _new_flags(conn, flag_events, since, until) if flag_events else {}
    edge_events = [
        r["event_id"] for r in rows if rules[r["rule_id"]]["trigger_type"] == "EDGE_AT_LEAST"
    ]
    edges = latest_market_edges(conn, edge_events, until) if edge_events else {}
    # A rule's validated trigger, and the key of its (type, params): rules with equal params
    # fire identically on one state, so each (trigger, state) is evaluated once.
    triggers: dict[Any, tuple[ValidatedTrigger, bytes] | RuleError] = {}
    viewers: dict[Any, Viewer | None] = {}  # per rule; None: it does not see its campaign
    states: dict[tuple, EventState] = {}
    firings: dict[tuple, Firing | None] = {}
    confirmed = []
    for row in rows:
        rule = rules[row["rule_id"]]
        rule_id = rule["rule_id"]
        if rule_id not in triggers:
            validated = validate_rule(rule["trigger_type"], rule["trigger_params"])
            triggers[rule_id] = (
                validated
                if isinstance(validated, RuleError)
                else (validated, orjson.dumps(validated.params, option=orjson.OPT_SORT_KEYS))
            )
        checked = triggers[rule_id]
        if isinstance(checked, RuleError):
            report.invalid_rules[str(rule_id)] = checked.reason
            continue
        trigger, params_key = checked
        event = events[row["event_id"]]
        if rule_id not in viewers:
            viewers[rule_id] = _rule_viewer(rule, memberships)
        viewer = viewers[rule_id]
        if viewer is None or not sees_event(
            viewer,
            is_public=event["is_public"],
            org_id=event["org_id"],
            created_by=event["created_by"],
        ):
            report.refused_unseen += 1
            continue
        params = trigger.params
        # Only the triggers that look back have a window; the others get no look-back values.
        window_minutes, window_hours = params.get("window_minutes"), params.get("window_hours")
        state_key = (
            row["event_id"],
            window_minutes if row["probability_ago"] is not None else None,
            row["probability_ago"],
            window_hours if row["spike_median"] is not None else None,
            row["spike_volume"],
            row["spike_median"],
            row["campaign_id"],
            row["relationship"],
            row["probability_threshold"],
        )
        state = states.get(state_key)
        if state is None:
            state = states[state_key] = _event_state(event, row, state_key, flags, edges)
        fired_key = (trigger.trigger_type, params_key, state_key)
        if fired_key not in firings:
            firings[fired_key] = evaluate(trigger, state)
        firing = firings[fired_key]
        if firing is not None:
            confirmed.append(_Candidate(rule, trigger, firing))
    return confirmed


def event_state_fields(event: dict[str, Any], event_id: Any) -> dict[str, Any]:
    """The EventState fields read straight off a prediction_events row: the tick's and the dry
    run's one reading of an event's state."""
    return {
        "event_id": str(event_id),
        "as_of": event["updated_at"],
        "title": event["title"],
        "current_probability": event["current_probability"],
        "previous_probability": event["previous_probability"],
        "sentiment_score": event["sentiment_score"],
        "previous_sentiment": event["previous_sentiment"],
        "trust_score": event["trust_score"],
        "previous_trust_score": event["previous_trust_score"],
        "divergence": event["divergence"],
        "previous_divergence": event["previous_divergence"],
        "resolution": _STATUS_OUTCOME.get(event["status"]),
    }


def _event_state(
    event: dict[str, Any],
    row: dict[str, Any],
    state_key: tuple,
    flags: dict[Any, list[NewFlag]],
    edges: dict[Any, tuple[MarketEdge, ...]],
) -> EventState:
    """The reference's input for one candidate: the event's state with the look-back values of
    the candidate's window (`state_key` holds the window whose value is known) and its link."""
    _, window_minutes, probability_ago, window_hours, _, spike_median, *_ = state_key
    return EventState(
        **event_state_fields(event, event["event_id"]),
        probabilities_ago={window_minutes: probability_ago} if window_minutes is not None else {},
        volume=row["spike_volume"],
        median_volumes={window_hours: spike_median} if window_hours is not None else {},
        new_flags=tuple(flags.get(row["event_id"], ())),
        campaign_link=CampaignLink(
            str(row["campaign_id"]), row["relationship"], row["probability_threshold"]
        )
        if row["campaign_id"]
        else None,
        market_edges=edges.get(row["event_id"], ()),
    )


def _rule_viewer(rule: dict[str, Any], memberships: dict) -> Viewer | None:
    """Whom the rule sees as (the reference statement of the tick's tenancy clauses,
    predict_pipeline.tenancy), or None when it is scoped to a campaign it cannot see."""
    viewer = rule_viewer(rule["user_id"], rule["org_id"], rule["is_system"], memberships)
    if rule["scope_type"] == "campaign" and not sees_campaign(
        viewer, owner=rule["campaign_owner"], org_id=rule["campaign_org"]
    ):
        return None
    return viewer


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


def latest_market_edges(
    conn: psycopg.Connection, event_ids: list[Any], until: datetime
) -> dict[Any, tuple[MarketEdge, ...]]:
    """Each event's market edges at its newest interval with any, up to `until`."""
    found: dict[Any, list[MarketEdge]] = defaultdict(list)
    for event_id, *edge in conn.execute(
        LATEST_EDGES_SQL, {"events": list(set(event_ids)), "until": until}
    ):
        found[event_id].append(MarketEdge(*edge))
    return {event_id: tuple(edges) for event_id, edges in found.items()}


def _new_flags(conn, event_ids, since, until) -> dict[Any, list[NewFlag]]:
    found: dict[Any, list[NewFlag]] = defaultdict(list)
    for event_id, flag_id, flag_type, severity in conn.execute(
        "SELECT event_id, id, flag_type, severity FROM prediction_trust_flags"
        " WHERE event_id = ANY(%s) AND created_at > %s AND created_at <= %s",
        (list(set(event_ids)), since, until),
    ):
        found[event_id].append(NewFlag(str(flag_id), flag_type, severity))
    return found


# The throttle of a tick's firings, set-based: a rule's firings are decided in `ord` order, each
# seeing the ones before it, as `throttle.decide` would one by one. All share one `now`, so the
# state a firing leaves is closed-form: after a FIRE with a cooldown every later firing of the
# rule is in cooldown, and without one the n-th fresh firing passes while fires_today + n stays
# within the cap. A firing already logged (rule, event, state) or repeated in the batch is a
# duplicate and uses no budget. Python still validates each rule's throttle and reads its active
# hours on the zone's wall clock (`hours_ok`); the test of this statement against `decide` is
# tests/rules/test_tick_sql.py.
_THROTTLE_DECISION = """CASE
  WHEN NOT k.hours_ok THEN 'SKIPPED_HOURS'
  WHEN k.cooldown > 0 AND r.last_fired_at > %(now)s - make_interval(mins => k.cooldown)
    THEN 'SKIPPED_COOLDOWN'
  WHEN k.cap IS NOT NULL AND coalesce(t.fires, 0) >= k.cap THEN 'SKIPPED_LIMIT'
  WHEN k.cooldown > 0 THEN CASE WHEN k.rn = 1 THEN 'FIRE' ELSE 'SKIPPED_COOLDOWN' END
  WHEN k.cap IS NOT NULL AND coalesce(t.fires, 0) + k.rn > k.cap THEN 'SKIPPED_LIMIT'
  ELSE 'FIRE' END"""

_LOG_FIRINGS_SQL = f"""
WITH x AS MATERIALIZED (
  SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb) AS x(ord int, rule_id uuid, event_id uuid,
    state_key text, snapshot int, valid boolean, hours_ok boolean, cooldown int, cap int)
),
-- The decisions sort narrow rows; each firing's snapshot, sent once, is read at the insert.
fresh AS (
  SELECT x.ord, x.rule_id, x.event_id, x.valid, x.hours_ok, x.cooldown, x.cap,
         row_number() OVER (PARTITION BY x.rule_id, x.event_id, x.state_key ORDER BY x.ord) = 1
         AND NOT EXISTS (SELECT 1 FROM prediction_rule_executions e
                         WHERE e.rule_id = x.rule_id AND e.event_id = x.event_id
                           AND e.trigger_snapshot ? 'state_key'
                           AND e.trigger_snapshot->>'state_key' = x.state_key) AS fresh
  FROM x
),
ranked AS (
  SELECT f.*, row_number() OVER (PARTITION BY f.rule_id ORDER BY f.ord) AS rn
  FROM fresh f WHERE f.fresh AND f.valid
),
today AS (
  SELECT e.rule_id, count(*) AS fires FROM prediction_rule_executions e
  WHERE e.rule_id IN (SELECT rule_id FROM ranked) AND e.started_at >= %(day_start)s
    AND e.status NOT LIKE 'SKIPPED%%'
  GROUP BY e.rule_id
),
decided AS (
  SELECT k.ord, {_THROTTLE_DECISION} AS decision
  FROM ranked k JOIN prediction_rules r ON r.id = k.rule_id
  LEFT JOIN today t ON t.rule_id = k.rule_id
),
inserted AS (
  INSERT INTO prediction_rule_executions
    (id, rule_id, event_id, trigger_snapshot, status, started_at, completed_at)
  SELECT gen_random_uuid(), x.rule_id, x.event_id, (%(snapshots)s::jsonb) -> x.snapshot,
         CASE WHEN d.decision = 'FIRE' THEN 'PENDING' ELSE d.decision END, %(now)s,
         CASE WHEN d.decision = 'FIRE' THEN NULL ELSE %(now)s::timestamptz END
  FROM decided d JOIN x ON x.ord = d.ord
  ON CONFLICT DO NOTHING
  RETURNING id, rule_id, event_id, status, trigger_snapshot->>'state_key' AS state_key
),
-- Firing bookkeeping, not an edit of the rule: updated_at stays the rule's own.
bookkept AS (
  UPDATE prediction_rules r SET last_fired_at = %(now)s,
         fire_count = coalesce(r.fire_count, 0) + u.n
  FROM (SELECT rule_id, count(*) AS n FROM inserted WHERE status = 'PENDING'
        GROUP BY rule_id) u
  WHERE r.id = u.rule_id
  RETURNING 1
)
SELECT (SELECT count(*) FROM fresh WHERE NOT fresh) AS duplicates,
       (SELECT count(*) FROM decided) - (SELECT count(*) FROM inserted) AS conflicts,
       (SELECT coalesce(jsonb_object_agg(decision, n), '{{}}') FROM
          (SELECT decision, count(*) AS n FROM decided WHERE decision <> 'FIRE'
           GROUP BY decision) s) AS skipped,
       (SELECT array_agg(DISTINCT rule_id) FROM fresh WHERE fresh AND NOT valid) AS invalid,
       (SELECT jsonb_agg(jsonb_build_array(id, rule_id, event_id, state_key))
        FROM inserted WHERE status = 'PENDING') AS fired,
       (SELECT count(*) FROM bookkept) AS rules_fired
"""  # noqa: S608 (module constants only)


def _log_firings(
    conn: psycopg.Connection, candidates: list[_Candidate], now: datetime, report: TickReport
) -> dict[Any, int]:
    """Throttle the firings under their rules' row locks and write them in one statement;
    returns the firings (not the skips) per event and rule owner."""
    if not candidates:
        return {}
    rules = {c.rule["rule_id"]: c.rule for c in candidates}
    # Two concurrent ticks cannot both pass a cooldown: the second waits for the first's commit.
    conn.execute(
        "SELECT 1 FROM prediction_rules WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
        (sorted(rules),),
    )
    # Each rule's throttle validated once, its active hours read on its zone's wall clock.
    throttles: dict[Any, Any] = {}
    columns: dict[Any, dict[str, Any]] = {}
    for rule_id, rule in rules.items():
        throttle = throttles[rule_id] = validate_throttle(
            cooldown_minutes=rule["cooldown_minutes"],
            max_fires_per_day=rule["max_fires_per_day"],
            active_hours=rule["active_hours"],
        )
        if isinstance(throttle, RuleError):
            columns[rule_id] = {"valid": False, "hours_ok": False, "cooldown": None, "cap": None}
        else:
            columns[rule_id] = {
                "valid": True,
                "hours_ok": throttle.active_hours is None or throttle.active_hours.contains(now),
                "cooldown": throttle.cooldown_minutes,
                "cap": throttle.max_fires_per_day,
            }
    # Firings of one rule are decided in event order, each seeing the ones before it.
    keyed = sorted(
        ((str(c.rule["rule_id"]), c.firing.event_id, c) for c in candidates),
        key=lambda item: (item[0], item[1]),
    )
    # Rules with equal params share their firing on an event: its snapshot is sent once.
    snapshots: dict[int, int] = {}
    documents: list[orjson.Fragment] = []
    batch = []
    for ord_, (rule_key, event_key, c) in enumerate(keyed):
        firing = c.firing
        index = snapshots.get(id(firing))
        if index is None:
            index = snapshots[id(firing)] = len(documents)
            snapshot = {**firing.trigger_snapshot, "state_key": firing.state_key}
            documents.append(orjson.Fragment(orjson.dumps(snapshot, default=str)))
        batch.append(
            {
                "ord": ord_,
                "rule_id": rule_key,
                "event_id": event_key,
                "state_key": firing.state_key,
                "snapshot": index,
                **columns[c.rule["rule_id"]],
            }
        )
    # One JSON document rather than arrays of JSON text: quoting array elements costs more
    # than the insert itself.
    duplicates, conflicts, skipped, invalid, fired, _ = one_row(
        conn.execute(
            _LOG_FIRINGS_SQL,
            {
                "batch": orjson.dumps(batch).decode(),
                "snapshots": orjson.dumps(documents).decode(),
                "now": now,
                "day_start": utc_day_start(now),
            },
        )
    )
    report.duplicates += duplicates + conflicts
    for decision, count in skipped.items():
        report.skipped[decision] = report.skipped.get(decision, 0) + count
    for rule_id in invalid or ():
        report.invalid_rules[str(rule_id)] = throttles[rule_id].reason
    if not fired:
        return {}
    # The order the firings were decided in: the actions runs carry them in this order.
    order = {
        (rule_key, event_key, c.firing.state_key): i
        for i, (rule_key, event_key, c) in enumerate(keyed)
    }
    fired.sort(key=lambda row: order[(row[1], row[2], row[3])])
    per_event: dict[Any, int] = defaultdict(int)  # per (event, rule owner)
    for execution_id, rule_key, event_key, state_key in fired:
        execution = uuid.UUID(execution_id)
        rule = rules[uuid.UUID(rule_key)]
        per_event[(uuid.UUID(event_key), rule["user_id"])] += 1
        report.fired.append(execution)
        report.run_keys[execution] = f"{rule_key}:{event_key}:{state_key}"
    record_audits(
        conn,
        action="rule.fired",
        resource_type="prediction_rules",
        actor_type="system",
        entries=[
            (
                rule_key,
                {
                    "execution_id": execution_id,
                    "event_id": event_key,
                    "trigger_type": rules[uuid.UUID(rule_key)]["trigger_type"],
                    "state_key": state_key,
                },
            )
            for execution_id, rule_key, event_key, state_key in fired
        ],
    )
    return per_event


def _credit_feed_runs(
    conn: psycopg.Connection,
    events: list[Any],
    fired: dict[tuple[Any, Any], int],
    now: datetime,
) -> None:
    """The feed runs whose signals changed these events, not yet credited, get this tick's
    evaluations (tick_counts) and firings of those events by rules of the feed's owner (another
    tenant's rules are not the run's to count)."""
    keys = sorted(fired, key=str)
    conn.execute(
        """WITH hit AS (
             UPDATE predict_meta.feed_run_events f SET evaluated_at = %(now)s
             WHERE f.event_id = ANY(%(events)b::uuid[]) AND f.evaluated_at IS NULL
             RETURNING f.feed_run_id, f.event_id),
           counted AS (
             SELECT coalesce(t.event_id, x.event_id) AS event_id,
                    coalesce(t.owner, x.owner) AS owner,
                    coalesce(t.evaluated, 0) AS evaluated, coalesce(x.fired, 0) AS fired
             FROM tick_counts t
             FULL JOIN unnest(%(keys)s::uuid[], %(owners)s::uuid[], %(fired)s::int[])
               AS x(event_id, owner, fired)
               ON x.event_id = t.event_id AND x.owner = t.owner)
           UPDATE prediction_feed_runs r
           SET triggers_evaluated = coalesce(r.triggers_evaluated, 0) + x.evaluated,
               triggers_fired = coalesce(r.triggers_fired, 0) + x.fired
           FROM (SELECT h.feed_run_id, sum(c.evaluated) AS evaluated, sum(c.fired) AS fired
                 FROM hit h
                 JOIN prediction_feed_runs fr ON fr.id = h.feed_run_id
                 JOIN prediction_data_feeds fd ON fd.id = fr.feed_id
                 JOIN counted c ON c.event_id = h.event_id AND c.owner = fd.user_id
                 GROUP BY h.feed_run_id) x
           WHERE r.id = x.feed_run_id""",
        {
            "now": now,
            "events": events,
            "keys": [e for e, _ in keys],
            "owners": [o for _, o in keys],
            "fired": [fired[k] for k in keys],
        },
    )


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
