"""Backfill runs that reach a new month at once: each run's snapshot step makes the month's
partitions (snapshots and market edges) before its compute, taking turns, so a run whose
compute is still open never makes another run fail with DuplicateTable."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.snapshots import SnapshotConfig, _prepare
from predict_pipeline.snapshots.compute import compute_snapshots

MONTH = datetime(2091, 3, 1, tzinfo=UTC)  # no test or migration makes this month


def _window(hour: int) -> dg.TimeWindow:
    start = MONTH + timedelta(hours=hour)
    return dg.TimeWindow(start, start + timedelta(hours=1))


def _partitions(conn) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "SELECT relname::text FROM pg_class WHERE relname IN"
            " ('prediction_snapshots_y2091m03', 'prediction_market_edges_y2091m03')"
            " ORDER BY relname"
        )
    ]


def test_two_runs_in_a_new_month_prepare_both_tables_and_neither_fails(db_url):
    database = PostgresResource(url=db_url)
    first, second = _window(5), _window(6)
    with ThreadPoolExecutor(2) as pool:
        prepared = [pool.submit(_prepare, w, SnapshotConfig(), database) for w in (first, second)]
        settings = [p.result(timeout=60) for p in prepared]
    with connect(db_url, role=None, autocommit=True) as admin:
        # Committed by the preparation, before any compute.
        assert _partitions(admin) == [
            "prediction_market_edges_y2091m03",
            "prediction_snapshots_y2091m03",
        ]
    with (
        connect(db_url, role=PIPELINE_ROLE) as one,
        connect(db_url, role=PIPELINE_ROLE) as other,
        ThreadPoolExecutor(1) as pool,
    ):
        # The first run's compute stays open while the second computes its own hour.
        compute_snapshots(one, first.start, first.end, settings[0])
        running = pool.submit(compute_snapshots, other, second.start, second.end, settings[1])
        deadline = time.monotonic() + 60
        while not running.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.done(), "the second run waited on the first run's open transaction"
        running.result()  # no DuplicateTable
        other.commit()
        one.commit()
