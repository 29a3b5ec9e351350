"""Running one PENDING rule execution: its ordered actions, their results, and its end state.

Connections come from `prediction_action_connections` (credentials as AES-256-GCM envelopes
bound to the row, `aad = prediction_action_connections:<id>`); the database actions
(campaign_pause, campaign_repredict, explain) run here, audited. A failing action never
blocks the next one; the execution ends COMPLETED, PARTIAL_FAILURE or FAILED.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.campaigns.predict import request_repredict
from predict_pipeline.rules.actions import (
    EXPLANATION_TRIGGER_TYPES,
    ActionContext,
    DatabaseAction,
    HttpClientFactory,
    SmtpFactory,
    execution_status,
    run_actions,
)
from predict_pipeline.rules.triggers import Firing
from predict_pipeline.secrets import SecretDecryptError, decrypt_json


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
