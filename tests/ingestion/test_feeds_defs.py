"""The Dagster layer of stage 1: the asset materialised for real, and the due-feeds sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from predict_pipeline.defs.ingestion import (
    SOURCE_TAG,
    FeedFetchConfig,
    due_feeds_sensor,
    raw_feed_fetches,
)
from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from predict_pipeline.demo import REPLAY_DIR
from predict_pipeline.secrets import generate_key
from tests.support.feeds import feed_row, make_feed


@pytest.fixture
def resources(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    return {
        "database": PostgresResource(url=db_url),
        "http": HttpClientResource(mode="replay", replay_dir=str(REPLAY_DIR)),
        "landing": LandingZoneResource(root=str(tmp_path / "landing")),
        "secrets": SecretsResource(),
    }


def test_raw_feed_fetches_materialises_a_window(conn, resources, dagster_instance):
    kalshi = make_feed(conn, "kalshi", {"event_tickers": ["KXELONTWEETS-25MAR28"]}, name="k")
    broken = make_feed(conn, "manifold", {"market_ids": ["not-recorded"]}, name="m")
    partition = HOURLY.get_partition_key_for_timestamp(datetime.now(UTC).timestamp())
    result = dg.materialize(
        [raw_feed_fetches],
        instance=dagster_instance,
        resources=resources,
        partition_key=partition,
        run_config=dg.RunConfig(
            ops={"raw_feed_fetches": FeedFetchConfig(feed_ids=[str(kalshi), str(broken)])}
        ),
    )
    assert result.success  # one broken feed is a failed feed run, not a failed pipeline
    [materialization] = result.asset_materializations_for_node("raw_feed_fetches")
    metadata = materialization.metadata
    assert metadata["feeds_fetched"].value == 2 and metadata["feeds_failed"].value == 1
    assert metadata["items_offered"].value == 13  # the markets its page offered, not read
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "every_feed_fetched" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    statuses = dict(
        conn.execute(
            "SELECT f.name, r.status FROM prediction_feed_runs r"
            " JOIN prediction_data_feeds f ON f.id = r.feed_id"
        ).fetchall()
    )
    assert statuses == {"k": "SUCCESS", "m": "FAILED"}


def test_due_feeds_sensor_requests_one_run_per_due_feed_and_advances(
    conn, resources, dagster_instance
):
    past = datetime.now(UTC) - timedelta(minutes=3)
    due = make_feed(conn, "predictit", {}, name="due", next_run_at=past)
    make_feed(conn, "predictit", {}, name="later", next_run_at=past + timedelta(hours=2))
    make_feed(conn, "predictit", {}, name="off", next_run_at=past, enabled=False)
    context = dg.build_sensor_context(
        instance=dagster_instance, resources={"database": resources["database"]}
    )
    result = due_feeds_sensor(context)
    [request] = result.run_requests
    assert request.run_key == f"{due}:{past.isoformat()}"
    assert request.tags[SOURCE_TAG] == "predictit"
    assert request.run_config["ops"]["raw_feed_fetches"]["config"]["feed_ids"] == [str(due)]
    assert request.partition_key == HOURLY.get_partition_key_for_timestamp(
        datetime.now(UTC).timestamp()
    )
    advanced = feed_row(conn, due)["next_run_at"]
    assert advanced > datetime.now(UTC) + timedelta(minutes=14)
    again = due_feeds_sensor(
        dg.build_sensor_context(
            instance=dagster_instance, resources={"database": resources["database"]}
        )
    )
    assert again.run_requests == []


def test_each_sensor_tick_closes_feed_runs_left_running_past_the_documented_age(
    conn, resources, dagster_instance
):
    from predict_pipeline.ingestion.runs import STALE_RUN_AFTER

    now = datetime.now(UTC)
    later = now + timedelta(hours=1)  # neither feed is due: the tick only sweeps
    stuck_feed = make_feed(conn, "predictit", {}, name="stuck", next_run_at=later)
    busy_feed = make_feed(conn, "predictit", {}, name="busy", next_run_at=later)
    runs = {}
    for name, feed, age in (
        ("stuck", stuck_feed, STALE_RUN_AFTER + timedelta(minutes=1)),
        ("busy", busy_feed, STALE_RUN_AFTER - timedelta(minutes=10)),
    ):
        runs[name] = conn.execute(
            "INSERT INTO prediction_feed_runs (feed_id, started_at, status)"
            " VALUES (%s, %s, 'RUNNING') RETURNING id",
            (feed, now - age),
        ).fetchone()[0]
    context = dg.build_sensor_context(
        instance=dagster_instance, resources={"database": resources["database"]}
    )
    due_feeds_sensor(context)
    stuck = conn.execute(
        "SELECT status, error_message, completed_at, duration_ms, error_details"
        " FROM prediction_feed_runs WHERE id = %s",
        (runs["stuck"],),
    ).fetchone()
    assert stuck[0] == "FAILED"
    assert stuck[1].startswith("left RUNNING for over 2:00:00: closed by the run-monitoring sweep")
    assert stuck[2] is not None and stuck[3] >= STALE_RUN_AFTER.total_seconds() * 1000
    assert stuck[4]["closed_by"] == "run_monitoring"
    assert feed_row(conn, stuck_feed)["last_error"] == stuck[1]
    busy = conn.execute(
        "SELECT status, completed_at FROM prediction_feed_runs WHERE id = %s", (runs["busy"],)
    ).fetchone()
    assert busy == ("RUNNING", None)  # younger than the age: perhaps still working
