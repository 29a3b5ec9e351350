"""Real resolved-market history from public recordings (demo/recordings/SOURCES.md) through
the product's own path: `feeds upload` files landed, stage 2, resolutions, calibration.

Sources (each case names the one it uses):
- MANIFOLD: nikosbosse/Metaculus-data-analyses@12c53a77f8890b731901ef11034bef8e5a4bb81d,
  comparison-manifold/manifold-data/metaculus-binary-{markets,bets}.csv — 80 binary Manifold
  markets (MetaculusBot) with every bet's probability, 2022.
- PREDICTIT: k5cents/predelect@cc973d5878daeeedd4f6e3b15912f11277817252,
  2016/data/DailyMarketData.zip — daily prices of PredictIt's 2016 US election markets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from predict_pipeline.calibration.metrics import calibration_rows
from predict_pipeline.calibration.resolutions import resolve_from_markets, resolved_events
from predict_pipeline.config import PARTITIONS_START_VAR, partitions_start
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.snapshots import event_history
from predict_pipeline.demo.recordings import (
    Recording,
    create_recording_feed,
    manifold_recording,
    predictit_recording,
    upload_recording,
)
from predict_pipeline.errors import ConfigError
from predict_pipeline.ingestion.pushed import hour_window
from predict_pipeline.signals.stage import validate_window

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MANIFOLD = manifold_recording()
PREDICTIT = predictit_recording()


def _feed_events(conn, feed_id: uuid.UUID) -> list[uuid.UUID]:
    (mappings,) = conn.execute(
        "SELECT manual_event_mappings FROM prediction_data_feeds WHERE id = %s", (feed_id,)
    ).fetchone()
    return [uuid.UUID(e) for e in mappings.values()]


def _user(conn, name: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO auth.users (id, email) VALUES (%s, %s)", (user_id, f"{name}@example.com")
    )
    return user_id


def _feed_in_order(
    conn, landing, recording: Recording, owner: uuid.UUID, steps, start: datetime
) -> uuid.UUID:
    """Each step's files land an hour after the previous step's; after each, stage 2 runs for
    that hour and resolutions are computed, as the schedules would."""
    feed_id = create_recording_feed(conn, recording, owner=owner)
    for number, files in enumerate(steps):
        at = start + timedelta(hours=number)
        upload_recording(conn, landing, feed_id, files, now=lambda at=at: at)
        [report] = validate_window(conn, landing, hour_window(at), now=at, feed_ids=[feed_id])
        assert report.ok, report.error
        resolve_from_markets(conn, now=at + timedelta(minutes=30))
    return feed_id


def _global_all_time(conn, event_ids: list[uuid.UUID]):
    events = resolved_events(conn)
    events = events[events["event_id"].isin([str(e) for e in event_ids])]
    # The same rows in the same order for every copy (ids differ): sums add up identically.
    events = events.sort_values(["resolved_at", "final_probability", "outcome"])
    events = events.reset_index(drop=True)
    rows = calibration_rows(events, now=NOW + timedelta(days=1), categories=[])
    [row] = [r for r in rows if r.category_id is None and r.time_window == "ALL_TIME"]
    return row, events


def _independent_brier(recording: Recording) -> tuple[float, int]:
    final = recording.final_prices()
    outcome = (final["resolution"] == "YES").to_numpy(dtype=float)
    return float(np.mean((final["value"].to_numpy() - outcome) ** 2)), len(final)


def _halves(recording: Recording) -> tuple[list[str], list[str]]:
    ids = sorted(m.market_id for m in recording.markets)
    return ids[::2], ids[1::2]


def test_manifold_scores_do_not_depend_on_arrival_order(conn, landing):
    """MANIFOLD: history first, resolutions first, and interleaved give identical rows."""
    recording = MANIFOLD
    history = ("history.csv", recording.history_csv())
    listing = ("listing.csv", recording.listing_csv())
    first, second = _halves(recording)
    orders = {
        "history_first": [[history], [listing]],
        "resolutions_first": [[listing], [history]],
        "interleaved": [
            [("history-a.csv", recording.history_csv(first))],
            [listing],
            [("history-b.csv", recording.history_csv(second))],
        ],
    }
    results = {}
    for number, (name, steps) in enumerate(orders.items()):
        owner = _user(conn, name)
        start = NOW + timedelta(hours=10 * number)
        feed_id = _feed_in_order(conn, landing, recording, owner, steps, start)
        row, events = _global_all_time(conn, _feed_events(conn, feed_id))
        results[name] = (row, events)

    rows = {name: row for name, (row, _) in results.items()}
    reference = rows["history_first"]
    for name, row in rows.items():
        assert (
            row.resolved_predictions,
            row.brier_score,
            row.log_score,
            row.accuracy_at_50,
            row.calibration_curve,
            row.total_predictions,
        ) == (
            reference.resolved_predictions,
            reference.brier_score,
            reference.log_score,
            reference.accuracy_at_50,
            reference.calibration_curve,
            reference.total_predictions,
        ), name

    # The pipeline's Brier is the one computed independently from the recording itself.
    expected, scored = _independent_brier(recording)
    assert reference.resolved_predictions == scored == 75
    assert abs(reference.brier_score - expected) < 1e-6
    markets = len(recording.markets)
    resolved = sum(1 for m in recording.markets if m.resolution)
    events = results["resolutions_first"][1]
    assert (markets, resolved, len(events)) == (80, 76, 76)
    # History that arrived after the resolutions rescored them, audited.
    rescored = conn.execute(
        "SELECT count(*) FROM prediction_audit_log WHERE action = 'resolution.rescored'"
    ).fetchone()[0]
    assert rescored >= 75


def test_manifold_resolutions_agree_with_the_platform(conn, landing):
    """MANIFOLD: every market Manifold resolved YES or NO is resolved the same way."""
    recording = MANIFOLD
    owner = _user(conn, "agreement")
    steps = [[("history.csv", recording.history_csv()), ("listing.csv", recording.listing_csv())]]
    feed_id = _feed_in_order(conn, landing, recording, owner, steps, NOW)
    (mappings,) = conn.execute(
        "SELECT manual_event_mappings FROM prediction_data_feeds WHERE id = %s", (feed_id,)
    ).fetchone()
    outcomes = dict(
        conn.execute(
            "SELECT e.id::text, r.outcome FROM prediction_events e"
            " LEFT JOIN prediction_resolutions r ON r.event_id = e.id WHERE e.id = ANY(%s)",
            (list(mappings.values()),),
        ).fetchall()
    )
    platform = {m.market_id: m.resolution for m in recording.markets if m.resolution}
    pipeline = {market: outcomes[event] for market, event in mappings.items()}
    agree = sum(1 for m, o in platform.items() if pipeline[m] == o)
    assert (len(platform), agree) == (76, 76)
    # MKT markets (resolved to a probability) stay open, not resolved to a side.
    assert sum(1 for m, o in pipeline.items() if o is not None and m not in platform) == 0


def test_history_before_2020_flows_into_snapshots_resolutions_and_calibration(
    conn, landing, db_url, dagster_instance
):
    """PREDICTIT: 2016 history uploaded in 2026 is resolved, scored, and snapshotted by the
    daily event_history partitions (the time axis starts 2014-01-01 by default)."""
    recording = PREDICTIT
    owner = _user(conn, "predictit")
    steps = [[("history.csv", recording.history_csv())], [("listing.csv", recording.listing_csv())]]
    feed_id = _feed_in_order(conn, landing, recording, owner, steps, NOW)
    event_ids = _feed_events(conn, feed_id)
    row, events = _global_all_time(conn, event_ids)
    expected, scored = _independent_brier(recording)
    assert row.resolved_predictions == scored == len(events.dropna(subset=["final_probability"]))
    assert scored == 58  # 59 contracts, one (Dold, IL-10) ends at 0.20: not settled
    assert abs(row.brier_score - expected) < 1e-6
    # The scored probability is the last daily close before election day (mostly 2016-11-07;
    # some recordings end earlier), observed when the recording says.
    observed = conn.execute(
        "SELECT final_observed_at, count(*) FROM prediction_resolutions WHERE event_id = ANY(%s)"
        " AND final_observed_at IS NOT NULL GROUP BY 1 ORDER BY 1",
        (event_ids,),
    ).fetchall()
    expected_at = recording.final_prices()["fetched_at"].value_counts().sort_index()
    assert observed == [(at.to_pydatetime(), n) for at, n in expected_at.items()]
    assert max(at for at, _ in observed) == datetime(2016, 11, 7, 23, 59, tzinfo=UTC)

    result = dg.materialize(
        [event_history],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
        partition_key="2016-11-07",
    )
    assert result.success
    snapshots = conn.execute(
        "SELECT count(DISTINCT event_id), min(snapshot_at), max(snapshot_at)"
        " FROM prediction_snapshots WHERE event_id = ANY(%s)",
        (event_ids,),
    ).fetchone()
    # Resolved events get snapshots for the day, up to their resolution.
    assert snapshots[0] == len(event_ids) - _unpriced_on(recording, date(2016, 11, 7))
    # A daily close is observed at 23:59: the day's only state is its last interval's.
    assert snapshots[1:] == (datetime(2016, 11, 8, tzinfo=UTC), datetime(2016, 11, 8, tzinfo=UTC))


def _unpriced_on(recording: Recording, day: date) -> int:
    """Markets with no price on that day (the day before has no snapshots to carry)."""
    history = recording.history
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    seen = history[
        (history["fetched_at"] < end) & (history["fetched_at"] >= end - timedelta(days=1))
    ]
    return len({m.market_id for m in recording.markets} - set(seen["market_id"]))


def test_the_time_axis_starts_where_configuration_says():
    assert partitions_start({}) == date(2014, 1, 1)
    assert partitions_start({PARTITIONS_START_VAR: "2012-06-01"}) == date(2012, 6, 1)
    with pytest.raises(ConfigError, match=PARTITIONS_START_VAR):
        partitions_start({PARTITIONS_START_VAR: "June 2012"})
    script = (
        "from predict_pipeline.defs.partitions import HISTORY_DAILY, HOURLY;"
        "print(HISTORY_DAILY.get_first_partition_key(), HOURLY.start.date(),"
        " len(HISTORY_DAILY.get_partition_keys()))"
    )
    shown = {}
    for start in ("2012-06-01", "2025-03-01"):
        env = {**os.environ, PARTITIONS_START_VAR: start}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        shown[start] = out
    # Days from the configured start up to 2024; hours from max(start, 2024-01-01).
    days = (date(2024, 1, 1) - date(2012, 6, 1)).days
    assert shown["2012-06-01"] == ["2012-06-01", "2024-01-01", str(days)]
    assert shown["2025-03-01"] == ["None", "2025-03-01", "0"]
