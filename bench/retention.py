"""retention: the whole retention job (in process, as `predict-pipeline retention run`) over a
generated database holding a year of 15-minute snapshots for 1,000 events (35 M rows), a
year of feed runs, rule executions, resolved review items and audit entries. The first run
works off the whole backlog (275 days of snapshots downsampled, 9 months of audit log archived
to Parquet); the next run is the daily steady state.

Prints `retention: X s (target <= Y)` for the backlog run, the daily run's time and the
generation time. The default is 100 events (3.5 M snapshots) so `make bench` stays within 20
minutes, with the targets pro rata to the snapshots; PREDICT_BENCH_FULL=1 (or `--events 1000`)
runs the full size. `--events N --days D` make a smaller (or larger) database.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import FULL, fresh_database

from predict_pipeline.db.connection import connect

# The one-off backlog (a year-old database meeting retention for the first time, ~20 M
# snapshots deleted) must finish inside the 30 minutes before the 03:30 calibration refresh,
# with margin; the daily steady state within a minute.
TARGET_BACKLOG_S = 900
TARGET_DAILY_S = 60

_SEED = [
    "SET synchronous_commit = off",
    """INSERT INTO auth.users (id, email) VALUES (md5('bench-user')::uuid, 'bench@example.com')""",
    """INSERT INTO prediction_events (id, title, slug, created_by)
       SELECT md5('e' || i)::uuid, 'Event ' || i, 'event-' || i, md5('bench-user')::uuid
       FROM generate_series(1, %(events)s) i""",
    """INSERT INTO prediction_data_feeds (id, source_id, user_id, name)
       SELECT md5('f' || i)::uuid, (SELECT id FROM prediction_data_sources
                                    WHERE source_id = 'kalshi'),
              md5('bench-user')::uuid, 'feed ' || i
       FROM generate_series(1, 10) i""",
    """INSERT INTO prediction_rules (id, user_id, name, scope_type, trigger_type)
       VALUES (md5('rule')::uuid, md5('bench-user')::uuid, 'watch', 'all', 'TRUST_BELOW')""",
    # Feed runs every 15 minutes per feed, a review item per run, executions every 5 minutes.
    """INSERT INTO prediction_feed_runs (id, feed_id, started_at, created_at, status,
                                         signals_written)
       SELECT md5('r' || f || '-' || t)::uuid, md5('f' || f)::uuid, t, t, 'SUCCESS', 40
       FROM generate_series(1, 10) f,
            generate_series(%(start)s::timestamptz, %(now)s::timestamptz, '15 minutes') t""",
    """INSERT INTO prediction_unmatched_signals (feed_id, feed_run_id, source_event_id,
                                                 signal_type, status, created_at)
       SELECT md5('f' || f)::uuid, md5('r' || f || '-' || t)::uuid, 'M-' || f || '-' || t,
              'MARKET_PRICE', (ARRAY['PENDING', 'MATCHED', 'DISCARDED'])[1 + f %% 3], t
       FROM generate_series(1, 10) f,
            generate_series(%(start)s::timestamptz, %(now)s::timestamptz, '1 hour') t""",
    """INSERT INTO prediction_rule_executions (rule_id, trigger_snapshot, status, started_at)
       SELECT md5('rule')::uuid, '{"p": 0.5}', 'COMPLETED', t
       FROM generate_series(%(start)s::timestamptz, %(now)s::timestamptz, '5 minutes') t""",
    """INSERT INTO prediction_audit_log (actor_type, action, resource_type, resource_id,
                                        details, created_at)
       SELECT 'service', 'feed.run', 'prediction_feed_runs', md5('a' || t)::uuid,
              jsonb_build_object('written', 40, 'at', t), t
       FROM generate_series(%(start)s::timestamptz, %(now)s::timestamptz, '2 minutes') t""",
]

# One month per statement: 15-minute snapshots of every event, set-based.
_SNAPSHOTS = """
INSERT INTO prediction_snapshots (event_id, probability, volume, signal_count, snapshot_at)
SELECT md5('e' || e)::uuid, round((0.5 + 0.4 * sin(e + extract(epoch FROM t) / 86400))::numeric, 4),
       (e * 7 + extract(epoch FROM t)::bigint / 900) %% 1000, 1 + e %% 5, t
FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                     '15 minutes') t,
     generate_series(1, %(events)s) e
"""


def _months(start: datetime, end: datetime):
    lo = start
    while lo < end:
        hi = min((lo.replace(day=1) + timedelta(days=32)).replace(day=1), end)
        yield lo, hi
        lo = hi


def generate(url: str, events: int, days: int, now: datetime) -> int:
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    with connect(url, role=None, autocommit=True) as admin:
        admin.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (start, now)).fetchall()
        for statement in _SEED:
            admin.execute(statement, {"events": events, "start": start, "now": now})
        for lo, hi in _months(start, now):
            admin.execute(_SNAPSHOTS, {"lo": lo, "hi": hi, "events": events})
        admin.execute("VACUUM ANALYZE")
        return admin.execute("SELECT count(*) FROM prediction_snapshots").fetchone()[0]


def run_job(url: str, archive: str) -> tuple[float, bool, dict]:
    import dagster as dg

    from predict_pipeline.defs.resources import PostgresResource
    from predict_pipeline.defs.retention import (
        RETENTION_ASSETS,
        RetentionResource,
        retention_job,
        retention_run_config,
    )

    defs = dg.Definitions(
        assets=RETENTION_ASSETS,
        jobs=[retention_job],
        resources={"database": PostgresResource(url=url), "retention": RetentionResource()},
    )
    job = defs.resolve_job_def("retention_job")
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            run_config=retention_run_config(dry_run=False, archive_url=archive),
            instance=instance,
            raise_on_error=False,
        )
        elapsed = time.perf_counter() - started
    counts = {}
    for asset in RETENTION_ASSETS:
        for mat in result.asset_materializations_for_node(asset.op.name):
            counts.update(
                {
                    k: v.value
                    for k, v in mat.metadata.items()
                    if isinstance(v.value, int) and not isinstance(v.value, bool)
                }
            )
    return elapsed, result.success, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000 if FULL else 100)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    now = datetime.now(UTC)
    # Both targets are for 1,000 events x 365 days; a smaller database gets its share of them.
    share = min(1.0, args.events * args.days / (1000 * 365))
    backlog_target, daily_target = TARGET_BACKLOG_S * share, TARGET_DAILY_S * share
    with fresh_database() as url, tempfile.TemporaryDirectory(prefix="bench-archive-") as archive:
        started = time.perf_counter()
        snapshots = generate(url, args.events, args.days, now)
        generated = time.perf_counter() - started
        backlog, ok, counts = run_job(url, archive)
        daily, ok_daily, _ = run_job(url, archive)
        with connect(url, role=None, autocommit=True) as admin:
            left = admin.execute("SELECT count(*) FROM prediction_snapshots").fetchone()[0]
    status = "" if ok and ok_daily else " FAILED"
    print(
        f"retention: {backlog:.1f} s (target <= {backlog_target:.0f}){status} for the backlog of "
        f"{snapshots:,} snapshots ({args.events:,} events x {args.days} days of 15 min; "
        f"{counts.get('snapshots_removed_by_downsampling', 0):,} removed by downsampling, "
        f"{left:,} left), {counts.get('audit_rows_archived', 0):,} audit rows archived "
        f"({counts.get('archive_bytes_written', 0) / 1e6:.1f} MB Parquet), "
        f"{counts.get('feed_runs_deleted', 0):,} feed runs deleted; next daily run "
        f"{daily:.1f} s (target <= {daily_target:.0f}); generated in {generated:.0f} s"
    )


if __name__ == "__main__":
    main()
