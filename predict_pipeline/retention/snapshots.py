"""Snapshots past their periods: one row per event and hour after 90 days (the hour's last
snapshot, with the hour's signal_count and volume summed), whole monthly partitions dropped
after two years, the market edges' with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from predict_pipeline.db.rows import one_row
from predict_pipeline.retention.policy import RetentionPolicy
from predict_pipeline.retention.report import StepReport

# date_bin over absolute time is UTC-aligned whatever the session's time zone.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
INT_MAX = 2_147_483_647

_PARTITION_RANGES = """
SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''\\)')::timestamptz,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = %s::regclass
"""

# Hours with more than one snapshot of an event, per chunk: what downsampling will remove.
_SURPLUS_BY_CHUNK = """
SELECT date_bin(%(chunk)s, hour, %(origin)s) AS chunk_start,
       sum(n - 1)::bigint AS surplus, count(*) AS hours
FROM (SELECT date_bin('1 hour', snapshot_at, %(origin)s) AS hour, count(*) AS n
      FROM prediction_snapshots
      WHERE snapshot_at >= %(lo)s AND snapshot_at < %(hi)s
      GROUP BY event_id, 1
      HAVING count(*) > 1) g
GROUP BY 1 ORDER BY 1
"""

_DOWNSAMPLE = """
WITH ranked AS (
  SELECT id, snapshot_at,
         row_number() OVER (w ORDER BY snapshot_at DESC, id DESC) AS rn,
         count(*) OVER w AS n,
         sum(signal_count) OVER w AS signals,
         sum(volume) OVER w AS volume
  FROM prediction_snapshots
  WHERE snapshot_at >= %(lo)s AND snapshot_at < %(hi)s
  WINDOW w AS (PARTITION BY event_id, date_bin('1 hour', snapshot_at, %(origin)s))
),
kept AS (
  -- volume is INTEGER: an hour's sum past its range is capped rather than failing the chunk.
  UPDATE prediction_snapshots s
  SET signal_count = LEAST(r.signals, %(int_max)s), volume = LEAST(r.volume, %(int_max)s)
  FROM ranked r
  WHERE r.rn = 1 AND r.n > 1 AND s.id = r.id AND s.snapshot_at = r.snapshot_at
    AND s.snapshot_at >= %(lo)s AND s.snapshot_at < %(hi)s
  RETURNING 1
),
gone AS (
  DELETE FROM prediction_snapshots s USING ranked r
  WHERE r.rn > 1 AND s.id = r.id AND s.snapshot_at = r.snapshot_at
    AND s.snapshot_at >= %(lo)s AND s.snapshot_at < %(hi)s
  RETURNING 1
)
SELECT (SELECT count(*) FROM kept), (SELECT count(*) FROM gone)
"""


def partition_ranges(conn: psycopg.Connection, table: str) -> list[tuple[datetime, datetime]]:
    """[from, to) of each range partition of `table` (DEFAULT partitions have none)."""
    rows = conn.execute(_PARTITION_RANGES, (table,)).fetchall()
    return sorted((lo, hi) for lo, hi in rows if lo is not None and hi is not None)


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(moment: datetime) -> datetime:
    return (month_start(moment) + timedelta(days=32)).replace(day=1)


def prune_snapshots(
    conn: psycopg.Connection, policy: RetentionPolicy, now: datetime, *, dry_run: bool
) -> StepReport:
    report = StepReport("snapshots", dry_run)
    drop_before = policy.cutoff(now, "snapshot_drop_days")
    # Only whole hours before the cutoff are merged, so an hour is never half downsampled.
    downsample_before = policy.cutoff(now, "snapshot_downsample_days").replace(
        minute=0, second=0, microsecond=0
    )
    dropped = conn.execute(
        "SELECT partition_name, range_end, rows_held FROM predict_drop_snapshot_partitions(%s, %s)",
        (drop_before, dry_run),
    ).fetchall()
    # The market edges' partitions go with the snapshots' (sql/0135); their rows are told apart.
    edges = [rows for name, _, rows in dropped if name.startswith("prediction_market_edges_")]
    report.add("partitions_dropped", len(dropped))
    report.add(
        "snapshots_dropped_with_partitions", sum(rows for _, _, rows in dropped) - sum(edges)
    )
    report.add("market_edges_dropped_with_partitions", sum(edges))
    report.details["dropped_partition_names"] = [name for name, _, _ in dropped]

    ranges = partition_ranges(conn, "prediction_snapshots")
    # A dry run leaves the partitions it would drop in place: start after them all the same.
    start = max([r[1] for r in ranges if r[1] <= drop_before], default=None)
    start = start or (ranges[0][0] if ranges else downsample_before)
    chunk = timedelta(hours=policy.downsample_chunk_hours)
    hours_merged = removed = 0
    month = start
    while month < downsample_before:
        # One month (at most one partition) scanned at a time keeps the aggregation small.
        month_end = min(next_month(month), downsample_before)
        chunks = conn.execute(
            _SURPLUS_BY_CHUNK,
            {"chunk": chunk, "origin": ORIGIN, "lo": month, "hi": month_end},
        ).fetchall()
        for chunk_start, surplus, hours in chunks:
            if dry_run:
                hours_merged += hours
                removed += surplus
                continue
            lo, hi = max(chunk_start, month), min(chunk_start + chunk, month_end)
            with conn.transaction():
                merged, gone = one_row(
                    conn.execute(
                        _DOWNSAMPLE, {"lo": lo, "hi": hi, "origin": ORIGIN, "int_max": INT_MAX}
                    )
                )
            hours_merged += merged
            removed += gone
        month = month_end
    report.add("hours_downsampled", hours_merged)
    report.add("snapshots_removed_by_downsampling", removed)
    report.details["downsampled_before"] = downsample_before.isoformat()
    report.details["dropped_before"] = drop_before.isoformat()
    return report
