"""snapshots: the whole snapshot step (pooled probability, sentiment, volume, volatility,
divergence, carry-forward, writing 240,000 snapshots and updating event state) for 1,000,000
signals over 10,000 events and 24 hourly intervals, against a plain
`INSERT ... SELECT event_id, hour, avg(value), count(*) ... GROUP BY` into a table shaped like
prediction_snapshots with the same indexes, in the same run on the same rows.
Prints `snapshots: ratio X.XX (target <= 1.15)`.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import fresh_database

from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.snapshots.compute import compute_snapshots

EVENTS = 10_000
HOURS = 24
SIGNALS = 1_000_000
START = datetime(2026, 11, 1, tzinfo=UTC)

_SEED_SQL = """
INSERT INTO prediction_events (id, title, slug)
SELECT md5('event' || e)::uuid, 'Bench event ' || e, 'bench-event-' || e
FROM generate_series(0, %(events)s::int - 1) e;

SELECT predict_ensure_signal_partitions(%(start)s, %(start)s + interval '1 day');

-- k -> event k %% E, hour (k / E) %% H, kind k / (E * H): three market sources, volume, sentiment.
INSERT INTO prediction_signals
  (event_id, source, source_event_id, signal_type, value, weight, reliability, fetched_at)
SELECT md5('event' || (k %% %(events)s::int))::uuid,
       (ARRAY['polymarket', 'kalshi', 'manifold', 'kalshi', 'news'])[j + 1],
       'm-' || (k %% %(events)s::int),
       (ARRAY['MARKET_PRICE', 'MARKET_PRICE', 'MARKET_PRICE', 'VOLUME', 'SENTIMENT'])[j + 1],
       CASE WHEN j < 3 THEN round((0.2 + 0.6 * random())::numeric, 4)
            WHEN j = 3 THEN round((random() * 500)::numeric, 4)
            ELSE round((random() * 2 - 1)::numeric, 4) END,
       1.0, (ARRAY[0.9, 0.9, 0.7, 0.9, 0.6])[j + 1],
       %(start)s::timestamptz + make_interval(hours => (k / %(events)s::int) %% %(hours)s::int)
         + make_interval(mins => j * 11 + (k %% 7), secs => k %% 60)
FROM generate_series(0, %(signals)s::int - 1) k,
     LATERAL (SELECT (k / (%(events)s::int * %(hours)s::int))::int AS j) kind;
"""

_BASELINE_TABLE = """
CREATE TABLE bench_snapshots (
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,
  probability DECIMAL(5,4), sentiment_score DECIMAL(5,4), trust_score DECIMAL(5,4),
  volatility DECIMAL(5,4), volume INTEGER DEFAULT 0, divergence TEXT,
  signal_count INTEGER DEFAULT 0, snapshot_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (id, snapshot_at)
);
CREATE INDEX ON bench_snapshots(event_id, snapshot_at DESC);
"""

_BASELINE = """
INSERT INTO bench_snapshots (event_id, snapshot_at, probability, signal_count)
SELECT event_id, date_trunc('hour', fetched_at) + interval '1 hour',
       avg(value) FILTER (WHERE signal_type = 'MARKET_PRICE'), count(*)
FROM prediction_signals
WHERE fetched_at >= %(start)s AND fetched_at < %(end)s
GROUP BY 1, 2
"""


def main() -> None:
    end = START + timedelta(hours=HOURS)
    params = {"events": EVENTS, "hours": HOURS, "signals": SIGNALS, "start": START, "end": end}
    with fresh_database() as url:
        with connect(url, role=None, autocommit=True) as admin:
            for statement in _SEED_SQL.split(";\n\n"):
                admin.execute(statement, params)
            admin.execute(_BASELINE_TABLE)
            admin.execute("VACUUM ANALYZE")
            signals = admin.execute("SELECT count(*) FROM prediction_signals").fetchone()[0]
        ours, baseline = [], []
        for _ in range(2):
            with connect(url, role=None, autocommit=True) as admin:
                admin.execute("TRUNCATE bench_snapshots")
                started = time.perf_counter()
                with admin.transaction():
                    rows = admin.execute(_BASELINE, params).rowcount
                baseline.append(time.perf_counter() - started)
            with connect(url, role=PIPELINE_ROLE, autocommit=True) as conn:
                started = time.perf_counter()
                with conn.transaction():
                    batch = compute_snapshots(conn, START, end)
                ours.append(time.perf_counter() - started)
    ratio = min(ours) / min(baseline)
    print(f"snapshots: ratio {ratio:.2f} (target <= 1.15)")
    print(
        f"  snapshot step: {min(ours):.2f} s for {batch.snapshots:,} snapshots of "
        f"{batch.events:,} events from {signals:,} signals (state of every event updated)"
    )
    print(f"  baseline INSERT ... SELECT avg() GROUP BY: {min(baseline):.2f} s for {rows:,} rows")


if __name__ == "__main__":
    main()
