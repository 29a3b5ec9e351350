"""The unmatched review queue: list pending items and resolve them (matched, new event,
discarded). Every resolution remembers its decision for the market and is audit-logged."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from predict_pipeline.audit import record_audit
from predict_pipeline.feeds.registry import source_definition
from predict_pipeline.signals.linking import save_links
from predict_pipeline.signals.store import ensure_partitions


class ReviewError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Resolution:
    status: str  # MATCHED | NEW_EVENT_CREATED | DISCARDED
    event_id: uuid.UUID | None
    items: int  # pending items of the market resolved together
    signals_written: int


def pending_items(
    conn: psycopg.Connection, *, limit: int = 50, feed_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT u.id, u.created_at, f.name AS feed, u.source_event_id, u.signal_type,
                      u.value::float8 AS value, u.raw_data->'market'->>'title' AS title,
                      u.suggested_event_id, e.title AS suggested_title,
                      u.suggestion_confidence::float8 AS confidence
               FROM prediction_unmatched_signals u
               JOIN prediction_data_feeds f ON f.id = u.feed_id
               LEFT JOIN prediction_events e ON e.id = u.suggested_event_id
               WHERE u.status = 'PENDING' AND (%(feed)s::uuid IS NULL OR u.feed_id = %(feed)s)
               ORDER BY u.created_at DESC, u.id LIMIT %(limit)s""",
            {"feed": feed_id, "limit": limit},
        ).fetchall()


def resolve_item(
    conn: psycopg.Connection,
    item_id: uuid.UUID,
    *,
    event_id: uuid.UUID | None = None,
    new_event: bool = False,
    discard: bool = False,
    resolved_by: uuid.UUID | None = None,
    now: datetime,
) -> Resolution:
    """Resolve one pending item, and the market's other pending items with it, atomically."""
    if [event_id is not None, new_event, discard].count(True) != 1:
        raise ReviewError("say exactly one of --event EVENT_ID, --new-event or --discard")
    with conn.transaction():
        item = _locked_item(conn, item_id)
        source = item["raw_data"].get("source") or item["feed_source"]
        if discard:
            status, target = "DISCARDED", None
        elif new_event:
            status, target = "NEW_EVENT_CREATED", _create_event(conn, item, resolved_by)
        else:
            status, target = "MATCHED", event_id
            if not conn.execute(
                "SELECT 1 FROM prediction_events WHERE id = %s", (event_id,)
            ).fetchone():
                raise ReviewError(f"no event {event_id}")
        siblings = conn.execute(
            """SELECT id FROM prediction_unmatched_signals
               WHERE feed_id = %s AND source_event_id = %s AND status = 'PENDING'
               FOR UPDATE""",
            (item["feed_id"], item["source_event_id"]),
        ).fetchall()
        ids = [r[0] for r in siblings]
        written = 0 if target is None else _write_signals(conn, ids, target, item)
        conn.execute(
            """UPDATE prediction_unmatched_signals
               SET status = %s, resolved_event_id = %s, resolved_by = %s, resolved_at = %s
               WHERE id = ANY(%s)""",
            (status, target, resolved_by, now, ids),
        )
        method = {"DISCARDED": "discarded", "NEW_EVENT_CREATED": "created"}.get(status, "review")
        save_links(conn, source, [(item["source_event_id"], target, method, None)], resolved_by)
        # A settled market matched by review can now resolve its event.
        conn.execute(
            "UPDATE predict_meta.market_settlements SET event_id = %s"
            " WHERE source = %s AND source_event_id = %s",
            (target, source, item["source_event_id"]),
        )
        record_audit(
            conn,
            action=f"unmatched_signal.{status.lower()}",
            resource_type="prediction_unmatched_signals",
            resource_id=item_id,
            actor_type="user" if resolved_by else "service",
            actor_id=resolved_by,
            details={
                "source": source,
                "source_event_id": item["source_event_id"],
                "items": [str(i) for i in ids],
                "event_id": str(target) if target else None,
                "signals_written": written,
                "suggested_event_id": str(item["suggested_event_id"])
                if item["suggested_event_id"]
                else None,
            },
            previous_state={"status": "PENDING"},
            new_state={"status": status, "resolved_event_id": str(target) if target else None},
        )
    return Resolution(status, target, len(ids), written)


def _locked_item(conn: psycopg.Connection, item_id: uuid.UUID) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        item = cur.execute(
            """SELECT u.*, s.source_id AS feed_source, f.default_weight::float8 AS default_weight
               FROM prediction_unmatched_signals u
               JOIN prediction_data_feeds f ON f.id = u.feed_id
               JOIN prediction_data_sources s ON s.id = f.source_id
               WHERE u.id = %s FOR UPDATE OF u""",
            (item_id,),
        ).fetchone()
    if item is None:
        raise ReviewError(f"no review item {item_id}")
    if item["status"] != "PENDING":
        raise ReviewError(f"review item {item_id} is already {item['status']}")
    return item


def _write_signals(
    conn: psycopg.Connection, ids: list[uuid.UUID], event_id: uuid.UUID, item: dict[str, Any]
) -> int:
    """The queued values become signals of the event (a duplicate key is skipped)."""
    source = item["raw_data"].get("source") or item["feed_source"]
    reliability = source_definition(item["feed_source"]).reliability
    months = conn.execute(
        """SELECT DISTINCT date_trunc('month', (raw_data->>'fetched_at')::timestamptz
                                      AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           FROM prediction_unmatched_signals
           WHERE id = ANY(%s) AND signal_type IS NOT NULL
             AND raw_data->>'fetched_at' IS NOT NULL""",
        (ids,),
    ).fetchall()
    ensure_partitions(conn, [month for (month,) in months])
    cursor = conn.execute(
        """INSERT INTO prediction_signals
             (event_id, feed_id, source, source_url, source_event_id, signal_type, value,
              raw_data, narrative, weight, reliability, fetched_at)
           SELECT %s, u.feed_id, %s, u.raw_data->>'source_url', u.source_event_id,
                  u.signal_type, u.value, u.raw_data->'record', u.narrative, %s, %s,
                  (u.raw_data->>'fetched_at')::timestamptz
           FROM prediction_unmatched_signals u
           WHERE u.id = ANY(%s) AND u.signal_type IS NOT NULL
             AND u.raw_data->>'fetched_at' IS NOT NULL
           ON CONFLICT DO NOTHING""",
        (event_id, source, item["default_weight"] or 1.0, reliability, ids),
    )
    return cursor.rowcount


def _create_event(
    conn: psycopg.Connection, item: dict[str, Any], created_by: uuid.UUID | None
) -> uuid.UUID:
    market = item["raw_data"].get("market") or {}
    title = market.get("title") or item["source_event_id"]
    category = _category_for(conn, market.get("category_hints") or [])
    slug = _free_slug(conn, market.get("slug") or title)
    url = item["raw_data"].get("source_url")
    row = conn.execute(
        """INSERT INTO prediction_events
             (category_id, title, slug, resolution_date, source_urls, tags, created_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            category,
            title,
            slug,
            market.get("close_time"),
            [url] if url else None,
            [h for h in market.get("category_hints") or [] if isinstance(h, str)][:10] or None,
            created_by,
        ),
    ).fetchone()
    assert row is not None
    record_audit(
        conn,
        action="event.created_from_market",
        resource_type="prediction_events",
        resource_id=row[0],
        actor_type="user" if created_by else "service",
        actor_id=created_by,
        new_state={"title": title, "slug": slug, "source_event_id": item["source_event_id"]},
        details={"market": market},
    )
    return row[0]


def _category_for(conn: psycopg.Connection, hints: list[Any]) -> uuid.UUID | None:
    words = [str(h).strip().lower() for h in hints if str(h).strip()]
    if not words:
        return None
    row = conn.execute(
        "SELECT id FROM prediction_categories WHERE lower(slug) = ANY(%s) OR lower(name) = ANY(%s)"
        " ORDER BY sort_order LIMIT 1",
        (words, words),
    ).fetchone()
    return row[0] if row else None


def _free_slug(conn: psycopg.Connection, text: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "event"
    slug, n = base, 1
    while conn.execute("SELECT 1 FROM prediction_events WHERE slug = %s", (slug,)).fetchone():
        n += 1
        slug = f"{base}-{n}"
    return slug
