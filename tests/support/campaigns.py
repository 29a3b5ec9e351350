"""Campaigns, variants, events and links in a real database, for the campaign-loop tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


def make_user(conn: psycopg.Connection, name: str) -> uuid.UUID:
    user = uuid.uuid4()
    conn.execute(
        "INSERT INTO auth.users (id, email, name) VALUES (%s, %s, %s)",
        (user, f"{name}-{user.hex[:6]}@example.com", name),
    )
    return user


def make_campaign(
    conn: psycopg.Connection,
    user: uuid.UUID,
    name: str,
    *,
    platform: str | None = "tiktok",
    campaign_type: str | None = "engagement",
    variants: tuple[str, ...] = ("A", "B"),
    status: str = "DRAFT",
    org: uuid.UUID | None = None,
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """A campaign and its variants: (campaign id, {label: variant id})."""
    campaign = conn.execute(
        "INSERT INTO prediction_campaigns (user_id, org_id, name, platform, campaign_type, status)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (user, org, name, platform, campaign_type, status),
    ).fetchone()[0]
    ids = {
        label: conn.execute(
            "INSERT INTO prediction_campaign_variants (campaign_id, label) VALUES (%s, %s)"
            " RETURNING id",
            (campaign, label),
        ).fetchone()[0]
        for label in variants
    }
    return campaign, ids


def make_event(
    conn: psycopg.Connection,
    slug: str,
    probability: float | None,
    *,
    public: bool = True,
    created_by: uuid.UUID | None = None,
) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, current_probability, is_public, created_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (f"Event {slug}", slug, probability, public, created_by),
    ).fetchone()[0]


def link(
    conn: psycopg.Connection,
    campaign: uuid.UUID,
    event: uuid.UUID,
    relationship: str,
    threshold: float | None = None,
) -> None:
    conn.execute(
        "INSERT INTO prediction_campaign_events (campaign_id, event_id, relationship,"
        " probability_threshold) VALUES (%s, %s, %s, %s)",
        (campaign, event, relationship, threshold),
    )


@contextmanager
def cli_environment(db_url: str, state_dir: str) -> Iterator[None]:
    """The environment the CLI reads, put back afterwards (commands export what children
    need into os.environ)."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("PREDICT_")]:
        del os.environ[name]
    os.environ.update(PREDICT_DATABASE_URL=db_url, PREDICT_STATE_DIR=state_dir)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
