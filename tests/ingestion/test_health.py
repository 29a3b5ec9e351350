"""Feed health against a real local HTTP server: freshness breaches, completeness drops and the
daily source health, from the feed runs real fetches write."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from predict_pipeline.db.connection import connect
from predict_pipeline.defs.health import source_health_daily
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.ingestion.health import (
    expected_interval,
    feed_completeness,
    feed_freshness,
    write_daily_health,
)
from predict_pipeline.ingestion.runner import fetch_window
from predict_pipeline.model import FetchWindow
from tests.support.feeds import KEY, USER_ID, custom_config, make_feed
from tests.support.http_server import Reply

DAY = date(2026, 3, 10)
MIDNIGHT = datetime(2026, 3, 10, tzinfo=UTC)
OTHER_USER = uuid.UUID("00000000-0000-4000-8000-0000000000b2")


def _items(n: int) -> bytes:
    return json.dumps({"items": [{"id": f"m{i}", "p": 0.5} for i in range(n)]}).encode()


def _poll(conn, client, landing, feed, at: datetime) -> str:
    hour = at.replace(minute=0, second=0, microsecond=0)
    [report] = fetch_window(
        conn,
        client,
        landing,
        FetchWindow(hour, hour + timedelta(hours=1)),
        mode="poll",
        feed_ids=[feed],
        encryption_key=lambda: KEY,
        disable_after_failures=1000,
        now=lambda: at,
    )
    return report.status


def _feed(conn, server, path: str, **columns) -> uuid.UUID:
    columns.setdefault("created_at", MIDNIGHT - timedelta(days=30))
    return make_feed(conn, "custom_api", custom_config(server.url(path)), **columns)


def test_expected_interval_from_poll_minutes_or_the_crons_longest_gap():
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)  # a Tuesday
    assert expected_interval(None, None, at) == timedelta(minutes=15)
    assert expected_interval(5, None, at) == timedelta(minutes=5)
    assert expected_interval(5, "0 */6 * * *", at) == timedelta(hours=6)
    # Weekdays at 09:00: the longest gap of the week before is Friday to Monday.
    assert expected_interval(None, "0 9 * * 1-5", at) == timedelta(days=3)


def test_a_feed_whose_polls_fail_breaches_freshness_after_two_intervals(
    conn, client, landing, server
):
    server.add("/api", Reply(200, _items(3)), *[Reply(500, b"down")] * 9)
    feed = _feed(conn, server, "/api", poll_interval_minutes=15)
    first = MIDNIGHT + timedelta(hours=9)
    assert _poll(conn, client, landing, feed, first) == "SUCCESS"
    assert _poll(conn, client, landing, feed, first + timedelta(minutes=15)) == "FAILED"

    [fresh] = feed_freshness(conn, first + timedelta(minutes=29))
    assert (fresh.feed_id, fresh.last_success, fresh.stale) == (feed, first, False)
    [stale] = feed_freshness(conn, first + timedelta(minutes=31))
    assert stale.stale and stale.age == timedelta(minutes=31)
    assert stale.expected == timedelta(minutes=15)


def test_disabled_and_push_only_feeds_have_no_freshness(conn, server):
    _feed(conn, server, "/off", enabled=False)
    conn.execute(
        "INSERT INTO prediction_data_feeds (source_id, user_id, name, created_at)"
        " SELECT id, %s, 'uploads', %s FROM prediction_data_sources WHERE source_id = 'upload'",
        (USER_ID, MIDNIGHT),
    )
    assert feed_freshness(conn, MIDNIGHT + timedelta(days=3)) == []


def test_a_poll_with_under_half_the_usual_records_is_a_completeness_drop(
    conn, client, landing, server
):
    server.add("/api", *[Reply(200, _items(10))] * 8, Reply(200, _items(4)), Reply(200, _items(6)))
    feed = _feed(conn, server, "/api", poll_interval_minutes=60)
    polls = [MIDNIGHT + timedelta(hours=h, minutes=5) for h in range(10)]
    for at in polls[:5]:
        _poll(conn, client, landing, feed, at)
    [early] = feed_completeness(conn, polls[4])
    assert (early.latest, early.trailing, early.dropped) == (10, 4, False)  # too little history
    for at in polls[5:9]:
        _poll(conn, client, landing, feed, at)
    [drop] = feed_completeness(conn, polls[8])
    assert (drop.latest, drop.median, drop.trailing, drop.dropped) == (4, 10.0, 8, True)
    _poll(conn, client, landing, feed, polls[9])
    [back] = feed_completeness(conn, polls[9])
    assert (back.latest, back.dropped) == (6, False)  # 6 >= half of the median 10


def test_daily_source_health_per_owner_and_for_the_platform(db_url, conn, client, landing, server):
    """Owner A's feed polls hourly and fails from noon; owner B's never fails."""
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'b@example.com')", (OTHER_USER,))
    server.add("/a", *[Reply(200, _items(5))] * 12, *[Reply(500, b"down")] * 36)
    server.add("/b", *[Reply(200, _items(2))] * 24)
    feed_a = _feed(conn, server, "/a", poll_interval_minutes=60)
    feed_b = _feed(conn, server, "/b", poll_interval_minutes=60)
    conn.execute(
        "UPDATE prediction_data_feeds SET user_id = %s WHERE id = %s", (OTHER_USER, feed_b)
    )
    for hour in range(24):
        at = MIDNIGHT + timedelta(hours=hour, minutes=10)
        _poll(conn, client, landing, feed_a, at)
        _poll(conn, client, landing, feed_b, at)
    now = MIDNIGHT + timedelta(days=1, minutes=30)

    assert write_daily_health(conn, DAY, DAY, now) == 3
    rows = {
        r[0]: r[1:]
        for r in conn.execute(
            """SELECT user_id, feeds, runs, failed_runs, records_fetched, error_rate::float8,
                      freshness_score, completeness_score, health_score, status, issues
               FROM prediction_source_health_daily WHERE source = 'custom_api' AND day = %s""",
            (DAY,),
        )
    }
    # A is fresh from its 11:10 success until 13:10 (two hourly intervals), and stale before
    # its first poll at 00:10: no success since its creation 30 days earlier. B only the latter.
    stale_a = timedelta(hours=10, minutes=50 + 10).total_seconds()
    fresh_a, fresh_b = 1 - stale_a / 86400, 1 - 600 / 86400
    health_a = round(100 * (0.4 * fresh_a + 0.3 * 0.5) / 0.7)
    health_b = round(100 * (0.4 * fresh_b + 0.3 * 1.0) / 0.7)
    assert rows[USER_ID] == (
        1, 24, 12, 60, 0.5, round(100 * fresh_a), None, health_a, "degraded",
        [f"stale {round(100 * (1 - fresh_a))} % of the day", "12 of 24 runs failed"],
    )  # fmt: skip
    assert rows[OTHER_USER] == (
        1,
        24,
        0,
        48,
        0.0,
        round(100 * fresh_b),
        None,
        health_b,
        "healthy",
        [],
    )
    platform = rows[None]
    assert platform[:6] == (2, 48, 12, 108, 0.25, round(100 * (fresh_a + fresh_b) / 2))

    # Re-running the day replaces its rows; tenancy: an owner reads its own and the platform's.
    assert write_daily_health(conn, DAY, DAY, now) == 3
    with connect(db_url, role="predict_app") as app:
        app.execute("SELECT set_config('app.user_id', %s, false)", (str(OTHER_USER),))
        seen = app.execute(
            "SELECT user_id FROM prediction_source_health_daily ORDER BY user_id NULLS LAST"
        ).fetchall()
    assert seen == [(OTHER_USER,), (None,)]


@pytest.mark.parametrize("days", [1, 3])
def test_days_without_runs_still_score_freshness(conn, server, days):
    _feed(conn, server, "/quiet", poll_interval_minutes=60)
    last = DAY + timedelta(days=days - 1)
    now = MIDNIGHT + timedelta(days=days)
    assert write_daily_health(conn, DAY, last, now) == 2 * days
    scores = conn.execute(
        "SELECT day, runs, freshness_score, error_rate, health_score, status"
        " FROM prediction_source_health_daily WHERE user_id IS NULL ORDER BY day"
    ).fetchall()
    assert scores == [(DAY + timedelta(days=d), 0, 0, None, 0, "unhealthy") for d in range(days)]


def test_feed_health_job_writes_the_day_and_warns_on_a_stale_feed(
    db_url, conn, server, dagster_instance
):
    stale = _feed(conn, server, "/stale", poll_interval_minutes=15, name="silent feed")
    result = dg.materialize(
        [source_health_daily],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
    )
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["feeds_fresh"].passed
    assert checks["feeds_fresh"].severity == dg.AssetCheckSeverity.WARN
    [line] = checks["feeds_fresh"].metadata["stale_feeds"].value
    assert line.startswith(f"custom_api/silent feed ({stale}): last success never")
    assert checks["feeds_complete"].passed  # never polled: nothing to judge
    [materialization] = result.asset_materializations_for_node("source_health_daily")
    [rows] = conn.execute("SELECT count(*) FROM prediction_source_health_daily").fetchone()
    assert materialization.metadata["dagster/row_count"].value == rows == 4  # 2 days x 2 rows
    assert "| custom_api | 1 | 0 |" in materialization.metadata["today"].value
