"""Resolutions from settled markets, dispute windows, and the calibration asset, for real."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.calibration.resolutions import (
    finalise_resolutions,
    mark_for_rescoring,
    resolve_from_markets,
)
from predict_pipeline.defs.calibration import calibration_scores
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.demo import REPLAY_DIR
from predict_pipeline.http import build_http_client
from predict_pipeline.ingestion.pushed import hour_window
from predict_pipeline.ingestion.runner import fetch_window
from predict_pipeline.signals.stage import validate_window
from tests.support.feeds import KEY, USER_ID, make_feed

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)


def _event(conn: psycopg.Connection, slug: str, category: str | None = None) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, category_id)"
        " SELECT %s, %s, (SELECT id FROM prediction_categories WHERE slug = %s) RETURNING id",
        (f"Event {slug}", slug, category),
    ).fetchone()[0]


def _audits(conn, action: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM prediction_audit_log WHERE action = %s", (action,)
    ).fetchone()[0]


def test_event_resolves_from_a_recorded_settled_kalshi_market(conn, landing):
    event = _event(conn, "bracket-450-499")
    feed = make_feed(
        conn,
        "kalshi",
        {"event_tickers": ["KXELONTWEETS-25MAR28"]},
        manual_event_mappings=Jsonb({"KXELONTWEETS-25MAR28-474.5": str(event)}),
    )
    window = hour_window(NOW)
    with build_http_client("replay", replay_dir=REPLAY_DIR) as client:
        fetch_window(
            conn,
            client,
            landing,
            window,
            mode="poll",
            feed_ids=[feed],
            encryption_key=lambda: KEY,
            now=lambda: NOW,
        )
    validate_window(conn, landing, window, now=NOW)
    with conn.transaction():
        report = resolve_from_markets(conn, now=NOW)
    assert report.resolved == [("Event bracket-450-499", "YES")] and report.conflicts == []
    row = conn.execute(
        "SELECT outcome, resolution_method, market_final_probability::float8,"
        " dispute_window_end, is_final, final_probability FROM prediction_resolutions"
        " WHERE event_id = %s",
        (event,),
    ).fetchone()
    # The market settled at 0.99; no snapshot existed at its 2025 close, so no pooled final.
    assert row == ("YES", "market_settled", 0.99, NOW + timedelta(hours=48), False, None)
    status = conn.execute(
        "SELECT status, resolved_at FROM prediction_events WHERE id = %s", (event,)
    ).fetchone()
    assert status == ("RESOLVED_YES", datetime(2025, 3, 28, 16, tzinfo=UTC))
    assert _audits(conn, "event.resolved") == 1
    with conn.transaction():
        assert resolve_from_markets(conn, now=NOW).resolved == []  # nothing twice


def _settle(conn, event, market: str, outcome: str) -> None:
    conn.execute(
        "INSERT INTO predict_meta.market_settlements (source, source_event_id, event_id,"
        " resolution, resolved_at, last_price, observed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            market.split(":")[0],
            market,
            event,
            outcome,
            NOW - timedelta(hours=1),
            1.0 if outcome == "YES" else 0.0,
            NOW,
        ),
    )


def test_disagreeing_markets_leave_the_event_open_with_one_audit_entry(conn):
    event = _event(conn, "disputed-markets")
    _settle(conn, event, "kalshi:A", "YES")
    _settle(conn, event, "polymarket:B", "NO")
    for _ in range(2):
        with conn.transaction():
            report = resolve_from_markets(conn, now=NOW)
        assert report.conflicts == ["Event disputed-markets"] and report.resolved == []
    assert conn.execute("SELECT count(*) FROM prediction_resolutions").fetchone() == (0,)
    assert conn.execute(
        "SELECT status FROM prediction_events WHERE id = %s", (event,)
    ).fetchone() == ("ACTIVE",)
    assert _audits(conn, "event.resolution_conflict") == 1


def test_dispute_window_closing_sets_is_final_unless_a_dispute_is_open(conn):
    quiet, contested = _event(conn, "quiet"), _event(conn, "contested")
    for event in (quiet, contested):
        _settle(conn, event, f"kalshi:{event}", "NO")
    with conn.transaction():
        resolve_from_markets(conn, now=NOW)
    conn.execute(
        "INSERT INTO prediction_resolution_disputes (resolution_id, event_id, disputed_by,"
        " reason) SELECT id, event_id, %s, 'wrong source' FROM prediction_resolutions"
        " WHERE event_id = %s",
        (USER_ID, contested),
    )
    with conn.transaction():
        assert finalise_resolutions(conn, now=NOW + timedelta(hours=47)) == 0
        assert finalise_resolutions(conn, now=NOW + timedelta(hours=48)) == 1
    final = dict(conn.execute("SELECT event_id, is_final FROM prediction_resolutions"))
    assert final == {quiet: True, contested: False}
    assert _audits(conn, "resolution.finalised") == 1


def test_calibration_asset_writes_every_row_and_the_diagram(conn, db_url, dagster_instance):
    probabilities = {"YES": [0.9, 0.7], "NO": [0.2, 0.6]}
    for outcome, values in probabilities.items():
        for i, p in enumerate(values):
            event = _event(conn, f"{outcome}-{i}", "finance")
            conn.execute(
                "INSERT INTO prediction_resolutions (event_id, outcome, final_probability,"
                " resolved_at) VALUES (%s, %s, %s, now() - interval '2 days')",
                (event, outcome, p),
            )
    ambiguous = _event(conn, "ambiguous", "finance")
    conn.execute(
        "INSERT INTO prediction_resolutions (event_id, outcome, final_probability, resolved_at)"
        " VALUES (%s, 'AMBIGUOUS', 0.5, now() - interval '1 day')",
        (ambiguous,),
    )
    result = dg.materialize(
        [calibration_scores],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
    )
    assert result.success
    rows = conn.execute(
        "SELECT c.slug, s.time_window, s.total_predictions, s.brier_score::float8"
        " FROM prediction_calibration_scores s"
        " LEFT JOIN prediction_categories c ON c.id = s.category_id"
    ).fetchall()
    assert len(rows) == 4 * 7  # global + six categories, four windows
    expected = round(((0.9 - 1) ** 2 + (0.7 - 1) ** 2 + 0.2**2 + 0.6**2) / 4, 4)
    by_key = {(slug, window): (total, brier) for slug, window, total, brier in rows}
    assert by_key[(None, "7D")] == (4, expected) and by_key[("finance", "ALL_TIME")] == (
        4,
        expected,
    )
    assert by_key[("sports", "7D")] == (0, None)
    [materialization] = result.asset_materializations_for_node("calibration_scores")
    assert materialization.metadata["brier_7d"].value == expected
    assert "data:image/png;base64," in materialization.metadata["reliability_diagram"].value
    dg.materialize(
        [calibration_scores],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
    )
    assert conn.execute("SELECT count(*) FROM prediction_calibration_scores").fetchone() == (28,)


@pytest.mark.parametrize(
    ("source", "payload"),
    [
        ("kalshi", "kalshi_markets_finalized_cents.json"),
        ("polymarket", "polymarket_clob_markets_page.json"),
        ("manifold", "manifold_markets.json"),
        ("manifold", "manifold_market_by_id.json"),
    ],
)
def test_auto_resolution_from_each_recorded_settled_payload(conn, source, payload):
    import json

    from predict_pipeline.ingestion.store import load_feed
    from predict_pipeline.signals.frames import RecordBatch
    from predict_pipeline.signals.ingest import FeedValidationReport, ingest_batches
    from predict_pipeline.signals.routing import MatchingSettings
    from predict_pipeline.sources.registry import source_definition
    from tests.conftest import FIXTURES

    body = json.loads((FIXTURES / "payloads" / payload).read_bytes())
    records = source_definition(source).adapter.read_records(body, fetched_at=NOW).records
    settled = next(r for r in records if r.market.resolution is not None)
    event = _event(conn, f"settled-{source}-{payload[:12]}")
    feed = make_feed(
        conn,
        source,
        {},
        manual_event_mappings=Jsonb({settled.source_event_id: str(event)}),
        event_mapping_mode="manual",
    )
    report = FeedValidationReport(str(feed), "f", source)
    with conn.transaction():
        ingest_batches(
            conn,
            load_feed(conn, feed),
            [RecordBatch(records)],
            report,
            now=NOW,
            matching=MatchingSettings(),
            events=lambda: [],
            timings={},
        )
        result = resolve_from_markets(conn, now=NOW)
    assert result.resolved == [
        (f"Event settled-{source}-{payload[:12]}", settled.market.resolution)
    ]
    outcome, method = conn.execute(
        "SELECT outcome, resolution_method FROM prediction_resolutions WHERE event_id = %s",
        (event,),
    ).fetchone()
    assert (outcome, method) == (settled.market.resolution, "market_settled")


def _price(conn, event, source: str, market: str, value: float, at: datetime) -> None:
    conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (at, at)).fetchall()
    conn.execute(
        "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,"
        " weight, reliability, fetched_at) VALUES (%s, %s, %s, 'MARKET_PRICE', %s, 1, 0.9, %s)",
        (event, source, market, value, at),
    )


def test_final_probability_is_the_pooled_one_at_the_last_observation_before_close(conn):
    event = _event(conn, "last-partial-hour")
    close = NOW - timedelta(hours=1)  # _settle's resolution time: 14:40
    _price(conn, event, "kalshi", "kalshi:A", 0.40, close - timedelta(hours=3))
    _price(conn, event, "polymarket", "polymarket:B", 0.70, close - timedelta(minutes=30))
    _price(conn, event, "kalshi", "kalshi:A", 0.60, close - timedelta(minutes=10))  # 14:30
    _price(conn, event, "kalshi", "kalshi:A", 0.99, close + timedelta(minutes=5))  # after close
    _settle(conn, event, "kalshi:A", "YES")
    with conn.transaction():
        resolve_from_markets(conn, now=NOW)
    final, exact, observed = conn.execute(
        "SELECT final_probability::float8, final_probability_exact, final_observed_at"
        " FROM prediction_resolutions"
    ).fetchone()
    # At 14:30 each market's latest price is pooled: A 0.60 (age 0), B 0.70 (age 20 min).
    w_a, w_b = 0.9, 0.9 * 0.5 ** (20 / 60)
    logit = (w_a * math.log(0.6 / 0.4) + w_b * math.log(0.7 / 0.3)) / (w_a + w_b)
    expected = 1 / (1 + math.exp(-logit))
    assert observed == close - timedelta(minutes=10)
    assert exact == pytest.approx(expected, abs=1e-12)
    assert final == round(expected, 4)


def test_history_arriving_after_the_resolution_rescores_it_audited(conn):
    event = _event(conn, "late-history")
    close = NOW - timedelta(hours=1)
    _settle(conn, event, "kalshi:A", "YES")
    with conn.transaction():
        resolve_from_markets(conn, now=NOW)
    assert conn.execute(
        "SELECT final_probability_exact FROM prediction_resolutions"
    ).fetchone() == (None,)
    # Stage 2 writes the history and marks the resolution; the next run rescores it.
    _price(conn, event, "kalshi", "kalshi:A", 0.8, close - timedelta(minutes=1))
    assert mark_for_rescoring(conn, [event]) == 1
    with conn.transaction():
        report = resolve_from_markets(conn, now=NOW + timedelta(hours=1))
    assert report.rescored == 1
    assert conn.execute(
        "SELECT final_probability_exact FROM prediction_resolutions"
    ).fetchone() == (pytest.approx(0.8, abs=1e-12),)
    [(details,)] = conn.execute(
        "SELECT details FROM prediction_audit_log WHERE action = 'resolution.rescored'"
    ).fetchall()
    assert details["before"]["final_probability"] is None
    assert details["after"]["final_probability"] == pytest.approx(0.8, abs=1e-12)


class _CountingCursor(psycopg.Cursor):
    """Counts the statements sent through it; they still run on the real database."""

    statements = 0

    def execute(self, *args, **kwargs):
        type(self).statements += 1
        return super().execute(*args, **kwargs)


def _statements_to_resolve(conn, events: int, now: datetime) -> int:
    for i in range(events):
        agreed, split = _event(conn, f"agreed-{now:%d}-{i}"), _event(conn, f"split-{now:%d}-{i}")
        _settle(conn, agreed, f"kalshi:A{now:%d}{i}", "YES" if i % 2 else "NO")
        _settle(conn, split, f"kalshi:B{now:%d}{i}", "YES")
        _settle(conn, split, f"polymarket:C{now:%d}{i}", "NO")
        _price(conn, agreed, "kalshi", f"kalshi:A{now:%d}{i}", 0.3, NOW - timedelta(hours=3))
    _CountingCursor.statements = 0
    conn.cursor_factory = _CountingCursor
    try:
        with conn.transaction():
            report = resolve_from_markets(conn, now=now)
            # The dispute windows of this batch close: every resolution is finalised.
            finalise_resolutions(conn, now=now + timedelta(days=3))
    finally:
        conn.cursor_factory = psycopg.Cursor
    assert len(report.resolved) == events
    return _CountingCursor.statements


def test_resolving_takes_as_many_statements_for_forty_events_as_for_two(conn):
    few = _statements_to_resolve(conn, 2, NOW)
    # The first batch's split events are still open: seen again, audited once.
    many = _statements_to_resolve(conn, 40, NOW + timedelta(days=1))
    assert few == many
    counts = dict(
        conn.execute("SELECT action, count(*) FROM prediction_audit_log GROUP BY action").fetchall()
    )
    assert counts == {
        "event.resolved": 42,
        "event.resolution_conflict": 42,
        "resolution.finalised": 42,
    }
    assert conn.execute(
        "SELECT count(*), count(final_probability_exact) FROM prediction_resolutions"
    ).fetchone() == (42, 42)
    assert conn.execute(
        "SELECT count(*) FROM prediction_events WHERE status IN ('RESOLVED_YES', 'RESOLVED_NO')"
    ).fetchone() == (42,)
