"""Monthly partitions created ahead of need, and the check that they exist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from predict_pipeline.retention.report import StepReport
from predict_pipeline.retention.snapshots import month_start, next_month, partition_ranges


@dataclass(frozen=True, slots=True)
class MonthlyPartitionedTable:
    table: str
    ensure_function: str  # SECURITY DEFINER (from, to) -> names of the partitions it created


# Every monthly-partitioned table that maintenance keeps ahead of need: add a table here and
# both the creation and the asset check cover it.
PARTITIONED_TABLES: tuple[MonthlyPartitionedTable, ...] = (
    MonthlyPartitionedTable("prediction_snapshots", "predict_ensure_snapshot_partitions"),
    MonthlyPartitionedTable("prediction_signals", "predict_ensure_signal_partitions"),
)


def months_needed(now: datetime, months_ahead: int) -> list[datetime]:
    """The current UTC month and the `months_ahead` after it."""
    months = [month_start(now)]
    for _ in range(months_ahead):
        months.append(next_month(months[-1]))
    return months


def missing_months(
    conn: psycopg.Connection, table: str, now: datetime, months_ahead: int
) -> list[datetime]:
    ranges = partition_ranges(conn, table)
    return [
        month
        for month in months_needed(now, months_ahead)
        if not any(lo <= month < hi for lo, hi in ranges)
    ]


def ensure_partitions(
    conn: psycopg.Connection,
    now: datetime,
    months_ahead: int,
    *,
    dry_run: bool,
    tables: tuple[MonthlyPartitionedTable, ...] = PARTITIONED_TABLES,
) -> StepReport:
    report = StepReport("partitions", dry_run)
    created: list[str] = []
    for spec in tables:
        missing = missing_months(conn, spec.table, now, months_ahead)
        if dry_run:
            created += [f"{spec.table}_y{m:%Y}m{m:%m}" for m in missing]
            continue
        months = months_needed(now, months_ahead)
        rows = conn.execute(
            sql.SQL("SELECT {}(%s, %s)").format(sql.Identifier(spec.ensure_function)),
            (months[0], months[-1]),
        ).fetchall()
        created += [name for (name,) in rows]
    report.add("partitions_created", len(created))
    report.details["created_partition_names"] = created
    return report


def partitions_ahead_missing(
    conn: psycopg.Connection,
    now: datetime,
    months_ahead: int,
    tables: tuple[MonthlyPartitionedTable, ...] = PARTITIONED_TABLES,
) -> dict[str, list[str]]:
    """Per table, the months (YYYY-MM) of [now, now + months_ahead] no partition covers."""
    return {
        spec.table: [f"{m:%Y-%m}" for m in missing_months(conn, spec.table, now, months_ahead)]
        for spec in tables
    }
