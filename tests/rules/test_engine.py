"""The rule sensor and the actions job, against a real database and a real webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.db.connection import connect
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.rules import rule_trigger_sensor
from predict_pipeline.ingestion.runs import record_run_events
from predict_pipeline.rules.channels import http_client_factory, smtp_factory
from predict_pipeline.rules.engine import evaluate_tick
from predict_pipeline.rules.execute import connection_aad, run_execution
from predict_pipeline.secrets import encrypt_json
from tests.support.feeds import KEY, USER_ID, make_feed
from tests.support.http_server import Reply

T0 = datetime(2026, 11, 22, 12, tzinfo=UTC)
SECRET = "whsec-rule-test-0123456789"


def _event(conn: psycopg.Connection, slug: str = "bill") -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, current_probability, updated_at)"
        " VALUES ('Will the bill pass?', %s, 0.5, %s) RETURNING id",
        (slug, T0),
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


def _tick(conn, since, until, **options):
    with conn.transaction():
        return evaluate_tick(conn, since=since, until=until, **options)


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
    first, body, headers = delivered[0], delivered[-1].body, delivered[-1].headers
    # Both attempts are one delivery (same id), signed at the execution's time.
    assert headers["x-predict-delivery"] == first.headers["x-predict-delivery"]
    assert headers["x-predict-timestamp"] == str(int((T0 + timedelta(minutes=2)).timestamp()))
    message = f"{headers['x-predict-timestamp']}.{headers['x-predict-delivery']}.".encode() + body
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert headers["x-predict-signature"] == f"sha256={expected}"
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
def test_sensor_requests_one_run_per_tick_and_advances_its_cursor(
    conn, db_url, server, dagster_instance, repeat
):
    event = _event(conn)
    rule = _rule(conn, server.url("/hook"))
    now = datetime.now(UTC)
    _move(conn, event, 0.5, 0.65, now - timedelta(seconds=5))
    cursor = (now - timedelta(minutes=1)).isoformat()
    resources = {"database": PostgresResource(url=db_url)}
    result = rule_trigger_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=cursor, resources=resources)
    )
    [request] = result.run_requests
    [(state_key,)] = conn.execute(
        "SELECT trigger_snapshot->>'state_key' FROM prediction_rule_executions"
    ).fetchall()
    assert state_key.startswith("PROBABILITY_CROSSES_ABOVE:0.5->0.65@")
    firing_key = f"{rule}:{event}:{state_key}"
    assert request.run_key == f"rule-firings:{hashlib.sha256(firing_key.encode()).hexdigest()[:32]}"
    [(execution,)] = conn.execute("SELECT id FROM prediction_rule_executions").fetchall()
    config = request.run_config["ops"]["run_rule_actions"]["config"]
    assert config == {"execution_ids": [str(execution)]}
    assert datetime.fromisoformat(result.cursor) >= now
    for _ in range(repeat - 1):  # the same window evaluated again: no second firing
        again = rule_trigger_sensor(
            dg.build_sensor_context(instance=dagster_instance, cursor=cursor, resources=resources)
        )
        assert again.run_requests == []
    assert conn.execute("SELECT count(*) FROM prediction_rule_executions").fetchone() == (1,)
    usage = conn.execute("SELECT rules_active FROM prediction_usage_metrics").fetchone()
    assert usage == (1,)


def test_daily_cap_skips_with_skipped_limit(conn, server):
    event = _event(conn)
    _rule(conn, server.url("/hook"), max_fires_per_day=1)
    for minute, (before, after) in enumerate([(0.5, 0.65), (0.65, 0.55), (0.55, 0.66)]):
        _move(conn, event, before, after, T0 + timedelta(minutes=2 * minute + 1))
        _tick(conn, T0 + timedelta(minutes=2 * minute), T0 + timedelta(minutes=2 * minute + 2))
    statuses = [
        s for (s,) in conn.execute("SELECT status FROM prediction_rule_executions ORDER BY id")
    ]
    assert sorted(statuses) == ["PENDING", "SKIPPED_LIMIT"]


def test_active_hours_in_a_non_utc_zone_across_midnight_skip_with_skipped_hours(conn, server):
    # 22:00-06:00 in Tokyo (UTC+9) is 13:00-21:00 UTC: T0 (12:00 UTC, 21:00 Tokyo) is outside.
    hours = {"timezone": "Asia/Tokyo", "start": "22:00", "end": "06:00"}
    event = _event(conn)
    _rule(conn, server.url("/hook"), active_hours=Jsonb(hours))
    _move(conn, event, 0.5, 0.65, T0 - timedelta(minutes=1))
    report = _tick(conn, T0 - timedelta(minutes=2), T0)
    assert report.fired == [] and report.skipped == {"SKIPPED_HOURS": 1}
    _move(conn, event, 0.65, 0.55, T0 + timedelta(minutes=70))
    _move(conn, event, 0.55, 0.66, T0 + timedelta(minutes=71))  # 22:11 in Tokyo: inside
    assert len(_tick(conn, T0 + timedelta(minutes=69), T0 + timedelta(minutes=72)).fired) == 1


def test_two_concurrent_ticks_over_one_state_log_one_firing(conn, db_url, server):
    event = _event(conn)
    _rule(conn, server.url("/hook"))
    _move(conn, event, 0.5, 0.65, T0 + timedelta(minutes=1))
    barrier = threading.Barrier(2)
    reports = []

    def tick() -> None:
        with connect(db_url) as other:
            barrier.wait()
            with other.transaction():
                reports.append(evaluate_tick(other, since=T0, until=T0 + timedelta(minutes=2)))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r.fired) for r in reports) == [0, 1]
    assert sorted(r.duplicates for r in reports) == [0, 1]
    assert conn.execute("SELECT count(*) FROM prediction_rule_executions").fetchone() == (1,)
    assert conn.execute("SELECT fire_count FROM prediction_rules").fetchone() == (1,)


def test_a_capped_tick_leaves_the_rest_to_the_next_one(conn, server):
    _rule(conn, server.url("/hook"))
    events = [_event(conn, slug=f"bill-{i}") for i in range(5)]
    for i, event in enumerate(events):
        _move(conn, event, 0.5, 0.65, T0 + timedelta(minutes=1, seconds=i // 2))
    until, since, seen = T0 + timedelta(minutes=2), T0, []
    while since < until:
        report = _tick(conn, since, until, max_events=3)
        assert report.changed_events <= 3
        seen.append(report.changed_events)
        since = report.covered_until
    # Changes at one time are never split: 2 (at +0 s), 2 (at +1 s), then the last one.
    assert seen == [2, 2, 1]
    fired = [e for (e,) in conn.execute("SELECT event_id FROM prediction_rule_executions")]
    assert sorted(fired) == sorted(events)


def test_the_tick_credits_the_feed_runs_whose_signals_changed_its_events(conn, server):
    events = [_event(conn, slug=f"bill-{i}") for i in range(3)]
    _rule(conn, server.url("/hook"))  # scope all: one rule in scope of each event
    # Another tenant's rule on the same (public) events is not the feed run's to count.
    other = conn.execute(
        "INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'other@example.com')"
        " RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO prediction_rules (user_id, name, scope_type, trigger_type, trigger_params,"
        " cooldown_minutes) VALUES (%s, 'theirs', 'all', 'PROBABILITY_CROSSES_ABOVE',"
        " '{\"threshold\": 0.6}', 0)",
        (other,),
    )
    feed = make_feed(conn, "manifold", {})
    run = conn.execute(
        "INSERT INTO prediction_feed_runs (feed_id, status) VALUES (%s, 'SUCCESS') RETURNING id",
        (feed,),
    ).fetchone()[0]
    record_run_events(conn, {run: set(events[:2]), None: {events[2]}})
    _move(conn, events[0], 0.5, 0.65, T0 + timedelta(minutes=1))  # crosses: fires
    _move(conn, events[1], 0.5, 0.55, T0 + timedelta(minutes=1))  # changed, no crossing
    _move(conn, events[2], 0.5, 0.65, T0 + timedelta(minutes=1))  # another feed's event
    _tick(conn, T0, T0 + timedelta(minutes=2))
    counts = conn.execute(
        "SELECT triggers_evaluated, triggers_fired FROM prediction_feed_runs WHERE id = %s",
        (run,),
    ).fetchone()
    assert counts == (2, 1)
    _tick(conn, T0, T0 + timedelta(minutes=2))  # credited once, not on every tick
    assert conn.execute(
        "SELECT triggers_evaluated, triggers_fired FROM prediction_feed_runs WHERE id = %s",
        (run,),
    ).fetchone() == (2, 1)


def test_rules_with_equal_params_each_log_their_firing_with_its_events_snapshot(conn, server):
    # The tick evaluates a (params, event state) once and sends its snapshot once: every rule
    # must still get its own execution, and every event its own snapshot.
    events = [_event(conn, "bill"), _event(conn, "act")]
    twins = [_rule(conn, server.url("/hook"), name=f"twin {i}") for i in range(3)]
    other = _rule(conn, server.url("/hook"), trigger_params=Jsonb({"threshold": 0.7}))
    _move(conn, events[0], 0.5, 0.65, T0 + timedelta(minutes=1))
    _move(conn, events[1], 0.55, 0.75, T0 + timedelta(minutes=1))
    conn.execute("SET work_mem = '5MB'")
    with conn.transaction():
        report = evaluate_tick(conn, since=T0, until=T0 + timedelta(minutes=2))
        # The tick raises work_mem for its own statements; the caller's transaction goes on
        # with its own.
        assert conn.execute("SHOW work_mem").fetchone()[0] == "5MB"
    assert len(report.fired) == 7  # 3 twins x 2 events, and `other` on the second only
    rows = conn.execute(
        "SELECT rule_id, event_id, trigger_snapshot FROM prediction_rule_executions"
        " ORDER BY rule_id, event_id"
    ).fetchall()
    assert sorted((rule, event) for rule, event, _ in rows) == sorted(
        [(rule, event) for rule in twins for event in events] + [(other, events[1])]
    )
    moves = {events[0]: (0.5, 0.65), events[1]: (0.55, 0.75)}
    for rule, event, snapshot in rows:
        threshold = 0.7 if rule == other else 0.6
        assert snapshot["event_id"] == str(event)
        assert snapshot["params"] == {"threshold": threshold}
        before, after = moves[event]
        assert snapshot["values"] == {
            "probability": after,
            "previous_probability": before,
            "threshold": threshold,
        }
        assert (
            snapshot["state_key"]
            == f"PROBABILITY_CROSSES_ABOVE:{before}->{after}@"
            + (T0 + timedelta(minutes=1)).isoformat()
        )
