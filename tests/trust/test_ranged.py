"""A ranged (backfill) run of trust_scores writes exactly the rows its hours' single runs write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from predict_pipeline.defs.partitions import HOURLY

START = datetime(2026, 11, 22, 12, tzinfo=UTC)
HOURS = 6
END = START + timedelta(hours=HOURS)
EVENTS = 8
RESOLVED = 7  # resolved before the range: in the first hours' trailing window, not the later's

# Every event trades every hour from a day before the range: prices on three markets, period
# volumes, a Manifold bet (account-level trade), a sentiment score and a social post, news every
# sixth hour. Deterministic anomalies: 12x volume bursts without a price move, one account
# round-tripping bets, six accounts posting the same text; the first four events have snapshots
# (snapshot volume basis), the others are read from their VOLUME signals.
_SEED = [
    """INSERT INTO prediction_events (id, title, slug, status, resolution_date, resolved_at)
       SELECT md5('ranged' || e)::uuid, 'Ranged ' || e, 'ranged-' || e,
              CASE WHEN e = %(resolved)s THEN 'RESOLVED_YES' ELSE 'ACTIVE' END,
              %(end)s::timestamptz + interval '30 days',
              CASE WHEN e = %(resolved)s
                   THEN %(start)s::timestamptz - interval '21 hours 30 minutes' END
       FROM generate_series(0, %(events)s::int - 1) e""",
    """INSERT INTO prediction_resolutions (event_id, outcome, resolved_at)
       SELECT md5('ranged' || %(resolved)s)::uuid, 'YES',
              %(start)s::timestamptz - interval '21 hours 30 minutes'""",
    """CREATE TEMP TABLE ranged_hours AS
       SELECT e, h, %(start)s::timestamptz + make_interval(hours => h) AS at,
              0.3 + 0.05 * e + 0.02 * sin(h / 5.0 + e)
                + CASE WHEN e = 4 AND h >= 2 THEN 0.25 ELSE 0 END AS p,
              exp(6 + 0.2 * sin(h * 1.7 + e)) * CASE WHEN (e * 5 + h) %% 13 = 0 AND h >= 0
                                                     THEN 12 ELSE 1 END AS volume,
              (e * 7 + h * 3) %% 20 AS account
       FROM generate_series(0, %(events)s::int - 1) e,
            generate_series(-24, %(hours)s::int - 1) h""",
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, narrative, raw_data)
       SELECT md5('ranged' || b.e)::uuid, s.source, s.market, s.signal_type, s.value, 1.0,
              s.reliability, b.at + s.after, s.narrative, s.raw_data
       FROM ranged_hours b
       CROSS JOIN LATERAL (
         SELECT round(b.p::numeric, 4) AS pp,
                CASE WHEN (b.account + b.h) %% 2 = 0 THEN 'YES' ELSE 'NO' END AS outcome,
                10 + (b.e + b.h + 24) %% 90 AS amount
       ) x
       CROSS JOIN LATERAL (VALUES
         ('polymarket', 'pm-' || b.e, 'MARKET_PRICE', x.pp, 0.9, interval '2 min', NULL::text,
          '{}'::jsonb),
         ('polymarket', 'pm-' || b.e, 'VOLUME', round((b.volume / 1000)::numeric, 4), 0.9,
          interval '3 min', NULL, '{}'),
         ('kalshi', 'KX-' || b.e, 'MARKET_PRICE', round((b.p + 0.01)::numeric, 4), 0.9,
          interval '59 min', NULL, '{}'),
         ('manifold', 'mf-' || b.e, 'MARKET_PRICE', round((b.p - 0.015)::numeric, 4), 0.7,
          make_interval(mins => 10 + b.account), NULL,
          jsonb_build_object('id', 'bet-' || b.e || '-' || b.h, 'userId', 'user' || b.account,
                             'outcome', x.outcome, 'amount', x.amount)),
         ('news-sentiment', 'ns-' || b.e, 'SENTIMENT',
          round((0.6 * sin(b.h / 11.0 + b.e))::numeric, 4), 0.6, interval '7 min', NULL, '{}'),
         ('microblog', 'mb-' || b.e, 'SOCIAL', round((0.5 * sin(b.h / 11.0 + b.e))::numeric, 4),
          0.4, make_interval(mins => 20 + (b.e + b.h + 24) %% 35),
          'Watching event ' || b.e || ' at hour ' || b.h || ': '
            || (ARRAY['traders', 'polls', 'insiders', 'the desk'])[1 + (b.h + 24) %% 4]
            || ' expect a ' || (ARRAY['yes', 'no', 'late', 'surprise'])[1 + (b.e + b.h + 24) %% 4],
          jsonb_build_object('username', 'acct' || ((b.e * 31 + b.h) %% 500)))
       ) s(source, market, signal_type, value, reliability, after, narrative, raw_data)
       -- the resolved event's markets stop at its resolution; only posts keep arriving
       WHERE b.e <> %(resolved)s OR b.at < %(start)s::timestamptz - interval '22 hours'
          OR s.signal_type = 'SOCIAL'""",
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, narrative, raw_data)
       SELECT md5('ranged' || b.e)::uuid, 'newswire', 'nw-' || b.e, 'NEWS',
              round((0.5 * sin(b.h / 11.0 + b.e))::numeric, 4), 1.0, 0.8, b.at + interval '5 min',
              'Report ' || b.h || ' on ranged event ' || b.e, '{}'
       FROM ranged_hours b WHERE (b.h + b.e + 24) %% 6 = 0 AND b.e <> %(resolved)s""",
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, raw_data)
       SELECT md5('ranged' || b.e)::uuid, 'manifold', 'mf-' || b.e, 'MARKET_PRICE',
              round(b.p::numeric, 4), 1.0, 0.7, b.at + make_interval(mins => 32 + 5 * n),
              jsonb_build_object('id', 'wash-' || b.e || '-' || b.h || '-' || n,
                                 'userId', 'washer' || b.e,
                                 'outcome', CASE WHEN n %% 2 = 0 THEN 'YES' ELSE 'NO' END,
                                 'amount', 500)
       FROM ranged_hours b, generate_series(0, 3) n WHERE (b.e, b.h) IN ((2, 1), (5, 3))""",
    """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
         weight, reliability, fetched_at, narrative, raw_data)
       SELECT md5('ranged' || b.e)::uuid, (ARRAY['microblog', 'forum', 'video'])[1 + n %% 3],
              'post-' || n, 'SOCIAL', 0.9, 1.0, 0.4,
              b.at + make_interval(mins => 45, secs => 90 * n),
              'Everyone is buying YES on event ' || b.e || ' before the announcement, get in now',
              jsonb_build_object('username', 'coord' || b.e || '-' || n)
       FROM ranged_hours b, generate_series(0, 5) n WHERE (b.e, b.h) IN ((3, 2), (6, 4))""",
    """INSERT INTO prediction_snapshots (event_id, probability, volume, signal_count, snapshot_at)
       SELECT md5('ranged' || e)::uuid, round(p::numeric, 4), round(volume), 6,
              at + interval '1 hour'
       FROM ranged_hours WHERE e < 4""",
    "DROP TABLE ranged_hours",
]

_SCORES = """
SELECT event_id, computed_at, overall_score, manipulation_risk, market_integrity,
       sentiment_authenticity, source_diversity, volume_consistency, temporal_consistency,
       flagged_activity, flag_count
FROM prediction_trust_scores ORDER BY event_id, computed_at"""
_FLAGS = """
SELECT f.event_id, f.flag_type, f.evidence->>'dedup_key', t.computed_at, f.severity,
       f.description, f.evidence, f.related_signals, f.reviewed
FROM prediction_trust_flags f LEFT JOIN prediction_trust_scores t ON t.id = f.trust_score_id
ORDER BY f.event_id, f.flag_type, f.evidence->>'dedup_key'"""
_EVENTS = "SELECT id, trust_score, previous_trust_score FROM prediction_events ORDER BY id"
_SNAPSHOTS = "SELECT event_id, snapshot_at, trust_score FROM prediction_snapshots ORDER BY 1, 2"


@pytest.fixture
def markets(conn: psycopg.Connection) -> None:
    history = START - timedelta(days=1)
    conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (history, END))
    conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (history, END))
    params = {"start": START, "end": END, "hours": HOURS, "events": EVENTS, "resolved": RESOLVED}
    for statement in _SEED:
        conn.execute(statement, params)


def _written(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {
        name: conn.execute(sql).fetchall()
        for name, sql in (
            ("scores", _SCORES),
            ("flags", _FLAGS),
            ("events", _EVENTS),
            ("snapshots", _SNAPSHOTS),
        )
    }


def _materialize(db_url: str, instance, block_hours: int = 48, **selection) -> None:
    import dagster as dg

    from predict_pipeline.defs.resources import PostgresResource
    from predict_pipeline.defs.trust import trust_scores

    result = dg.materialize(
        [trust_scores],
        instance=instance,
        resources={"database": PostgresResource(url=db_url)},
        run_config={"ops": {"trust_scores": {"config": {"read_block_hours": block_hours}}}},
        **selection,
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())


def _key(at: datetime) -> str:
    return HOURLY.get_partition_key_for_timestamp(at.timestamp())


@pytest.mark.parametrize("block_hours", [48, 4])
def test_a_ranged_run_writes_exactly_what_its_single_hours_write(
    conn, db_url, markets, dagster_instance, block_hours
):
    """In one block of reads, and in blocks of 4 hours (two reads of the six hours)."""
    _materialize(
        db_url,
        dagster_instance,
        block_hours,
        tags={
            "dagster/asset_partition_range_start": _key(START),
            "dagster/asset_partition_range_end": _key(END - timedelta(hours=1)),
        },
    )
    ranged = _written(conn)
    conn.execute("DELETE FROM prediction_trust_flags")
    conn.execute("DELETE FROM prediction_trust_scores")
    conn.execute("UPDATE prediction_events SET trust_score = NULL, previous_trust_score = NULL")
    conn.execute("UPDATE prediction_snapshots SET trust_score = NULL")
    for hour in range(HOURS):
        _materialize(db_url, dagster_instance, partition_key=_key(START + timedelta(hours=hour)))
    single = _written(conn)

    # The data exercise what the equality is about: every hour scored, flags of several
    # types in several hours, and the resolved event scored only while in the look-back.
    scored_hours = {row[1] for row in ranged["scores"]}
    assert scored_hours == {START + timedelta(hours=h + 1) for h in range(HOURS)}
    assert {row[1] for row in ranged["flags"]} >= {"VOLUME_SPIKE", "WASH_TRADING"}
    assert len({row[3] for row in ranged["flags"]}) >= 3
    resolved = [r[1] for r in ranged["scores"] if r[0] == _event_id(conn, RESOLVED)]
    assert resolved and len(resolved) < HOURS
    # the ranged run leaves no snapshot of its hours without the hour's trust score
    in_range = [s for s in ranged["snapshots"] if START < s[1] <= END]
    assert len(in_range) == 4 * HOURS
    overall = {(r[0], r[1]): r[2] for r in ranged["scores"]}
    assert all(s[2] is not None and s[2] == overall[(s[0], s[1])] for s in in_range)

    for name in ranged:
        assert ranged[name] == single[name], name


def _event_id(conn: psycopg.Connection, e: int):
    return conn.execute("SELECT md5('ranged' || %s::int)::uuid", (e,)).fetchone()[0]
