"""Review at scale: filters, decisions over a filter (a feed's whole queue, every suggestion
above a score), one audit row per item, and the events `auto` (user-defined sources) and `ai`
(any source) mapping create by themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.model import MarketFacts, NormalisedRecord
from predict_pipeline.signals.frames import RecordBatch
from predict_pipeline.signals.ingest import FeedValidationReport, ingest_batches
from predict_pipeline.signals.linking import display_market_id, visible_open_events
from predict_pipeline.signals.review import ReviewFilter, count_items, resolve, review_items
from predict_pipeline.signals.routing import AUTO_CREATE_REASON, MatchingSettings
from predict_pipeline.signals.stage import validate_window
from tests.support.feeds import USER_ID, make_feed

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
WINDOW = hour_window(NOW)
AT = (WINDOW.start + timedelta(minutes=10)).isoformat()
CLOSES = "2027-05-01T00:00:00Z"


def _upload(conn, landing, rows: list[dict], name: str = "rows.jsonl", **columns) -> uuid.UUID:
    feed = make_feed(conn, "upload", {}, **columns)
    body = "\n".join(json.dumps(r) for r in rows).encode()
    land_upload(conn, landing, load_feed(conn, feed), body, name, now=lambda: NOW)
    return feed


def _market(sid: str, title: str | None, kind: str = "MARKET_PRICE", **extra) -> dict:
    row = {"source_event_id": sid, "signal_type": kind, "value": 0.4, "fetched_at": AT}
    return {**row, **({"title": title} if title else {}), **extra}


def _event(conn, title: str, slug: str, closes: str | None = CLOSES) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, resolution_date) VALUES (%s, %s, %s)"
        " RETURNING id",
        (title, slug, closes),
    ).fetchone()[0]


# ---------------------------------------------------------------------------------------
# Events created by `auto` (and `ai`) mapping


@pytest.mark.parametrize("mode", ["auto", "ai"])
def test_auto_mapping_creates_a_private_event_for_a_market_nothing_resembles(conn, landing, mode):
    _event(conn, "Will the Lisbon metro strike end before June 2027?", "metro")
    rows = [
        _market("new", "Will Porto host the 2031 Ryder Cup?", close_time=CLOSES),
        _market("new", None, "VOLUME", value=250),
    ]
    feed = _upload(conn, landing, rows, event_mapping_mode=mode)
    [report] = validate_window(conn, landing, WINDOW, now=NOW)
    assert (report.created, report.written, report.unmatched) == (1, 2, 0)
    event = conn.execute(
        "SELECT id, title, is_public, org_id, created_by, resolution_date FROM prediction_events"
        " WHERE slug = 'will-porto-host-the-2031-ryder-cup'"
    ).fetchone()
    assert event[1:] == (
        "Will Porto host the 2031 Ryder Cup?",
        False,  # private to the feed's owner
        None,
        USER_ID,
        datetime(2027, 5, 1, tzinfo=UTC),
    )
    stored = conn.execute("SELECT DISTINCT event_id FROM prediction_signals").fetchall()
    assert stored == [(event[0],)]
    link = conn.execute(
        "SELECT user_id, source_event_id, event_id, method FROM predict_meta.market_links"
    ).fetchone()
    assert link == (USER_ID, f"feed:{feed}:new", event[0], "created")
    audit = conn.execute(
        "SELECT actor_type, details->>'reason' FROM prediction_audit_log"
        " WHERE action = 'event.created_from_market' AND resource_id = %s",
        (event[0],),
    ).fetchone()
    assert audit == ("service", AUTO_CREATE_REASON)
    [again] = validate_window(conn, landing, WINDOW, now=NOW)  # the link holds: no second event
    assert again.created == 0
    assert conn.execute("SELECT count(*) FROM prediction_events").fetchone() == (2,)


@pytest.mark.parametrize(("mode", "created"), [("auto", 0), ("ai", 1), ("manual", 0)])
def test_a_platform_market_becomes_an_event_by_itself_only_in_ai_mapping(conn, mode, created):
    feed = load_feed(conn, make_feed(conn, "polymarket", {}, event_mapping_mode=mode))
    record = NormalisedRecord(
        source="polymarket",
        source_event_id="0x5f",
        signal_type="MARKET_PRICE",
        value=0.3,
        fetched_at=WINDOW.start + timedelta(minutes=5),
        market=MarketFacts(
            title="Will Porto host the 2031 Ryder Cup?", close_time=datetime(2027, 5, 1, tzinfo=UTC)
        ),
    )
    report = FeedValidationReport(str(feed.id), feed.name, "polymarket")
    with conn.transaction():
        ingest_batches(
            conn,
            feed,
            [RecordBatch([record])],
            report,
            now=NOW,
            matching=MatchingSettings(),
            events=lambda: visible_open_events(conn, feed.user_id),
            timings={},
        )
    assert (report.created, report.unmatched) == (created, 1 - created)
    stored = conn.execute("SELECT source_event_id FROM prediction_signals").fetchall()
    assert stored == [("0x5f",)] * created  # a platform id stays as sent


@pytest.mark.parametrize(
    ("case", "rows", "mode"),
    [
        # A near-twin (another year: a number conflict) is for a reviewer to tell apart.
        (
            "near twin",
            [_market("m", "Will the Lisbon metro strike end before June 2028?", close_time=CLOSES)],
            "auto",
        ),
        ("no close time", [_market("m", "Will Porto host the 2031 Ryder Cup?")], "auto"),
        ("no title of its own", [_market("m", "m", close_time=CLOSES)], "auto"),
        (
            "no price",
            [_market("m", "Will Porto host the 2031 Ryder Cup?", "SENTIMENT", close_time=CLOSES)],
            "auto",
        ),
        (
            "manual mode",
            [_market("m", "Will Porto host the 2031 Ryder Cup?", close_time=CLOSES)],
            "manual",
        ),
    ],
)
def test_auto_mapping_leaves_the_rest_to_review(conn, landing, case, rows, mode):
    _event(conn, "Will the Lisbon metro strike end before June 2027?", "metro")
    _upload(conn, landing, rows, event_mapping_mode=mode)
    [report] = validate_window(conn, landing, WINDOW, now=NOW)
    assert (report.created, report.unmatched) == (0, 1), case
    assert conn.execute("SELECT count(*) FROM prediction_events").fetchone() == (1,)
    [reason] = conn.execute(
        "SELECT raw_data->>'review_reason' FROM prediction_unmatched_signals"
    ).fetchone()
    assert reason, case


# ---------------------------------------------------------------------------------------
# Filters and decisions over a filter


@pytest.fixture
def queue(conn, landing) -> dict[str, uuid.UUID]:
    """Two upload feeds whose markets wait for review, some with suggestions."""
    events = {
        "rain": _event(conn, "Will it rain in Lisbon on 1 May 2027?", "rain"),
        "strike": _event(conn, "Will the Lisbon metro strike end before June 2027?", "strike"),
    }
    first = _upload(
        conn,
        landing,
        [
            _market("a1", "Will it rain in Lisbon on 2 May 2027?"),
            _market("a2", "Will the Lisbon metro workers strike again in 2027?"),
            _market("a3", "Will the Porto metro open a new line?"),
            _market("a4", "Completely unrelated question about chess"),
        ],
        "first.jsonl",
    )
    second = _upload(
        conn,
        landing,
        [_market(f"b{i}", f"Question number {i} about gardening") for i in range(5)],
        "second.jsonl",
    )
    validate_window(conn, landing, WINDOW, now=NOW)
    return {"first": first, "second": second, **events}


def test_filters_select_exactly_what_they_say(conn, queue):
    every = review_items(conn, ReviewFilter(), limit=100)
    assert len(every) == count_items(conn) == 9
    by_feed = review_items(conn, ReviewFilter(feed_id=queue["second"]), limit=100)
    assert {i["market_id"] for i in by_feed} == {f"b{i}" for i in range(5)}
    scored = [i for i in every if i["confidence"] is not None]
    assert scored  # the matcher suggested something for some of them
    floor = min(i["confidence"] for i in scored)
    above = review_items(conn, ReviewFilter(min_score=floor + 0.005), limit=100)
    assert {i["id"] for i in above} == {i["id"] for i in scored if i["confidence"] > floor}
    below = review_items(conn, ReviewFilter(max_score=floor), limit=100)
    assert {i["id"] for i in below} == {i["id"] for i in scored if i["confidence"] <= floor}
    text = review_items(conn, ReviewFilter(text="METRO"), limit=100)
    assert {i["market_id"] for i in text} == {"a2", "a3"}
    by_id = review_items(conn, ReviewFilter(text="B3"), limit=100)
    assert [i["market_id"] for i in by_id] == ["b3"]
    assert review_items(conn, ReviewFilter(text="feed:")) == []  # the namespace is not text
    assert review_items(conn, ReviewFilter(source="upload"), limit=100) == every
    assert review_items(conn, ReviewFilter(source="kalshi")) == []
    assert review_items(conn, ReviewFilter(owner=uuid.uuid4())) == []
    assert review_items(conn, ReviewFilter(status="MATCHED")) == []


def test_every_suggestion_above_a_score_goes_to_its_event(conn, queue):
    scored = {i["id"]: i for i in review_items(conn, ReviewFilter(min_score=0.0), limit=100)}
    done = resolve(conn, ReviewFilter(min_score=0.0), "suggested", resolved_by=USER_ID, now=NOW)
    assert done.items == len(scored) and done.refused == {}
    resolved = dict(
        conn.execute(
            "SELECT id, resolved_event_id FROM prediction_unmatched_signals"
            " WHERE status = 'MATCHED'"
        ).fetchall()
    )
    assert resolved == {i: item["suggested_event_id"] for i, item in scored.items()}
    assert count_items(conn) == 9 - len(scored)  # the rest still wait


def test_a_feeds_whole_queue_becomes_new_events_audited_per_item(conn, queue):
    done = resolve(conn, ReviewFilter(feed_id=queue["second"]), "new_event", now=NOW)
    assert (done.items, done.markets, done.events_created, done.signals_written) == (5, 5, 5, 5)
    created = conn.execute(
        "SELECT title, is_public, created_by FROM prediction_events"
        " WHERE title LIKE 'Question number %%' ORDER BY title"
    ).fetchall()
    assert created == [(f"Question number {i} about gardening", False, USER_ID) for i in range(5)]
    audit = conn.execute(
        "SELECT resource_id, details->>'event_id', (details->>'signal_written')::boolean"
        " FROM prediction_audit_log WHERE action = 'unmatched_signal.new_event_created'"
    ).fetchall()
    items = dict(
        conn.execute(
            "SELECT id, resolved_event_id::text FROM prediction_unmatched_signals"
            " WHERE feed_id = %s",
            (queue["second"],),
        ).fetchall()
    )
    assert {(r, e) for r, e, _ in audit} == set(items.items())  # one row per item
    assert all(written for *_, written in audit)
    assert count_items(conn, ReviewFilter(feed_id=queue["second"])) == 0
    assert count_items(conn, ReviewFilter(feed_id=queue["first"])) == 4


def test_discard_over_a_text_filter_and_a_limit(conn, landing, queue):
    done = resolve(conn, ReviewFilter(text="gardening"), "discard", now=NOW, limit=2)
    assert (done.items, done.signals_written) == (2, 0)
    assert count_items(conn, ReviewFilter(text="gardening")) == 3
    links = conn.execute(
        "SELECT count(*) FROM predict_meta.market_links WHERE event_id IS NULL"
    ).fetchone()
    assert links == (2,)


def test_resolving_a_thousand_items_takes_a_fixed_handful_of_statements(conn, landing, monkeypatch):
    rows = [_market(f"m{i}", f"Will harbour crane {i} be replaced?") for i in range(1000)]
    feed = _upload(conn, landing, rows)
    validate_window(conn, landing, WINDOW, now=NOW)
    assert count_items(conn, ReviewFilter(feed_id=feed)) == 1000
    statements = []
    execute = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):
        statements.append(query)
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    done = resolve(conn, ReviewFilter(feed_id=feed), "new_event", now=NOW)
    monkeypatch.undo()
    assert (done.items, done.events_created, done.signals_written) == (1000, 1000, 1000)
    assert len(statements) <= 17  # a fixed handful, whatever the number of items
    audited = conn.execute(
        "SELECT count(DISTINCT resource_id) FROM prediction_audit_log"
        " WHERE action = 'unmatched_signal.new_event_created'"
    ).fetchone()
    assert audited == (1000,)
    assert {
        display_market_id(sid)
        for (sid,) in conn.execute("SELECT source_event_id FROM prediction_signals")
    } == {f"m{i}" for i in range(1000)}


def test_cli_filters_as_a_user_and_refuses_an_unfiltered_bulk(db_url, conn, queue):
    env = {**os.environ, "PREDICT_DATABASE_URL": db_url}
    cli = [sys.executable, "-m", "predict_pipeline.cli", "signals"]
    review = subprocess.run(
        [*cli, "review", "--as", "feeds@example.com", "--text", "gardening", "--limit", "2"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "2 of 5 item(s) shown" in review.stdout and "Question number" in review.stdout
    nobody = subprocess.run(
        [*cli, "review", "--as", "nobody@example.com"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert nobody.returncode == 2 and "no user 'nobody@example.com'" in nobody.stderr
    unfiltered = subprocess.run(
        [*cli, "resolve", "--discard"], env=env, capture_output=True, text=True, check=False
    )
    assert unfiltered.returncode == 2 and "resolving the whole queue is never implied" in (
        unfiltered.stderr
    )
    bulk = subprocess.run(
        [*cli, "resolve", "--feed", str(queue["second"]), "--as", str(USER_ID), "--discard"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert bulk.stdout.startswith("DISCARDED: 5 item(s) of 5 market(s)")
    actor = conn.execute(
        "SELECT DISTINCT actor_id FROM prediction_audit_log WHERE action LIKE 'unmatched%%'"
    ).fetchall()
    assert actor == [(USER_ID,)]  # --by defaults to the --as user
