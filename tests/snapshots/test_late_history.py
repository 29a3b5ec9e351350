"""late_history_sensor: days of old history that stage 2 wrote become snapshot runs."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from predict_pipeline.defs.signals import LATE_HISTORY_DAYS
from predict_pipeline.defs.snapshots import late_history_runs, late_history_sensor


def _validated(instance: dg.DagsterInstance, partition: str, days: list[str]) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="validated_signals",
            partition=partition,
            metadata={LATE_HISTORY_DAYS: dg.MetadataValue.json(days)},
        )
    )


def test_days_within_a_runs_size_share_a_run_on_their_own_axis():
    days = ["2016-11-07", "2016-11-06", "2016-11-09", "2023-12-31", "2024-01-01", "2024-01-02"]
    assert late_history_runs(days) == [
        ("event_history_job", "2016-11-06", "2016-11-09"),  # the gap day runs too, empty
        ("event_history_job", "2023-12-31", "2023-12-31"),
        ("late_snapshots_job", "2024-01-01-00:00", "2024-01-02-23:00"),
    ]
    # Scattered days (a year of recorded markets) are a run per 92 days, not per stretch.
    scattered = [f"{date(2022, 1, 1) + timedelta(days=n):%Y-%m-%d}" for n in range(0, 365, 3)]
    assert late_history_runs(scattered) == [
        ("event_history_job", "2022-01-01", "2022-04-01"),  # day 90: the last within 92
        ("event_history_job", "2022-04-04", "2022-07-03"),
        ("event_history_job", "2022-07-06", "2022-10-04"),
        ("event_history_job", "2022-10-07", "2022-12-30"),
    ]
    # Before the time axis there is no partition to run; a quarter of days is one run.
    assert late_history_runs(["2013-12-31"]) == []
    year = [f"{date(2015, 1, 1) + timedelta(days=n):%Y-%m-%d}" for n in range(365)]
    assert late_history_runs(year) == [
        ("event_history_job", "2015-01-01", "2015-04-02"),
        ("event_history_job", "2015-04-03", "2015-07-03"),
        ("event_history_job", "2015-07-04", "2015-10-03"),
        ("event_history_job", "2015-10-04", "2015-12-31"),
    ]


def test_sensor_requests_runs_for_the_late_days_once(dagster_instance):
    _validated(dagster_instance, "2026-11-23-09:00", ["2016-11-06", "2016-11-07"])
    _validated(dagster_instance, "2026-11-23-10:00", [])
    context = dg.build_sensor_context(instance=dagster_instance)
    result = late_history_sensor(context)
    assert [
        (
            r.job_name,
            r.tags["dagster/asset_partition_range_start"],
            r.tags["dagster/asset_partition_range_end"],
        )
        for r in result.run_requests
    ] == [("event_history_job", "2016-11-06", "2016-11-07")]
    # The next tick starts after what was read: nothing new, nothing requested.
    again = late_history_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=result.cursor)
    )
    assert isinstance(again, dg.SkipReason)


def test_a_long_upload_drains_over_ticks_without_filling_the_queue(dagster_instance):
    """Two years of late days are eight runs: four a tick, the rest on the next tick."""
    years = [f"{date(2016, 1, 1) + timedelta(days=n):%Y-%m-%d}" for n in range(731)]
    _validated(dagster_instance, "2026-11-23-09:00", years)
    expected = late_history_runs(years)
    assert len(expected) == 8  # 731 days at 92 a run
    cursor, launched, ticks = None, [], []
    while True:
        result = late_history_sensor(
            dg.build_sensor_context(instance=dagster_instance, cursor=cursor)
        )
        if isinstance(result, dg.SkipReason):
            break
        ticks.append(len(result.run_requests))
        launched += [
            (
                r.job_name,
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in result.run_requests
        ]
        cursor = result.cursor
    assert ticks == [4, 4]
    assert launched == expected  # every run once, in order
