"""prediction_signals partitioned by month (sql/0010): the conversion keeps rows, dedup, foreign
keys, grants and row-level security; writers create the months they need; hot queries prune."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import errors, sql

from predict_pipeline.db.connection import APP_ROLE, PIPELINE_ROLE, connect
from predict_pipeline.db.migrations import discover, upgrade
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.retention.partitions import make_partitions
from predict_pipeline.signals import store
from predict_pipeline.signals.review import resolve_item
from predict_pipeline.signals.stage import validate_window
from tests.support.calendar import FAR
from tests.support.feeds import make_feed

PARTITIONING = 10  # sql/0010_signal_partitions.sql
USER_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
USER_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
COLUMNS = (
    "id, event_id, feed_id, source, source_url, source_event_id, signal_type, value, raw_data,"
    " narrative, weight, reliability, fetched_at, created_at"
)


def _months(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'public.prediction_signals'::regclass ORDER BY 1"
        )
    ]


def _signal(conn, event, at, *, sid: str | None = "KX-1", source="kalshi", feed=None) -> None:
    conn.execute(
        "INSERT INTO prediction_signals (event_id, feed_id, source, source_event_id, signal_type,"
        " value, raw_data, fetched_at) VALUES (%s, %s, %s, %s, 'MARKET_PRICE', 0.5, %s, %s)",
        (event, feed, source, sid, json.dumps({"at": at.isoformat()}), at),
    )


# ---------------------------------------------------------------------------------------
# The conversion of a table with rows


@pytest.fixture
def legacy(empty_db_url) -> dict[str, Any]:
    """A database migrated up to the migration before 0010, with signals in five months."""
    with connect(empty_db_url, role=None, autocommit=True) as conn:
        upgrade(conn, [m for m in discover() if m.version < PARTITIONING])
        assert conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'prediction_signals'::regclass"
        ).fetchone() == ("r",)
        for user, email in ((USER_A, "a@example.com"), (USER_B, "b@example.com")):
            conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (user, email))
        org = conn.execute(
            "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES ('A', 'a', %s) RETURNING id",
            (USER_A,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO prediction_org_members (org_id, user_id, role) VALUES (%s, %s, 'owner')",
            (org, USER_A),
        )
        events = {}
        for slug, public in (("public", True), ("private", False), ("doomed", True)):
            events[slug] = conn.execute(
                "INSERT INTO prediction_events (title, slug, is_public, org_id)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (slug, slug, public, None if public else org),
            ).fetchone()[0]
        feed = conn.execute(
            "INSERT INTO prediction_data_feeds (source_id, user_id, name)"
            " SELECT id, %s, 'kalshi' FROM prediction_data_sources WHERE source_id = 'kalshi'"
            " RETURNING id",
            (USER_A,),
        ).fetchone()[0]
        at = [
            datetime(2025, 1, 15, 8, 0, tzinfo=UTC),
            datetime(2025, 6, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC),  # same key, next bucket and month
            datetime(2027, 3, 3, 3, 3, tzinfo=UTC),
        ]
        for moment in at:
            _signal(conn, events["public"], moment, feed=feed)
            _signal(conn, events["private"], moment, sid="PRIV-1")
            _signal(conn, events["doomed"], moment, sid="DOOM-1")
        for _ in range(2):  # no source_event_id: dedup does not apply
            _signal(conn, events["public"], at[0], sid=None, source="manual")
    return {"url": empty_db_url, "events": events, "feed": feed, "at": at}


def _secure(url: str) -> None:
    """What a later migration might have added: RLS with a policy, and a revoked grant."""
    with connect(url, role=None, autocommit=True) as conn:
        conn.execute("ALTER TABLE prediction_signals ENABLE ROW LEVEL SECURITY")
        conn.execute(
            """CREATE POLICY "Signals of visible events" ON prediction_signals FOR SELECT
               USING (EXISTS (SELECT 1 FROM prediction_events e
                              WHERE e.id = prediction_signals.event_id))"""
        )
        conn.execute("REVOKE DELETE ON prediction_signals FROM predict_app")


def _definition(conn: psycopg.Connection) -> dict[str, Any]:
    """Everything about the table a user or writer can tell apart, besides its key."""
    table = ("public.prediction_signals",)
    return {
        "columns": conn.execute(
            "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
            " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1",
            table,
        ).fetchall(),
        "constraints": conn.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype <> 'p' ORDER BY 1",
            table,
        ).fetchall(),
        "indexes": sorted(
            r[0].replace(" ON ONLY ", " ON ")
            for r in conn.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = %s::regclass AND NOT indisunique",
                table,
            )
        ),
        "grants": sorted(
            conn.execute(
                "SELECT coalesce(r.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable"
                " FROM pg_class c, aclexplode(c.relacl) a"
                " LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE c.oid = %s::regclass",
                table,
            ).fetchall()
        ),
        "owner, rls": conn.execute(
            "SELECT relowner::regrole::text, relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE oid = %s::regclass",
            table,
        ).fetchone(),
        "policies": conn.execute(
            "SELECT policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies"
            " WHERE tablename = 'prediction_signals' ORDER BY 1"
        ).fetchall(),
    }


def _rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(f"SELECT {COLUMNS} FROM prediction_signals ORDER BY id").fetchall()  # noqa: S608


def _outcome(conn: psycopg.Connection, statement: str, params: tuple = ()) -> str:
    """What a statement does, inside a savepoint that is rolled back: rows or the error."""
    try:
        with conn.transaction(force_rollback=True):
            return f"ok {conn.execute(statement, params).rowcount}"
    except psycopg.Error as exc:
        return type(exc).__name__


def _behaviour(url: str, legacy: dict[str, Any]) -> dict[str, Any]:
    """Dedup, foreign keys and visibility, each probed and rolled back."""
    events, feed, at = legacy["events"], legacy["feed"], legacy["at"]
    insert = (
        "INSERT INTO prediction_signals (event_id, feed_id, source, source_event_id, signal_type,"
        " value, fetched_at) VALUES (%s, %s, %s, %s, 'MARKET_PRICE', 0.7, %s)"
    )
    seen: dict[str, Any] = {}
    with connect(url, role=None, autocommit=True) as conn:
        for i, moment in enumerate(at):
            same_bucket = moment + timedelta(seconds=1 if moment.second < 59 else -1)
            seen[f"dup {i}"] = _outcome(
                conn, insert, (events["public"], feed, "kalshi", "KX-1", same_bucket)
            )
            seen[f"dup {i} on conflict"] = _outcome(
                conn,
                insert + " ON CONFLICT DO NOTHING",
                (events["public"], feed, "kalshi", "KX-1", same_bucket),
            )
            seen[f"next bucket {i}"] = _outcome(
                conn,
                insert,
                (events["public"], feed, "kalshi", "KX-1", moment + timedelta(minutes=5)),
            )
        seen["unknown event"] = _outcome(conn, insert, (uuid.uuid4(), None, "kalshi", "X", at[0]))
        seen["unknown feed"] = _outcome(
            conn, insert, (events["public"], uuid.uuid4(), "k", "X", at[0])
        )
        seen["feed with signals deleted"] = _outcome(
            conn, "DELETE FROM prediction_data_feeds WHERE id = %s", (feed,)
        )
        with conn.transaction(force_rollback=True):
            conn.execute("DELETE FROM prediction_events WHERE id = %s", (events["doomed"],))
            seen["after cascade"] = conn.execute(
                "SELECT event_id = %s, count(*) FROM prediction_signals GROUP BY 1 ORDER BY 1",
                (events["doomed"],),
            ).fetchall()
    for role in (APP_ROLE, "predict_readonly"):
        for user in (USER_A, USER_B, None):
            with connect(url, role=role, autocommit=True) as conn:
                conn.execute("SELECT set_config('app.user_id', %s, false)", (str(user or ""),))
                seen[f"visible to {role} as {user}"] = conn.execute(
                    "SELECT event_id, count(*) FROM prediction_signals GROUP BY 1 ORDER BY 1"
                ).fetchall()
    with connect(url, role=APP_ROLE, autocommit=True) as conn:
        seen["app deletes"] = _outcome(conn, "DELETE FROM prediction_signals")
    return seen


@pytest.mark.parametrize("secured", [False, True], ids=["as_migrated", "with_rls_and_revoke"])
def test_conversion_keeps_rows_dedup_foreign_keys_grants_and_visibility(legacy, secured):
    url = legacy["url"]
    if secured:
        _secure(url)
    with connect(url, role=None, autocommit=True) as conn:
        rows, definition = _rows(conn), _definition(conn)
    behaviour = _behaviour(url, legacy)

    with connect(url, role=None, autocommit=True) as conn:
        # The conversion alone: later migrations may change the table on purpose.
        converted = upgrade(conn, [m for m in discover() if m.version <= PARTITIONING])
        assert [m.version for m in converted] == [PARTITIONING]
        assert conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'prediction_signals'::regclass"
        ).fetchone() == ("p",)
        assert _rows(conn) == rows and len(rows) == 17
        assert _definition(conn) == definition
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'prediction_signals'::regclass AND contype = 'p'"
        ).fetchone()
        assert key == ("PRIMARY KEY (id, fetched_at)",)
        now = conn.execute(
            "SELECT to_char(m AT TIME ZONE 'UTC', '\"y\"YYYY\"m\"MM')"
            " FROM (VALUES (now()), (now() + interval '1 month')) AS v(m)"
        ).fetchall()
        expected = {
            "y2025m01",
            "y2025m06",
            "y2026m11",
            "y2026m12",
            "y2027m03",
            *(m for (m,) in now),
        }
        assert _months(conn) == sorted(f"prediction_signals_{m}" for m in expected)
        assert conn.execute(
            "SELECT to_regclass('prediction_signals_unpartitioned')"
        ).fetchone() == (None,)
        by_month = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM prediction_signals"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert by_month == [
            ("prediction_signals_y2025m01", 5),
            ("prediction_signals_y2025m06", 3),
            ("prediction_signals_y2026m11", 3),
            ("prediction_signals_y2026m12", 3),
            ("prediction_signals_y2027m03", 3),
        ]
    after = _behaviour(url, legacy)
    assert after == behaviour
    # The probes mean something: refusals, cascades and (when secured) hidden rows.
    assert behaviour["dup 2"] == "UniqueViolation" and behaviour["dup 2 on conflict"] == "ok 0"
    assert behaviour["next bucket 0"] == "ok 1"
    assert behaviour["next bucket 2"] == "UniqueViolation"  # December's first bucket is taken
    assert behaviour["unknown event"] == behaviour["unknown feed"] == "ForeignKeyViolation"
    assert behaviour["feed with signals deleted"] == "ForeignKeyViolation"
    assert behaviour["after cascade"] == [(False, 12)]
    private = legacy["events"]["private"]
    hidden = {e for e, _ in behaviour[f"visible to {APP_ROLE} as {USER_A}"]} - {
        e for e, _ in behaviour[f"visible to {APP_ROLE} as {USER_B}"]
    }
    assert hidden == ({private} if secured else set())
    assert behaviour["app deletes"] == ("InsufficientPrivilege" if secured else "ok 17")


def test_a_partition_read_directly_shows_no_more_than_the_parent(legacy):
    _secure(legacy["url"])
    with connect(legacy["url"], role=None, autocommit=True) as conn:
        upgrade(conn)
    with connect(legacy["url"], role=APP_ROLE, autocommit=True) as conn:
        conn.execute("SELECT set_config('app.user_id', %s, false)", (str(USER_B),))
        through_parent = conn.execute(
            "SELECT count(*) FROM prediction_signals WHERE fetched_at < '2025-02-01'"
        ).fetchone()[0]
        # Since 0040 the app has no privilege on a partition at all; reporting's role may read
        # one, and its RLS (no policy) shows nothing.
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM prediction_signals_y2025m01")
    with connect(legacy["url"], role="predict_readonly", autocommit=True) as conn:
        direct = conn.execute("SELECT count(*) FROM prediction_signals_y2025m01").fetchone()[0]
    assert (through_parent, direct) == (4, 0)  # the private event's signal is hidden from B


# ---------------------------------------------------------------------------------------
# Dedup: one 5-minute bucket never spans two months


def test_every_month_boundary_is_a_bucket_boundary(admin_conn):
    """Months 1900-2300: each starts a whole number of 5-minute steps after the origin, and
    date_bin agrees from the origin on. Before it, PostgreSQL minor releases without the
    upstream fix (the embedded 16.2) put an exact boundary in the previous bucket (README)."""
    off_the_grid, misbinned = admin_conn.execute(
        """SELECT count(*) FILTER (WHERE mod(extract(epoch FROM t) - extract(epoch FROM o), 300)
                                         <> 0),
                  count(*) FILTER (WHERE t >= o AND date_bin('5 minutes', t, o) <> t)
           FROM generate_series(timestamp '1900-01-01', timestamp '2300-01-01',
                                interval '1 month') AS g(m),
                LATERAL (SELECT m AT TIME ZONE 'UTC' AS t,
                                TIMESTAMPTZ '2000-01-01 00:00:00+00' AS o) AS x"""
    ).fetchone()
    assert (off_the_grid, misbinned) == (0, 0)


@pytest.mark.parametrize("session_zone", ["UTC", "Asia/Kathmandu"])
def test_same_bucket_refused_and_month_boundary_splits_buckets(admin_conn, session_zone):
    admin_conn.execute("SELECT set_config('TimeZone', %s, false)", (session_zone,))
    event = admin_conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('t', 'dedup') RETURNING id"
    ).fetchone()[0]
    last = datetime(FAR - 1, 12, 31, 23, 55, tzinfo=UTC)
    admin_conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)", (last, last + timedelta(days=1))
    )
    _signal(admin_conn, event, last + timedelta(minutes=1))
    with pytest.raises(errors.UniqueViolation, match=f"idx_signals_dedup_y{FAR - 1}m12"):
        _signal(admin_conn, event, last + timedelta(minutes=4, seconds=59, microseconds=999999))
    _signal(admin_conn, event, last + timedelta(minutes=5))  # New Year's midnight: next bucket
    with pytest.raises(errors.UniqueViolation, match=f"idx_signals_dedup_y{FAR}m01"):
        _signal(admin_conn, event, last + timedelta(minutes=9))
    where = admin_conn.execute(
        "SELECT tableoid::regclass::text FROM prediction_signals ORDER BY fetched_at"
    ).fetchall()
    assert where == [(f"prediction_signals_y{FAR - 1}m12",), (f"prediction_signals_y{FAR}m01",)]


def test_every_partition_carries_the_dedup_index(admin_conn):
    admin_conn.execute("SET TimeZone = 'UTC'")  # the index's timestamptz constant is shown in it
    admin_conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)",
        (datetime(FAR + 1, 1, 1, tzinfo=UTC), datetime(FAR + 1, 3, 1, tzinfo=UTC)),
    )
    definitions = admin_conn.execute(
        """SELECT c.relname, replace(pg_get_indexdef(x.indexrelid), c.relname, 'P'),
                  x.indexrelid::regclass::text
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_index x ON x.indrelid = c.oid AND x.indisunique AND NOT x.indisprimary
           WHERE i.inhparent = 'prediction_signals'::regclass ORDER BY 1"""
    ).fetchall()
    assert len(definitions) == len(_months(admin_conn)) >= 5
    for table, definition, index in definitions:
        assert index == table.replace("prediction_signals_", "idx_signals_dedup_")
        assert definition.endswith(
            "ON public.P USING btree (source, source_event_id, signal_type,"
            " date_bin('00:05:00'::interval, fetched_at, '2000-01-01 00:00:00+00'::timestamp"
            " with time zone)) WHERE (source_event_id IS NOT NULL)"
        )


# ---------------------------------------------------------------------------------------
# Writers: a month without a partition gets one first, never loses its rows


def test_a_row_for_a_month_without_partition_is_refused_until_one_is_made(conn):
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('t', 'later') RETURNING id"
    ).fetchone()[0]
    far = datetime(FAR + 3, 7, 4, tzinfo=UTC)
    with pytest.raises(errors.CheckViolation, match="no partition of relation"):
        _signal(conn, event, far)
    assert conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)", (far, far)
    ).fetchall() == [(f"prediction_signals_y{FAR + 3}m07",)]
    _signal(conn, event, far)
    assert (
        conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (far, far)).fetchall() == []
    )
    assert conn.execute("SELECT count(*) FROM prediction_signals").fetchone() == (1,)


def test_concurrent_callers_wait_for_the_first_and_neither_fails(db_url):
    """Two workers reaching a new month at once: the second waits for the first's commit,
    then finds the partition; readers and writers of other months are not held up."""
    month = datetime(FAR + 4, 1, 15, tzinfo=UTC)
    with (
        connect(db_url, role=PIPELINE_ROLE, autocommit=True) as first,
        connect(db_url, role=PIPELINE_ROLE, autocommit=True) as second,
        connect(db_url, role=PIPELINE_ROLE, autocommit=True) as reader,
    ):
        event = reader.execute(
            "INSERT INTO prediction_events (title, slug) VALUES ('t', 'race') RETURNING id"
        ).fetchone()[0]
        reader.execute("SET lock_timeout = '2s'")
        with ThreadPoolExecutor(1) as pool:
            with first.transaction():
                made = make_partitions(first, "prediction_signals", [month])
                waiting = pool.submit(make_partitions, second, "prediction_signals", [month])
                time.sleep(0.3)
                assert not waiting.done()  # blocked behind the first's lock, not failed
                reader.execute("SELECT count(*) FROM prediction_signals").fetchone()
                _signal(reader, event, datetime.now(UTC))  # the current month: not held up
            assert (made, waiting.result(timeout=10)) == ([f"prediction_signals_y{FAR + 4}m01"], [])


def test_stage_writes_batches_for_past_and_future_months_it_creates(conn, landing):
    now = datetime(FAR + 1, 2, 10, 15, 40, tzinfo=UTC)  # validation's clock: that month is the past
    landed_at = datetime.now(UTC)  # land_upload times its feed run by the wall clock
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Rain?', 'rain') RETURNING id"
    ).fetchone()[0]
    feed = make_feed(
        conn, "upload", {}, manual_event_mappings=psycopg.types.json.Jsonb({"rain": str(event)})
    )
    before = _months(conn)
    rows = [
        {"source_event_id": "rain", "signal_type": "MARKET_PRICE", "value": v, "fetched_at": at}
        for v, at in (
            (0.41, "2019-03-10T12:00:00Z"),  # a backfilled observation
            (0.42, f"{FAR + 1}-02-10T15:10:00Z"),  # the window's own month, not made yet
            (0.43, f"{FAR + 1}-05-01T00:00:00Z"),  # in the future: rejected, no partition for it
        )
    ]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    land_upload(conn, landing, load_feed(conn, feed), body, "rain.jsonl", now=lambda: landed_at)
    [report] = validate_window(conn, landing, hour_window(landed_at), now=now)
    assert (report.error, report.written, report.rejected) == (None, 2, 1)
    assert sorted(set(_months(conn)) - set(before)) == [
        "prediction_signals_y2019m03",
        f"prediction_signals_y{FAR + 1}m02",
    ]
    assert conn.execute(
        "SELECT tableoid::regclass::text, value::float8 FROM prediction_signals ORDER BY 2"
    ).fetchall() == [
        ("prediction_signals_y2019m03", 0.41),
        (f"prediction_signals_y{FAR + 1}m02", 0.42),
    ]


def test_partitions_survive_a_failed_write_and_the_rerun_writes_the_rows(conn, landing):
    now = datetime(FAR + 2, 8, 1, 0, 30, tzinfo=UTC)
    landed_at = datetime.now(UTC)
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Snow?', 'snow') RETURNING id"
    ).fetchone()[0]
    feed = make_feed(
        conn, "upload", {}, manual_event_mappings=psycopg.types.json.Jsonb({"snow": str(event)})
    )
    row = {
        "source_event_id": "snow",
        "signal_type": "MARKET_PRICE",
        "value": 0.2,
        "fetched_at": f"{FAR + 2}-08-01T00:10:00Z",
    }
    land_upload(
        conn,
        landing,
        load_feed(conn, feed),
        json.dumps(row).encode(),
        "s.jsonl",
        now=lambda: landed_at,
    )

    def crash() -> None:
        raise RuntimeError("worker lost")

    [failed] = validate_window(
        conn, landing, hour_window(landed_at), now=now, fail_between_copy_and_queue=crash
    )
    assert failed.error == "RuntimeError: worker lost"
    assert conn.execute("SELECT count(*) FROM prediction_signals").fetchone() == (0,)
    assert f"prediction_signals_y{FAR + 2}m08" in _months(conn)  # made in its own transaction
    [again] = validate_window(conn, landing, hour_window(landed_at), now=now)
    assert (again.error, again.written) == (None, 1)


def test_copy_conflict_falls_back_to_on_conflict_do_nothing_across_partitions(conn):
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('t', 'copy') RETURNING id"
    ).fetchone()[0]
    stored = datetime(FAR, 6, 30, 23, 58, tzinfo=UTC)
    conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)", (stored, stored + timedelta(days=1))
    )
    _signal(conn, event, stored)  # a concurrent writer's row, unknown to this batch

    def frame(*moments: datetime) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "event_id": [event] * len(moments),
                "feed_id": [None] * len(moments),
                "source": ["kalshi"] * len(moments),
                "source_url": [None] * len(moments),
                "source_event_id": ["KX-1"] * len(moments),
                "signal_type": ["MARKET_PRICE"] * len(moments),
                "value": [0.6] * len(moments),
                "raw_data": [{"n": i} for i in range(len(moments))],
                "narrative": [None] * len(moments),
                "weight": [1.0] * len(moments),
                "reliability": [0.9] * len(moments),
                "fetched_at": pd.to_datetime(list(moments), utc=True),
            }
        )

    # Two rows of the stored row's bucket, then one of the next bucket, in the next month.
    blocks = [
        frame(stored + timedelta(minutes=1), stored + timedelta(seconds=90)),
        frame(stored + timedelta(minutes=2)),
    ]
    with conn.transaction():
        written = store.copy_signal_blocks(conn, iter(blocks))
    assert [list(flags) for _, flags in written] == [[False, False], [True]]
    assert conn.execute(
        "SELECT tableoid::regclass::text, count(*) FROM prediction_signals GROUP BY 1 ORDER BY 1"
    ).fetchall() == [(f"prediction_signals_y{FAR}m06", 1), (f"prediction_signals_y{FAR}m07", 1)]


def test_review_writes_a_queued_value_of_a_month_without_partition(conn):
    feed = make_feed(conn, "upload", {})
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Old?', 'old') RETURNING id"
    ).fetchone()[0]
    item = conn.execute(
        """INSERT INTO prediction_unmatched_signals
             (feed_id, source_event_id, signal_type, value, raw_data)
           VALUES (%s, 'old-market', 'MARKET_PRICE', 0.3, %s) RETURNING id""",
        (
            feed,
            psycopg.types.json.Jsonb(
                {
                    "source": "upload",
                    "fetched_at": "2018-05-05T05:05:00+00:00",
                    "record": {},
                    "market": {"title": "Old?"},
                }
            ),
        ),
    ).fetchone()[0]
    assert "prediction_signals_y2018m05" not in _months(conn)
    result = resolve_item(conn, item, event_id=event, now=datetime(2026, 11, 22, tzinfo=UTC))
    assert result.signals_written == 1
    assert conn.execute(
        "SELECT tableoid::regclass::text, event_id FROM prediction_signals"
    ).fetchall() == [("prediction_signals_y2018m05", event)]


def test_signal_months_are_utc_months_of_aware_moments_up_to_the_limit():
    from zoneinfo import ZoneInfo

    kiritimati = ZoneInfo("Pacific/Kiritimati")  # UTC+14: its 1 March is February in UTC
    months = store.signal_months(
        [
            datetime(2026, 3, 1, 9, tzinfo=kiritimati),
            pd.Timestamp("2026-04-30T23:59:59Z"),
            datetime(2026, 5, 1),  # naive: rejected by validation
            None,
            "2026-06-01T00:00:00Z",  # not a timestamp: rejected
            datetime(2026, 9, 1, tzinfo=UTC),  # beyond the limit: rejected as future
        ],
        latest=datetime(2026, 8, 31, tzinfo=UTC),
    )
    assert months == {datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)}


@pytest.mark.parametrize(
    ("moments", "expected"),
    [
        (["2026-11-01T00:00:00+00:00", "2026-11-30T23:59:59+00:00"], ["2026-11"]),
        (["2026-11-30T23:00:00+00:00", "2026-12-01T01:00:00-03:00"], ["2026-11", "2026-12"]),
        (["2026-01-05T00:00:00+00:00", "2026-03-05T00:00:00+00:00"], ["2026-01", "2026-03"]),
        (["2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00", None], ["2026-11"]),
        (["2026-11-02T00:00:00+00:00", "2027-02-01T00:00:00+00:00"], ["2026-11"]),
        (
            ["0001-01-01T00:00:00+00:00", "2026-10-15T00:00:00+00:00", "2026-11-02T00:00:00+00:00"],
            ["2026-10", "2026-11"],
        ),
    ],
    ids=[
        "one_month",
        "adjacent_in_utc",
        "gap_not_filled",
        "naive_and_missing",
        "future",
        "out_of_range_makes_none",
    ],
)
def test_stage_makes_exactly_the_months_its_rows_need(moments, expected):
    from types import SimpleNamespace

    from predict_pipeline.signals.frames import RecordBatch
    from predict_pipeline.signals.ingest import _record_months

    records = [SimpleNamespace(fetched_at=m and datetime.fromisoformat(m)) for m in moments]
    batches = [RecordBatch(records[:1]), RecordBatch(records[1:])]
    limit = datetime(2026, 12, 31, tzinfo=UTC)
    assert sorted(f"{m:%Y-%m}" for m in _record_months(batches, limit)) == expected


# ---------------------------------------------------------------------------------------
# Hot queries prune to the months they ask for


def _relations(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= _relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _relations(value)
    return found


def _nodes(plan: Any) -> list[dict]:
    if isinstance(plan, dict):
        return [plan, *(n for v in plan.values() for n in _nodes(v))]
    if isinstance(plan, list):
        return [n for v in plan for n in _nodes(v)]
    return []


@pytest.fixture
def history(admin_conn) -> uuid.UUID:
    """200 events with signals and snapshots every 6 hours over January-April of year FAR."""
    start, end = datetime(FAR, 1, 1, tzinfo=UTC), datetime(FAR, 4, 30, tzinfo=UTC)
    admin_conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (start, end))
    admin_conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (start, end))
    admin_conn.execute(
        """INSERT INTO prediction_events (id, title, slug)
           SELECT md5('e' || n)::uuid, 'e' || n, 'e-' || n FROM generate_series(1, 200) n"""
    )
    admin_conn.execute(
        """INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,
                                           fetched_at)
           SELECT md5('e' || n)::uuid, 'kalshi', 'm' || n, 'MARKET_PRICE', 0.5, t
           FROM generate_series(1, 200) n,
                generate_series(%s::timestamptz, %s::timestamptz, interval '6 hours') t""",
        (start, end),
    )
    admin_conn.execute(
        """INSERT INTO prediction_snapshots (event_id, probability, snapshot_at)
           SELECT md5('e' || n)::uuid, 0.5, t
           FROM generate_series(1, 200) n,
                generate_series(%s::timestamptz, %s::timestamptz, interval '6 hours') t""",
        (start, end),
    )
    admin_conn.execute("ANALYZE prediction_signals")
    admin_conn.execute("ANALYZE prediction_snapshots")
    return admin_conn.execute("SELECT md5('e7')::uuid").fetchone()[0]


LATEST = (
    "SELECT id, value, fetched_at FROM prediction_signals"
    " WHERE event_id = {event} AND fetched_at >= {since} ORDER BY fetched_at DESC LIMIT 20"
)
WINDOW = (
    "SELECT snapshot_at, probability FROM prediction_snapshots"
    " WHERE event_id = {event} AND snapshot_at BETWEEN {start} AND {end} ORDER BY snapshot_at"
)


def _explain(conn: psycopg.Connection, query: str, **params: Any) -> Any:
    statement = sql.SQL("EXPLAIN (FORMAT JSON) " + query).format(
        **{k: sql.Placeholder(k) for k in params}
    )
    return conn.execute(statement, params).fetchone()[0]


def test_latest_signals_of_an_event_scan_only_the_months_asked_for(admin_conn, history):
    plan = _explain(admin_conn, LATEST, event=history, since=datetime(FAR, 3, 10, tzinfo=UTC))
    assert _relations(plan) == {f"prediction_signals_y{FAR}m03", f"prediction_signals_y{FAR}m04"}
    rows = admin_conn.execute(
        sql.SQL(LATEST).format(event=sql.Literal(history), since=sql.Literal(f"{FAR}-03-10Z"))
    ).fetchall()
    assert len(rows) == 20 and rows[0][2] == datetime(FAR, 4, 30, tzinfo=UTC)


def test_snapshot_window_of_an_event_scans_only_its_month(admin_conn, history):
    plan = _explain(
        admin_conn,
        WINDOW,
        event=history,
        start=datetime(FAR, 2, 10, tzinfo=UTC),
        end=datetime(FAR, 2, 20, tzinfo=UTC),
    )
    assert _relations(plan) == {f"prediction_snapshots_y{FAR}m02"}


def test_prepared_generic_plans_prune_when_they_run(admin_conn, history):
    """After five runs psycopg prepares a statement and the server may reuse a generic plan:
    the partitions are then pruned at executor start-up instead of at planning."""
    admin_conn.execute("SET plan_cache_mode = force_generic_plan")
    admin_conn.execute(
        "PREPARE latest(uuid, timestamptz) AS " + LATEST.format(event="$1", since="$2")
    )
    admin_conn.execute(
        "PREPARE snapshot_window(uuid, timestamptz, timestamptz) AS "
        + WINDOW.format(event="$1", start="$2", end="$3")
    )
    latest = admin_conn.execute(
        sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE latest({}, {})").format(
            sql.Literal(history), sql.Literal(f"{FAR}-03-10T00:00:00Z")
        )
    ).fetchone()[0]
    window = admin_conn.execute(
        sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE snapshot_window({}, {}, {})").format(
            sql.Literal(history), sql.Literal(f"{FAR}-02-10Z"), sql.Literal(f"{FAR}-02-20Z")
        )
    ).fetchone()[0]
    assert _relations(latest) == {f"prediction_signals_y{FAR}m03", f"prediction_signals_y{FAR}m04"}
    assert _relations(window) == {f"prediction_snapshots_y{FAR}m02"}
    removed = [n["Subplans Removed"] for n in _nodes(latest) if "Subplans Removed" in n]
    assert removed and removed[0] >= 2  # January and February (and the months made ahead)


def test_a_lookup_by_id_alone_probes_each_partitions_key_index(admin_conn, history):
    signal = admin_conn.execute(
        "SELECT id FROM prediction_signals WHERE event_id = %s LIMIT 1", (history,)
    ).fetchone()[0]
    plan = _explain(admin_conn, "SELECT * FROM prediction_signals WHERE id = {id}", id=signal)
    scans = [n for n in _nodes(plan) if "Relation Name" in n]
    assert {n["Relation Name"] for n in scans} == set(_months(admin_conn))
    filled = [n for n in scans if n["Relation Name"].startswith(f"prediction_signals_y{FAR}")]
    assert len(filled) == 4
    for scan in filled:  # one index probe per month holding rows, no sequential scan
        assert scan["Node Type"] == "Index Scan"
        assert scan["Index Name"] == scan["Relation Name"] + "_pkey"
