"""rule_trigger_sensor under steady firing: 50 ticks with 4 rules firing on each request one
actions run per tick (runs grow with ticks, not with firings), and one such run delivers every
firing it carries to a real local webhook receiver."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.defs.resources import PostgresResource, SecretsResource
from predict_pipeline.defs.rules import (
    MAX_EXECUTIONS_PER_RUN,
    rule_actions_job,
    rule_trigger_sensor,
)
from tests.rules.test_engine import _event, _move, _rule
from tests.support.feeds import KEY
from tests.support.http_server import Reply

TICKS = 50
RULES = 4


def test_fifty_ticks_of_four_firing_rules_request_one_run_per_tick(
    conn, db_url, server, dagster_instance, monkeypatch
):
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", base64.urlsafe_b64encode(KEY).decode())
    monkeypatch.setenv("PREDICT_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
    event = _event(conn)
    rules = [
        _rule(conn, server.url(f"/hook/{i}"), name=f"rule {i}", max_fires_per_day=1000)
        for i in range(RULES)
    ]
    resources = {"database": PostgresResource(url=db_url)}
    cursor = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    requests: list[dg.RunRequest] = []
    per_tick: list[int] = []
    for tick in range(TICKS):
        # Between two ticks the event crosses 60 % again: every rule fires on every tick.
        _move(conn, event, 0.5, 0.6 + 0.001 * (tick + 1), datetime.now(UTC))
        result = rule_trigger_sensor(
            dg.build_sensor_context(instance=dagster_instance, cursor=cursor, resources=resources)
        )
        cursor = result.cursor
        per_tick.append(len(result.run_requests))
        requests += result.run_requests
    firings = conn.execute(
        "SELECT count(*), count(DISTINCT rule_id) FROM prediction_rule_executions"
    ).fetchone()
    assert firings == (TICKS * RULES, RULES)
    assert per_tick == [1] * TICKS  # 50 runs for 200 firings
    carried = [r.run_config["ops"]["run_rule_actions"]["config"]["execution_ids"] for r in requests]
    assert [len(ids) for ids in carried] == [RULES] * TICKS
    executions = {str(x) for (x,) in conn.execute("SELECT id FROM prediction_rule_executions")}
    assert {x for ids in carried for x in ids} == executions  # each firing in exactly one run
    assert len({r.run_key for r in requests}) == TICKS
    assert RULES < MAX_EXECUTIONS_PER_RUN

    for i in range(RULES):
        server.add(f"/hook/{i}", Reply(200, b"ok"))
    run = rule_actions_job.execute_in_process(
        run_config=requests[-1].run_config,
        instance=dagster_instance,
        resources={**resources, "secrets": SecretsResource()},
    )
    assert run.success
    assert sorted(r.path for r in server.received) == [f"/hook/{i}" for i in range(RULES)]
    done = conn.execute(
        "SELECT rule_id, status FROM prediction_rule_executions WHERE id = ANY(%s::uuid[])",
        (carried[-1],),
    ).fetchall()
    assert sorted(done) == sorted((rule, "COMPLETED") for rule in rules)


def test_a_burst_of_firings_is_split_into_bounded_runs():
    """A tick after downtime with more firings than one run carries: ceil(n / max) runs, and
    the same firings asked again are the same runs (run keys)."""
    import uuid

    from predict_pipeline.defs.rules import tick_run_requests

    fired = [(uuid.uuid4(), f"rule:{i}:state") for i in range(2 * MAX_EXECUTIONS_PER_RUN + 1)]
    requests = tick_run_requests(fired)
    sizes = [
        len(r.run_config["ops"]["run_rule_actions"]["config"]["execution_ids"]) for r in requests
    ]
    assert sizes == [MAX_EXECUTIONS_PER_RUN, MAX_EXECUTIONS_PER_RUN, 1]
    assert [r.run_key for r in tick_run_requests(fired)] == [r.run_key for r in requests]
    assert tick_run_requests([]) == []
