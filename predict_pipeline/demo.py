"""Demo data for `make run`: a demo user, one feed per recorded API payload (replay mode), a
market-simulator feed with the events it simulates, and a few rules.

Idempotent: running it again finds what it created. Everything here is ordinary data that a
user could have created; nothing in the pipeline treats it specially. The simulator
(`predict_pipeline/feeds/simulator.py`) is a sandbox beside the real payloads, never in
their place.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.feeds import simulator
from predict_pipeline.ingestion.runner import credentials_aad
from predict_pipeline.secrets import encrypt_json
from predict_pipeline.trust.components import FLAG_TYPES  # the detectors' (not OTHER)

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
# (name, scope tag, trigger type, trigger params): each writes an explanation (no network).
DEMO_RULES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    (DEMO_RULE_NAME, "demo", "EVENT_RESOLVED", {"outcomes": ["YES", "NO"]}),
    (
        "Explain flagged simulated events",
        "simulator",
        "FLAG_RAISED",
        {"flag_types": list(FLAG_TYPES), "min_severity": "WARNING"},
    ),
    ("Simulated event crosses 50 %", "simulator", "PROBABILITY_CROSSES_ABOVE", {"threshold": 0.5}),
    (
        "Simulated event moves 10 points in 3 hours",
        "simulator",
        "PROBABILITY_SHIFT",
        {"min_change": 0.1, "window_minutes": 180, "direction": "any"},
    ),
)


def seed_demo_rules(conn: psycopg.Connection) -> None:
    """The demo's rules, created once; no cooldown, so every event's firing is seen."""
    for name, tag, trigger_type, params in DEMO_RULES:
        conn.execute(
            """INSERT INTO prediction_rules (user_id, name, description, scope_type, scope_tag,
                 trigger_type, trigger_params, actions, cooldown_minutes, max_fires_per_day)
               SELECT %s, %s, 'demo', 'tag', %s, %s, %s, %s, 0, 1000
               WHERE NOT EXISTS (SELECT 1 FROM prediction_rules
                                 WHERE user_id = %s AND name = %s)""",
            (
                DEMO_USER_ID,
                name,
                tag,
                trigger_type,
                Jsonb(params),
                Jsonb([{"type": "explain"}]),
                DEMO_USER_ID,
                name,
            ),
        )


# The sandbox feed: hours of simulated history before the current hour that `make run` backfills
# (the trust detectors' baselines need at least 6), and its config (the source's defaults).
DEMO_HISTORY_HOURS = 12
SIMULATOR_FEED_NAME = "Market simulator (sandbox)"
SIMULATOR_CONFIG: dict[str, Any] = {"seed": 7}


def seed_simulator(
    conn: psycopg.Connection,
    *,
    start: datetime,
    end: datetime,
    config: dict[str, Any] | None = None,
    name: str = SIMULATOR_FEED_NAME,
) -> tuple[uuid.UUID, int]:
    """The simulator feed, and an event with confirmed market links for every simulated
    event open in [start, end), as a user who reviewed them would have; (feed id, events)."""
    config = SIMULATOR_CONFIG if config is None else config
    feed_id = _seed_feed(conn, name, "simulator", config, None, encryption_key=None)
    events = simulator.catalogue(config, start, end)
    if not events:
        return feed_id, 0
    conn.execute(
        """INSERT INTO prediction_events (category_id, title, slug, description, resolution_date,
                                          tags, created_by)
           SELECT c.id, x.title, x.slug, 'Simulated by the market simulator (sandbox).',
                  x.closes, ARRAY['demo', 'simulator'], %s
           FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])
                AS x(title, slug, category, closes)
           JOIN prediction_categories c ON c.slug = x.category
           ON CONFLICT (slug) DO NOTHING""",
        (
            DEMO_USER_ID,
            [e.title for e in events],
            [e.slug for e in events],
            [e.category for e in events],
            [e.close_time for e in events],
        ),
    )
    sids = [(sid, e.slug) for e in events for sid in e.source_event_ids]
    conn.execute(
        """INSERT INTO predict_meta.market_links
             (source, user_id, source_event_id, event_id, method, confidence, linked_by)
           SELECT 'simulator', %s, x.sid, e.id, 'manual', 1.0, %s
           FROM unnest(%s::text[], %s::text[]) AS x(sid, slug)
           JOIN prediction_events e ON e.slug = x.slug
           ON CONFLICT (source, user_id, source_event_id) DO NOTHING""",
        (DEMO_USER_ID, DEMO_USER_ID, [sid for sid, _ in sids], [slug for _, slug in sids]),
    )
    return feed_id, len(events)


def _seed_feed(
    conn: psycopg.Connection,
    name: str,
    source: str,
    config: dict[str, Any],
    credentials: dict[str, Any] | None,
    *,
    encryption_key: bytes | None,
) -> uuid.UUID:
    row = conn.execute(
        "SELECT id FROM prediction_data_feeds WHERE user_id = %s AND name = %s",
        (DEMO_USER_ID, name),
    ).fetchone()
    if row is not None:
        # The demo's config wins, and a demo feed that a previous failure auto-disabled
        # is given another chance.
        conn.execute(
            "UPDATE prediction_data_feeds SET config = %s, enabled = true,"
            " auto_disabled_at = NULL, updated_at = now() WHERE id = %s",
            (Jsonb(config), row[0]),
        )
        return row[0]
    feed_id = uuid.uuid4()
    encrypted = None
    if credentials:
        assert encryption_key is not None, "credentials need the encryption key"
        encrypted = encrypt_json(credentials, key=encryption_key, aad=credentials_aad(feed_id))
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
    return feed_id


def seed_demo(
    conn: psycopg.Connection,
    *,
    encryption_key: bytes,
    now: datetime | None = None,
    history_hours: int = DEMO_HISTORY_HOURS,
    simulator_config: dict[str, Any] | None = None,
) -> list[uuid.UUID]:
    """Create (or find) the demo user, events, rules and feeds; returns the demo feed ids (the
    replay feeds, then the simulator's, whose events are those open from `history_hours`
    before the current hour to the end of the next)."""
    now = now or datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    conn.execute(
        "INSERT INTO auth.users (id, email, name) VALUES (%s, %s, 'Demo user')"
        " ON CONFLICT (id) DO NOTHING",
        (DEMO_USER_ID, DEMO_USER_EMAIL),
    )
    # An unlimited, realtime plan: the demo's feeds, rules and simulated events are more than
    # the free plan (what a user without a subscription has) allows.
    conn.execute(
        "INSERT INTO prediction_subscriptions (user_id, tier, status, realtime_enabled)"
        " VALUES (%s, 'enterprise', 'active', true) ON CONFLICT (user_id) DO NOTHING",
        (DEMO_USER_ID,),
    )
    seed_demo_events(conn)
    seed_demo_rules(conn)
    feed_ids = [
        _seed_feed(conn, name, source, config, credentials, encryption_key=encryption_key)
        for name, source, config, credentials in DEMO_FEEDS
    ]
    simulated, _ = seed_simulator(
        conn,
        start=hour - timedelta(hours=history_hours),
        end=hour + timedelta(hours=2),
        config=simulator_config,
    )
    return [*feed_ids, simulated]
