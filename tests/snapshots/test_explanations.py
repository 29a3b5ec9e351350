"""Explanations of significant moves, and the asset materialised for real."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.snapshots import event_snapshots
from predict_pipeline.snapshots.compute import PoolingSettings, compute_snapshots
from predict_pipeline.snapshots.explain import MoveThresholds, explain_moves
from tests.snapshots.test_compute import T0, _event, _signal

H1 = T0 + timedelta(hours=1)
H2 = T0 + timedelta(hours=2)


def _interval(conn, start, end=None) -> int:
    with conn.transaction():
        compute_snapshots(conn, start, end or start + timedelta(hours=1), PoolingSettings())
        return explain_moves(conn, thresholds=MoveThresholds(), half_life_minutes=60)


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
