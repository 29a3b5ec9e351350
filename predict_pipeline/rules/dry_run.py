"""Would this rule fire on this event now, and why (not)? The rule tick's checks, in its order,
for one rule and one event, read-only: no execution row, no firing bookkeeping, no delivery.

The checks are the tick's (`engine.tick`): the rule is enabled and not expired; the event lies
in its scope; the rule's viewer sees the event (and, for a campaign scope, its campaign); the
plans hold neither; the trigger (`triggers.evaluate`, the reference the tick's SQL is held equal
to) fires on the event's current state; no execution was logged for the same state already;
and the throttle (`throttle.decide`) lets it through. "New" trust flags, which the tick takes
from the flags raised since its cursor, are here the flags raised since the rule last fired (all
of them when it never fired) up to `at`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from predict_pipeline.db.rows import one_row
from predict_pipeline.plans import live_holds
from predict_pipeline.rules import RuleError
from predict_pipeline.rules.engine import event_state_fields, latest_market_edges
from predict_pipeline.rules.throttle import decide, utc_day_start, validate_throttle
from predict_pipeline.rules.trigger_schemas import validate_rule
from predict_pipeline.rules.triggers import (
    CampaignLink,
    EventState,
    MarketEdge,
    NewFlag,
    evaluate,
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(slots=True)
class Verdict:
    rule_id: uuid.UUID
    event_id: uuid.UUID
    at: datetime
    checks: list[Check] = field(default_factory=list)
    # What the tick would record: PENDING (fires), SKIPPED_* (throttled) or None (no firing).
    outcome: str | None = None
    firing: dict[str, Any] | None = None

    @property
    def would_fire(self) -> bool:
        return self.outcome == "PENDING"

    def as_json(self) -> dict[str, Any]:
        return {
            "rule_id": str(self.rule_id),
            "event_id": str(self.event_id),
            "at": self.at.isoformat(),
            "would_fire": self.would_fire,
            "outcome": self.outcome,
            "checks": [
                {"check": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks
            ],
            "firing": self.firing,
        }


def explain_rule(
    conn: psycopg.Connection, rule_id: uuid.UUID, event_id: uuid.UUID, at: datetime
) -> Verdict:
    """The tick's verdict on one rule and one event at `at`, read without writing anything.

    `conn` reads as the pipeline does (the rule's own view decides, not the caller's); a rule or
    event that does not exist raises LookupError."""
    with conn.cursor(row_factory=dict_row) as cur:
        rule = cur.execute(
            """SELECT r.*, v.viewer, v.viewer_orgs,
                      c.user_id AS campaign_owner, c.org_id AS campaign_org
               FROM prediction_rules r
               CROSS JOIN LATERAL predict_rule_viewer(r.user_id, r.org_id, r.is_system) v
               LEFT JOIN prediction_campaigns c ON r.scope_type = 'campaign' AND c.id = r.scope_id
               WHERE r.id = %s""",
            (rule_id,),
        ).fetchone()
        if rule is None:
            raise LookupError(f"no rule {rule_id}")
        event = cur.execute(
            """SELECT e.*, predict_sees_event(%s, %s, e.is_public, e.org_id, e.created_by) AS seen
               FROM prediction_events e WHERE e.id = %s""",
            (rule["viewer"], rule["viewer_orgs"], event_id),
        ).fetchone()
        if event is None:
            raise LookupError(f"no event {event_id}")
    verdict = Verdict(rule_id, event_id, at)
    checks = verdict.checks

    live = bool(rule["enabled"]) and (rule["expires_at"] is None or rule["expires_at"] > at)
    checks.append(
        Check(
            "enabled",
            live,
            "enabled"
            if live
            else ("disabled" if not rule["enabled"] else f"expired at {rule['expires_at']}"),
        )
    )
    link = _campaign_link(conn, rule, event_id)
    in_scope, scope_detail = _in_scope(rule, event, link)
    checks.append(Check("scope", in_scope, scope_detail))
    sees = bool(event["seen"]) and _sees_campaign(conn, rule)
    checks.append(
        Check(
            "visibility",
            sees,
            "the rule sees the event"
            if sees
            else "the rule's owner (or org) cannot see this event or its campaign",
        )
    )
    held = live_holds(conn, "rule", at, [rule_id]).get(rule_id)
    held_event = live_holds(conn, "event", at, [event_id]).get(event_id)
    checks.append(
        Check(
            "plan",
            held is None and held_event is None,
            "not held"
            if held is None and held_event is None
            else f"held by plan: {held or held_event}",
        )
    )
    trigger = validate_rule(rule["trigger_type"], rule["trigger_params"])
    if isinstance(trigger, RuleError):
        checks.append(Check("trigger", False, f"invalid rule: {trigger.reason}"))
        return verdict
    state = _event_state(conn, rule, event, trigger.params, link, at)
    firing = evaluate(trigger, state)
    if firing is None:
        checks.append(Check("trigger", False, _quiet(trigger.trigger_type, state, trigger.params)))
    else:
        checks.append(Check("trigger", True, firing.trigger_snapshot["summary"]))
        verdict.firing = {**firing.trigger_snapshot, "state_key": firing.state_key}
    if not all(c.passed for c in checks) or firing is None:
        return verdict
    logged = conn.execute(
        "SELECT status FROM prediction_rule_executions WHERE rule_id = %s AND event_id = %s"
        " AND trigger_snapshot->>'state_key' = %s LIMIT 1",
        (rule_id, event_id, firing.state_key),
    ).fetchone()
    checks.append(
        Check(
            "new state",
            logged is None,
            "no execution logged for this state yet"
            if logged is None
            else f"already logged for this state ({logged[0]}): a tick never fires twice",
        )
    )
    if logged is not None:
        return verdict
    throttle = validate_throttle(
        cooldown_minutes=rule["cooldown_minutes"],
        max_fires_per_day=rule["max_fires_per_day"],
        active_hours=rule["active_hours"],
    )
    if isinstance(throttle, RuleError):
        checks.append(Check("throttle", False, f"invalid rule: {throttle.reason}"))
        return verdict
    fires_today = one_row(
        conn.execute(
            "SELECT count(*) FROM prediction_rule_executions WHERE rule_id = %s"
            " AND started_at >= %s AND status NOT LIKE 'SKIPPED%%'",
            (rule_id, utc_day_start(at)),
        )
    )[0]
    decision = decide(
        throttle, now=at, last_fired_at=rule["last_fired_at"], fires_today=fires_today
    )
    checks.append(
        Check(
            "throttle",
            decision == "FIRE",
            f"cooldown {throttle.cooldown_minutes} min, {fires_today} firing(s) today: "
            + ("passes" if decision == "FIRE" else f"would be recorded as {decision}"),
        )
    )
    verdict.outcome = "PENDING" if decision == "FIRE" else decision
    return verdict


def _campaign_link(conn, rule: dict[str, Any], event_id: uuid.UUID) -> CampaignLink | None:
    if rule["scope_type"] != "campaign" or rule["scope_id"] is None:
        return None
    row = conn.execute(
        "SELECT campaign_id, relationship, probability_threshold FROM prediction_campaign_events"
        " WHERE campaign_id = %s AND event_id = %s",
        (rule["scope_id"], event_id),
    ).fetchone()
    return CampaignLink(str(row[0]), row[1], row[2]) if row else None


def _in_scope(rule: dict[str, Any], event: dict[str, Any], link: CampaignLink | None):
    kind = rule["scope_type"]
    if kind == "all":
        return True, "scope all: every event the rule sees"
    if kind == "event":
        hit = rule["scope_id"] == event["id"]
        return hit, "scope is this event" if hit else f"scope is another event ({rule['scope_id']})"
    if kind == "category":
        hit = rule["scope_id"] is not None and rule["scope_id"] == event["category_id"]
        return hit, f"category {rule['scope_id']} {'includes' if hit else 'does not include'} it"
    if kind == "tag":
        hit = rule["scope_tag"] in (event["tags"] or [])
        return hit, f"tag {rule['scope_tag']!r} {'is' if hit else 'is not'} on the event"
    hit = link is not None
    return hit, f"campaign {rule['scope_id']} {'links' if hit else 'does not link'} the event"


def _sees_campaign(conn, rule: dict[str, Any]) -> bool:
    if rule["scope_type"] != "campaign":
        return True
    if rule["campaign_owner"] is None:
        return False
    return bool(
        conn.execute(
            "SELECT predict_sees_campaign(%s, %s, %s, %s)",
            (rule["viewer"], rule["viewer_orgs"], rule["campaign_owner"], rule["campaign_org"]),
        ).fetchone()[0]
    )


def _event_state(conn, rule, event, params, link, at: datetime) -> EventState:
    """The event's state as the tick reads it at `at`, with the look-backs this trigger asks."""
    window_minutes = params.get("window_minutes")
    ago: dict[int, Any] = {}
    if rule["trigger_type"] == "PROBABILITY_SHIFT" and isinstance(window_minutes, int):
        row = conn.execute(
            "SELECT probability FROM prediction_snapshots WHERE event_id = %s"
            " AND snapshot_at <= %s - make_interval(mins => %s)"
            " ORDER BY snapshot_at DESC LIMIT 1",
            (event["id"], at, window_minutes),
        ).fetchone()
        if row is not None:
            ago[window_minutes] = row[0]
    window_hours = params.get("window_hours")
    volume, medians = None, {}
    if rule["trigger_type"] == "VOLUME_SPIKE" and isinstance(window_hours, int):
        row = conn.execute(
            """SELECT latest.volume,
                      (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.volume)
                       FROM prediction_snapshots s
                       WHERE s.event_id = %(event)s AND s.snapshot_at < latest.snapshot_at
                         AND s.snapshot_at > latest.snapshot_at
                                             - make_interval(hours => %(hours)s))::numeric
               FROM (SELECT snapshot_at, volume FROM prediction_snapshots
                     WHERE event_id = %(event)s AND snapshot_at <= %(at)s
                       AND snapshot_at > %(at)s - make_interval(hours => %(hours)s + 1)
                     ORDER BY snapshot_at DESC LIMIT 1) latest""",
            {"event": event["id"], "at": at, "hours": window_hours},
        ).fetchone()
        if row is not None:
            volume = row[0]
            if row[1] is not None:
                medians[window_hours] = row[1]
    flags = tuple(
        NewFlag(str(flag_id), flag_type, severity)
        for flag_id, flag_type, severity in conn.execute(
            "SELECT id, flag_type, severity FROM prediction_trust_flags WHERE event_id = %s"
            " AND created_at > coalesce(%s, '-infinity'::timestamptz) AND created_at <= %s",
            (event["id"], rule["last_fired_at"], at),
        )
    )
    edges: tuple[MarketEdge, ...] = ()
    if rule["trigger_type"] == "EDGE_AT_LEAST":
        edges = latest_market_edges(conn, [event["id"]], at).get(event["id"], ())
    return EventState(
        **event_state_fields(event, event["id"]),
        probabilities_ago=ago,
        volume=volume,
        median_volumes=medians,
        new_flags=flags,
        campaign_link=link,
        market_edges=edges,
    )


def _quiet(trigger_type: str, state: EventState, params: Any) -> str:
    """Why the trigger does not fire, with the values it compared."""
    shown = json.dumps(dict(params), sort_keys=True, default=str)
    inputs = {
        "PROBABILITY_CROSSES_ABOVE": ("previous_probability", "current_probability"),
        "PROBABILITY_CROSSES_BELOW": ("previous_probability", "current_probability"),
        "CAMPAIGN_THRESHOLD": ("previous_probability", "current_probability"),
        "PROBABILITY_SHIFT": ("current_probability", "probabilities_ago"),
        "SENTIMENT_SHIFT": ("previous_sentiment", "sentiment_score"),
        "TRUST_BELOW": ("previous_trust_score", "trust_score"),
        "DIVERGENCE_AT_LEAST": ("previous_divergence", "divergence"),
        "EDGE_AT_LEAST": ("market_edges",),
        "FLAG_RAISED": ("new_flags",),
        "VOLUME_SPIKE": ("volume", "median_volumes"),
        "EVENT_RESOLVED": ("resolution",),
    }[trigger_type]
    values = ", ".join(f"{name} {_shown(getattr(state, name))}" for name in inputs)
    if trigger_type == "CAMPAIGN_THRESHOLD":
        link = state.campaign_link
        values += f", link threshold {_shown(link.probability_threshold if link else None)}"
    return f"{trigger_type} {shown} does not fire on {values}"


def _shown(value: Any) -> str:
    if value is None or value == {} or value == ():
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, tuple) and value and isinstance(value[0], MarketEdge):
        return ", ".join(f"{m.source}/{m.source_event_id} edge {m.edge}" for m in value)
    if isinstance(value, tuple):
        return ", ".join(f"{f.flag_type} ({f.severity})" for f in value)
    return str(value)
