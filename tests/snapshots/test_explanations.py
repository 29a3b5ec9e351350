"""Explanations of significant moves, and the asset materialised for real."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import psycopg

from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.snapshots import event_snapshots
from predict_pipeline.snapshots.compute import PoolingSettings, compute_snapshots
from predict_pipeline.snapshots.explain import MoveThresholds, explain_moves
from tests.snapshots.test_compute import T0, _event, _signal

H1 = T0 + timedelta(hours=1)
H2 = T0 + timedelta(hours=2)


def _interval(conn, start, end=None) -> int:
    with conn.transaction():
        batch = compute_snapshots(conn, start, end or start + timedelta(hours=1), PoolingSettings())
        return explain_moves(conn, batch, thresholds=MoveThresholds())


def test_shift_above_threshold_is_explained_with_real_signals_and_below_is_not(conn):
    mover, steady = _event(conn, "mover"), _event(conn, "steady")
    for event in (mover, steady):
        _signal(conn, event, "kalshi", 0.40, T0 + timedelta(minutes=50))
    _interval(conn, T0)
    _signal(conn, mover, "kalshi", 0.55, H1 + timedelta(minutes=50))
    _signal(conn, mover, "polymarket", 0.56, H1 + timedelta(minutes=40))
    _signal(conn, steady, "kalshi", 0.43, H1 + timedelta(minutes=50))  # 3 points: below 5
    assert _interval(conn, H1) == 1
    row = conn.execute(
        "SELECT event_id, trigger_type, headline, contributing_signals, model_used,"
        " prompt_version, trigger_data->>'interval_end' FROM prediction_explanations"
    ).fetchone()
    event_id, trigger, headline, contributing, model, version, interval_end = row
    assert (event_id, trigger, model) == (mover, "PROBABILITY_SHIFT", "template")
    assert version and headline.startswith("Event mover: probability up from 40% to 5")
    interval_signals = {
        r[0]
        for r in conn.execute(
            "SELECT id FROM prediction_signals WHERE event_id = %s AND fetched_at >= %s"
            " AND fetched_at < %s",
            (mover, H1, H2),
        )
    }
    assert set(contributing) == interval_signals and len(contributing) == 2
    assert datetime.fromisoformat(interval_end) == H2
    assert _interval(conn, H1) == 1  # re-running the interval replaces it
    assert conn.execute("SELECT count(*) FROM prediction_explanations").fetchone() == (1,)


def test_asset_rematerialising_an_interval_keeps_the_row_count(conn, db_url, dagster_instance):
    event = _event(conn, "asset")
    _signal(conn, event, "kalshi", 0.40, T0 + timedelta(minutes=50))
    _signal(conn, event, "polymarket", 0.46, T0 + timedelta(minutes=55))
    partition = T0.strftime("%Y-%m-%d-%H:%M")
    for _ in range(2):
        result = dg.materialize(
            [event_snapshots],
            instance=dagster_instance,
            resources={"database": PostgresResource(url=db_url)},
            partition_key=partition,
        )
        assert result.success
    [materialization] = result.asset_materializations_for_node("event_snapshots")
    assert materialization.metadata["snapshots"].value == 1
    count, probability, divergence = conn.execute(
        "SELECT count(*), max(probability)::float8, max(divergence) FROM prediction_snapshots"
    ).fetchone()
    assert (count, divergence) == (1, "LOW")
    assert (
        probability
        == conn.execute(
            "SELECT current_probability::float8 FROM prediction_events WHERE id = %s", (event,)
        ).fetchone()[0]
    )


def _moving_events(conn, n: int, tag: str) -> list:
    """n events whose pooled probability moves by more than 5 points in H1, from three sources
    with different weights, reliabilities and ages (and a sentiment signal, not pooled)."""
    events = [_event(conn, f"{tag}-{i}") for i in range(n)]
    for i, event in enumerate(events):
        _signal(conn, event, "kalshi", 0.30, T0 + timedelta(minutes=50))
        _signal(conn, event, "kalshi", 0.52 + 0.003 * i, H1 + timedelta(minutes=12), weight=2.0)
        _signal(conn, event, "polymarket", 0.61, H1 + timedelta(minutes=47), reliability=0.9)
        _signal(conn, event, "manifold", 0.999 - 0.01 * i, H1 + timedelta(minutes=30), weight=0.5)
        _signal(conn, event, "news", 0.4, H1 + timedelta(minutes=55), kind="NEWS")
    return events


def test_explanations_carry_the_pooled_probability_the_snapshot_stored(conn):
    events = _moving_events(conn, 6, "agree")
    settings = PoolingSettings(half_life_minutes=45, extremize=1.3)
    with conn.transaction():
        compute_snapshots(conn, T0, H1, settings)
    with conn.transaction():
        batch = compute_snapshots(conn, H1, H2, settings)
        # Each moved (and its sources now diverge): two explanations an event.
        assert explain_moves(conn, batch, thresholds=MoveThresholds()) == 2 * len(events)
    rows = conn.execute(
        "SELECT (x.factors->>'pooled_probability')::float8, s.probability::float8,"
        " x.factors->'sources', x.trigger_data"
        " FROM prediction_explanations x JOIN prediction_snapshots s"
        " ON s.event_id = x.event_id AND s.snapshot_at = %s",
        (H2,),
    ).fetchall()
    assert len(rows) == 2 * len(events)
    for pooled, stored, sources, trigger in rows:
        assert pooled == stored
        assert trigger["after"] in (stored, "EXTREME")
        assert [s["source"] for s in sources] == ["kalshi", "manifold", "news", "polymarket"]
    # One source by hand: polymarket's single price at age 13 minutes is its own probability.
    assert {s["probability"] for _, _, sources, _ in rows for s in sources} >= {0.61}
    assert all(s["probability"] is None for _, _, sources, _ in rows for s in sources[2:3])


def test_explaining_reads_the_stored_batch_in_a_later_transaction(conn):
    _moving_events(conn, 3, "later")
    with conn.transaction():
        compute_snapshots(conn, T0, H1)
    with conn.transaction():
        batch = compute_snapshots(conn, H1, H2)
    # Nothing of the compute is left but its rows: the explanations need no temp table.
    with conn.transaction():
        assert explain_moves(conn, batch, thresholds=MoveThresholds()) == 2 * 3
    assert conn.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM prediction_explanations"
        " WHERE trigger_type = 'PROBABILITY_SHIFT'"
    ).fetchone() == (3, 3)


class _CountingCursor(psycopg.Cursor):
    """Counts the statements sent through it; they still run on the real database."""

    statements = 0

    def execute(self, *args, **kwargs):
        type(self).statements += 1
        return super().execute(*args, **kwargs)


def _statements_to_explain(conn, events: int, tag: str) -> int:
    moving = _moving_events(conn, events, tag)
    with conn.transaction():
        compute_snapshots(conn, T0, H1)
    with conn.transaction():
        batch = compute_snapshots(conn, H1, H2)
        _CountingCursor.statements = 0
        conn.cursor_factory = _CountingCursor
        try:
            written = explain_moves(conn, batch, thresholds=MoveThresholds())
        finally:
            conn.cursor_factory = psycopg.Cursor
    # Every event of the window is explained again (earlier calls' too): replaced, not added.
    assert written == conn.execute("SELECT count(*) FROM prediction_explanations").fetchone()[0]
    assert conn.execute(
        "SELECT count(DISTINCT event_id) FROM prediction_explanations WHERE event_id = ANY(%s)",
        (moving,),
    ).fetchone() == (events,)
    return _CountingCursor.statements


def test_explaining_takes_as_many_statements_for_thirty_moves_as_for_two(conn):
    assert _statements_to_explain(conn, 2, "few") == _statements_to_explain(conn, 30, "many") == 2


def test_a_move_that_late_history_undoes_loses_its_explanation_on_a_rerun(conn):
    event = _event(conn, "undone")
    _signal(conn, event, "kalshi", 0.40, T0 + timedelta(minutes=50))
    _interval(conn, T0)
    _signal(conn, event, "kalshi", 0.60, H1 + timedelta(minutes=20))
    assert _interval(conn, H1) == 1
    # Later prices in the same hour bring the pool back to about 0.42: no move any more.
    for minute in (55, 57, 59):
        _signal(conn, event, "kalshi", 0.38, H1 + timedelta(minutes=minute))
    assert _interval(conn, H1) == 0
    assert conn.execute("SELECT count(*) FROM prediction_explanations").fetchone() == (0,)
