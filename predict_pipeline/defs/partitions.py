"""The time axes every time-partitioned asset shares, so a backfill flows through stages.

The axis starts where configuration says: PREDICT_PARTITIONS_START (an ISO date, default
2014-01-01, the oldest platform's history). Hourly partitions since 2014 would be about
105k, past the UI's comfortable ~100k, so the axis is two-grained:

- HISTORY_DAILY: one partition per UTC day from PREDICT_PARTITIONS_START up to the hourly
  axis (about 3,650 for 2014-2023): `event_history` computes those days' snapshots.
- HOURLY: one partition per UTC hour from max(PREDICT_PARTITIONS_START, 2024-01-01) (about
  8,760 a year). The current, still-open hour is a partition too (end_offset=1): polled
  feeds land in it several times and later stages re-read the whole window.

This is the one setting read while definitions load: Dagster needs the partition set before
any run, and every process (webserver, daemon, steps) must agree on it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from predict_pipeline.config import partitions_start
from predict_pipeline.model import FetchWindow

HOUR = timedelta(hours=1)
# Where hourly partitions begin at the earliest: before it, history is kept by the day.
HOURLY_FLOOR = date(2024, 1, 1)
AXIS_START = partitions_start()
HOURLY_START = max(AXIS_START, HOURLY_FLOOR)
PARTITIONS_START = f"{HOURLY_START:%Y-%m-%d}-00:00"

HOURLY = dg.HourlyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)
HISTORY_DAILY = dg.DailyPartitionsDefinition(
    start_date=f"{AXIS_START:%Y-%m-%d}", end_date=f"{HOURLY_START:%Y-%m-%d}", timezone="UTC"
)

# A ranged backfill runs two weeks of windows per run (each stage works a day at a time, so
# memory is bounded by the day): retryable alone, and each run's start-up (orchestrator,
# step processes, their connections) is spread over 336 hours; a week per run cost 8 % more.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=336)
# A history backfill runs a quarter of days per run.
HISTORY_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=92)


def axis_start() -> datetime:
    """The first moment of the time axis, UTC."""
    return datetime(AXIS_START.year, AXIS_START.month, AXIS_START.day, tzinfo=UTC)


def hourly_start() -> datetime:
    """The first moment of the hourly axis, UTC: earlier history is partitioned by day."""
    return datetime(HOURLY_START.year, HOURLY_START.month, HOURLY_START.day, tzinfo=UTC)


def hourly_windows(start: datetime, end: datetime) -> list[FetchWindow]:
    """The hour windows of a (possibly multi-partition) time window, in order; hours before
    the hourly axis (history kept by the day) are windows too."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    windows = []
    while first < end:
        windows.append(FetchWindow(start=first, end=first + HOUR))
        first += HOUR
    return windows
