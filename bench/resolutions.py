"""resolutions: resolving events from settled markets (event_resolutions' step: read the
settled markets, write the resolutions, close the events, audit each resolution and each new
disagreement, score every new resolution at close and 1/7/30 days before from its signals,
finalise) for 2,000 settled events (10,000 with PREDICT_BENCH_FULL=1), one in ten with
markets that disagree (left open), each with 12 prices from three markets over the 40 days
before close, against a plain `INSERT ... SELECT` of one row per settled event into a table
shaped like prediction_resolutions, in the same run on the same rows.
Prints `resolutions: ratio Y.Y (target <= 250)`, its seconds and the statements it issued.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import FULL, fresh_database

from predict_pipeline.calibration.resolutions import resolve_from_markets
from predict_pipeline.db.connection import PIPELINE_ROLE, connect

EVENTS = 10_000 if FULL else 2_000
# A guard above today's figures (139-177: the baseline is 20-28 ms): scoring each resolution
# at its four horizons is most of the time, and the next speed-up.
TARGET = 250
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
CLOSE = NOW - timedelta(hours=1)

_SEED_SQL = """
INSERT INTO prediction_events (id, title, slug, resolution_date)
SELECT md5('event' || e)::uuid, 'Bench event ' || e, 'bench-event-' || e, %(close)s
FROM generate_series(0, %(events)s::int - 1) e;

SELECT predict_ensure_signal_partitions(%(close)s - interval '41 days', %(close)s);

INSERT INTO predict_meta.market_settlements
  (source, source_event_id, event_id, resolution, resolved_at, last_price, observed_at)
SELECT m.source, m.source || ':' || e, md5('event' || e)::uuid,
       CASE WHEN e %% 10 = 0 AND m.source = 'polymarket' THEN 'NO' ELSE 'YES' END,
       %(close)s, 0.97, %(close)s
FROM generate_series(0, %(events)s::int - 1) e,
     unnest(ARRAY['kalshi', 'polymarket']) AS m(source);

INSERT INTO prediction_signals
  (event_id, source, source_event_id, signal_type, value, weight, reliability, fetched_at)
SELECT md5('event' || e)::uuid, (ARRAY['kalshi', 'polymarket', 'manifold'])[k %% 3 + 1],
       (ARRAY['kalshi', 'polymarket', 'manifold'])[k %% 3 + 1] || ':' || e, 'MARKET_PRICE',
       round((0.2 + 0.6 * random())::numeric, 4), 1.0, 0.9,
       %(close)s - make_interval(hours => (k * 80 + e %% 60)::int)
FROM generate_series(0, %(events)s::int - 1) e, generate_series(0, 11) k;
"""

_BASELINE_TABLE = """
CREATE TABLE bench_resolutions (LIKE prediction_resolutions INCLUDING DEFAULTS INCLUDING INDEXES)
"""

_BASELINE = """
INSERT INTO bench_resolutions (event_id, outcome, outcome_details, market_final_probability,
                               resolution_method, resolved_at, dispute_window_end)
SELECT event_id, min(resolution), 'settled', avg(last_price), 'market_settled', max(resolved_at),
       %(now)s
FROM predict_meta.market_settlements GROUP BY event_id
"""


class _CountingCursor(psycopg.Cursor):
    statements = 0

    def execute(self, *args, **kwargs):
        type(self).statements += 1
        return super().execute(*args, **kwargs)


def main() -> None:
    params = {"events": EVENTS, "close": CLOSE, "now": NOW}
    timings, baseline = [], []
    with fresh_database() as url:
        for _ in range(2):
            with connect(url, role=None, autocommit=True) as admin:
                admin.execute("TRUNCATE prediction_events, predict_meta.market_settlements CASCADE")
                admin.execute("DROP TABLE IF EXISTS bench_resolutions")
                for statement in _SEED_SQL.split(";\n\n"):
                    admin.execute(statement, params)
                admin.execute(_BASELINE_TABLE)
                admin.execute("VACUUM ANALYZE")
                started = time.perf_counter()
                with admin.transaction():
                    admin.execute(_BASELINE, params)
                baseline.append(time.perf_counter() - started)
            with connect(url, role=PIPELINE_ROLE, autocommit=True) as conn:
                _CountingCursor.statements = 0
                conn.cursor_factory = _CountingCursor
                started = time.perf_counter()
                with conn.transaction():
                    report = resolve_from_markets(conn, now=NOW)
                timings.append(time.perf_counter() - started)
    best = min(timings)
    ratio = best / min(baseline)
    print(
        f"resolutions: ratio {ratio:.1f} (target <= {TARGET}) of the plain insert; {best:.2f} s"
        f" against {min(baseline) * 1000:.0f} ms for {len(report.resolved):,} resolved and"
        f" {len(report.conflicts):,} conflicting events, {_CountingCursor.statements} statements"
    )


if __name__ == "__main__":
    main()
