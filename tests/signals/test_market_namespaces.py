"""sql/0051 on a database written before it: user-defined market ids move into their feed's
namespace, each shared link becomes the link of the users who followed it (where they can see
its event), and settlements follow their feed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.db.connection import connect
from predict_pipeline.db.migrations import discover, upgrade

NAMESPACES = 51
AT = datetime(2026, 11, 22, 15, 10, tzinfo=UTC)


@pytest.fixture
def legacy(empty_db_url) -> dict:
    """A database before 0051 whose shared links let B's and C's data follow A's decisions."""
    with connect(empty_db_url, role=None, autocommit=True) as conn:
        upgrade(conn, [m for m in discover() if m.version < NAMESPACES])
        users = {}
        for name in ("A", "B", "C"):
            users[name] = conn.execute(
                "INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), %s) RETURNING id",
                (f"{name}@x.org",),
            ).fetchone()[0]
        org = conn.execute(
            "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES ('A', 'a', %s) RETURNING id",
            (users["A"],),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO prediction_org_members (org_id, user_id) VALUES (%s, %s)",
            (org, users["A"]),
        )
        private = conn.execute(
            "INSERT INTO prediction_events (title, slug, is_public, org_id) VALUES"
            " ('A private', 'a-private', false, %s) RETURNING id",
            (org,),
        ).fetchone()[0]
        feeds = {}
        for key, owner, source in (
            ("FA", "A", "upload"),
            ("FB", "B", "upload"),
            ("PA", "A", "polymarket"),
            ("PC", "C", "polymarket"),
        ):
            feeds[key] = conn.execute(
                "INSERT INTO prediction_data_feeds (source_id, user_id, name) SELECT id, %s, %s"
                " FROM prediction_data_sources WHERE source_id = %s RETURNING id",
                (users[owner], key, source),
            ).fetchone()[0]
        conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (AT, AT))
        # A's review linked upload q1 and polymarket 0xabc to org A's event; B's and C's
        # records of the same ids followed the shared link into it. A discarded upload d1.
        for source, sid, event, method in (
            ("upload", "q1", private, "review"),
            ("polymarket", "0xabc", private, "similarity"),
            ("upload", "d1", None, "discarded"),
        ):
            conn.execute(
                "INSERT INTO predict_meta.market_links (source, source_event_id, event_id,"
                " method) VALUES (%s, %s, %s, %s)",
                (source, sid, event, method),
            )
        for feed, source, sid, minute in (
            ("FA", "upload", "q1", 10),
            ("FB", "upload", "q1", 15),
            ("PA", "polymarket", "0xabc", 10),
            ("PC", "polymarket", "0xabc", 15),
        ):
            conn.execute(
                "INSERT INTO prediction_signals (event_id, feed_id, source, source_event_id,"
                " signal_type, value, fetched_at) VALUES (%s, %s, %s, %s, 'MARKET_PRICE', 0.5,"
                " %s)",
                (private, feeds[feed], source, sid, AT.replace(minute=minute)),
            )
        for feed, status in (("FA", "DISCARDED"), ("FB", "PENDING")):
            conn.execute(
                "INSERT INTO prediction_unmatched_signals (feed_id, source_event_id, signal_type,"
                " raw_data, status) VALUES (%s, 'd1', 'MARKET_PRICE', %s, %s)",
                (feeds[feed], Jsonb({"source": "upload"}), status),
            )
        conn.execute(
            "INSERT INTO predict_meta.market_settlements (source, source_event_id, event_id,"
            " resolution, observed_at) VALUES ('upload', 'q1', %s, 'YES', %s)",
            (private, AT),
        )
        upgrade(conn)
        return {"url": empty_db_url, "users": users, "feeds": feeds, "private": private}


def test_shared_links_become_the_links_of_the_users_who_may_follow_them(legacy):
    users, feeds, private = legacy["users"], legacy["feeds"], legacy["private"]
    with connect(legacy["url"], role=None) as conn:
        links = conn.execute(
            "SELECT source, user_id, source_event_id, event_id, method"
            " FROM predict_meta.market_links ORDER BY source, source_event_id"
        ).fetchall()
        assert links == [
            ("polymarket", users["A"], "0xabc", private, "similarity"),
            ("upload", users["A"], f"feed:{feeds['FA']}:d1", None, "discarded"),
            ("upload", users["A"], f"feed:{feeds['FA']}:q1", private, "review"),
        ]  # B and C cannot see org A's event: their feeds no longer follow A's decisions


def test_user_defined_ids_and_their_settlements_move_into_their_feed(legacy):
    feeds, private = legacy["feeds"], legacy["private"]
    with connect(legacy["url"], role=None) as conn:
        signals = set(
            conn.execute("SELECT feed_id, source_event_id FROM prediction_signals").fetchall()
        )
        assert signals == {
            (feeds["FA"], f"feed:{feeds['FA']}:q1"),
            (feeds["FB"], f"feed:{feeds['FB']}:q1"),
            (feeds["PA"], "0xabc"),  # platform ids stay global
            (feeds["PC"], "0xabc"),
        }
        items = set(
            conn.execute(
                "SELECT source_event_id, status FROM prediction_unmatched_signals"
            ).fetchall()
        )
        assert items == {
            (f"feed:{feeds['FA']}:d1", "DISCARDED"),
            (f"feed:{feeds['FB']}:d1", "PENDING"),
        }
        settlements = set(
            conn.execute(
                "SELECT source_event_id, event_id, resolution FROM predict_meta.market_settlements"
            ).fetchall()
        )
        assert settlements == {
            (f"feed:{feeds['FA']}:q1", private, "YES"),
            (f"feed:{feeds['FB']}:q1", None, "YES"),  # B cannot see A's event
        }


def test_a_market_may_settle_once_per_event(legacy):
    with connect(legacy["url"], role=None) as conn:
        for event in (legacy["private"], None, None):
            conn.execute(
                "INSERT INTO predict_meta.market_settlements (source, source_event_id, event_id,"
                " resolution, observed_at) VALUES ('kalshi', 'K-1', %s, 'NO', now())"
                " ON CONFLICT (source, source_event_id, event_id) DO UPDATE SET resolution = 'YES'",
                (event,),
            )
        rows = conn.execute(
            "SELECT event_id, resolution FROM predict_meta.market_settlements"
            " WHERE source = 'kalshi' ORDER BY event_id NULLS LAST"
        ).fetchall()
        assert rows == [(legacy["private"], "NO"), (None, "YES")]
