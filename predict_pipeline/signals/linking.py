"""Which events a feed's markets land in: the open events the matcher may choose from and the
market links remembered once a market is matched or reviewed (`predict_meta.market_links`).

Kept apart from `store` (COPY, dedup keys, pandas) so the review commands load no pandas.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import psycopg

from predict_pipeline.signals.matching import EventRef


def load_links(
    conn: psycopg.Connection, source: str, source_event_ids: Iterable[str]
) -> dict[str, uuid.UUID | None]:
    """Confirmed links of these markets: event id, or None for a discarded market."""
    rows = conn.execute(
        "SELECT source_event_id, event_id FROM predict_meta.market_links"
        " WHERE source = %s AND source_event_id = ANY(%s)",
        (source, list(source_event_ids)),
    ).fetchall()
    return dict(rows)


def save_links(
    conn: psycopg.Connection,
    source: str,
    links: list[tuple[str, uuid.UUID | None, str, float | None]],
    linked_by: uuid.UUID | None = None,
) -> None:
    """Remember (source_event_id, event_id, method, confidence); a later link replaces one."""
    if not links:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO predict_meta.market_links
                 (source, source_event_id, event_id, method, confidence, linked_by)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (source, source_event_id) DO UPDATE
                 SET event_id = EXCLUDED.event_id, method = EXCLUDED.method,
                     confidence = EXCLUDED.confidence, linked_by = EXCLUDED.linked_by,
                     linked_at = now()""",
            [(source, sid, eid, method, conf, linked_by) for sid, eid, method, conf in links],
        )


def load_open_events(conn: psycopg.Connection) -> list[EventRef]:
    rows = conn.execute(
        """SELECT e.id, e.title, e.slug, e.resolution_date, c.slug, coalesce(e.tags, '{}'),
                  e.description
           FROM prediction_events e LEFT JOIN prediction_categories c ON c.id = e.category_id
           WHERE e.status = 'ACTIVE'"""
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
