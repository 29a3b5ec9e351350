"""Monthly partitions: the one place they are made (on demand by the stages, ahead of need by
maintenance), and the check that they exist."""

from __future__ import annotations

from collections.abc import Iterable
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
    # Dropped with the snapshots (predict_drop_snapshot_partitions, sql/0135).
    MonthlyPartitionedTable("prediction_market_edges", "predict_ensure_market_edge_partitions"),
)


_ENSURE = {spec.table: spec.ensure_function for spec in PARTITIONED_TABLES}


def make_partitions(
    conn: psycopg.Connection, table: str, months: Iterable[datetime], *, serialised: bool = False
) -> list[str]:
    """The monthly partitions of `table` these moments fall in that it lacks, made in one
    statement (the table's SECURITY DEFINER function); the names made.

    Making one attaches the table's foreign keys, which locks the referenced tables against
    updates until the transaction ends: callers commit this on its own before a long write.
    `serialised`: concurrent runs reaching a new month take turns (one makes it, the others
    find it) instead of racing to DuplicateTable; the lock lasts the caller's transaction.
    """
    moments = sorted(set(months))
    return _make(conn, table, moments, moments, serialised)


def make_partitions_between(
    conn: psycopg.Connection,
    table: str,
    first: datetime,
    last: datetime,
    *,
    serialised: bool = False,
) -> list[str]:
    """`make_partitions` for every month from `first`'s through `last`'s (the function takes
    the range itself)."""
    return _make(conn, table, [first], [last], serialised)


def _make(
    conn: psycopg.Connection,
    table: str,
    starts: list[datetime],
    ends: list[datetime],
    serialised: bool,
) -> list[str]:
    if not starts:
        return []
    if serialised:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"predict_partitions:{table}",))
    rows = conn.execute(
        sql.SQL(
            "SELECT p FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS r(a, b),"
            " LATERAL {}(r.a, r.b) AS p"
        ).format(sql.Identifier(_ENSURE[table])),
        (starts, ends),
    ).fetchall()
    return [name for (name,) in rows]


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
        created += make_partitions(conn, spec.table, months_needed(now, months_ahead))
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
