"""Which events a feed's markets may land in, for stage 2 and the review queue.

- Visibility: a feed's signals land only in events its owner can see (public, the owner's orgs',
  or created by the owner: `predict_sees_event` of sql/0050); the matcher is offered those
  events only, and a manual mapping, saved link or review decision naming any other event is
  refused with its reason.
- Namespaces: a user-defined source (custom_api, webhook, upload) names markets in the feed's
  own terms, so its market ids are stored as `feed:<feed id>:<id as sent>` (`feed_market_id`):
  one feed's id never dedups, links or discards another's. Platform sources keep the id as sent:
  the same market is the same fact for everyone.
- Links: a market once matched, reviewed or discarded stays so for the user who decided it
  (`predict_meta.market_links`, keyed by source, user and market id), never for other users.
- Events created from markets (`create_events`): private to the feed's owner.

Kept apart from `store` (COPY, dedup keys, pandas) so the review commands load no pandas.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from predict_pipeline.audit import record_audits
from predict_pipeline.signals.similarity import EventRef

_FEED_PREFIX = re.compile(r"^feed:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:")


def feed_namespace(feed_id: uuid.UUID | str, adapter_type: str) -> str | None:
    """The prefix of a feed's market ids: None for a platform (built-in) source."""
    return None if adapter_type == "built_in" else f"feed:{feed_id}:"


def display_market_id(source_event_id: str | None) -> str | None:
    """A stored market id as its feed sent it (without the feed's namespace)."""
    return None if source_event_id is None else _FEED_PREFIX.sub("", source_event_id, count=1)


# The events a user can see, by the one definition (sql/0050); `predict_user_orgs` once.
_VISIBLE = "predict_sees_event(v.viewer, v.orgs, e.is_public, e.org_id, e.created_by)"
_VIEWER = "(SELECT %(owner)s::uuid AS viewer, predict_user_orgs(%(owner)s) AS orgs) v"


def visible_open_events(conn: psycopg.Connection, owner: uuid.UUID) -> list[EventRef]:
    """The ACTIVE events `owner` can see: the matcher's candidates for the owner's feeds."""
    rows = conn.execute(
        f"""SELECT e.id, e.title, e.slug, e.resolution_date, c.slug, coalesce(e.tags, '{{}}'),
                   e.description
            FROM prediction_events e LEFT JOIN prediction_categories c ON c.id = e.category_id
            CROSS JOIN {_VIEWER}
            WHERE e.status = 'ACTIVE' AND {_VISIBLE}""",  # noqa: S608 (module constants)
        {"owner": owner},
    ).fetchall()
    return [
        EventRef(
            id=r[0],
            title=r[1],
            slug=r[2],
            close_time=r[3],
            category=r[4],
            tags=tuple(r[5]),
            description=r[6],
        )
        for r in rows
    ]


def event_visibility(
    conn: psycopg.Connection, owner: uuid.UUID, event_ids: Iterable[Any]
) -> dict[uuid.UUID, bool]:
    """Whether `owner` can see each of these events that exists (missing ones are absent)."""
    ids = list({str(e) for e in event_ids})
    if not ids:
        return {}
    rows = conn.execute(
        f"""SELECT e.id, {_VISIBLE} FROM prediction_events e CROSS JOIN {_VIEWER}
            WHERE e.id = ANY(%(ids)s::uuid[])""",  # noqa: S608 (module constants)
        {"owner": owner, "ids": ids},
    ).fetchall()
    return dict(rows)


@dataclass(frozen=True, slots=True)
class Link:
    event_id: uuid.UUID | None  # None: the user discarded the market
    visible: bool  # the user can (still) see the event


def load_links(
    conn: psycopg.Connection, source: str, owner: uuid.UUID, source_event_ids: Iterable[str]
) -> dict[str, Link]:
    """`owner`'s links of these markets, with whether the owner can still see each event."""
    rows = conn.execute(
        f"""SELECT l.source_event_id, l.event_id, coalesce({_VISIBLE}, false)
            FROM predict_meta.market_links l CROSS JOIN {_VIEWER}
            LEFT JOIN prediction_events e ON e.id = l.event_id
            WHERE l.source = %(source)s AND l.user_id = %(owner)s
              AND l.source_event_id = ANY(%(ids)s)""",  # noqa: S608 (module constants)
        {"source": source, "owner": owner, "ids": list(source_event_ids)},
    ).fetchall()
    return {sid: Link(event_id, visible) for sid, event_id, visible in rows}


def save_links(
    conn: psycopg.Connection,
    source: str,
    owner: uuid.UUID,
    links: list[tuple[str, uuid.UUID | None, str, float | None]],
    linked_by: uuid.UUID | None = None,
) -> None:
    """Remember `owner`'s (source_event_id, event_id, method, confidence); a later link of the
    same market by the same user replaces it."""
    if not links:
        return
    batch = orjson.dumps(
        [
            {"sid": sid, "event_id": eid, "method": method, "confidence": conf}
            for sid, eid, method, conf in links
        ],
        default=str,
    ).decode()
    conn.execute(
        """INSERT INTO predict_meta.market_links
             (source, user_id, source_event_id, event_id, method, confidence, linked_by)
           SELECT %s, %s, x.sid, x.event_id, x.method, x.confidence, %s
           FROM jsonb_to_recordset(%s::jsonb)
             AS x(sid text, event_id uuid, method text, confidence numeric)
           ON CONFLICT (source, user_id, source_event_id) DO UPDATE
             SET event_id = EXCLUDED.event_id, method = EXCLUDED.method,
                 confidence = EXCLUDED.confidence, linked_by = EXCLUDED.linked_by,
                 linked_at = now()""",
        (source, owner, linked_by, batch),
    )


@dataclass(frozen=True, slots=True)
class NewEvent:
    """What an event created from a market is made of: the market's own facts, and the owner
    of the feed it came from."""

    owner: uuid.UUID
    source: str
    source_event_id: str  # as stored (namespaced for a user-defined source)
    title: str
    close_time: datetime | None = None
    source_url: str | None = None
    category_hints: tuple[str, ...] = ()


def slug_base(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "event"


def create_events(
    conn: psycopg.Connection,
    markets: Sequence[NewEvent],
    *,
    created_by: uuid.UUID | None,
    reason: str,
) -> list[uuid.UUID]:
    """One event per market, in one statement, private to the market's feed owner (is_public
    false, no org, created_by the owner): a feed is private to its owner, and so are the
    questions it brings.
    The owner can publish one or move it into an org. Each is audited (one statement, one row per
    event, with `reason`); returns the ids in the markets' order.

    The slug is the title's when free, else the title's with a random suffix; the category is
    the first of the market's hints that names one (by slug or name)."""
    if not markets:
        return []
    batch = orjson.dumps(
        [
            {
                "ord": i,
                "title": m.title,
                "base": slug_base(m.title),
                "closes": m.close_time,
                "url": m.source_url,
                "hints": [h.strip().lower() for h in m.category_hints if h.strip()],
                "tags": [h for h in m.category_hints if h.strip()][:10] or None,
                "source": m.source,
                "sid": m.source_event_id,
                "owner": m.owner,
            }
            for i, m in enumerate(markets)
        ],
        default=str,
    ).decode()
    rows = conn.execute(
        """WITH x AS MATERIALIZED (
             SELECT x.*, row_number() OVER (PARTITION BY x.base ORDER BY x.ord) AS n
             FROM jsonb_to_recordset(%(batch)s::jsonb) AS x(ord int, title text, base text,
               closes timestamptz, url text, hints text[], tags text[], source text, sid text,
               owner uuid)
           ), slugged AS MATERIALIZED (
             SELECT x.*,
                    CASE WHEN x.n = 1 AND NOT EXISTS (SELECT 1 FROM prediction_events e
                                                      WHERE e.slug = x.base)
                         THEN x.base
                         ELSE x.base || '-' || substr(md5(random()::text || x.ord), 1, 10)
                    END AS slug,
                    (SELECT c.id FROM prediction_categories c
                     WHERE lower(c.slug) = ANY(x.hints) OR lower(c.name) = ANY(x.hints)
                     ORDER BY c.sort_order LIMIT 1) AS category_id
             FROM x
           ), created AS (
             INSERT INTO prediction_events (category_id, title, slug, resolution_date,
                                            source_urls, tags, is_public, created_by)
             SELECT s.category_id, s.title, s.slug, s.closes,
                    CASE WHEN s.url IS NOT NULL THEN ARRAY[s.url] END, s.tags, false,
                    s.owner
             FROM slugged s ORDER BY s.ord
             RETURNING id, slug
           )
           SELECT s.ord, c.id, s.slug FROM created c JOIN slugged s ON s.slug = c.slug""",
        {"batch": batch},
    ).fetchall()
    ids = {ord_: (event_id, slug) for ord_, event_id, slug in rows}
    record_audits(
        conn,
        action="event.created_from_market",
        resource_type="prediction_events",
        actor_type="user" if created_by else "service",
        actor_id=created_by,
        entries=[
            (
                ids[i][0],
                {
                    "source": m.source,
                    "source_event_id": m.source_event_id,
                    "title": m.title,
                    "slug": ids[i][1],
                    "is_public": False,
                    "created_by": str(m.owner),
                    "reason": reason,
                },
            )
            for i, m in enumerate(markets)
        ],
    )
    return [ids[i][0] for i in range(len(markets))]
