"""`signals review` / `signals resolve`: each form does what it says, and is audited."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest

from predict_pipeline.defs.ingestion import FeedFetchConfig, raw_feed_fetches
from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from predict_pipeline.defs.signals import SignalValidationConfig, validated_signals
from predict_pipeline.demo import REPLAY_DIR
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.secrets import generate_key
from predict_pipeline.signals.review import ReviewError, resolve_item, review_items
from predict_pipeline.signals.stage import validate_window
from tests.support.feeds import USER_ID, make_feed

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
WINDOW = hour_window(NOW)


@pytest.fixture
def queued(conn, landing) -> uuid.UUID:
    """An upload feed whose market 'ghost' (price and volume) is in the review queue."""
    feed = make_feed(conn, "upload", {})
    rows = [
        {
            "source_event_id": "ghost",
            "signal_type": "MARKET_PRICE",
            "value": 0.3,
            "fetched_at": "2026-11-22T15:10:00Z",
            "title": "Will the ghost town reopen?",
            "category": "Entertainment",
        },
        {
            "source_event_id": "ghost",
            "signal_type": "VOLUME",
            "value": 250,
            "fetched_at": "2026-11-22T15:10:00Z",
            "title": "Will the ghost town reopen?",
            "category": "Entertainment",  # a market's facts are the same on all its records
        },
    ]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    land_upload(conn, landing, load_feed(conn, feed), body, "ghost.jsonl", now=lambda: NOW)
    [report] = validate_window(conn, landing, WINDOW, now=NOW)
    assert report.unmatched == 2 and report.written == 0
    return feed


def _item(conn: psycopg.Connection) -> uuid.UUID:
    return review_items(conn)[0]["id"]


def _audit(conn: psycopg.Connection) -> list[str]:
    return [a for (a,) in conn.execute("SELECT action FROM prediction_audit_log ORDER BY action")]


def test_review_lists_pending_items_with_market_title(conn, queued):
    items = review_items(conn)
    assert [(i["market_id"], i["signal_type"]) for i in items] in (
        [("ghost", "MARKET_PRICE"), ("ghost", "VOLUME")],
        [("ghost", "VOLUME"), ("ghost", "MARKET_PRICE")],
    )
    assert {i["title"] for i in items} == {"Will the ghost town reopen?"}


def test_resolve_to_an_event_writes_the_signals_and_remembers_the_market(conn, landing, queued):
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Ghost town', 'ghost-town')"
        " RETURNING id"
    ).fetchone()[0]
    result = resolve_item(conn, _item(conn), event_id=event, resolved_by=USER_ID, now=NOW)
    assert (result.status, result.items, result.signals_written) == ("MATCHED", 2, 2)
    stored = conn.execute(
        "SELECT signal_type, value::float8, event_id, fetched_at FROM prediction_signals"
        " ORDER BY signal_type"
    ).fetchall()
    assert stored == [
        ("MARKET_PRICE", 0.3, event, datetime(2026, 11, 22, 15, 10, tzinfo=UTC)),
        ("VOLUME", 0.25, event, datetime(2026, 11, 22, 15, 10, tzinfo=UTC)),
    ]
    statuses = conn.execute(
        "SELECT DISTINCT status, resolved_event_id, resolved_by FROM prediction_unmatched_signals"
    ).fetchall()
    assert statuses == [("MATCHED", event, USER_ID)]
    assert _audit(conn) == ["unmatched_signal.matched"] * 2  # one row per item
    actors = conn.execute("SELECT DISTINCT actor_type, actor_id FROM prediction_audit_log")
    assert actors.fetchall() == [("user", USER_ID)]
    # The market now flows straight to the event: a re-run writes nothing twice, queues nothing.
    [again] = validate_window(conn, landing, WINDOW, now=NOW)
    assert (again.unmatched, again.written) == (0, 0)
    assert conn.execute("SELECT count(*) FROM prediction_signals").fetchone() == (2,)


def test_resolve_as_new_event_creates_it_from_the_market_facts(conn, queued):
    result = resolve_item(conn, _item(conn), new_event=True, now=NOW)
    assert result.status == "NEW_EVENT_CREATED" and result.signals_written == 2
    title, slug, category = conn.execute(
        "SELECT e.title, e.slug, c.slug FROM prediction_events e"
        " LEFT JOIN prediction_categories c ON c.id = e.category_id WHERE e.id = %s",
        (result.event_id,),
    ).fetchone()
    assert (title, slug, category) == (
        "Will the ghost town reopen?",
        "will-the-ghost-town-reopen",
        "entertainment",
    )
    created = ["event.created_from_market"]
    assert _audit(conn) == created + ["unmatched_signal.new_event_created"] * 2


def test_discard_remembers_the_market_and_queues_it_no_more(conn, landing, queued):
    result = resolve_item(conn, _item(conn), discard=True, now=NOW)
    assert (result.status, result.items, result.signals_written) == ("DISCARDED", 2, 0)
    assert conn.execute("SELECT count(*) FROM prediction_signals").fetchone() == (0,)
    [again] = validate_window(conn, landing, WINDOW, now=NOW)
    assert (again.unmatched, again.discarded) == (0, 2)
    assert review_items(conn) == []
    assert _audit(conn) == ["unmatched_signal.discarded"] * 2


def test_resolve_refuses_ambiguous_or_repeated_requests(conn, queued):
    item = _item(conn)
    with pytest.raises(ReviewError, match="exactly one"):
        resolve_item(conn, item, new_event=True, discard=True, now=NOW)
    with pytest.raises(ReviewError, match="no event"):
        resolve_item(conn, item, event_id=uuid.uuid4(), now=NOW)
    assert len(review_items(conn)) == 2  # a refused resolution changed nothing
    resolve_item(conn, item, discard=True, now=NOW)
    with pytest.raises(ReviewError, match="already DISCARDED"):
        resolve_item(conn, item, discard=True, now=NOW)


def test_validated_signals_asset_materialises_with_its_check(
    conn, db_url, tmp_path, monkeypatch, dagster_instance
):
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    conn.execute(
        "INSERT INTO prediction_events (title, slug, resolution_date) VALUES"
        " ('Will Elon Musk post on X 850 or more times?', 'elon-850',"
        " '2025-04-11T16:00:00+00:00')"
    )
    feed = make_feed(conn, "kalshi", {"event_tickers": ["KXELONTWEETS-25APR11"]})
    resources = {
        "database": PostgresResource(url=db_url),
        "http": HttpClientResource(mode="replay", replay_dir=str(REPLAY_DIR)),
        "landing": LandingZoneResource(root=str(tmp_path / "landing")),
        "secrets": SecretsResource(),
    }
    partition = HOURLY.get_partition_key_for_timestamp(datetime.now(UTC).timestamp())
    result = dg.materialize(
        [raw_feed_fetches, validated_signals],
        instance=dagster_instance,
        resources=resources,
        partition_key=partition,
        run_config=dg.RunConfig(
            ops={
                "raw_feed_fetches": FeedFetchConfig(feed_ids=[str(feed)], mode="poll"),
                "validated_signals": SignalValidationConfig(max_rejected_share=0.0),
            }
        ),
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("validated_signals")
    metadata = materialization.metadata
    assert (metadata["records"].value, metadata["written"].value) == (26, 2)
    assert metadata["unmatched"].value == 24
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["rejected_share_within_limit"] is True
    assert conn.execute("SELECT count(*) FROM prediction_signals").fetchone() == (2,)


def test_cli_review_and_resolve(db_url, queued, conn):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PREDICT_DATABASE_URL": db_url}
    cli = [sys.executable, "-m", "predict_pipeline.cli", "signals"]
    review = subprocess.run([*cli, "review"], env=env, capture_output=True, text=True, check=True)
    assert "ghost" in review.stdout and "Will the ghost town reopen?" in review.stdout
    item = str(_item(conn))
    resolved = subprocess.run(
        [*cli, "resolve", item, "--discard"], env=env, capture_output=True, text=True, check=True
    )
    assert resolved.stdout.startswith("DISCARDED: 2 item(s)")
    again = subprocess.run(
        [*cli, "resolve", item, "--discard"], env=env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 2 and "already DISCARDED" in again.stderr
