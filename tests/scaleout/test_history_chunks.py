"""Backfills fetch and validate a day at a time: chunking, the landing layout of a day-long
window, and validating one hour of a day that was fetched whole (real server, real database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from predict_pipeline.db.connection import connect
from predict_pipeline.defs.partitions import hourly_windows
from predict_pipeline.ingestion.landing import file_window, key_window, window_key
from predict_pipeline.ingestion.runner import RateLimiters, fetch_window, fetch_windows
from predict_pipeline.model import FetchWindow, history_chunks
from predict_pipeline.signals.stage import validate_window
from tests.scaleout.history_server import HistoryServer, feed_config, seed_history_feed
from tests.support.feeds import make_feed
from tests.support.http_server import Reply

ORIGIN = datetime(2025, 3, 1, tzinfo=UTC)
DAY = FetchWindow(ORIGIN, ORIGIN + timedelta(days=1))
MARKETS = 6


def _hours(start: datetime, count: int) -> list[FetchWindow]:
    return hourly_windows(start, start + timedelta(hours=count))


def test_contiguous_hours_merge_into_utc_days_and_never_cross_midnight():
    start = ORIGIN + timedelta(hours=20)  # 20:00 on day one to 04:00 on day three
    chunks = history_chunks(_hours(start, 32))
    assert chunks == [
        FetchWindow(start, ORIGIN + timedelta(days=1)),
        FetchWindow(ORIGIN + timedelta(days=1), ORIGIN + timedelta(days=2)),
        FetchWindow(ORIGIN + timedelta(days=2), ORIGIN + timedelta(days=2, hours=4)),
    ]
    # A gap keeps the windows apart; a single hour stays an hour.
    gapped = [*_hours(ORIGIN, 2), *_hours(ORIGIN + timedelta(hours=5), 1)]
    assert history_chunks(gapped) == [
        FetchWindow(ORIGIN, ORIGIN + timedelta(hours=2)),
        FetchWindow(ORIGIN + timedelta(hours=5), ORIGIN + timedelta(hours=6)),
    ]


def test_past_hours_are_fetched_by_day_and_the_current_hour_alone():
    now = ORIGIN + timedelta(hours=3, minutes=10)
    hours = _hours(ORIGIN + timedelta(hours=1), 3)  # 01:00, 02:00 are over; 03:00 is open
    assert fetch_windows(hours, None, now) == [
        FetchWindow(ORIGIN + timedelta(hours=1), ORIGIN + timedelta(hours=3)),
        hours[2],
    ]
    assert fetch_windows(hours, "poll", now) == hours
    assert fetch_windows(hours, "backfill", now) == [
        FetchWindow(ORIGIN + timedelta(hours=1), ORIGIN + timedelta(hours=4))
    ]


def test_landing_keys_name_an_hour_by_its_start_and_longer_windows_by_both_ends():
    hour = FetchWindow(ORIGIN, ORIGIN + timedelta(hours=1))
    assert window_key(hour) == "2025-03-01T0000Z"
    assert window_key(DAY) == "2025-03-01T0000Z_2025-03-02T0000Z"
    assert key_window(window_key(hour)) == hour
    assert key_window(window_key(DAY)) == DAY
    assert file_window(f"/x/custom_api/feed/{window_key(DAY)}/backfill.jsonl.gz") == DAY


def test_a_landed_window_longer_than_an_hour_may_not_cross_midnight(landing):
    across = FetchWindow(ORIGIN + timedelta(hours=23), ORIGIN + timedelta(hours=25))
    with pytest.raises(ValueError, match="midnight"):
        landing.write("custom_api", "feed", across, "backfill", [])


@pytest.fixture
def history() -> Iterator[HistoryServer]:
    server = HistoryServer(MARKETS, ORIGIN, 24)
    yield server
    server.close()


def _signals(db_url: str) -> list[tuple]:
    with connect(db_url, role=None) as conn:
        return conn.execute(
            "SELECT source_event_id, value, fetched_at FROM prediction_signals ORDER BY 3, 1"
        ).fetchall()


def test_one_hour_of_a_day_fetched_whole_validates_only_that_hour(
    db_url, admin_conn, conn, client, landing, history
):
    feed = seed_history_feed(admin_conn, history.url, MARKETS)
    [report] = fetch_window(
        conn, client, landing, DAY, mode="backfill", feed_ids=[feed], rate_limiters=RateLimiters()
    )
    assert report.status == "SUCCESS" and report.records == 24 * MARKETS
    assert history.requests == 1  # the day in one request, one feed run
    [day_file] = landing.files("custom_api", str(feed), DAY)
    hour = FetchWindow(ORIGIN + timedelta(hours=5), ORIGIN + timedelta(hours=6))
    # An hour window finds the day's file across it, and nothing of the other days.
    assert landing.window_files(hour) == {("custom_api", str(feed)): [day_file]}
    assert landing.window_files(FetchWindow(DAY.end, DAY.end + timedelta(hours=1))) == {}

    now = ORIGIN + timedelta(days=2)
    [one] = validate_window(conn, landing, hour, now=now)
    rows = _signals(db_url)
    assert one.written == MARKETS and len(rows) == MARKETS
    assert {at for _, _, at in rows} == {
        ORIGIN + timedelta(hours=5, minutes=(i * 7) % 60, seconds=i) for i in range(MARKETS)
    }

    # The whole day then writes the other 23 hours; a re-run of it writes nothing new.
    [whole] = validate_window(conn, landing, DAY, now=now)
    assert whole.written == 23 * MARKETS and whole.deduplicated == MARKETS
    assert len(_signals(db_url)) == 24 * MARKETS
    [again] = validate_window(conn, landing, DAY, now=now)
    assert again.written == 0 and again.deduplicated == 24 * MARKETS
    assert len(_signals(db_url)) == 24 * MARKETS


def test_a_partial_read_of_a_day_file_leaves_its_rejects_as_the_whole_day_wrote_them(
    conn, client, landing, server
):
    def item(market: str, price: float, hour: int) -> dict:
        at = ORIGIN + timedelta(hours=hour, minutes=10)
        return {"id": market, "p": price, "t": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "title": market}

    # One price out of range at 02:10, good ones at 02:10 and 05:10, as the API answered.
    body = {"items": [item("good", 0.4, 2), item("bad", 1.7, 2), item("good", 0.5, 5)]}
    server.add("/hist", Reply(200, json.dumps(body).encode()))
    feed = make_feed(conn, "custom_api", feed_config(server.url("/hist")))
    [report] = fetch_window(
        conn, client, landing, DAY, mode="backfill", feed_ids=[feed], rate_limiters=RateLimiters()
    )
    assert report.status == "SUCCESS" and report.records == 3
    [day_file] = landing.files("custom_api", str(feed), DAY)
    now = ORIGIN + timedelta(days=2)

    [whole] = validate_window(conn, landing, DAY, now=now)
    assert whole.rejected == 1
    rejects = landing.read_rejects(day_file)
    assert [r["source_event_id"] for r in rejects] == ["bad"]
    for hour in (5, 2):  # without the bad record, and with it: the file is left alone
        window = FetchWindow(ORIGIN + timedelta(hours=hour), ORIGIN + timedelta(hours=hour + 1))
        [part] = validate_window(conn, landing, window, now=now)
        assert part.records == (2 if hour == 2 else 1)
        assert landing.read_rejects(day_file) == rejects
