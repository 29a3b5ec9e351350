"""Operator alerts: a failed run, a feed its breaker disabled, a stale feed. Each is delivered
through the rules' action channels (signed webhook, Slack, email) with the operator's action
connections, at most once per cooldown for the same alert, and recorded in
predict_meta.operator_alerts whether or not it could be delivered.

Configuration, read when alerts are raised (the README's "Alerts" section):
- PREDICT_ALERT_USER: the operator, a user's email or id; their prediction_action_connections
  hold the channels' secrets (`predict-pipeline connections add`).
- PREDICT_ALERT_ACTIONS: a JSON array of webhook, slack and email actions in the rules' action
  schemas, e.g. `[{"type": "slack"}, {"type": "email", "to": ["ops@example.com"]}]`.
- PREDICT_ALERT_COOLDOWN_MINUTES: how long the same alert stays quiet after it was sent (60).
Without PREDICT_ALERT_ACTIONS, alerts are recorded as NOT_CONFIGURED and not delivered.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from predict_pipeline.errors import ConfigError
from predict_pipeline.ingestion.health import feed_freshness
from predict_pipeline.rules import RuleError
from predict_pipeline.rules.action_schemas import validate_actions
from predict_pipeline.rules.channels import HttpClientFactory, SmtpFactory
from predict_pipeline.rules.execute import execution_status, run_actions, user_connections
from predict_pipeline.rules.templates import ActionContext
from predict_pipeline.rules.triggers import Firing

ALERT_USER_VAR = "PREDICT_ALERT_USER"
ALERT_ACTIONS_VAR = "PREDICT_ALERT_ACTIONS"
ALERT_COOLDOWN_VAR = "PREDICT_ALERT_COOLDOWN_MINUTES"
ALERT_KINDS = ("RUN_FAILED", "FEED_AUTO_DISABLED", "FEED_STALE")
DELIVERY_CHANNELS = ("webhook", "slack", "email")
MAX_DELIVERIES = 10  # per call: a sensor tick must end well inside Dagster's 60 s


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # one of ALERT_KINDS
    subject: str  # the run's or the feed's id
    title: str  # what it is about, one line
    summary: str  # what happened, one line


@dataclass(frozen=True, slots=True)
class AlertSettings:
    operator: str | None
    actions: list[dict[str, Any]]
    cooldown: timedelta

    @property
    def configured(self) -> bool:
        return bool(self.actions)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        env = os.environ if env is None else env
        operator = (env.get(ALERT_USER_VAR) or "").strip() or None
        actions = _actions(env.get(ALERT_ACTIONS_VAR) or "")
        if actions and operator is None:
            raise ConfigError(
                f"{ALERT_ACTIONS_VAR} is set: set {ALERT_USER_VAR} too (the "
                "operator whose action connections deliver alerts)"
            )
        minutes = (env.get(ALERT_COOLDOWN_VAR) or "60").strip()
        if not minutes.isdigit() or int(minutes) < 1:
            raise ConfigError(f"{ALERT_COOLDOWN_VAR}={minutes!r} is not a whole number of minutes")
        return cls(operator, actions, timedelta(minutes=int(minutes)))


def _actions(text: str) -> list[dict[str, Any]]:
    if not text.strip():
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{ALERT_ACTIONS_VAR} is not JSON: {exc.msg} at {exc.pos}") from None
    validated = validate_actions(items)
    if isinstance(validated, RuleError):
        raise ConfigError(f"{ALERT_ACTIONS_VAR}: {validated.reason}")
    other = sorted({a["type"] for a in validated} - set(DELIVERY_CHANNELS))
    if other:
        raise ConfigError(
            f"{ALERT_ACTIONS_VAR}: alerts are delivered by webhook, slack or "
            f"email, not {', '.join(other)}"
        )
    return validated


@dataclass(slots=True)
class AlertReport:
    raised: int = 0
    delivered: list[tuple[str, str, str]] = field(default_factory=list)  # kind, subject, status
    suppressed: int = 0  # inside their cooldown
    deferred: int = 0  # due, left for the next call (MAX_DELIVERIES)

    def describe(self) -> str:
        sent = ", ".join(f"{k} {s}: {st}" for k, s, st in self.delivered) or "none sent"
        return (
            f"{self.raised} alerts raised ({sent}; {self.suppressed} inside their cooldown, "
            f"{self.deferred} deferred)"
        )


def feed_alerts(conn: psycopg.Connection, now: datetime) -> list[Alert]:
    """Feeds the breaker disabled, and enabled polled feeds that are stale."""
    alerts = [
        Alert(
            "FEED_AUTO_DISABLED",
            str(feed_id),
            f"{source} feed {name!r}",
            f"disabled at {disabled:%Y-%m-%d %H:%M} UTC after {failures} failures in a row"
            + (f": {error}" if error else ""),
        )
        for feed_id, name, source, disabled, failures, error in conn.execute(
            """SELECT f.id, f.name, s.source_id, f.auto_disabled_at, f.consecutive_failures,
                      left(f.last_error, 300)
               FROM prediction_data_feeds f JOIN prediction_data_sources s ON s.id = f.source_id
               WHERE f.auto_disabled_at IS NOT NULL AND NOT f.enabled
               ORDER BY f.auto_disabled_at"""
        )
    ]
    alerts += [
        Alert(
            "FEED_STALE",
            str(f.feed_id),
            f"{f.source} feed {f.name!r}",
            f"no successful poll for {_hours(f.age)} (expected every {_hours(f.expected)})",
        )
        for f in feed_freshness(conn, now)
        if f.stale
    ]
    return alerts


def _hours(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


_RAISE = """
INSERT INTO predict_meta.operator_alerts AS a
  (kind, subject, title, summary, first_raised_at, last_raised_at)
SELECT kind, subject, title, summary, %(now)s, %(now)s
FROM unnest(%(kinds)s::text[], %(subjects)s::text[], %(titles)s::text[], %(summaries)s::text[])
  AS t(kind, subject, title, summary)
ON CONFLICT (kind, subject) DO UPDATE SET
  title = EXCLUDED.title, summary = EXCLUDED.summary, last_raised_at = EXCLUDED.last_raised_at,
  suppressed = a.suppressed + (a.last_sent_at > %(now)s - %(cooldown)s)::int
RETURNING kind, subject, last_sent_at IS NULL OR last_sent_at <= %(now)s - %(cooldown)s
"""


def raise_alerts(
    conn: psycopg.Connection,
    alerts: list[Alert],
    settings: AlertSettings,
    *,
    encryption_key: bytes | None,
    http_client_factory: HttpClientFactory,
    smtp_factory: SmtpFactory,
    now: datetime,
) -> AlertReport:
    """Record the alerts and deliver those past their cooldown (at most MAX_DELIVERIES)."""
    report = AlertReport(raised=len(alerts))
    if not alerts:
        return report
    unique = list({(a.kind, a.subject): a for a in alerts}.values())
    rows = conn.execute(
        _RAISE,
        {
            "kinds": [a.kind for a in unique],
            "subjects": [a.subject for a in unique],
            "titles": [a.title for a in unique],
            "summaries": [a.summary for a in unique],
            "now": now,
            "cooldown": settings.cooldown,
        },
    ).fetchall()
    due_keys = {(kind, subject) for kind, subject, due in rows if due}
    report.suppressed = len(rows) - len(due_keys)
    due = [a for a in unique if (a.kind, a.subject) in due_keys]
    report.deferred = max(0, len(due) - MAX_DELIVERIES)
    connections = _operator_connections(conn, settings, encryption_key) if due else {}
    outcomes = []
    for alert in due[:MAX_DELIVERIES]:
        status, error = _deliver(
            alert, settings, connections, http_client_factory, smtp_factory, now
        )
        outcomes.append((alert.kind, alert.subject, status, error))
        report.delivered.append((alert.kind, alert.subject, status))
    if outcomes:
        conn.execute(
            """UPDATE predict_meta.operator_alerts a SET
                 last_sent_at = CASE WHEN o.status = 'NOT_CONFIGURED' THEN a.last_sent_at
                                     ELSE %(now)s END,
                 sends = a.sends + (o.status <> 'NOT_CONFIGURED')::int,
                 last_status = o.status, last_error = o.error
               FROM unnest(%(kinds)s::text[], %(subjects)s::text[], %(statuses)s::text[],
                           %(errors)s::text[]) AS o(kind, subject, status, error)
               WHERE (a.kind, a.subject) = (o.kind, o.subject)""",
            {
                "kinds": [o[0] for o in outcomes],
                "subjects": [o[1] for o in outcomes],
                "statuses": [o[2] for o in outcomes],
                "errors": [o[3] for o in outcomes],
                "now": now,
            },
        )
    return report


def _operator_connections(
    conn: psycopg.Connection, settings: AlertSettings, key: bytes | None
) -> dict[str, dict[str, Any]]:
    if not settings.configured:
        return {}
    found = conn.execute(
        "SELECT id FROM auth.users WHERE lower(email) = lower(%s) OR id::text = %s",
        (settings.operator, settings.operator),
    ).fetchone()
    if found is None:
        raise ConfigError(
            f"{ALERT_USER_VAR}={settings.operator!r} is no user: name the "
            "operator by email or id (predict-pipeline users add)"
        )
    if key is None:
        raise ConfigError("alerts need PREDICT_ENCRYPTION_KEY to open the operator's connections")
    return user_connections(conn, found[0], key)


def _deliver(
    alert: Alert,
    settings: AlertSettings,
    connections: Mapping[str, Mapping[str, Any]],
    http_client_factory: HttpClientFactory,
    smtp_factory: SmtpFactory,
    now: datetime,
) -> tuple[str, str | None]:
    if not settings.configured:
        return "NOT_CONFIGURED", f"{ALERT_ACTIONS_VAR} is not set"
    firing = Firing(
        trigger_type=alert.kind,
        event_id=alert.subject,
        state_key=f"{alert.kind}:{alert.subject}",
        trigger_snapshot={
            "alert": alert.kind,
            "event_title": alert.title,
            "summary": alert.summary,
            "as_of": now.isoformat(),
        },
    )
    context = ActionContext(
        rule_id=str(uuid.UUID(int=0)), rule_name="operator alert", firing=firing
    )

    def refuse(action: Any) -> None:
        raise ValueError("alerts run no database action")

    results = run_actions(
        settings.actions,
        context=context,
        connections=connections,
        http_client_factory=http_client_factory,
        smtp_factory=smtp_factory,
        database_executor=refuse,
        now=now,
    )
    errors = "; ".join(r.error for r in results if r.error)
    return execution_status(results), errors or None
