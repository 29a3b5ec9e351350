"""Running a rule's actions: in order, one result each, and one execution's end state.

`run_actions` runs a rule's `actions` array (validated item by item against `action_schemas`,
delivered through `channels`, the database actions handed to a `database_executor`); a failing
or raising action never stops the next one. No result ever carries a credential: errors are
built from reasons, and every credential and webhook header value is masked out of them as a
last guard.

`run_execution` runs one PENDING `prediction_rule_executions` row. Connections come from
`prediction_action_connections` (credentials as AES-256-GCM envelopes bound to the row,
`aad = prediction_action_connections:<id>`); the database actions (campaign_pause,
campaign_repredict, explain) run here, audited. The execution ends COMPLETED, PARTIAL_FAILURE
or FAILED.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.campaigns.predict import request_repredict
from predict_pipeline.rules import RuleError, parse_json
from predict_pipeline.rules.action_schemas import (
    ACTION_SCHEMAS,
    EXPLANATION_TRIGGER_TYPES,
    SECRET_CREDENTIALS,
    validate_action,
)
from predict_pipeline.rules.channels import (
    ActionFailed,
    ActionStatus,
    HttpClientFactory,
    Outcome,
    SmtpFactory,
    deliver_email,
    deliver_slack,
    deliver_webhook,
)
from predict_pipeline.rules.templates import ActionContext, render_template, template_values
from predict_pipeline.rules.triggers import Firing
from predict_pipeline.secrets import MASK, SecretDecryptError, decrypt_json, is_secret_name

ExecutionStatus = Literal["COMPLETED", "PARTIAL_FAILURE", "FAILED"]

ERROR_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class ActionResult:
    """One action's outcome, as stored in prediction_rule_executions.action_results."""

    index: int
    type: str
    status: ActionStatus
    duration_ms: int
    attempts: int
    http_status: int | None = None
    smtp_reply: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "status": self.status,
            "http_status": self.http_status,
            "smtp_reply": self.smtp_reply,
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DatabaseAction:
    """A campaign_pause, campaign_repredict or explain action for the caller to run.

    `config` is validated with defaults filled in and `reason` already rendered; `campaign_id`
    is the config's, else the firing's campaign link's, else None (use the rule's scope).
    """

    index: int
    type: str
    config: Mapping[str, Any]
    context: ActionContext
    campaign_id: str | None


DatabaseExecutor = Callable[[DatabaseAction], None]


def run_actions(
    actions: Any,
    *,
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    http_client_factory: HttpClientFactory,
    smtp_factory: SmtpFactory,
    database_executor: DatabaseExecutor,
    now: datetime,
    clock: Callable[[], float] = time.monotonic,
) -> list[ActionResult]:
    """Run a rule's actions in order; one result per item. A failing or raising action never
    stops the next one. `now` is the firing time (expiry checks, `fired_at`)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a tz-aware datetime, got a naive one")
    items = parse_json(actions, "actions")
    if not isinstance(items, list):
        reason = items.reason if isinstance(items, RuleError) else "actions: must be a JSON array"
        return [ActionResult(0, "unknown", "FAILED", 0, 0, error=reason)]
    credentials_secrets = _connection_secrets(connections)
    results = []
    for index, item in enumerate(items):
        started = clock()
        kind = item.get("type") if isinstance(item, Mapping) else None
        kind = kind if isinstance(kind, str) and kind in ACTION_SCHEMAS else "unknown"
        try:
            outcome = _run_one(
                index,
                item,
                context=context,
                connections=connections,
                http_client_factory=http_client_factory,
                smtp_factory=smtp_factory,
                database_executor=database_executor,
                now=now,
            )
        except ActionFailed as exc:
            outcome = Outcome("FAILED", exc.attempts, smtp_reply=exc.smtp_reply, error=str(exc))
        except Exception as exc:  # an action that raises fails alone; the next one still runs
            outcome = Outcome("FAILED", 1, error=f"{kind}: {type(exc).__name__}: {exc}")
        secrets = credentials_secrets | _header_values(item)
        results.append(
            ActionResult(
                index=index,
                type=kind,
                status=outcome.status,
                duration_ms=round((clock() - started) * 1000),
                attempts=outcome.attempts,
                http_status=outcome.http_status,
                smtp_reply=_masked(outcome.smtp_reply, secrets),
                error=_masked(outcome.error, secrets),
            )
        )
    return results


def execution_status(results: Iterable[ActionResult]) -> ExecutionStatus:
    """COMPLETED when no action failed, FAILED when every action that ran (was not SKIPPED)
    failed, PARTIAL_FAILURE otherwise."""
    ran = [result for result in results if result.status != "SKIPPED"]
    failed = sum(1 for result in ran if result.status == "FAILED")
    if failed == 0:
        return "COMPLETED"
    return "FAILED" if failed == len(ran) else "PARTIAL_FAILURE"


def _run_one(
    index: int,
    item: Any,
    *,
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    http_client_factory: HttpClientFactory,
    smtp_factory: SmtpFactory,
    database_executor: DatabaseExecutor,
    now: datetime,
) -> Outcome:
    config = validate_action(item, index)
    if isinstance(config, RuleError):
        raise ActionFailed(f"invalid action: {config.reason}")
    if not config["enabled"]:
        return Outcome("SKIPPED", 0)
    kind = config["type"]
    if kind == "webhook":
        return deliver_webhook(config, context, connections, http_client_factory, now)
    if kind == "slack":
        return deliver_slack(config, context, connections, http_client_factory, now)
    if kind == "email":
        return deliver_email(config, context, connections, smtp_factory, now)
    database_executor(_as_database_action(index, config, context, now))
    return Outcome("SUCCESS", 1)


def _as_database_action(
    index: int, config: dict[str, Any], context: ActionContext, now: datetime
) -> DatabaseAction:
    config = dict(config)
    if "reason" in config:
        config["reason"] = render_template(config["reason"], template_values(context, now))
    values = context.firing.trigger_snapshot.get("values", {})
    campaign_id = config.get("campaign_id") or values.get("campaign_id")
    return DatabaseAction(index, config["type"], config, context, campaign_id)


def _connection_secrets(connections: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    found: set[str] = set()
    for connection in connections.values():
        credentials = connection.get("credentials")
        if not isinstance(credentials, Mapping):
            continue
        for name, value in credentials.items():
            if not isinstance(value, str) or not value:
                continue
            if name in SECRET_CREDENTIALS or is_secret_name(name):
                found.add(value)
                if name == "webhook_url":  # parts of the URL leak the token too
                    parts = urlsplit(value)
                    found.update(part for part in (parts.path, parts.query) if len(part) > 8)
    return frozenset(found)


def _header_values(item: Any) -> frozenset[str]:
    headers = item.get("headers") if isinstance(item, Mapping) else None
    if not isinstance(headers, Mapping):
        return frozenset()
    return frozenset(value for value in headers.values() if isinstance(value, str) and value)


def _masked(text: str | None, secrets: frozenset[str]) -> str | None:
    if text is None:
        return None
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: a URL before its path
        text = text.replace(secret, MASK)
    return text[:ERROR_MAX_CHARS]


def connection_aad(connection_id: uuid.UUID | str) -> str:
    return f"prediction_action_connections:{connection_id}"


def run_execution(
    conn: psycopg.Connection,
    execution_id: uuid.UUID,
    *,
    encryption_key: bytes,
    http_client_factory: HttpClientFactory,
    smtp_factory: SmtpFactory,
    now: datetime,
) -> str:
    """Run the execution's actions and record their results; returns the final status."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT x.id, x.status, x.event_id, x.trigger_snapshot, x.retry_count,
                      r.id AS rule_id, r.name, r.user_id, r.actions, r.trigger_type,
                      r.scope_type, r.scope_id,
                      x.event_id IS NULL OR coalesce(predict_sees_event(v.viewer, v.viewer_orgs,
                        e.is_public, e.org_id, e.created_by), false) AS sees_event
               FROM prediction_rule_executions x JOIN prediction_rules r ON r.id = x.rule_id
               CROSS JOIN LATERAL predict_rule_viewer(r.user_id, r.org_id, r.is_system) AS v
               LEFT JOIN prediction_events e ON e.id = x.event_id
               WHERE x.id = %s""",
            (execution_id,),
        ).fetchone()
    if row is None:
        raise LookupError(f"no rule execution {execution_id}")
    if row["status"] not in ("PENDING", "FAILED", "PARTIAL_FAILURE"):
        return row["status"]  # already run (a retried run does not deliver twice)
    retry = row["status"] != "PENDING"
    if not row["sees_event"]:
        # The event's visibility changed since the tick: nothing about it leaves.
        conn.execute(
            "UPDATE prediction_rule_executions SET status = 'FAILED', completed_at = %s,"
            " error_message = %s WHERE id = %s",
            (now, f"the rule no longer sees event {row['event_id']}: no action run", execution_id),
        )
        return "FAILED"
    conn.execute(
        "UPDATE prediction_rule_executions SET status = 'EXECUTING', retry_count = retry_count"
        " + %s WHERE id = %s",
        (1 if retry else 0, execution_id),
    )
    snapshot = dict(row["trigger_snapshot"])
    firing = Firing(
        trigger_type=row["trigger_type"],
        event_id=str(row["event_id"]),
        state_key=snapshot.get("state_key", ""),
        trigger_snapshot=snapshot,
    )
    context = ActionContext(rule_id=str(row["rule_id"]), rule_name=row["name"], firing=firing)

    def database_action(action: DatabaseAction) -> None:
        _run_database_action(conn, action, row, now)

    results = run_actions(
        row["actions"],
        context=context,
        connections=user_connections(conn, row["user_id"], encryption_key),
        http_client_factory=http_client_factory,
        smtp_factory=smtp_factory,
        database_executor=database_action,
        now=now,
    )
    status = execution_status(results)
    failures = [r.error for r in results if r.status == "FAILED" and r.error]
    conn.execute(
        """UPDATE prediction_rule_executions SET status = %s, action_results = %s,
             completed_at = %s, error_message = %s WHERE id = %s""",
        (
            status,
            Jsonb([r.as_json() for r in results]),
            now,
            "; ".join(failures)[:2000] if failures else None,
            execution_id,
        ),
    )
    return status


def user_connections(
    conn: psycopg.Connection, user_id: uuid.UUID, key: bytes
) -> dict[str, dict[str, Any]]:
    """The user's connections by platform, credentials decrypted (never logged)."""
    found: dict[str, dict[str, Any]] = {}
    for connection_id, platform, credentials, status, expires_at in conn.execute(
        "SELECT id, platform, credentials, status, expires_at FROM prediction_action_connections"
        " WHERE user_id = %s",
        (user_id,),
    ):
        if status == "REVOKED":
            secret = {}  # revoking erased the ciphertext; the action says it is revoked
        else:
            try:
                secret = decrypt_json(credentials, key=key, aad=connection_aad(connection_id))
            except SecretDecryptError:
                secret, status = {}, "ERROR"  # the action reports the connection as unusable
        found[platform] = {"status": status, "expires_at": expires_at, "credentials": secret}
    return found


def _run_database_action(
    conn: psycopg.Connection, action: DatabaseAction, rule: dict[str, Any], now: datetime
) -> None:
    """Run one database action in a savepoint, so a failing one fails alone."""
    with conn.transaction():
        _database_action(conn, action, rule, now)


def _database_action(
    conn: psycopg.Connection, action: DatabaseAction, rule: dict[str, Any], now: datetime
) -> None:
    campaign = action.campaign_id or (
        str(rule["scope_id"]) if rule["scope_type"] == "campaign" else None
    )
    if action.type in ("campaign_pause", "campaign_repredict"):
        if campaign is None:
            raise ValueError(f"{action.type}: no campaign (set campaign_id or scope the rule)")
        mark = {
            "rule_id": str(rule["rule_id"]),
            "at": now.isoformat(),
            "reason": action.config.get("reason"),
        }
        # A paused campaign is PAUSED (0070) and says why in factors. Only a campaign the rule's
        # owner may update qualifies (the spec's "Users update own campaigns" policy,
        # predict_may_update_campaign): the pipeline's role bypasses RLS, so it asks here.
        changed = conn.execute(
            """UPDATE prediction_campaigns SET
                 status = CASE WHEN %(pause)s THEN 'PAUSED' ELSE status END,
                 factors = coalesce(factors, '{}'::jsonb)
                           || jsonb_build_object(%(key)s::text, %(mark)s::jsonb),
                 updated_at = now()
               WHERE id = %(id)s AND predict_may_update_campaign(%(owner)s, user_id)
               RETURNING status""",
            {
                "pause": action.type == "campaign_pause",
                "id": campaign,
                "owner": rule["user_id"],
                "mark": Jsonb(mark),
                "key": "paused_by_rule"
                if action.type == "campaign_pause"
                else "repredict_requested",
            },
        ).fetchone()
        if changed is None:
            raise ValueError(
                f"{action.type}: campaign {campaign} is not one the rule's owner may update "
                "(no such campaign, or another user's)"
            )
        if action.type == "campaign_repredict":
            # campaign_repredict_sensor runs campaign_predictions for this campaign.
            mark["request_id"] = request_repredict(
                conn,
                campaign,
                requested_by=rule["user_id"],
                rule_id=rule["rule_id"],
                rule_execution_id=rule["id"],
            )
        record_audit(
            conn,
            action=f"campaign.{action.type.removeprefix('campaign_')}",
            resource_type="prediction_campaigns",
            resource_id=campaign,
            actor_type="system",
            details={**mark, "rule_owner": str(rule["user_id"])},
            new_state={"status": changed[0]},
        )
    elif action.type == "explain":
        snapshot = action.context.firing.trigger_snapshot
        conn.execute(
            """INSERT INTO prediction_explanations
                 (event_id, trigger_type, trigger_data, headline, summary, model_used,
                  prompt_version)
               VALUES (%s, %s, %s, %s, %s, 'template', 'rule-v1')""",
            (
                action.context.firing.event_id,
                EXPLANATION_TRIGGER_TYPES.get(rule["trigger_type"], "MANUAL"),
                Jsonb({"rule_id": str(rule["rule_id"]), **snapshot}),
                f"Rule '{rule['name']}' fired: {rule['trigger_type']}",
                f"State at firing: {snapshot.get('values', snapshot)}"[:2000],
            ),
        )
    else:
        raise ValueError(f"unknown database action {action.type}")
