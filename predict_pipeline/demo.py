"""Demo data for `make run`: a demo user and one feed per recorded API payload (replay mode).

Idempotent: running it again finds what it created. Everything here is ordinary data that a
user could have created; nothing in the pipeline treats it specially.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.ingestion.runner import credentials_aad
from predict_pipeline.secrets import encrypt_json

DEMO_USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
DEMO_USER_EMAIL = "demo@predict-pipeline.local"
REPLAY_DIR = PROJECT_ROOT / "demo" / "replay"

# (name, source, config, credentials): each config matches an entry of demo/replay/replay.json.
DEMO_FEEDS: tuple[tuple[str, str, dict[str, Any], dict[str, Any] | None], ...] = (
    ("Polymarket active markets", "polymarket", {"listing": "markets"}, None),
    (
        "Polymarket Elon tweets event",
        "polymarket",
        {"event_slugs": ["elon-musk-of-tweets-april-4-11"]},
        None,
    ),
    ("Kalshi Elon tweets (Apr 11)", "kalshi", {"event_tickers": ["KXELONTWEETS-25APR11"]}, None),
    (
        "Kalshi Elon tweets (Mar 28, settled)",
        "kalshi",
        {"event_tickers": ["KXELONTWEETS-25MAR28"]},
        None,
    ),
    # fetch_answers off: answers of multiple-choice markets would need /market/{id} pages
    # that were not recorded.
    ("Manifold newest markets", "manifold", {"fetch_answers": False}, None),
    ("Manifold market by id", "manifold", {"market_ids": ["lEoqtnDgJzft6apSKzYK"]}, None),
    # The token is a placeholder (replay sends nothing anywhere); it shows credentials at rest.
    ("Metaculus post 578", "metaculus", {"post_ids": [578]}, {"token": "demo-token"}),
    ("PredictIt all markets", "predictit", {}, None),
)


# Events the demo tracks (slug, category, title, resolution date): worded as an analyst would,
# not copied from the markets, so auto-matching has real work; the other markets of the
# recorded payloads land in the review queue.
DEMO_EVENTS: tuple[tuple[str, str, str, str], ...] = (
    (
        "elon-x-posts-850-plus-apr-11",
        "entertainment",
        "Will Elon Musk post on X 850 or more times?",
        "2025-04-11T16:00:00+00:00",
    ),
    (
        "elon-tweets-250-274-apr-4-11",
        "entertainment",
        "Will Elon Musk tweet 250-274 times April 4 - 11?",
        "2025-04-11T12:00:00+00:00",
    ),
    # Two brackets of the week that settled on 2025-03-28 (resolved from the settled markets).
    (
        "elon-x-posts-450-499-mar-28",
        "entertainment",
        "Will Elon Musk post on X between 450 and 499 times?",
        "2025-03-28T16:00:00+00:00",
    ),
    (
        "elon-x-posts-400-449-mar-28",
        "entertainment",
        "Will Elon Musk post on X between 400 and 449 times?",
        "2025-03-28T16:00:00+00:00",
    ),
    (
        "trump-deportations-under-250k",
        "geopolitics",
        "Will Trump deport fewer than 250,000 people?",
        "2025-12-31T12:00:00+00:00",
    ),
    (
        "humans-extinct-before-2100",
        "technology",
        "Will humanity go extinct before 2100?",
        "2100-01-01T00:00:00+00:00",
    ),
    (
        "us-attacks-cuba-before-china-taiwan",
        "geopolitics",
        "Will the United States attack Cuba before China attacks Taiwan?",
        "2030-12-31T23:59:00+00:00",
    ),
    (
        "gop-house-seats-2026-203-207",
        "geopolitics",
        "Republicans win 203 to 207 House seats in the 2026 midterm election?",
        "2026-11-03T00:00:00+00:00",
    ),
)


def seed_demo_events(conn: psycopg.Connection) -> list[uuid.UUID]:
    """Create (or find) the demo events by slug; returns their ids in order."""
    ids = []
    for slug, category, title, resolution_date in DEMO_EVENTS:
        row = conn.execute(
            """INSERT INTO prediction_events (category_id, title, slug, resolution_date, tags,
                                              created_by)
               SELECT c.id, %s, %s, %s, %s, %s FROM prediction_categories c WHERE c.slug = %s
               ON CONFLICT (slug) DO UPDATE SET title = EXCLUDED.title
               RETURNING id""",
            (title, slug, resolution_date, ["demo"], DEMO_USER_ID, category),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    return ids


DEMO_RULE_NAME = "Explain every resolved event"


def seed_demo_rule(conn: psycopg.Connection) -> None:
    """A rule that fires when a demo event resolves and writes an explanation (no network)."""
    exists = conn.execute(
        "SELECT 1 FROM prediction_rules WHERE user_id = %s AND name = %s",
        (DEMO_USER_ID, DEMO_RULE_NAME),
    ).fetchone()
    if not exists:
        conn.execute(
            """INSERT INTO prediction_rules (user_id, name, description, scope_type, scope_tag,
                 trigger_type, trigger_params, actions, cooldown_minutes)
               VALUES (%s, %s, 'demo', 'tag', 'demo', 'EVENT_RESOLVED', %s, %s, 0)""",
            (
                DEMO_USER_ID,
                DEMO_RULE_NAME,
                Jsonb({"outcomes": ["YES", "NO"]}),
                Jsonb([{"type": "explain"}]),
            ),
        )


def seed_demo(conn: psycopg.Connection, *, encryption_key: bytes) -> list[uuid.UUID]:
    """Create (or find) the demo user, events and feeds; returns the demo feed ids."""
    conn.execute(
        "INSERT INTO auth.users (id, email, name) VALUES (%s, %s, 'Demo user')"
        " ON CONFLICT (id) DO NOTHING",
        (DEMO_USER_ID, DEMO_USER_EMAIL),
    )
    seed_demo_events(conn)
    seed_demo_rule(conn)
    feed_ids = []
    for name, source, config, credentials in DEMO_FEEDS:
        row = conn.execute(
            "SELECT id FROM prediction_data_feeds WHERE user_id = %s AND name = %s",
            (DEMO_USER_ID, name),
        ).fetchone()
        if row is None:
            feed_id = uuid.uuid4()
            encrypted = (
                encrypt_json(credentials, key=encryption_key, aad=credentials_aad(feed_id))
                if credentials
                else None
            )
            conn.execute(
                """INSERT INTO prediction_data_feeds
                     (id, source_id, user_id, name, config, credentials_encrypted)
                   SELECT %s, s.id, %s, %s, %s, %s FROM prediction_data_sources s
                   WHERE s.source_id = %s""",
                (
                    feed_id,
                    DEMO_USER_ID,
                    name,
                    Jsonb(config),
                    Jsonb(encrypted) if encrypted else None,
                    source,
                ),
            )
        else:
            feed_id = row[0]
            # The demo's config wins, and a demo feed that a previous failure auto-disabled
            # is given another chance.
            conn.execute(
                "UPDATE prediction_data_feeds SET config = %s, enabled = true,"
                " auto_disabled_at = NULL, updated_at = now() WHERE id = %s",
                (Jsonb(config), feed_id),
            )
        feed_ids.append(feed_id)
    return feed_ids
