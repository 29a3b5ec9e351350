"""The launchpad job that refreshes one feed's history, run for real on recorded history."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.defs.history import (
    FeedHistoryConfig,
    history_windows,
    refresh_feed_history_job,
)
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from tests.conftest import FIXTURES
from tests.support.feeds import KEY, make_feed

# End-to-end: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 22, 18, 20, tzinfo=UTC)


HISTORY_START = datetime(2025, 3, 1, 9, 15, tzinfo=UTC)


@pytest.fixture
def replay_dir(tmp_path) -> Path:
    """Post 578's recorded community-prediction history, moved into the partitions' range.

    The recording's points are of 2017-2019, days apart; the partitions start in 2024, so the
    points are re-timed one hour apart from HISTORY_START. The payload is otherwise the real one.
    """
    detail = json.loads((FIXTURES / "payloads" / "metaculus_post_detail_with_cp.json").read_bytes())
    history = detail["question"]["aggregations"]["recency_weighted"]["history"]
    for i, point in enumerate(history):
        point["start_time"] = (HISTORY_START + timedelta(hours=i)).timestamp()
        point["end_time"] = (HISTORY_START + timedelta(hours=i + 1)).timestamp()
    directory = tmp_path / "replay"
    directory.mkdir()
    (directory / "post578.json").write_text(json.dumps(detail))
    manifest = [
        {
            "method": "GET",
            "url": "https://www.metaculus.com/api/posts/578/",
            "params": None,
            "file": "post578.json",
        }
    ]
    (directory / "replay.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def resources(db_url, tmp_path, replay_dir, monkeypatch):
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", base64.b64encode(KEY).decode())
    return {
        "database": PostgresResource(url=db_url),
        "http": HttpClientResource(mode="replay", replay_dir=str(replay_dir)),
        "landing": LandingZoneResource(root=str(tmp_path / "landing")),
        "secrets": SecretsResource(),
    }


def _run(resources, instance, feed_id, start: str, end: str) -> dg.ExecuteInProcessResult:
    return refresh_feed_history_job.execute_in_process(
        run_config=dg.RunConfig(
            ops={
                "refresh_feed_history": FeedHistoryConfig(
                    feed_id=str(feed_id), start=start, end=end
                )
            }
        ),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def test_refresh_fetches_and_writes_the_feeds_history_hour_by_hour(
    conn, resources, dagster_instance
):
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Metaculus 578', 'm-578') RETURNING id"
    ).fetchone()[0]
    feed = make_feed(
        conn,
        "metaculus",
        {"post_ids": [578]},
        credentials={"token": "t"},
        name="cp history",
        manual_event_mappings=Jsonb({"578": str(event)}),
    )
    start = HISTORY_START.replace(minute=0)
    end = start + timedelta(hours=6)
    result = _run(resources, dagster_instance, feed, start.isoformat(), end.isoformat())
    assert result.success
    runs = conn.execute(
        "SELECT status, count(*) FROM prediction_feed_runs WHERE feed_id = %s GROUP BY 1",
        (feed,),
    ).fetchall()
    assert runs == [("SUCCESS", 6)]
    signals = conn.execute(
        "SELECT count(*), min(fetched_at), max(fetched_at) FROM prediction_signals"
        " WHERE feed_id = %s AND event_id = %s",
        (feed, event),
    ).fetchone()
    assert signals[0] == 6 and start <= signals[1] and signals[2] < end  # one per hour
    keys = {
        asset: sorted(
            e.event_specific_data.materialization.partition
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(asset)
        )
        for asset in ("raw_feed_fetches", "validated_signals", "event_snapshots")
    }
    expected = [(start + timedelta(hours=h)).strftime("%Y-%m-%d-%H:00") for h in range(6)]
    # The period's snapshots follow in the same run (the hours of the hourly axis).
    assert keys == {
        "raw_feed_fetches": expected,
        "validated_signals": expected,
        "event_snapshots": expected,
    }
    assert result.output_for_node("refresh_feed_history")["written"] == signals[0]
    # Launched again for the same period: nothing new is written.
    assert _run(resources, dagster_instance, feed, start.isoformat(), end.isoformat()).success
    again = conn.execute(
        "SELECT count(*) FROM prediction_signals WHERE feed_id = %s", (feed,)
    ).fetchone()[0]
    assert again == signals[0]


def test_refresh_refuses_a_source_without_history_and_a_bad_period(
    conn, resources, dagster_instance
):
    predictit = make_feed(conn, "predictit", {}, name="no history")
    result = _run(resources, dagster_instance, predictit, "2025-01-01", "2025-01-02")
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "source predictit has no history API" in failure.step_failure_data.error.message
    assert conn.execute("SELECT count(*) FROM prediction_feed_runs").fetchone() == (0,)


def test_history_period_is_whole_hours_and_never_the_open_hour():
    assert history_windows("2025-04-01T06:30", "2025-04-01T09:10Z", now=NOW) == (
        datetime(2025, 4, 1, 6, tzinfo=UTC),
        datetime(2025, 4, 1, 10, tzinfo=UTC),
    )
    assert history_windows("2026-11-22", "2026-11-23", now=NOW)[1] == datetime(
        2026, 11, 22, 18, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="no complete hour"):
        history_windows("2026-11-22T18:00", "2026-11-23", now=NOW)
    # History before 2024 is on the daily axis, from PREDICT_PARTITIONS_START (2014-01-01).
    assert history_windows("2016-06-01", "2016-06-02", now=NOW)[0] == datetime(
        2016, 6, 1, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="before the time axis begins.*PREDICT_PARTITIONS_START"):
        history_windows("2013-06-01", "2014-02-01", now=NOW)
    with pytest.raises(ValueError, match="not an ISO 8601"):
        history_windows("yesterday", "2024-02-01", now=NOW)


def test_cli_backfill_runs_the_job_on_the_instance_and_reports(conn, db_url, replay_dir, tmp_path):
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Metaculus 578', 'm-578') RETURNING id"
    ).fetchone()[0]
    feed = make_feed(
        conn,
        "metaculus",
        {"post_ids": [578]},
        credentials={"token": "t"},
        manual_event_mappings=Jsonb({"578": str(event)}),
    )
    start = HISTORY_START.replace(minute=0)
    env = {
        **os.environ,
        "PREDICT_DATABASE_URL": db_url,
        "PREDICT_ENCRYPTION_KEY": base64.b64encode(KEY).decode(),
        "PREDICT_HTTP_MODE": "replay",
        "PREDICT_REPLAY_DIR": str(replay_dir),
        "PREDICT_STATE_DIR": str(tmp_path / "state"),
        "DAGSTER_HOME": str(PROJECT_ROOT),
    }
    command = [
        str(Path(sys.executable).parent / "predict-pipeline"),
        "backfill",
        str(feed),
        "--start",
        start.isoformat(),
        "--end",
        (start + timedelta(hours=3)).isoformat(),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refreshed 3 hour windows: 3 pages, 3 records, 3 signals")
    assert conn.execute(
        "SELECT count(*) FROM prediction_signals WHERE feed_id = %s", (feed,)
    ).fetchone() == (3,)
    # Dagster's run storage is this database: the run is in the UI's history.
    assert conn.execute(
        "SELECT status FROM runs WHERE pipeline_name = 'refresh_feed_history_job'"
    ).fetchall() == [("SUCCESS",)]
    refused = subprocess.run(
        [*command[:3], "--start", "2026-01-01", "--end", "2025-01-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2
    assert "no complete hour between 2026-01-01 00:00 and 2025-01-01 00:00" in refused.stderr


def test_refresh_skips_windows_without_recorded_history_in_replay(
    conn, resources, dagster_instance
):
    """Replay without a recording is SKIPPED, not failed: the job succeeds and says so."""
    feed = make_feed(conn, "metaculus", {"post_ids": [999]}, credentials={"token": "t"})
    start = HISTORY_START.replace(minute=0)
    end = start + timedelta(hours=3)
    result = _run(resources, dagster_instance, feed, start.isoformat(), end.isoformat())
    assert result.success
    totals = result.output_for_node("refresh_feed_history")
    assert (totals["skipped"], totals["windows"], totals["written"]) == (3, 0, 0)
    runs = conn.execute(
        "SELECT status, count(*) FROM prediction_feed_runs WHERE feed_id = %s GROUP BY 1",
        (feed,),
    ).fetchall()
    assert runs == [("SKIPPED", 3)]
