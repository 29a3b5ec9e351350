"""trust: the trust stage (trust_scores: five components and seven detectors per event and
hour, scores and flags written, events' trust state updated) for 1,000 events over 336 hourly
partitions (the issue's size; 24 by default, see HOURS) as ONE ranged run, as BACKFILL_POLICY
runs a backfill, against the snapshots step (event_snapshots) on the same signals in the same
run. The trust step reads each block of 48 hours with its 24-hour look-back once and writes it
in a fixed number of statements, then scores each hour from memory: its time grows linearly
with the hours (the per-hour pandas); the snapshots step is one set-based pass with a fixed
part of about 2 s, so the ratio at the default 24 hours understates the one at 336.

Both assets run through Dagster (`dg.materialize`, in process, with the partition-range tags a
backfill run carries, on a Dagster instance stored in Postgres as the project's is); each
step's time is read from the run's step events, so both include their Dagster overhead.

Every event has, every hour: Polymarket and Kalshi prices and period volumes (raw_data as the
adapters keep it: token and price, candle with `volume_scope`), one Manifold bet (its price and
its volume signal, raw_data with `id`, `userId`, `outcome`, signed `amount`: the account-level
trades WASH_TRADING reads), a news-sentiment score and a social post (narrative text, the
account in raw_data), and a NEWS headline every sixth hour: about 8 signals an event-hour,
2.9 million at the issue's size, from a day before the range (whose snapshots are made first,
unmeasured) so every scored hour has its full trailing window. About 1 hour in 100 carries a
12x volume burst without a price move, 1 in 100 an account round-tripping four bets, and
1 in 200 six copies of one post from six accounts, so the detectors raise flags.

Prints `trust: ratio X.XX (target <= 1.5)` = trust step time / snapshots step time.
PREDICT_BENCH_TRUST_EVENTS / _HOURS set the size (default 1,000 events x 24 hours, see
HOURS).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import fresh_database

from predict_pipeline.db.connection import connect

EVENTS = int(os.environ.get("PREDICT_BENCH_TRUST_EVENTS") or 1000)
# The issue's size is 336 hours; seeding its 2.9 million signals and scoring them takes long
# on a 2-core machine (the trust step 0.5-0.9 s an hour at 1,000 events under load, 2-3 s
# before issue 25; mostly per-hour pandas, plus a read of each 48-hour block), so the default
# is the range's first day; PREDICT_BENCH_TRUST_HOURS=336 runs it.
ISSUE_HOURS = 336
HOURS = int(os.environ.get("PREDICT_BENCH_TRUST_HOURS") or 24)
TARGET = 1.5
START = datetime(2026, 11, 2, tzinfo=UTC)

_SEED_SQL = [
    "SELECT setseed(0.2026)",
    """INSERT INTO prediction_events (id, title, slug, resolution_date)
       SELECT md5('event' || e)::uuid, 'Bench event ' || e, 'bench-event-' || e,
              %(end)s::timestamptz + interval '30 days'
       FROM generate_series(0, %(events)s::int - 1) e""",
    "SELECT predict_ensure_signal_partitions(%(history)s, %(end)s)",
    # One row per event and hour, from a day before the range (the trailing window of its
    # first hours): the market's probability (a slow walk around the event's level, with one
    # lasting 8-point move per event inside the range), the hour's volume (log-normal; a 12x
    # burst without a price move in about 1 hour in 100) and the bet's account (k = h + 24).
    """CREATE TEMP TABLE bench_hours AS
       SELECT e, h, h + 24 AS k, %(start)s::timestamptz + make_interval(hours => h) AS at,
              least(0.97, greatest(0.03, 0.2 + 0.6 * ((e * 0.618) - floor(e * 0.618))
                    + 0.08 * sin(h / 17.0 + e) + 0.01 * (random() - 0.5)
                    + CASE WHEN h >= (e * 37) %% %(hours)s::int THEN 0.08 ELSE 0 END)) AS p,
              exp(6 + 0.25 * (random() + random() + random() - 1.5) * 2)
                * CASE WHEN random() < 0.01 AND h >= 0 THEN 12 ELSE 1 END AS volume,
              (e * 7 + (h + 24) * 3) %% 20 AS account, random() AS draw
       FROM generate_series(0, %(events)s::int - 1) e,
            generate_series(-24, %(hours)s::int - 1) h""",
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, narrative, raw_data)
       SELECT md5('event' || b.e)::uuid, s.source, s.market, s.signal_type, s.value, 1.0,
              s.reliability, b.at + s.after, s.narrative, s.raw_data
       FROM bench_hours b
       CROSS JOIN LATERAL (
         SELECT round(b.p::numeric, 4) AS pp,
                CASE WHEN (b.account + b.k) %% 2 = 0 THEN 'YES' ELSE 'NO' END AS outcome,
                CASE WHEN b.draw < 0.5 THEN 1 ELSE -1 END * (10 + (b.e + b.k) %% 90) AS amount
       ) x
       CROSS JOIN LATERAL (VALUES
         ('polymarket', 'pm-' || b.e, 'MARKET_PRICE', x.pp, 0.9, interval '2 min', NULL::text,
          jsonb_build_object('market_id', 'pm-' || b.e, 'token_id', 't' || b.e,
                             'price', x.pp::text)),
         ('polymarket', 'pm-' || b.e, 'VOLUME', round((b.volume / 1000)::numeric, 4), 0.9,
          interval '3 min', NULL,
          jsonb_build_object('market_id', 'pm-' || b.e, 'unit', 'USDC')),
         ('kalshi', 'KX-' || b.e, 'MARKET_PRICE',
          round(least(0.99, greatest(0.01, b.p + 0.01 * sin(b.h + b.e)))::numeric, 4), 0.9,
          interval '59 min', NULL,
          jsonb_build_object('ticker', 'KX-' || b.e, 'period_interval', 60,
                             'end_period_ts', extract(epoch FROM b.at)::bigint + 3600,
                             'price_rule', 'close')),
         ('kalshi', 'KX-' || b.e, 'VOLUME', round((b.volume / 1500)::numeric, 4), 0.9,
          interval '59 min 30 s', NULL,
          jsonb_build_object('ticker', 'KX-' || b.e, 'volume_scope', 'period_contracts')),
         ('manifold', 'mf-' || b.e, 'MARKET_PRICE',
          round(least(0.99, greatest(0.01, b.p - 0.015))::numeric, 4), 0.7,
          make_interval(mins => 10 + b.account), NULL,
          jsonb_build_object('id', 'bet-' || b.e || '-' || b.h, 'userId', 'user' || b.account,
                             'contractId', 'mf-' || b.e, 'outcome', x.outcome,
                             'amount', x.amount, 'probAfter', x.pp)),
         ('manifold', 'mf-' || b.e, 'VOLUME', round(abs(x.amount) / 1000.0, 4), 0.7,
          make_interval(mins => 10 + b.account), NULL,
          jsonb_build_object('id', 'bet-' || b.e || '-' || b.h, 'userId', 'user' || b.account,
                             'contractId', 'mf-' || b.e, 'outcome', x.outcome,
                             'amount', x.amount, 'probAfter', x.pp)),
         ('news-sentiment', 'ns-' || b.e, 'SENTIMENT',
          round((0.6 * sin(b.h / 11.0 + b.e) + 0.1 * (b.draw - 0.5))::numeric, 4), 0.6,
          interval '7 min', NULL, jsonb_build_object('model', 'headline-tone')),
         ('microblog', 'mb-' || b.e, 'SOCIAL',
          round((0.5 * sin(b.h / 11.0 + b.e) + 0.2 * (b.draw - 0.5))::numeric, 4), 0.4,
          make_interval(mins => 20 + (b.e + b.k) %% 35),
          (ARRAY['Odds on', 'Watching', 'Not convinced about', 'Big money moving on',
                 'Hearing rumours on'])[1 + (b.e + b.k) %% 5] || ' event ' || b.e || ': '
            || (ARRAY['traders', 'polls', 'insiders', 'the desk', 'everyone'])[1 + b.k %% 5]
            || ' ' || (ARRAY['expect', 'doubt', 'price in', 'ignore'])[1 + (b.k / 5) %% 4]
            || ' a ' || (ARRAY['yes', 'no', 'late', 'surprise'])[1 + (b.k / 20) %% 4]
            || ' outcome, hour ' || b.h,
          jsonb_build_object('username', 'acct' || ((b.e * 31 + b.k) %% 5000),
                             'platform', 'microblog'))
       ) s(source, market, signal_type, value, reliability, after, narrative, raw_data)""",
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, narrative, raw_data)
       SELECT md5('event' || b.e)::uuid, 'newswire', 'nw-' || b.e, 'NEWS',
              round((0.5 * sin(b.h / 11.0 + b.e))::numeric, 4), 1.0, 0.8,
              b.at + interval '5 min',
              'Report ' || b.h || ' on bench event ' || b.e || ': officials '
                || (ARRAY['confirm', 'deny', 'delay', 'review'])[1 + b.k %% 4] || ' the plan',
              jsonb_build_object('outlet', 'wire' || (b.e %% 7))
       FROM bench_hours b WHERE (b.k + b.e) %% 6 = 0""",
    # Wash trades in about 1 hour in 100: one account flips YES/NO four times in fifteen minutes
    # for far more than the hour's other bet (each bet a price and a volume signal).
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, raw_data)
       SELECT md5('event' || b.e)::uuid, 'manifold', 'mf-' || b.e, kind.signal_type,
              CASE kind.signal_type WHEN 'VOLUME' THEN 0.5 ELSE round(b.p::numeric, 4) END,
              1.0, 0.7, b.at + make_interval(mins => 32 + 5 * n),
              jsonb_build_object('id', 'wash-' || b.e || '-' || b.h || '-' || n,
                                 'userId', 'washer' || b.e, 'contractId', 'mf-' || b.e,
                                 'outcome', CASE WHEN n %% 2 = 0 THEN 'YES' ELSE 'NO' END,
                                 'amount', 500, 'probAfter', round(b.p::numeric, 4))
       FROM bench_hours b, generate_series(0, 3) n,
            (VALUES ('MARKET_PRICE'), ('VOLUME')) kind(signal_type)
       WHERE b.h >= 0 AND b.draw < 0.01""",
    # Coordinated posts in about 1 hour in 200: six accounts on three platforms post the same
    # text within eight minutes.
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, narrative, raw_data)
       SELECT md5('event' || b.e)::uuid, (ARRAY['microblog', 'forum', 'video'])[1 + n %% 3],
              'mb-' || b.e || '-post-' || n, 'SOCIAL', 0.9, 1.0, 0.4,
              b.at + make_interval(mins => 45, secs => 90 * n),
              'Everyone is buying YES on event ' || b.e || ' before the announcement, get in now',
              jsonb_build_object('username', 'coord' || b.e || '-' || n)
       FROM bench_hours b, generate_series(0, 5) n
       WHERE b.h >= 0 AND b.draw BETWEEN 0.5 AND 0.505""",
    "DROP TABLE bench_hours",
]


def _seed(url: str, params: dict) -> int:
    with connect(url, role=None, autocommit=True) as admin:
        for statement in _SEED_SQL:
            admin.execute(statement, params)
        admin.execute("VACUUM ANALYZE")
        return admin.execute("SELECT count(*) FROM prediction_signals").fetchone()[0]


def _run(url: str, assets: list, start: datetime, end: datetime) -> tuple[dict[str, float], bool]:
    """`assets` in one run over the hours [start, end), as a backfill's ranged run; each
    step's seconds, from the run's step events, and whether every asset check passed."""
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from predict_pipeline.db.bootstrap import EVENT_BATCH_SIZE, EVENT_BATCH_VAR
    from predict_pipeline.db.connection import dagster_storage_url
    from predict_pipeline.defs.partitions import HOURLY
    from predict_pipeline.defs.resources import PostgresResource
    from predict_pipeline.defs.storage import storage_config

    os.environ.setdefault(EVENT_BATCH_VAR, EVENT_BATCH_SIZE)  # as `predict-pipeline` sets it
    first = HOURLY.get_partition_key_for_timestamp(start.timestamp())
    last = HOURLY.get_partition_key_for_timestamp((end - timedelta(hours=1)).timestamp())
    overrides = {
        "storage": storage_config(dagster_storage_url(url)),
        "telemetry": {"enabled": False},
    }
    with (
        tempfile.TemporaryDirectory() as home,
        dg.instance_for_test(overrides=overrides, temp_dir=home) as instance,
    ):
        result = dg.materialize(
            assets,
            instance=instance,
            resources={"database": PostgresResource(url=url)},
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        if not result.success:
            failure = next(
                (e.event_specific_data.error.message for e in result.all_events if e.is_failure),
                "unknown failure",
            )
            raise SystemExit(f"trust bench: the ranged run failed: {failure.strip()}")
        stats = {
            s.step_key: s.end_time - s.start_time
            for s in instance.get_run_step_stats(result.run_id)
            if s.start_time and s.end_time
        }
        checks_passed = all(
            e.event_specific_data.passed
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    return stats, checks_passed


_SIZES = """
SELECT (SELECT count(*) FROM prediction_snapshots
        WHERE snapshot_at > %(start)s AND snapshot_at <= %(end)s),
       (SELECT count(*) FROM prediction_trust_scores
        WHERE computed_at > %(start)s AND computed_at <= %(end)s),
       (SELECT count(DISTINCT (event_id, computed_at)) FROM prediction_trust_scores),
       (SELECT count(*) FROM prediction_trust_flags),
       (SELECT count(*) FROM prediction_events WHERE trust_score IS NOT NULL),
       pg_total_relation_size('prediction_trust_scores'),
       pg_total_relation_size('prediction_trust_flags'),
       (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
        WHERE inhparent = 'prediction_snapshots'::regclass),
       (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
        WHERE inhparent = 'prediction_signals'::regclass)
"""


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def main() -> None:
    import dagster as dg

    # The stages' backfill_policy is a beta parameter of Dagster's; its warning is not news here.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    from predict_pipeline.defs.snapshots import event_snapshots
    from predict_pipeline.defs.trust import trust_scores

    end = START + timedelta(hours=HOURS)
    history = START - timedelta(hours=24)
    params = {"events": EVENTS, "hours": HOURS, "start": START, "end": end, "history": history}
    with fresh_database() as url:
        started = time.perf_counter()
        signals = _seed(url, params)
        seeded = time.perf_counter() - started
        # The day before the range gets its snapshots first (not measured), so every scored
        # hour has the full trailing window a running pipeline gives it.
        _run(url, [event_snapshots], history, START)
        stats, checks_passed = _run(url, [event_snapshots, trust_scores], START, end)
        with connect(url, role=None, autocommit=True) as admin:
            (snapshots, scores, distinct, flags, scored_events, *sizes) = admin.execute(
                _SIZES, params
            ).fetchone()
            by_type = admin.execute(
                "SELECT flag_type, count(*) FROM prediction_trust_flags GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
    expected = EVENTS * HOURS
    if snapshots != expected or scores != expected or distinct != scores:
        raise SystemExit(
            f"trust bench: expected {expected:,} snapshots and trust scores, one per event and "
            f"hour; found {snapshots:,} snapshots, {scores:,} scores ({distinct:,} distinct)"
        )
    if scored_events != EVENTS or not checks_passed:
        raise SystemExit(
            f"trust bench: {scored_events:,} of {EVENTS:,} events got a trust score; "
            f"asset checks passed: {checks_passed}"
        )
    snapshot_s, trust_s = stats["event_snapshots"], stats["trust_scores"]
    size = f"{EVENTS:,} events x {HOURS} h"
    if HOURS != ISSUE_HOURS:
        size += f"; the issue's {ISSUE_HOURS} h with PREDICT_BENCH_TRUST_HOURS={ISSUE_HOURS}"
    print(f"trust: ratio {trust_s / snapshot_s:.2f} (target <= {TARGET}) at {size}")
    print(
        f"  trust step {trust_s:.1f} s ({scores:,} scores, {_mib(sizes[0])}; {flags:,} flags, "
        f"{_mib(sizes[1])}: "
        + ", ".join(f"{n:,} {t}" for t, n in by_type)
        + f"); snapshots step {snapshot_s:.1f} s ({snapshots:,} snapshots; table {_mib(sizes[2])}"
        f" with the day before); {signals:,} signals ({_mib(sizes[3])}, seeded in "
        f"{seeded:.0f} s), one ranged run of {HOURS} partitions"
    )


if __name__ == "__main__":
    main()
