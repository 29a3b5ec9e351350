"""Operator alerts delivered to a real local receiver: a feed the breaker disabled, a stale feed,
a failed run; throttled per alert; recorded when not configured; one-line setting errors."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.alerts import Alert, AlertSettings, feed_alerts, raise_alerts
from predict_pipeline.defs.alerts import run_failure_alert_sensor
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.errors import ConfigError
from predict_pipeline.rules.channels import http_client_factory, smtp_factory
from predict_pipeline.rules.execute import connection_aad
from predict_pipeline.secrets import encrypt_json
from predict_pipeline.sources.push.signature import verify_signature
from tests.support.feeds import KEY, custom_config, make_feed
from tests.support.http_server import Reply

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
OPERATOR = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
SECRET = "operator-signing-secret-0123456789"


@pytest.fixture
def operator(conn):
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'ops@example.com')", (OPERATOR,))
    connection_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO prediction_action_connections (id, user_id, platform, credentials)"
        " VALUES (%s, %s, 'webhook', %s)",
        (
            connection_id,
            OPERATOR,
            Jsonb(encrypt_json({"secret": SECRET}, key=KEY, aad=connection_aad(connection_id))),
        ),
    )
    return OPERATOR


def _settings(server, cooldown: int = 60) -> AlertSettings:
    return AlertSettings.from_env(
        {
            "PREDICT_ALERT_USER": "ops@example.com",
            "PREDICT_ALERT_ACTIONS": json.dumps([{"type": "webhook", "url": server.url("/ops")}]),
            "PREDICT_ALERT_COOLDOWN_MINUTES": str(cooldown),
        }
    )


def _raise(conn, alerts, settings, now=NOW):
    return raise_alerts(
        conn,
        alerts,
        settings,
        encryption_key=KEY,
        http_client_factory=http_client_factory(allow_private_hosts=("127.0.0.1",)),
        smtp_factory=smtp_factory(allow_private_hosts=("127.0.0.1",)),
        now=now,
    )


def _alert_row(conn, kind, subject):
    return conn.execute(
        "SELECT sends, suppressed, last_status, last_sent_at FROM predict_meta.operator_alerts"
        " WHERE kind = %s AND subject = %s",
        (kind, subject),
    ).fetchone()


def test_a_disabled_and_a_stale_feed_alert_the_operator_once_per_cooldown(conn, server, operator):
    disabled = make_feed(conn, "custom_api", custom_config(server.url("/a")), name="broken")
    conn.execute(
        "UPDATE prediction_data_feeds SET enabled = false, auto_disabled_at = %s,"
        " consecutive_failures = 5, last_error = 'HTTP 500' WHERE id = %s",
        (NOW - timedelta(hours=1), disabled),
    )
    stale = make_feed(
        conn, "custom_api", custom_config(server.url("/b")), name="quiet",
        poll_interval_minutes=15, created_at=NOW - timedelta(hours=2),
    )  # fmt: skip
    server.add("/ops", *[Reply(200)] * 4)
    settings = _settings(server)

    alerts = feed_alerts(conn, NOW)
    assert [(a.kind, a.subject) for a in alerts] == [
        ("FEED_AUTO_DISABLED", str(disabled)),
        ("FEED_STALE", str(stale)),
    ]
    report = _raise(conn, alerts, settings)
    assert report.delivered == [
        ("FEED_AUTO_DISABLED", str(disabled), "COMPLETED"),
        ("FEED_STALE", str(stale), "COMPLETED"),
    ]
    first, second = server.received
    body = json.loads(first.body)
    assert body["trigger"]["alert"] == "FEED_AUTO_DISABLED"
    assert body["event"] == {"id": str(disabled), "title": "custom_api feed 'broken'"}
    assert "after 5 failures in a row: HTTP 500" in body["trigger"]["summary"]
    assert json.loads(second.body)["trigger"]["summary"] == (
        "no successful poll for 2.0 h (expected every 15 min)"
    )
    assert verify_signature(first.body, first.headers, SECRET.encode(), now=NOW).sent_at == NOW

    # Inside the cooldown: recorded as suppressed, nothing sent; after it, sent again.
    again = _raise(conn, feed_alerts(conn, NOW + timedelta(minutes=30)), settings,
                   NOW + timedelta(minutes=30))  # fmt: skip
    assert (again.delivered, again.suppressed) == ([], 2)
    assert len(server.received) == 2
    assert _alert_row(conn, "FEED_STALE", str(stale))[:3] == (1, 1, "COMPLETED")
    later = NOW + timedelta(minutes=61)
    _raise(conn, feed_alerts(conn, later), settings, later)
    assert len(server.received) == 4
    assert _alert_row(conn, "FEED_STALE", str(stale)) == (2, 1, "COMPLETED", later)


def test_a_failed_delivery_is_recorded_with_its_reason(conn, server, operator):
    """It counts as sent: a dead receiver is not hammered every tick, but once per cooldown."""
    server.add("/ops", *[Reply(500, b"down")] * 10)
    alert = Alert("RUN_FAILED", "run-1", "fetch_feeds_job run run-1", "step failed")
    [(_, _, status)] = _raise(conn, [alert], _settings(server)).delivered
    sends, suppressed, last_status, sent_at = _alert_row(conn, "RUN_FAILED", "run-1")
    assert (status, last_status, sends, sent_at) == ("FAILED", "FAILED", 1, NOW)
    error = conn.execute(
        "SELECT last_error FROM predict_meta.operator_alerts WHERE subject = 'run-1'"
    ).fetchone()[0]
    assert "500" in error and SECRET not in error


def test_without_actions_alerts_are_recorded_not_sent(conn, server):
    alert = Alert("RUN_FAILED", "run-2", "job run run-2", "boom")
    report = _raise(conn, [alert], AlertSettings.from_env({}))
    assert report.delivered == [("RUN_FAILED", "run-2", "NOT_CONFIGURED")]
    assert _alert_row(conn, "RUN_FAILED", "run-2") == (0, 0, "NOT_CONFIGURED", None)
    assert server.received == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PREDICT_ALERT_ACTIONS": "[{"}, "PREDICT_ALERT_ACTIONS is not JSON"),
        ({"PREDICT_ALERT_ACTIONS": '[{"type": "slack"}]'}, "set PREDICT_ALERT_USER too"),
        (
            {"PREDICT_ALERT_USER": "a@b.c", "PREDICT_ALERT_ACTIONS": '[{"type": "explain"}]'},
            "not explain",
        ),
        (
            {"PREDICT_ALERT_USER": "a@b.c", "PREDICT_ALERT_ACTIONS": '[{"type": "email"}]'},
            "PREDICT_ALERT_ACTIONS: actions[0]",
        ),
        ({"PREDICT_ALERT_COOLDOWN_MINUTES": "soon"}, "not a whole number of minutes"),
    ],
)
def test_alert_settings_refuse_bad_values_in_one_line(env, message):
    with pytest.raises(ConfigError) as refused:
        AlertSettings.from_env(env)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_an_unknown_operator_is_one_line(conn, server):
    settings = AlertSettings.from_env(
        {"PREDICT_ALERT_USER": "nobody@example.com", "PREDICT_ALERT_ACTIONS": '[{"type": "slack"}]'}
    )
    with pytest.raises(ConfigError, match="PREDICT_ALERT_USER='nobody@example.com' is no user"):
        _raise(conn, [Alert("RUN_FAILED", "r", "t", "s")], settings)


@dg.op
def failing_step():
    raise RuntimeError("the source answered 503")


@dg.job
def failing_job():
    failing_step()


def test_the_run_failure_sensor_alerts_for_a_real_failed_run(
    db_url, conn, server, operator, dagster_instance, monkeypatch
):
    monkeypatch.setenv("PREDICT_ALERT_USER", str(OPERATOR))
    monkeypatch.setenv(
        "PREDICT_ALERT_ACTIONS", json.dumps([{"type": "webhook", "url": server.url("/ops")}])
    )
    monkeypatch.setenv("PREDICT_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", base64.urlsafe_b64encode(KEY).decode())
    server.add("/ops", Reply(202))
    result = failing_job.execute_in_process(instance=dagster_instance, raise_on_error=False)
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=dagster_instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"database": PostgresResource(url=db_url)},
    ).for_run_failure()
    run_failure_alert_sensor(context)
    [delivery] = server.received
    body = json.loads(delivery.body)
    assert body["trigger"]["alert"] == "RUN_FAILED"
    assert body["event"]["id"] == result.run_id
    assert body["event"]["title"] == f"failing_job run {result.run_id[:8]}"
    assert _alert_row(conn, "RUN_FAILED", result.run_id)[:3] == (1, 0, "COMPLETED")
