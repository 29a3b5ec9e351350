"""Snapshots: downsampled to one per event and hour after 90 days; partitions dropped after
two years."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from predict_pipeline.retention.policy import RetentionPolicy
from predict_pipeline.retention.snapshots import prune_snapshots
from tests.retention.conftest import (
    NOW,
    days_ago,
    ensure_partitions,
    months_back,
    snapshot,
)


def _partitions(conn) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'prediction_snapshots'::regclass"
        )
    }


def _rows(conn, event_id):
    return conn.execute(
        "SELECT snapshot_at, signal_count, volume, probability FROM prediction_snapshots"
        " WHERE event_id = %s ORDER BY snapshot_at",
        (event_id,),
    ).fetchall()


def test_downsampling_and_partition_drops(admin_conn, maint, world):
    event, other = world["event"], world["event2"]
    ensure_partitions(admin_conn, months_back(25), NOW)
    old_hour = days_ago(91).replace(minute=0, second=0, microsecond=0)
    for minutes, signals, volume, p in ((10, 2, 10, "0.1"), (25, 3, 20, "0.2"), (50, 4, 30, "0.3")):
        snapshot(
            admin_conn,
            event,
            old_hour + timedelta(minutes=minutes),
            signals=signals,
            volume=volume,
            probability=Decimal(p),
        )
    snapshot(admin_conn, event, old_hour + timedelta(hours=1, minutes=5), signals=7, volume=1)
    lone = snapshot(admin_conn, other, old_hour + timedelta(minutes=40), signals=5, volume=9)
    recent_hour = days_ago(89).replace(minute=0, second=0, microsecond=0)
    for minutes in (15, 30, 45):
        snapshot(admin_conn, event, recent_hour + timedelta(minutes=minutes), signals=1)
    month_25 = months_back(25)
    month_23 = months_back(23)
    snapshot(admin_conn, other, month_25 + timedelta(days=3), signals=1)
    snapshot(admin_conn, other, month_23 + timedelta(days=3, minutes=1), signals=2, volume=4)
    snapshot(admin_conn, other, month_23 + timedelta(days=3, minutes=2), signals=3, volume=5)
    before = _partitions(admin_conn)
    name_25 = f"prediction_snapshots_y{month_25:%Y}m{month_25:%m}"
    assert name_25 in before

    dry = prune_snapshots(maint, RetentionPolicy(), NOW, dry_run=True)
    assert _partitions(admin_conn) == before
    assert len(_rows(admin_conn, event)) == 7
    report = prune_snapshots(maint, RetentionPolicy(), NOW, dry_run=False)

    # The three in one old hour became its last, with the hour's counts summed.
    assert _rows(admin_conn, event) == [
        (old_hour + timedelta(minutes=50), 9, 60, Decimal("0.3000")),
        (old_hour + timedelta(hours=1, minutes=5), 7, 1, Decimal("0.5000")),
        *[(recent_hour + timedelta(minutes=m), 1, 0, Decimal("0.5000")) for m in (15, 30, 45)],
    ]
    other_rows = _rows(admin_conn, other)
    assert other_rows == [
        (month_23 + timedelta(days=3, minutes=2), 5, 9, Decimal("0.5000")),
        (old_hour + timedelta(minutes=40), 5, 9, Decimal("0.5000")),
    ]
    assert admin_conn.execute(
        "SELECT count(*) FROM prediction_snapshots WHERE id = %s", (lone,)
    ).fetchone() == (1,)
    after = _partitions(admin_conn)
    assert before - after == {name_25}  # 25 months old: dropped whole; 24 and 23 months: kept
    assert (
        report.counts
        == dry.counts
        == {
            "partitions_dropped": 1,
            "snapshots_dropped_with_partitions": 1,
            "market_edges_dropped_with_partitions": 0,
            "hours_downsampled": 2,
            "snapshots_removed_by_downsampling": 3,
        }
    )
    assert report.details["dropped_partition_names"] == [name_25]

    again = prune_snapshots(maint, RetentionPolicy(), NOW, dry_run=False)
    assert set(again.counts.values()) == {0}  # a second run finds nothing left to do
