"""Entries of the append-only audit log (prediction_audit_log), written by every stage."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

SERVICE = "predict_pipeline"


def record_audit(
    conn: psycopg.Connection,
    *,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None = None,
    details: dict[str, Any] | None = None,
    previous_state: dict[str, Any] | None = None,
    new_state: dict[str, Any] | None = None,
    severity: str = "INFO",
    actor_type: str = "service",
    actor_id: uuid.UUID | str | None = None,
    request_id: str | None = None,
) -> uuid.UUID:
    row = conn.execute(
        """INSERT INTO prediction_audit_log
             (actor_id, actor_type, action, resource_type, resource_id, details,
              previous_state, new_state, request_id, service, severity)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING id""",
        (
            actor_id,
            actor_type,
            action,
            resource_type,
            resource_id,
            Jsonb(details) if details is not None else None,
            Jsonb(previous_state) if previous_state is not None else None,
            Jsonb(new_state) if new_state is not None else None,
            request_id,
            SERVICE,
            severity,
        ),
    ).fetchone()
    assert row is not None
    return row[0]


def record_audits(
    conn: psycopg.Connection,
    *,
    action: str,
    resource_type: str,
    entries: list[tuple[uuid.UUID | str | None, dict[str, Any]]],
    severity: str = "INFO",
    actor_type: str = "service",
    actor_id: uuid.UUID | str | None = None,
) -> None:
    """Many entries of one action in one statement: (resource_id, details) each."""
    if not entries:
        return
    batch = orjson.dumps(
        [{"resource_id": rid, "details": details} for rid, details in entries], default=str
    ).decode()
    conn.execute(
        """INSERT INTO prediction_audit_log
             (actor_id, actor_type, action, resource_type, resource_id, details, service,
              severity)
           SELECT %s, %s, %s, %s, x.resource_id, x.details, %s, %s
           FROM jsonb_to_recordset(%s::jsonb) AS x(resource_id uuid, details jsonb)""",
        (actor_id, actor_type, action, resource_type, SERVICE, severity, batch),
    )
