"""Stage 2 end to end on a real database: landing pages in, signals and review items out."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest

from predict_pipeline.demo import REPLAY_DIR
from predict_pipeline.http import build_http_client
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.runner import fetch_window
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.signals.ingest import _dedup
from predict_pipeline.signals.linking import display_market_id
from predict_pipeline.signals.stage import validate_window
from tests.support.feeds import KEY, USER_ID, feed_run, feed_run_landing, make_feed

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
WINDOW = hour_window(NOW)


def _event(conn: psycopg.Connection, title: str, slug: str, close: str | None = None) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, resolution_date) VALUES (%s, %s, %s)"
        " RETURNING id",
        (title, slug, close),
    ).fetchone()[0]


def _signals(conn: psycopg.Connection) -> list[tuple]:
    """(market id as sent, type, value, event) of every signal stored."""
    rows = conn.execute(
        "SELECT source_event_id, signal_type, value::float8, event_id FROM prediction_signals"
        " ORDER BY source_event_id, signal_type, fetched_at"
    ).fetchall()
    return [(display_market_id(sid), *rest) for sid, *rest in rows]


def _upload(conn, landing, rows: list[dict], **feed_columns) -> uuid.UUID:
    feed_id = make_feed(conn, "upload", {}, **feed_columns)
    body = "\n".join(json.dumps(r) for r in rows).encode()
    land_upload(conn, landing, load_feed(conn, feed_id), body, "rows.jsonl", now=lambda: NOW)
    return feed_id


def _row(sid: str, value, kind: str = "MARKET_PRICE", minute: int = 10, **extra) -> dict:
    at = WINDOW.start + timedelta(minutes=minute)
    return {
        "source_event_id": sid,
        "signal_type": kind,
        "value": value,
        "fetched_at": at.isoformat(),
        **extra,
    }


def test_good_rows_land_and_each_bad_row_is_rejected_with_its_reason(conn, landing):
    event = _event(conn, "Will it rain in Lisbon tomorrow?", "rain-lisbon")
    rows = [
        _row("rain", 0.61),
        _row("rain", 1200.5, "VOLUME", minute=11),
        _row("rain", 0.4, "SENTIMENT", minute=12),
        _row("rain", 1.5, minute=20),  # probability_in_unit_interval
        _row("rain", -2, "SENTIMENT", minute=21),  # sentiment_in_range
        _row("rain", -5, "VOLUME", minute=22),  # volume_non_negative
        _row("rain", 0.5, minute=30, narrative="nul \u0000 inside"),  # text_valid_utf8
        {**_row("rain", 0.5), "fetched_at": (NOW + timedelta(hours=2)).isoformat()},
    ]
    feed = _upload(
        conn, landing, rows, manual_event_mappings=psycopg.types.json.Jsonb({"rain": str(event)})
    )
    [report] = validate_window(conn, landing, WINDOW, now=NOW)
    assert (report.records, report.valid, report.rejected) == (8, 3, 5)
    assert report.rejected_reasons == {
        "probability_in_unit_interval": 1,
        "sentiment_in_range": 1,
        "volume_non_negative": 1,
        "text_valid_utf8": 1,
        "fetched_at_not_in_future": 1,
    }
    assert _signals(conn) == [
        ("rain", "MARKET_PRICE", 0.61, event),
        ("rain", "SENTIMENT", 0.4, event),
        ("rain", "VOLUME", 1.2005, event),  # thousands of units (DECIMAL(10,4) column)
    ]
    run = feed_run(conn, feed)
    assert (run["signals_fetched"], run["signals_valid"], run["signals_written"]) == (8, 3, 3)
    assert run["signals_matched"] == 3 and run["signals_unmatched"] == 0
    assert run["events_updated"] == 1
    landed = feed_run_landing(conn, feed)
    assert (landed["validation_status"], landed["records_rejected"]) == ("VALIDATED", 5)
    assert landed["rejected_reasons"] == report.rejected_reasons
    assert "validation" not in (run["error_details"] or {})  # error_details keeps errors only
    [page_file] = landing.files("upload", str(feed), WINDOW)
    rejects = landing.read_rejects(page_file)
    assert sorted(r["reasons"][0] for r in rejects) == sorted(report.rejected_reasons)
    totals = conn.execute(
        "SELECT signals_ingested_total, signals_ingested_24h FROM prediction_data_feeds"
        " WHERE id = %s",
        (feed,),
    ).fetchone()
    assert totals == (3, 3)
    usage = conn.execute("SELECT signals_ingested FROM prediction_usage_metrics").fetchone()
    assert usage == (3,)


def test_rerun_and_redelivery_write_nothing_new(conn, landing):
    event = _event(conn, "Will it rain in Lisbon tomorrow?", "rain-lisbon")
    rows = [_row("rain", 0.61), _row("rain", 0.62, minute=16), _row("snow", 0.1)]
    feed = _upload(
        conn, landing, rows, manual_event_mappings=psycopg.types.json.Jsonb({"rain": str(event)})
    )
    validate_window(conn, landing, WINDOW, now=NOW)
    before = (
        _signals(conn),
        conn.execute("SELECT count(*) FROM prediction_unmatched_signals").fetchone(),
    )
    [again] = validate_window(conn, landing, WINDOW, now=NOW)
    body = "\n".join(json.dumps(r) for r in rows).encode()
    land_upload(
        conn,
        landing,
        load_feed(conn, feed),
        body,
        "rows.jsonl",
        now=lambda: NOW + timedelta(minutes=1),
    )  # the same page delivered again
    [redelivered] = validate_window(conn, landing, WINDOW, now=NOW)
    after = (
        _signals(conn),
        conn.execute("SELECT count(*) FROM prediction_unmatched_signals").fetchone(),
    )
    assert before == after and len(before[0]) == 2 and before[1] == (1,)
    assert again.written == 0 and again.deduplicated == 2
    # rain twice (both stored) and snow once more (the same batch now holds it twice)
    assert redelivered.written == 0 and redelivered.deduplicated == 5
    written_per_run = [
        w
        for (w,) in conn.execute(
            "SELECT signals_written FROM prediction_feed_runs WHERE feed_id = %s"
            " ORDER BY started_at",
            (feed,),
        )
    ]
    assert written_per_run == [2, 0]  # the first delivery's count stands; the second wrote none


def test_duplicate_in_same_bucket_dropped_next_bucket_kept(conn, landing):
    event = _event(conn, "Will it rain in Lisbon tomorrow?", "rain-lisbon")
    rows = [
        _row("rain", 0.61, minute=10),
        _row("rain", 0.63, minute=14),
        _row("rain", 0.65, minute=15),
    ]
    _upload(
        conn, landing, rows, manual_event_mappings=psycopg.types.json.Jsonb({"rain": str(event)})
    )
    [report] = validate_window(conn, landing, WINDOW, now=NOW)
    assert report.deduplicated == 1
    # The bucket's latest observation is kept (10:14 over 10:10).
    assert [s[2] for s in _signals(conn)] == [0.63, 0.65]


BUCKET_ROWS = {
    "early": _row("rain", 0.61, minute=10),
    "late_low": _row("rain", 0.63, minute=14),
    "late_high": _row("rain", 0.70, minute=14),  # same time: the higher value wins
    "next_bucket": _row("rain", 0.123456, minute=16),  # rounds in DECIMAL(10,4)
}


@pytest.mark.parametrize(
    "deliveries",
    [
        [["early", "late_low", "late_high", "next_bucket"]],
        [["late_high"], ["late_low", "early"], ["next_bucket"]],
        [["next_bucket", "early"], ["late_low"], ["late_high"]],
        [["late_low"], ["late_high", "early", "next_bucket"]],
    ],
    ids=["one-file", "best-first", "best-last", "interleaved"],
)
def test_dedup_keeps_the_same_observation_whatever_the_order(conn, landing, deliveries):
    event = _event(conn, "Will it rain in Lisbon tomorrow?", "rain-lisbon")
    feed_id = make_feed(
        conn, "upload", {}, manual_event_mappings=psycopg.types.json.Jsonb({"rain": str(event)})
    )
    for number, names in enumerate(deliveries):
        body = "\n".join(json.dumps(BUCKET_ROWS[n]) for n in names).encode()
        land_upload(
            conn, landing, load_feed(conn, feed_id), body, f"d{number}.jsonl", now=lambda: NOW
        )
        validate_window(conn, landing, WINDOW, now=NOW)
    rows = conn.execute(
        "SELECT value::float8, fetched_at, raw_data->'value_exact' FROM prediction_signals"
        " ORDER BY fetched_at"
    ).fetchall()
    assert rows == [
        (0.70, WINDOW.start + timedelta(minutes=14), None),
        (0.1235, WINDOW.start + timedelta(minutes=16), 0.123456),
    ]


def test_a_stored_row_is_replaced_only_by_its_own_feed():
    at = pd.Timestamp(WINDOW.start + timedelta(minutes=14))
    valid = pd.DataFrame(
        {
            "source": ["polymarket", "polymarket"],
            "source_event_id": ["m1", "m2"],
            "signal_type": ["MARKET_PRICE", "MARKET_PRICE"],
            "fetched_at": pd.Series([at, at], dtype="datetime64[ns, UTC]"),
            "value": [0.7, 0.7],
        }
    )
    valid["bucket"] = valid["fetched_at"].dt.floor("5min")
    bucket = valid["bucket"].iloc[0].value
    earlier = ((at - pd.Timedelta(minutes=2)).value, 0.6)
    stored = {
        ("polymarket", "m1", "MARKET_PRICE", bucket): (earlier, "feed-a"),
        ("polymarket", "m2", "MARKET_PRICE", bucket): (earlier, "feed-b"),
    }
    duplicate, replaces = _dedup(valid, {}, stored, "feed-a")
    assert replaces.tolist() == [True, False]  # m1 was stored by this feed: later row wins
    assert duplicate.tolist() == [False, True]  # m2 by another feed: stored once, kept


def test_replayed_markets_match_events_and_the_rest_queue_with_suggestions(conn, landing):
    matched = _event(
        conn, "Will Elon Musk post on X 850 or more times?", "elon-850", "2025-04-11T16:00:00+00:00"
    )
    feed = make_feed(conn, "kalshi", {"event_tickers": ["KXELONTWEETS-25APR11"]})
    with build_http_client("replay", replay_dir=REPLAY_DIR) as client:
        fetch_window(
            conn,
            client,
            landing,
            WINDOW,
            mode="poll",
            feed_ids=[feed],
            encryption_key=lambda: KEY,
            now=lambda: NOW,
        )
    [report] = validate_window(conn, landing, WINDOW, now=NOW)
    rows = conn.execute(
        "SELECT DISTINCT source_event_id, event_id FROM prediction_signals"
    ).fetchall()
    assert rows == [("KXELONTWEETS-25APR11-849", matched)]
    queued = conn.execute(
        "SELECT source_event_id, signal_type, suggested_event_id, suggestion_confidence::float8,"
        " jsonb_array_length(match_attempts) FROM prediction_unmatched_signals"
        " WHERE status = 'PENDING' ORDER BY 1, 2"
    ).fetchall()
    assert len(queued) == 2 * 12  # the other 12 markets, price and volume each
    assert all(s[2] == matched and s[3] < 0.8 and s[4] >= 1 for s in queued)
    link = conn.execute(
        "SELECT event_id, method FROM predict_meta.market_links"
        " WHERE source_event_id = 'KXELONTWEETS-25APR11-849'"
    ).fetchone()
    assert link == (matched, "similarity")
    run = feed_run(conn, feed)
    assert run["signals_matched"] == 2 and run["signals_unmatched"] == 24
    assert report.written == 2


def test_confirmed_link_is_reused_and_manual_mapping_wins(conn, landing):
    linked = _event(conn, "Linked event", "linked")
    manual = _event(conn, "Manual event", "manual")
    feed = _upload(
        conn,
        landing,
        [_row("both", 0.3), _row("linked-only", 0.4)],
        manual_event_mappings=psycopg.types.json.Jsonb({"both": str(manual)}),
    )
    conn.execute(
        "INSERT INTO predict_meta.market_links (source, user_id, source_event_id, event_id,"
        " method) VALUES ('upload', %(user)s, %(ns)s || 'both', %(event)s, 'review'),"
        " ('upload', %(user)s, %(ns)s || 'linked-only', %(event)s, 'review')",
        {"user": USER_ID, "ns": f"feed:{feed}:", "event": linked},
    )
    validate_window(conn, landing, WINDOW, now=NOW)
    assert {(s[0], s[3]) for s in _signals(conn)} == {("both", manual), ("linked-only", linked)}


def test_failure_between_copy_and_queue_leaves_nothing_and_a_failed_run(conn, landing):
    event = _event(conn, "Will it rain in Lisbon tomorrow?", "rain-lisbon")
    feed = _upload(
        conn,
        landing,
        [_row("rain", 0.61), _row("unknown-market", 0.2)],
        manual_event_mappings=psycopg.types.json.Jsonb({"rain": str(event)}),
    )

    def crash() -> None:
        conn.execute("SELECT 1/0")  # a real error from the server, mid-transaction

    [report] = validate_window(conn, landing, WINDOW, now=NOW, fail_between_copy_and_queue=crash)
    assert report.error and "division by zero" in report.error
    assert _signals(conn) == []
    assert conn.execute("SELECT count(*) FROM prediction_unmatched_signals").fetchone() == (0,)
    run = feed_run(conn, feed)
    assert run["status"] == "FAILED"
    assert "writing signals failed, nothing was written" in run["error_message"]
    assert run["signals_written"] == 0
    landed = feed_run_landing(conn, feed)
    assert landed["validation_status"] == "FAILED" and landed["fetch_status"] == "SUCCESS"
    assert "division by zero" in landed["validation_error"]
    [retry] = validate_window(conn, landing, WINDOW, now=NOW)  # the re-run writes it all
    assert retry.ok and retry.written == 1 and retry.unmatched == 1
    run = feed_run(conn, feed)  # and the run says again what its delivery said
    assert (run["status"], run["error_message"], run["signals_written"]) == ("SUCCESS", None, 1)
    landed = feed_run_landing(conn, feed)
    assert (landed["validation_status"], landed["validation_error"]) == ("VALIDATED", None)
    assert (landed["fetch_status"], landed["fetch_error_message"]) == (None, None)
    assert set(run["error_details"]) == {"sha256"}  # nothing of validation in error_details


@pytest.mark.parametrize("mode", ["manual", "auto"])
def test_manual_mode_never_guesses(conn, landing, mode):
    _event(conn, "Will it rain in Lisbon tomorrow?", "rain-lisbon")
    _upload(
        conn,
        landing,
        [_row("rain", 0.61, title="Will it rain in Lisbon tomorrow?")],
        event_mapping_mode=mode,
    )
    [report] = validate_window(conn, landing, WINDOW, now=NOW)
    assert (report.matched, report.unmatched) == ((0, 1) if mode == "manual" else (1, 0))
