"""Market edges (sql/0135): written by the snapshot statement, against an independent pandas
computation from the signals; replaced on a re-run, atomic with the snapshots, partitioned and
dropped like them, and visible only with their event."""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import psycopg
import pytest

from predict_pipeline.db.connection import MAINTENANCE_ROLE, connect
from predict_pipeline.retention.partitions import ensure_partitions
from predict_pipeline.retention.policy import RetentionPolicy
from predict_pipeline.retention.snapshots import prune_snapshots
from predict_pipeline.snapshots.compute import CLIP_EPSILON, PoolingSettings, compute_snapshots
from tests.support.feeds import USER_ID
from tests.support.tenants import as_user

T0 = datetime(2026, 11, 22, 6, tzinfo=UTC)
HOURS = 6
END = T0 + timedelta(hours=HOURS)
SOURCES = ("polymarket", "kalshi", "manifold")
EDGE_COLUMNS = "event_id, source, source_event_id, price, observed_at, pooled_probability, edge"


def _event(conn, slug: str, **columns) -> uuid.UUID:
    names = "".join(f", {c}" for c in columns)
    marks = "".join(", %s" for _ in columns)
    return conn.execute(
        f"INSERT INTO prediction_events (title, slug{names}) VALUES (%s, %s{marks})"  # noqa: S608
        " RETURNING id",
        (f"Event {slug}", slug, *columns.values()),
    ).fetchone()[0]


def _insert_signals(conn, signals: list[dict]) -> None:
    conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (T0, END))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type,"
            " value, weight, reliability, fetched_at) VALUES (%(event_id)s, %(source)s,"
            " %(market)s, %(kind)s, %(value)s, %(weight)s, %(reliability)s, %(at)s)",
            signals,
        )


def _world(conn, rng: random.Random) -> tuple[list[uuid.UUID], list[dict]]:
    """Events with 1-4 markets each, quoted in random intervals (several quotes in some, none in
    others), expert opinions without a market, sentiment, and an event whose only quotes are in
    its first interval (its later intervals are carried forward)."""
    events = [_event(conn, f"e{i}") for i in range(6)]
    signals: list[dict] = []
    for i, event in enumerate(events):
        markets = [(rng.choice(SOURCES), f"m{i}-{k}") for k in range(rng.randint(1, 4))]
        for hour in range(HOURS):
            if i == 0 and hour > 0:
                break  # carried forward from its first interval on
            for source, market in markets:
                if i and rng.random() < 0.3:
                    continue  # this market is missing in this interval
                # Distinct 5-minute buckets: the signals' dedup key allows one each.
                for bucket in rng.sample(range(12), rng.randint(1, 3)):
                    at = T0 + timedelta(hours=hour, minutes=5 * bucket + rng.randint(0, 4))
                    signals.append(
                        {
                            "event_id": event,
                            "source": source,
                            "market": market,
                            "kind": "MARKET_PRICE",
                            "value": Decimal(rng.randint(0, 10_000)) / 10_000,
                            "weight": rng.choice([0.5, 1.0, 2.0]),
                            "reliability": rng.choice([0.8, 1.0]),
                            "at": at,
                        }
                    )
            if rng.random() < 0.5:
                signals.append(
                    {
                        "event_id": event,
                        "source": "expert-panel",
                        "market": None,
                        "kind": "EXPERT",
                        "value": Decimal(rng.randint(1, 99)) / 100,
                        "weight": 1.0,
                        "reliability": 1.0,
                        "at": T0 + timedelta(hours=hour, minutes=rng.randint(0, 59)),
                    }
                )
            signals.append(
                {
                    "event_id": event,
                    "source": "news",
                    "market": None,
                    "kind": "SENTIMENT",
                    "value": Decimal(rng.randint(-100, 100)) / 100,
                    "weight": 1.0,
                    "reliability": 1.0,
                    "at": T0 + timedelta(hours=hour, minutes=rng.randint(0, 59)),
                }
            )
    _insert_signals(conn, signals)
    return events, signals


def _expected_edges(signals: list[dict], half_life_minutes: float = 60.0) -> pd.DataFrame:
    """Each market's latest price per interval and the interval's pooled probability, from the
    signals alone (the pooling formula of snapshots/compute.py, re-derived in pandas)."""
    frame = pd.DataFrame(signals)
    frame["value"] = frame["value"].astype(float)
    frame["snapshot_at"] = frame["at"].dt.floor("h") + pd.Timedelta(hours=1)
    probs = frame[frame["kind"].isin(["MARKET_PRICE", "EXPERT"])].copy()
    age = (probs["snapshot_at"] - probs["at"]).dt.total_seconds() / 60
    probs["w"] = probs["weight"] * probs["reliability"] * 0.5 ** (age / half_life_minutes)
    clipped = probs["value"].clip(CLIP_EPSILON, 1 - CLIP_EPSILON)
    probs["wl"] = probs["w"] * (clipped / (1 - clipped)).map(math.log)
    pooled = probs.groupby(["event_id", "snapshot_at"])[["wl", "w"]].sum()
    pooled["pooled"] = 1 / (1 + (-(pooled["wl"] / pooled["w"])).map(math.exp))
    quotes = frame[frame["kind"] == "MARKET_PRICE"].sort_values("at")
    latest = quotes.groupby(["event_id", "snapshot_at", "source", "market"]).tail(1)
    return latest.merge(pooled["pooled"].reset_index(), on=["event_id", "snapshot_at"])


def _stored(conn) -> pd.DataFrame:
    rows = conn.execute(
        f"SELECT {EDGE_COLUMNS}, snapshot_at FROM prediction_market_edges"  # noqa: S608
        " ORDER BY event_id, snapshot_at, source, source_event_id"
    ).fetchall()
    return pd.DataFrame(rows, columns=[*EDGE_COLUMNS.split(", "), "snapshot_at"])


def _run(conn, start=T0, end=END):
    with conn.transaction():
        return compute_snapshots(conn, start, end, PoolingSettings())


@pytest.mark.parametrize("seed", [1, 2])
def test_edges_equal_an_independent_pandas_computation(conn, seed):
    events, signals = _world(conn, random.Random(seed))
    batch = _run(conn)
    expected = _expected_edges(signals)
    stored = _stored(conn)

    assert batch.market_edges == len(stored) == len(expected) > 0
    keys = ["event_id", "snapshot_at", "source", "market"]
    merged = stored.rename(columns={"source_event_id": "market"}).merge(
        expected, on=keys, how="outer", indicator=True, validate="one_to_one"
    )
    assert (merged["_merge"] == "both").all()
    # Some market of the events quoted throughout is missing in some interval.
    quoted = expected[expected["event_id"] != events[0]].groupby(["event_id", "market"]).size()
    assert (quoted < HOURS).any()
    assert (merged["price"] == merged["value"].map(lambda v: Decimal(str(v)))).all()
    assert (merged["observed_at"] == merged["at"]).all()
    # The pool is the snapshot's stored probability (4 decimals) of the pandas pooling.
    assert (merged["pooled_probability"].astype(float) - merged["pooled"]).abs().max() <= 5e-5
    assert (merged["edge"] == merged["price"] - merged["pooled_probability"]).all()
    snapshots = {
        (event, at): probability
        for event, at, probability in conn.execute(
            "SELECT event_id, snapshot_at, probability FROM prediction_snapshots"
        )
    }
    for row in stored.itertuples():
        assert row.pooled_probability == snapshots[(row.event_id, row.snapshot_at)]
    # The event quoted only in its first interval: snapshots carried forward, no edges after.
    carried = conn.execute(
        "SELECT count(*) FROM prediction_snapshots WHERE event_id = %s AND snapshot_at > %s",
        (events[0], T0 + timedelta(hours=1)),
    ).fetchone()[0]
    assert carried == HOURS - 1
    assert not (
        (stored["event_id"] == events[0]) & (stored["snapshot_at"] > T0 + timedelta(hours=1))
    ).any()


def test_a_rerun_replaces_the_intervals_edges(conn):
    _world(conn, random.Random(3))
    first = _run(conn)
    before = _stored(conn)
    again = _run(conn)
    assert again.market_edges == first.market_edges == len(_stored(conn))
    assert _stored(conn).equals(before)
    # A re-run of one interval replaces that interval only.
    _run(conn, T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    assert _stored(conn).equals(before)


def test_a_failed_snapshot_write_leaves_no_edges(conn, admin_conn):
    events, _ = _world(conn, random.Random(4))
    _run(conn, T0, T0 + timedelta(hours=3))
    before = _stored(conn)
    admin_conn.execute(
        "CREATE FUNCTION refuse_snapshot() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'snapshot refused'; END $$"
    )
    admin_conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON prediction_snapshots FOR EACH ROW"
        " WHEN (NEW.snapshot_at > '2026-11-22 10:00:00+00') EXECUTE FUNCTION refuse_snapshot()"
    )
    with pytest.raises(psycopg.errors.RaiseException, match="snapshot refused"):
        _run(conn)
    # Neither the snapshots of the failed batch nor their edges: what was there stays.
    assert _stored(conn).equals(before)
    assert len(before) > 0
    assert conn.execute(
        "SELECT count(*) FROM prediction_market_edges WHERE snapshot_at > %s",
        (T0 + timedelta(hours=3),),
    ).fetchone() == (0,)


def _edge_partitions(conn) -> set[str]:
    return {
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'prediction_market_edges'::regclass"
        )
    }


def test_partitions_are_made_with_the_snapshots_and_dropped_with_them(conn, admin_conn, db_url):
    _world(conn, random.Random(5))
    batch = _run(conn)
    assert "prediction_market_edges_y2026m11" in _edge_partitions(conn)
    # Maintenance keeps the edges' months coming like the snapshots'.
    ahead = datetime(2031, 1, 15, tzinfo=UTC)
    with connect(db_url, role=MAINTENANCE_ROLE, autocommit=True) as maint:
        made = ensure_partitions(maint, ahead, 1, dry_run=False)
        names = made.details["created_partition_names"]
        assert {"prediction_market_edges_y2031m01", "prediction_market_edges_y2031m02"} <= set(
            names
        )
        # Two years after November 2026: its partitions go, snapshots' and edges' alike.
        report = prune_snapshots(
            maint, RetentionPolicy(), datetime(2028, 12, 2, tzinfo=UTC), dry_run=False
        )
    assert "prediction_market_edges_y2026m11" in report.details["dropped_partition_names"]
    assert "prediction_snapshots_y2026m11" in report.details["dropped_partition_names"]
    assert report.counts["market_edges_dropped_with_partitions"] == batch.market_edges
    assert report.counts["snapshots_dropped_with_partitions"] == batch.snapshots
    assert "prediction_market_edges_y2026m11" not in _edge_partitions(admin_conn)
    assert "prediction_market_edges_y2031m01" in _edge_partitions(admin_conn)


def test_a_user_not_seeing_the_event_sees_none_of_its_edges(conn, db_url):
    outsider = uuid.uuid4()
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'out@example.com')", (outsider,))
    private = _event(conn, "private", is_public=False, created_by=USER_ID)
    public = _event(conn, "public", is_public=True)
    signals = [
        {
            "event_id": event,
            "source": "polymarket",
            "market": f"m-{event.hex[:6]}",
            "kind": "MARKET_PRICE",
            "value": Decimal("0.7"),
            "weight": 1.0,
            "reliability": 1.0,
            "at": T0 + timedelta(minutes=30),
        }
        for event in (private, public)
    ]
    _insert_signals(conn, signals)
    _run(conn, T0, T0 + timedelta(hours=1))
    query = "SELECT event_id FROM prediction_market_edges ORDER BY event_id"
    with as_user(db_url, USER_ID) as owner:
        assert {e for (e,) in owner.execute(query)} == {private, public}
    with as_user(db_url, outsider) as other:
        assert {e for (e,) in other.execute(query)} == {public}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute("DELETE FROM prediction_market_edges")


def test_deleting_an_event_deletes_its_edges(conn, admin_conn):
    events, _ = _world(conn, random.Random(6))
    _run(conn)
    kept = conn.execute(
        "SELECT count(*) FROM prediction_market_edges WHERE event_id <> %s", (events[1],)
    ).fetchone()[0]
    assert kept > 0
    admin_conn.execute("DELETE FROM prediction_events WHERE id = %s", (events[1],))
    assert conn.execute(
        "SELECT count(*) FROM prediction_market_edges WHERE event_id = %s", (events[1],)
    ).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM prediction_market_edges").fetchone() == (kept,)
