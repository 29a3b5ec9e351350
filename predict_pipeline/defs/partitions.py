"""The one time axis every time-partitioned asset shares, so a backfill flows through stages.

Hourly windows in UTC from PARTITIONS_START (about 8,760 partitions a year, far below the
UI's comfortable ~100k). The current, still-open hour is a partition too (end_offset=1):
polled feeds land in it several times and later stages re-read the whole window.
To backfill history older than PARTITIONS_START, move the date earlier here.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from predict_pipeline.feeds.base import FetchWindow

PARTITIONS_START = "2024-01-01-00:00"

HOURLY = dg.HourlyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)

# A ranged backfill runs two weeks of windows per run (each stage works a day at a time, so
# memory is bounded by the day): retryable alone, and each run's start-up (orchestrator,
# step processes, their connections) is spread over 336 hours; a week per run cost 8 % more.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=336)


def hourly_windows(start: datetime, end: datetime) -> list[FetchWindow]:
    """The hour windows of a (possibly multi-partition) time window, in order."""
    keys = HOURLY.get_partition_keys_in_range(
        dg.PartitionKeyRange(
            HOURLY.get_partition_key_for_timestamp(start.timestamp()),
            HOURLY.get_partition_key_for_timestamp(end.timestamp() - 1),
        )
    )
    windows = []
    for key in keys:
        tw = HOURLY.time_window_for_partition_key(key)
        windows.append(FetchWindow(start=tw.start, end=tw.end))
    return windows
