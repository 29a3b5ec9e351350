"""`explain_rule` (behind `rules test`) against the tick itself: on one event whose state moved
in every way a trigger watches, the rules it says would fire are exactly the ones
`evaluate_tick` fires at the same moment, and it writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg.types.json import Jsonb

from predict_pipeline.rules.dry_run import explain_rule
from predict_pipeline.rules.engine import evaluate_tick
from tests.support.feeds import USER_ID

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# (trigger, params) — half of them fire on the state below, half do not.
RULES = [
    ("PROBABILITY_CROSSES_ABOVE", {"threshold": 0.5}),
    ("PROBABILITY_CROSSES_BELOW", {"threshold": 0.5}),
    ("PROBABILITY_SHIFT", {"min_change": 0.15, "window_minutes": 60}),
    ("PROBABILITY_SHIFT", {"min_change": 0.3, "window_minutes": 60}),
    ("PROBABILITY_SHIFT", {"min_change": 0.1, "window_minutes": 60, "direction": "down"}),
    ("SENTIMENT_SHIFT", {"min_change": 0.2}),
    ("TRUST_BELOW", {"threshold": 0.5}),
    ("TRUST_BELOW", {"threshold": 0.3}),
    ("DIVERGENCE_AT_LEAST", {"level": "HIGH"}),
    ("DIVERGENCE_AT_LEAST", {"level": "EXTREME"}),
    ("FLAG_RAISED", {"flag_types": ["VOLUME_SPIKE"], "min_severity": "WARNING"}),
    ("FLAG_RAISED", {"flag_types": ["WASH_TRADING"]}),
    ("VOLUME_SPIKE", {"min_ratio": 3, "window_hours": 24}),
    ("VOLUME_SPIKE", {"min_ratio": 5, "window_hours": 24}),
    ("EVENT_RESOLVED", {}),
]


def _counts(conn) -> tuple[int, ...]:
    return conn.execute(
        "SELECT (SELECT count(*) FROM prediction_rule_executions),"
        " (SELECT count(*) FROM prediction_audit_log),"
        " (SELECT coalesce(sum(fire_count), 0) FROM prediction_rules)"
    ).fetchone()


def test_explain_rule_agrees_with_the_tick_and_writes_nothing(conn):
    conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (T0 - timedelta(days=2), T0))
    event = conn.execute(
        """INSERT INTO prediction_events (title, slug, current_probability, previous_probability,
             sentiment_score, previous_sentiment, trust_score, previous_trust_score, divergence,
             previous_divergence, updated_at)
           VALUES ('Moved', 'moved', 0.6, 0.4, 0.4, 0.1, 0.4, 0.7, 'HIGH', 'LOW', %s)
           RETURNING id""",
        (T0 - timedelta(minutes=1),),
    ).fetchone()[0]
    # Hourly snapshots: 0.4 and volume 100 for a day, then 0.6 on volume 400.
    for hours in range(24, 0, -1):
        conn.execute(
            "INSERT INTO prediction_snapshots (event_id, snapshot_at, probability, volume)"
            " VALUES (%s, %s, 0.4, 100)",
            (event, T0 - timedelta(hours=hours, minutes=30)),
        )
    conn.execute(
        "INSERT INTO prediction_snapshots (event_id, snapshot_at, probability, volume)"
        " VALUES (%s, %s, 0.6, 400)",
        (event, T0 - timedelta(minutes=1)),
    )
    conn.execute(
        "INSERT INTO prediction_trust_flags (event_id, flag_type, severity, description,"
        " created_at) VALUES (%s, 'VOLUME_SPIKE', 'ALERT', 'test', %s)",
        (event, T0 - timedelta(minutes=2)),
    )
    rules = [
        conn.execute(
            "INSERT INTO prediction_rules (user_id, name, scope_type, trigger_type,"
            " trigger_params, cooldown_minutes) VALUES (%s, %s, 'all', %s, %s, 0) RETURNING id",
            (USER_ID, f"{trigger} {params}", trigger, Jsonb(params)),
        ).fetchone()[0]
        for trigger, params in RULES
    ]
    before = _counts(conn)
    with conn.transaction():
        verdicts = {rule: explain_rule(conn, rule, event, T0) for rule in rules}
    assert _counts(conn) == before
    said = {rule for rule, verdict in verdicts.items() if verdict.would_fire}
    with conn.transaction():
        report = evaluate_tick(conn, since=T0 - timedelta(minutes=5), until=T0)
    fired = {
        row[0]
        for row in conn.execute(
            "SELECT rule_id FROM prediction_rule_executions WHERE id = ANY(%s)", (report.fired,)
        )
    }
    assert said == fired
    # The state above makes these fire, and only these (each trigger both ways).
    assert sorted(RULES[rules.index(r)][0] for r in fired) == [
        "DIVERGENCE_AT_LEAST",
        "FLAG_RAISED",
        "PROBABILITY_CROSSES_ABOVE",
        "PROBABILITY_SHIFT",
        "SENTIMENT_SHIFT",
        "TRUST_BELOW",
        "VOLUME_SPIKE",
    ]
    # Each firing names the same observation the tick logged.
    logged = dict(
        conn.execute(
            "SELECT rule_id, trigger_snapshot->>'state_key' FROM prediction_rule_executions"
            " WHERE id = ANY(%s)",
            (report.fired,),
        ).fetchall()
    )
    assert {r: verdicts[r].firing["state_key"] for r in said} == logged
