"""The rule sensor and the actions job, against a real database and a real webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.rules import rule_trigger_sensor
from predict_pipeline.rules.actions import http_client_factory, smtp_factory
from predict_pipeline.rules.engine import evaluate_tick
from predict_pipeline.rules.execute import connection_aad, run_execution
from predict_pipeline.secrets import encrypt_json
from tests.support.feeds import KEY, USER_ID
from tests.support.http_server import Reply

T0 = datetime(2026, 11, 22, 12, tzinfo=UTC)
SECRET = "whsec-rule-test-0123456789"


def _event(conn: psycopg.Connection) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, current_probability, updated_at)"
        " VALUES ('Will the bill pass?', 'bill', 0.5, %s) RETURNING id",
        (T0,),
    ).fetchone()[0]


def _move(conn, event, before: float, after: float, at: datetime) -> None:
    conn.execute(
        "UPDATE prediction_events SET previous_probability = %s, current_probability = %s,"
        " updated_at = %s WHERE id = %s",
        (before, after, at, event),
    )


def _rule(conn, url: str, **columns) -> uuid.UUID:
    connection_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO prediction_action_connections (id, user_id, platform, credentials)"
        " VALUES (%s, %s, 'webhook', %s) ON CONFLICT DO NOTHING",
        (
            connection_id,
            USER_ID,
            Jsonb(encrypt_json({"secret": SECRET}, key=KEY, aad=connection_aad(connection_id))),
        ),
    )
    values = {
        "name": "bill above 60%",
        "scope_type": "all",
        "trigger_type": "PROBABILITY_CROSSES_ABOVE",
        "trigger_params": Jsonb({"threshold": 0.6}),
        "actions": Jsonb([{"type": "webhook", "url": url}]),
        "cooldown_minutes": 0,
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    return conn.execute(
        f"INSERT INTO prediction_rules (user_id, {names}) VALUES (%s, {marks})"  # noqa: S608
        " RETURNING id",
        (USER_ID, *values.values()),
    ).fetchone()[0]


def _tick(conn, since, until):
    with conn.transaction():
        return evaluate_tick(conn, since=since, until=until)


def test_crossing_fires_once_then_again_after_going_back_below(conn, server):
    event = _event(conn)
    rule = _rule(conn, server.url("/hook"))
    _move(conn, event, 0.5, 0.65, T0 + timedelta(minutes=1))
    first = _tick(conn, T0, T0 + timedelta(minutes=2))
    assert len(first.fired) == 1
    assert len(_tick(conn, T0, T0 + timedelta(minutes=2)).fired) == 0  # same tick again
    _move(conn, event, 0.65, 0.70, T0 + timedelta(minutes=3))  # resting above
    assert _tick(conn, T0 + timedelta(minutes=2), T0 + timedelta(minutes=4)).fired == []
    _move(conn, event, 0.70, 0.55, T0 + timedelta(minutes=5))
    _move(conn, event, 0.55, 0.62, T0 + timedelta(minutes=6))
    again = _tick(conn, T0 + timedelta(minutes=4), T0 + timedelta(minutes=7))
    assert len(again.fired) == 1
    fired = conn.execute(
        "SELECT fire_count, last_fired_at FROM prediction_rules WHERE id = %s", (rule,)
    ).fetchone()
    assert fired == (2, T0 + timedelta(minutes=7))


def test_cooldown_skips_and_is_recorded(conn, server):
    event = _event(conn)
    _rule(conn, server.url("/hook"), cooldown_minutes=60)
    _move(conn, event, 0.5, 0.65, T0 + timedelta(minutes=1))
    _tick(conn, T0, T0 + timedelta(minutes=2))
    _move(conn, event, 0.65, 0.55, T0 + timedelta(minutes=3))
    _move(conn, event, 0.55, 0.66, T0 + timedelta(minutes=4))
    report = _tick(conn, T0 + timedelta(minutes=2), T0 + timedelta(minutes=5))
    assert report.fired == [] and report.skipped == {"SKIPPED_COOLDOWN": 1}
    statuses = sorted(s for (s,) in conn.execute("SELECT status FROM prediction_rule_executions"))
    assert statuses == ["PENDING", "SKIPPED_COOLDOWN"]


def test_invalid_rule_is_skipped_with_its_reason(conn, server):
    event = _event(conn)
    _rule(conn, server.url("/hook"), trigger_params=Jsonb({"threshold": 7}))
    _move(conn, event, 0.5, 0.65, T0 + timedelta(minutes=1))
    for _ in range(2):
        report = _tick(conn, T0, T0 + timedelta(minutes=2))
        assert report.fired == [] and len(report.invalid_rules) == 1
    [(status, message)] = conn.execute(
        "SELECT status, error_message FROM prediction_rule_executions"
    ).fetchall()
    assert status == "FAILED" and message.startswith("invalid rule: ")


def test_execution_delivers_a_signed_webhook_and_retries_a_503(conn, server):
    event = _event(conn)
    _rule(conn, server.url("/hook"))
    server.add("/hook", Reply(503, b"busy"), Reply(200, b"ok"))
    _move(conn, event, 0.5, 0.65, T0 + timedelta(minutes=1))
    [execution] = _tick(conn, T0, T0 + timedelta(minutes=2)).fired
    with conn.transaction():
        status = run_execution(
            conn,
            execution,
            encryption_key=KEY,
            http_client_factory=http_client_factory(allow_private_hosts=("127.0.0.1",)),
            smtp_factory=smtp_factory(),
            now=T0 + timedelta(minutes=2),
        )
    error = conn.execute(
        "SELECT error_message FROM prediction_rule_executions WHERE id = %s", (execution,)
    ).fetchone()[0]
    assert status == "COMPLETED", error
    delivered = [r for r in server.received if r.path == "/hook"]
    assert len(delivered) == 2
    body = delivered[-1].body
    signature = delivered[-1].headers["x-predict-signature"]
    assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    payload = json.loads(body)
    assert payload["event"] == {"id": str(event), "title": "Will the bill pass?"}
    assert payload["trigger"]["state_key"] == payload["state_key"]
    results = conn.execute(
        "SELECT action_results, completed_at FROM prediction_rule_executions WHERE id = %s",
        (execution,),
    ).fetchone()
    assert results[0][0]["status"] == "SUCCESS" and results[0][0]["attempts"] == 2
    assert results[1] == T0 + timedelta(minutes=2)


@pytest.mark.parametrize("repeat", [1, 2])
def test_sensor_requests_one_run_per_firing_and_advances_its_cursor(
    conn, db_url, server, dagster_instance, repeat
):
    event = _event(conn)
    _rule(conn, server.url("/hook"))
    now = datetime.now(UTC)
    _move(conn, event, 0.5, 0.65, now - timedelta(seconds=5))
    cursor = (now - timedelta(minutes=1)).isoformat()
    resources = {"database": PostgresResource(url=db_url)}
    result = rule_trigger_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=cursor, resources=resources)
    )
    [request] = result.run_requests
    assert (
        request.run_key.endswith(
            ":PROBABILITY_CROSSES_ABOVE:0.5000->0.6500@" + (request.run_key.split("@")[-1])
        )
        or request.run_key.count(":") >= 2
    )
    assert datetime.fromisoformat(result.cursor) >= now
    for _ in range(repeat - 1):  # the same window evaluated again: no second firing
        again = rule_trigger_sensor(
            dg.build_sensor_context(instance=dagster_instance, cursor=cursor, resources=resources)
        )
        assert again.run_requests == []
    assert conn.execute("SELECT count(*) FROM prediction_rule_executions").fetchone() == (1,)
    usage = conn.execute("SELECT rules_active FROM prediction_usage_metrics").fetchone()
    assert usage == (1,)
