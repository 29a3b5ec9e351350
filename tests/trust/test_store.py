"""Trust scores and flags written for real: re-runs never duplicate, reviews are kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from predict_pipeline.trust import TrustConfig, compute_trust
from predict_pipeline.trust.store import load_inputs, review_flag, save_trust, unreviewed_flags
from tests.support.feeds import USER_ID

START = datetime(2026, 11, 22, 12, tzinfo=UTC)
END = START + timedelta(hours=1)
CONFIG = TrustConfig(snapshot_stamp="end")


@pytest.fixture
def spiking(conn: psycopg.Connection) -> uuid.UUID:
    """An event trading ~1,000 an hour for a day, then 60,000 in the scored hour while its
    price stays put: a volume spike, and volume without price impact (wash-trading pattern)."""
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Spike', 'spike') RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "SELECT predict_ensure_snapshot_partitions(%s, %s)", (START - timedelta(days=1), END)
    )
    conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)", (START - timedelta(days=1), END)
    )
    for hour in range(-24, 1):
        at = START + timedelta(hours=hour)
        volume = 60_000 if hour == 0 else 1_000 + 37 * (hour % 5)
        conn.execute(
            "INSERT INTO prediction_snapshots (event_id, probability, volume, signal_count,"
            " snapshot_at) VALUES (%s, %s, %s, 2, %s)",
            (event, 0.50 + 0.002 * (hour % 3), volume, at + timedelta(hours=1)),
        )
        for source, price in (("kalshi", 0.50), ("polymarket", 0.51)):
            conn.execute(
                "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type,"
                " value, weight, reliability, fetched_at)"
                " VALUES (%s, %s, %s, 'MARKET_PRICE', %s, 1, 0.9, %s)",
                (
                    event,
                    source,
                    f"{source}-spike",
                    price + 0.002 * (hour % 3),
                    at + timedelta(minutes=30),
                ),
            )
    return event


def _score(conn):
    signals, snapshots, events = load_inputs(conn, START, END, CONFIG)
    result = compute_trust(
        signals, snapshots, events, interval_start=START, interval_end=END, config=CONFIG
    )
    with conn.transaction():
        return result, save_trust(conn, result, END)


def test_volume_spike_is_flagged_scored_and_rerun_without_duplicates(conn, spiking):
    result, written = _score(conn)
    assert [f.flag_type for f in result.flags] == ["VOLUME_SPIKE", "WASH_TRADING"]
    assert (written.scores, written.flags_new) == (1, 2)
    score = conn.execute(
        "SELECT volume_consistency::float8, flagged_activity, flag_count, overall_score::float8"
        " FROM prediction_trust_scores WHERE event_id = %s",
        (spiking,),
    ).fetchone()
    assert score[0] < 0.5 and score[1] is True and score[2] == 2
    assert conn.execute(
        "SELECT trust_score::float8 FROM prediction_events WHERE id = %s", (spiking,)
    ).fetchone() == (score[3],)
    flag = conn.execute("SELECT evidence, related_signals FROM prediction_trust_flags").fetchone()
    assert flag[0]["dedup_key"] == result.flags[0].dedup_key
    assert set(map(str, flag[1])) <= {
        str(i) for (i,) in conn.execute("SELECT id FROM prediction_signals")
    }
    _, again = _score(conn)
    assert (again.flags_new, again.flags_updated) == (0, 2)
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM prediction_trust_flags),"
        " (SELECT count(*) FROM prediction_trust_scores)"
    ).fetchone()
    assert counts == (2, 1)


def test_a_reviewed_flag_keeps_its_review(conn, spiking):
    _score(conn)
    flag_id = next(f[0] for f in unreviewed_flags(conn) if f[3] == "VOLUME_SPIKE")
    review_flag(conn, flag_id, notes="known news: a televised debate", reviewer=USER_ID, now=END)
    _, again = _score(conn)
    assert again.flags_kept_reviewed == 1
    review = conn.execute(
        "SELECT reviewed, reviewed_by, review_notes FROM prediction_trust_flags WHERE id = %s",
        (flag_id,),
    ).fetchone()
    assert review == (True, USER_ID, "known news: a televised debate")
    with pytest.raises(LookupError, match="already reviewed"):
        review_flag(conn, flag_id, notes="again", reviewer=USER_ID, now=END)
    assert conn.execute(
        "SELECT count(*) FROM prediction_audit_log WHERE action = 'trust_flag.reviewed'"
    ).fetchone() == (1,)


def test_trust_asset_materialises_with_its_checks(conn, db_url, spiking, dagster_instance):
    import dagster as dg

    from predict_pipeline.defs.resources import PostgresResource
    from predict_pipeline.defs.trust import trust_scores

    result = dg.materialize(
        [trust_scores],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
        partition_key=START.strftime("%Y-%m-%d-%H:%M"),
    )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"every_active_event_scored": True, "components_within_unit_interval": True}
    [materialization] = result.asset_materializations_for_node("trust_scores")
    assert materialization.metadata["flags_by_type"].value == {
        "VOLUME_SPIKE": 1,
        "WASH_TRADING": 1,
    }


def test_a_ranged_run_gives_each_snapshot_its_hours_trust_score(
    conn, db_url, spiking, dagster_instance
):
    """A backfill writes every snapshot of its range before any trust score exists; the trust
    step then sets each snapshot's trust_score to the score of the hour it closes."""
    import dagster as dg

    from predict_pipeline.defs.partitions import HOURLY
    from predict_pipeline.defs.resources import PostgresResource
    from predict_pipeline.defs.trust import trust_scores

    first = START - timedelta(hours=2)
    conn.execute("UPDATE prediction_snapshots SET trust_score = NULL")
    result = dg.materialize(
        [trust_scores],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
        tags={
            "dagster/asset_partition_range_start": HOURLY.get_partition_key_for_timestamp(
                first.timestamp()
            ),
            "dagster/asset_partition_range_end": HOURLY.get_partition_key_for_timestamp(
                START.timestamp()
            ),
        },
    )
    assert result.success
    rows = conn.execute(
        """SELECT s.snapshot_at, s.trust_score, t.overall_score
           FROM prediction_snapshots s
           LEFT JOIN prediction_trust_scores t
             ON t.event_id = s.event_id AND t.computed_at = s.snapshot_at
           WHERE s.event_id = %s AND s.snapshot_at > %s ORDER BY s.snapshot_at""",
        (spiking, first),
    ).fetchall()
    assert [r[0] for r in rows] == [first + timedelta(hours=h) for h in (1, 2, 3)]
    assert all(r[1] is not None and r[1] == r[2] for r in rows)
    # Hours outside the range keep what they had (none here).
    [(before,)] = conn.execute(
        "SELECT trust_score FROM prediction_snapshots WHERE event_id = %s AND snapshot_at = %s",
        (spiking, first),
    ).fetchall()
    assert before is None
