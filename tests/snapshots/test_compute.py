"""Snapshots computed in PostgreSQL against hand-computed values."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.snapshots.compute import PoolingSettings, compute_snapshots

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)  # interval [10:00, 11:00), snapshot_at 11:00
END = T0 + timedelta(hours=1)
LAST = END - timedelta(microseconds=1)  # the interval's last instant: decay 0 for all purposes


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture
def event(conn) -> uuid.UUID:
    return _event(conn, "e")


def _event(conn: psycopg.Connection, slug: str, status: str = "ACTIVE") -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, status) VALUES (%s, %s, %s) RETURNING id",
        (f"Event {slug}", slug, status),
    ).fetchone()[0]


def _signal(
    conn, event, source, value, at, kind="MARKET_PRICE", weight=1.0, reliability=1.0, **extra
):
    conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (at, at))
    conn.execute(
        "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,"
        " weight, reliability, fetched_at, raw_data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            event,
            source,
            extra.get("market", f"{source}-{uuid.uuid4().hex[:6]}"),
            kind,
            value,
            weight,
            reliability,
            at,
            Jsonb(extra["raw"]) if "raw" in extra else None,
        ),
    )


def _snap(conn, event, at=END) -> dict:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT probability::float8, sentiment_score::float8, volume, volatility::float8,"
            " divergence, signal_count FROM prediction_snapshots"
            " WHERE event_id = %s AND snapshot_at = %s",
            (event, at),
        ).fetchone()


def _run(conn, start=T0, end=END, **settings):
    with conn.transaction():
        return compute_snapshots(conn, start, end, PoolingSettings(**settings))


def test_two_sources_equal_weight_pool_to_the_log_odds_mean(conn, event):
    _signal(conn, event, "kalshi", 0.6, LAST)
    _signal(conn, event, "polymarket", 0.8, LAST)
    _run(conn)
    expected = sigmoid((logit(0.6) + logit(0.8)) / 2)
    assert _snap(conn, event)["probability"] == round(expected, 4)


def test_weights_and_recency_change_the_pool_as_the_formula_says(conn, event):
    _signal(conn, event, "kalshi", 0.6, END - timedelta(minutes=60), weight=2.0)
    _signal(conn, event, "polymarket", 0.8, END - timedelta(minutes=30), reliability=0.5)
    _run(conn, half_life_minutes=30)
    w1 = 2.0 * 1.0 * 0.5 ** (60 / 30)
    w2 = 1.0 * 0.5 * 0.5 ** (30 / 30)
    expected = sigmoid((w1 * logit(0.6) + w2 * logit(0.8)) / (w1 + w2))
    assert _snap(conn, event)["probability"] == round(expected, 4)


def test_single_source_passes_through_and_extremizing_pushes_it_out(conn, event):
    _signal(conn, event, "kalshi", 0.7, T0 + timedelta(minutes=5))
    _run(conn)
    assert _snap(conn, event)["probability"] == 0.7
    _run(conn, extremize=2.0)
    assert _snap(conn, event)["probability"] == round(sigmoid(2 * logit(0.7)), 4)


def test_a_manual_signal_without_a_value_is_counted_but_not_pooled(conn, event):
    _signal(conn, event, "kalshi", 0.7, T0 + timedelta(minutes=5))
    _signal(conn, event, "manual", None, T0 + timedelta(minutes=6), kind="MANUAL")
    _run(conn)
    snap = _snap(conn, event)
    assert (snap["probability"], snap["signal_count"], snap["divergence"]) == (0.7, 2, "NONE")


def test_sentiment_volume_and_counts(conn, event):
    at = END - timedelta(minutes=1)
    _signal(conn, event, "kalshi", 0.5, at)
    _signal(conn, event, "news", 0.5, at, kind="NEWS", weight=3.0)
    _signal(conn, event, "x", -0.5, at, kind="SOCIAL", weight=1.0)
    _signal(conn, event, "kalshi", 1.5, at, kind="VOLUME")  # thousands: 1,500 units
    _signal(conn, event, "polymarket", 0.25, at, kind="VOLUME")
    _run(conn)
    snap = _snap(conn, event)
    assert snap["sentiment_score"] == round((3 * 0.5 - 0.5) / 4, 4)
    assert snap["volume"] == 1750
    assert snap["signal_count"] == 5


def test_lifetime_volume_totals_count_by_their_increase(conn, event):
    lifetime = {"market": "KX-1", "raw": {"volume_scope": "lifetime_contracts"}}
    _signal(conn, event, "kalshi", 0.5, T0 + timedelta(minutes=5))  # a state to snapshot
    _signal(conn, event, "kalshi", 9.0, T0 - timedelta(minutes=10), kind="VOLUME", **lifetime)
    for minute, total in [(5, 10.0), (20, 11.0), (50, 13.0)]:  # polls of a growing total
        _signal(
            conn, event, "kalshi", total, T0 + timedelta(minutes=minute), kind="VOLUME", **lifetime
        )
    _signal(conn, event, "kalshi", 15.5, END + timedelta(minutes=30), kind="VOLUME", **lifetime)
    _signal(conn, event, "polymarket", 0.25, T0 + timedelta(minutes=30), kind="VOLUME")  # a flow
    # A second market whose total was never seen before the batch: its increase in the interval.
    other = {"market": "KX-2", "raw": {"volume_scope": "lifetime_contracts"}}
    _signal(conn, event, "kalshi", 2.0, T0 + timedelta(minutes=1), kind="VOLUME", **other)
    _signal(conn, event, "kalshi", 2.5, T0 + timedelta(minutes=59), kind="VOLUME", **other)
    _run(conn, end=END + timedelta(hours=1))
    assert _snap(conn, event)["volume"] == (13.0 - 9.0 + 0.25 + 0.5) * 1000
    assert _snap(conn, event, END + timedelta(hours=1))["volume"] == (15.5 - 13.0) * 1000
    _run(conn, start=END, end=END + timedelta(hours=1))  # the second hour alone: same flow
    assert _snap(conn, event, END + timedelta(hours=1))["volume"] == (15.5 - 13.0) * 1000


@pytest.mark.parametrize(
    ("second", "level"),
    [
        (0.549, "NONE"),
        (0.55, "LOW"),
        (0.599, "LOW"),
        (0.6, "MEDIUM"),
        (0.699, "MEDIUM"),
        (0.7, "HIGH"),
        (0.849, "HIGH"),
        (0.85, "EXTREME"),
    ],
)
def test_divergence_thresholds_at_their_edges(conn, event, second, level):
    _signal(conn, event, "kalshi", 0.5, LAST)
    _signal(conn, event, "polymarket", second, LAST)
    _run(conn)
    assert _snap(conn, event)["divergence"] == level


def test_single_source_has_no_divergence(conn, event):
    _signal(conn, event, "kalshi", 0.1, LAST)
    _signal(conn, event, "kalshi", 0.9, LAST)
    _run(conn)
    assert _snap(conn, event)["divergence"] == "NONE"


def test_flat_series_has_zero_volatility_and_a_moving_one_does_not(conn, event):
    moving = _event(conn, "moving")
    for hour in range(6):
        at = T0 + timedelta(hours=hour, minutes=59)
        _signal(conn, event, "kalshi", 0.4, at)
        _signal(conn, moving, "kalshi", 0.3 + 0.1 * (hour % 2), at)
    _run(conn, end=T0 + timedelta(hours=6))
    last = T0 + timedelta(hours=6)
    assert _snap(conn, event, last)["volatility"] == 0
    changes = [logit(0.4) - logit(0.3)] * 5
    signs = [1, -1, 1, -1, 1]
    diffs = [c * s for c, s in zip(changes, signs, strict=True)]
    mean = sum(diffs) / len(diffs)
    sigma = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    assert _snap(conn, moving, last)["volatility"] == pytest.approx(min(1, sigma), abs=6e-5)


def test_no_new_signal_carries_the_last_probability_forward(conn, event):
    _signal(conn, event, "kalshi", 0.42, T0 + timedelta(minutes=59))
    _run(conn)
    batch = _run(conn, start=END, end=END + timedelta(hours=2))
    assert batch.carried_forward == 2
    assert _snap(conn, event, END + timedelta(hours=2))["probability"] == 0.42
    assert _snap(conn, event, END + timedelta(hours=2))["signal_count"] == 0


def test_current_and_previous_state_after_two_intervals(conn, event):
    resolved = _event(conn, "done", status="RESOLVED_YES")
    _signal(conn, event, "kalshi", 0.3, T0 + timedelta(minutes=59))
    _signal(conn, resolved, "kalshi", 0.9, T0 + timedelta(minutes=59))
    _run(conn)
    _signal(conn, event, "kalshi", 0.5, END + timedelta(minutes=59))
    _signal(conn, event, "news", 0.4, END + timedelta(minutes=59), kind="NEWS")
    _run(conn, start=END, end=END + timedelta(hours=1))
    state = conn.execute(
        "SELECT current_probability::float8, previous_probability::float8,"
        " sentiment_score::float8, previous_sentiment, confidence"
        " FROM prediction_events WHERE id = %s",
        (event,),
    ).fetchone()
    assert state == (0.5, 0.3, 0.4, None, "LOW")
    untouched = conn.execute(
        "SELECT current_probability, previous_probability FROM prediction_events WHERE id = %s",
        (resolved,),
    ).fetchone()
    assert untouched == (None, None)
    assert _snap(conn, resolved) is None


def test_rematerialising_an_interval_replaces_its_rows(conn, event):
    _signal(conn, event, "kalshi", 0.3, T0 + timedelta(minutes=59))
    first = _run(conn)
    again = _run(conn)
    assert first.snapshots == again.snapshots == 1
    count = conn.execute("SELECT count(*) FROM prediction_snapshots").fetchone()[0]
    assert count == 1
    state = conn.execute(
        "SELECT current_probability::float8, previous_probability FROM prediction_events"
        " WHERE id = %s",
        (event,),
    ).fetchone()
    assert state == (0.3, None)  # the re-run did not shift previous_* again


def test_spread_pools_a_source_with_several_signals_before_comparing(conn, event):
    # kalshi's two prices pool to 0.5 (equal weights): against polymarket's 0.62 the spread is
    # 0.12 (MEDIUM), not the 0.22 (HIGH) that kalshi's single 0.4 would give.
    _signal(conn, event, "kalshi", 0.4, LAST)
    _signal(conn, event, "kalshi", 0.6, LAST)
    _signal(conn, event, "polymarket", 0.62, LAST)
    _run(conn)
    assert _snap(conn, event)["divergence"] == "MEDIUM"


def _mixed_signals(conn) -> list[uuid.UUID]:
    """Several events over three hours: sources with one and with several signals, a zero
    weight, missing reliabilities, sentiment and volume, an hour without any signal."""
    events = [_event(conn, f"mixed-{i}") for i in range(3)]
    for hour in range(3):
        at = T0 + timedelta(hours=hour, minutes=10)
        for i, ev in enumerate(events):
            if (hour, i) == (1, 2):
                continue  # carried forward
            _signal(conn, ev, "kalshi", 0.30 + 0.1 * i + 0.05 * hour, at)
            _signal(conn, ev, "kalshi", 0.35 + 0.1 * i, at + timedelta(minutes=20), weight=2.0)
            _signal(conn, ev, "polymarket", 0.6 - 0.1 * hour, at, reliability=None)
            _signal(conn, ev, "manifold", 0.9, at, weight=0.0)
            _signal(conn, ev, "news", 0.2 * (hour - 1), at, kind="NEWS")
            _signal(conn, ev, "kalshi", 1.25 + hour, at, kind="VOLUME")
    return events


MIXED_END = T0 + timedelta(hours=3)


def _computed_batch(conn) -> list[tuple]:
    """What compute_snapshots writes of the mixed signals' three hours: the snapshots in row
    order, then the events' state (confidence included, which the snapshots do not keep)."""
    with conn.transaction():
        compute_snapshots(conn, T0, MIXED_END)
        snapshots = conn.execute(
            "SELECT event_id, snapshot_at, probability, sentiment_score, volatility, volume,"
            " divergence, signal_count FROM prediction_snapshots ORDER BY event_id, snapshot_at"
        ).fetchall()
        state = conn.execute(
            "SELECT id, current_probability, previous_probability, sentiment_score,"
            " previous_sentiment, volatility, divergence, previous_divergence, confidence"
            " FROM prediction_events ORDER BY id"
        ).fetchall()
    return snapshots + state


def test_slots_per_source_aggregate_and_event_ranges_give_the_same_rows(conn, monkeypatch):
    import predict_pipeline.snapshots.compute as compute

    _mixed_signals(conn)
    slotted = _computed_batch(conn)
    monkeypatch.setattr(compute, "SOURCE_SLOTS", 0)
    per_source = _computed_batch(conn)
    assert len(slotted) == 9 + 3  # three events' three hours, and their state
    assert slotted == per_source
    assert {row[6] for row in slotted} > {"NONE"}  # divergence seen, not only the default
    for ranges in (1, 3):  # the events cut into ranges of ids, each aggregated on its own
        monkeypatch.setattr(compute, "EVENT_RANGES", ranges)
        assert _computed_batch(conn) == slotted


def test_a_source_newer_than_the_slot_list_is_still_pooled(conn, monkeypatch):
    import predict_pipeline.snapshots.compute as compute

    _mixed_signals(conn)
    expected = _computed_batch(conn)
    # As if polymarket's first signal had been committed after the source list was read.
    monkeypatch.setattr(compute, "_SOURCES_SQL", "SELECT ARRAY['kalshi', 'manifold', 'news']")
    assert _computed_batch(conn) == expected


def _relation_loops(plan: dict, relation: str) -> int:
    own = plan.get("Actual Loops", 0) if plan.get("Relation Name") == relation else 0
    return own + sum(_relation_loops(child, relation) for child in plan.get("Plans", []))


def test_the_event_state_update_scans_the_batch_once_whatever_its_join_plan(conn, monkeypatch):
    import predict_pipeline.snapshots.compute as compute

    events = [_event(conn, f"state-{i}") for i in range(40)]
    for hour in range(6):
        for i, ev in enumerate(events):
            _signal(conn, ev, "kalshi", 0.2 + 0.01 * i, T0 + timedelta(hours=hour, minutes=5))
    end = T0 + timedelta(hours=6)
    explained: list[psycopg.Cursor] = []

    class ExplainingCursor(psycopg.Cursor):
        def execute(self, query, *args, **kwargs):
            if isinstance(query, str) and query.startswith("EXPLAIN"):
                explained.append(self)
            return super().execute(query, *args, **kwargs)

    # The state update runs under EXPLAIN ANALYZE inside compute_snapshots (it still updates).
    monkeypatch.setattr(
        compute, "_EVENT_STATE_SQL", "EXPLAIN (ANALYZE, FORMAT JSON) " + compute._EVENT_STATE_SQL
    )
    conn.cursor_factory = ExplainingCursor
    try:
        with conn.transaction():
            # Nested loops everywhere, as stale statistics (a fresh events table) once made the
            # planner choose: the batch must still be read once, not once per event.
            conn.execute("SET LOCAL enable_hashjoin = off")
            conn.execute("SET LOCAL enable_mergejoin = off")
            compute_snapshots(conn, T0, end)
    finally:
        conn.cursor_factory = psycopg.Cursor
    [cursor] = explained
    (plan,) = cursor.fetchone()[0]
    assert _relation_loops(plan["Plan"], "snapshot_batch") == 1
    with conn.transaction():
        state = conn.execute(
            "SELECT count(*) FROM prediction_events WHERE slug LIKE 'state-%%'"
            " AND current_probability IS NOT NULL AND previous_probability IS NOT NULL"
        ).fetchone()[0]
    assert state == len(events)
