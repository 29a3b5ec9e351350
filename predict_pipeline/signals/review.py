"""The unmatched review queue: list items through filters, and resolve any number of them in
one transaction (matched to an event, matched to their suggestion, a new event, discarded).

Resolution is set-based: whatever the number of items, a fixed handful of statements select
and lock them, decide each market's event, write the queued values as signals, update the
items, remember each owner's decision (`predict_meta.market_links`), carry settlements over,
and write one audit row per item. An item is resolved with every pending item of its market
(same feed and market id), as a reviewer decides about a market, not about one value.

Tenancy: an event is applied only if the feed's owner can see it (`predict_sees_event`); a
market whose owner cannot see the named or suggested event is refused with that reason and
changes nothing (the refusal is audited). Events created from markets are private to the feed's
owner (`linking.create_events`). `ReviewFilter.owner` (the CLI's `--as USER`) restricts the
queue to that user's feeds; without it the queue is the operator's view of every tenant.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from predict_pipeline.audit import record_audits
from predict_pipeline.retention.partitions import make_partitions
from predict_pipeline.signals import linking
from predict_pipeline.sources.registry import SOURCES

STATUSES = ("PENDING", "MATCHED", "NEW_EVENT_CREATED", "DISCARDED")
Decision = Literal["event", "suggested", "new_event", "discard"]
_STATUS_OF: dict[str, str] = {
    "event": "MATCHED",
    "suggested": "MATCHED",
    "new_event": "NEW_EVENT_CREATED",
    "discard": "DISCARDED",
}


class ReviewError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ReviewFilter:
    """Which review items: every field given must hold (`status` None: any status)."""

    item_ids: tuple[uuid.UUID, ...] = ()
    feed_id: uuid.UUID | None = None
    source: str | None = None  # the feed's source or the records' (e.g. "upload", "kalshi")
    status: str | None = "PENDING"
    min_score: float | None = None  # the suggestion's confidence, inclusive
    max_score: float | None = None
    text: str | None = None  # in the market's title or id as sent, case-insensitive
    owner: uuid.UUID | None = None  # only this user's feeds (--as)

    def narrows(self) -> bool:
        """Whether anything but the status narrows the queue."""
        return bool(self.item_ids) or any(
            v is not None
            for v in (
                self.feed_id,
                self.source,
                self.min_score,
                self.max_score,
                self.text,
                self.owner,
            )
        )

    def where(self) -> tuple[str, dict[str, Any]]:
        """The condition on items `u` of feeds `f` of sources `s`, and its parameters."""
        if self.status is not None and self.status not in STATUSES:
            raise ReviewError(f"status must be one of {', '.join(STATUSES)}")
        return (
            """(%(status)s::text IS NULL OR u.status = %(status)s)
               AND (cardinality(%(ids)s::uuid[]) = 0 OR u.id = ANY(%(ids)s::uuid[]))
               AND (%(feed)s::uuid IS NULL OR u.feed_id = %(feed)s)
               AND (%(source)s::text IS NULL OR s.source_id = %(source)s
                    OR u.raw_data->>'source' = %(source)s)
               AND (%(min)s::numeric IS NULL OR u.suggestion_confidence >= %(min)s)
               AND (%(max)s::numeric IS NULL OR u.suggestion_confidence <= %(max)s)
               AND (%(text)s::text IS NULL
                    OR strpos(lower(coalesce(u.raw_data->'market'->>'title', '')),
                              lower(%(text)s)) > 0
                    OR strpos(lower(regexp_replace(coalesce(u.source_event_id, ''),
                                                   '^feed:[0-9a-f-]{36}:', '')),
                              lower(%(text)s)) > 0)
               AND (%(owner)s::uuid IS NULL OR f.user_id = %(owner)s)""",
            {
                "status": self.status,
                "ids": list(self.item_ids),
                "feed": self.feed_id,
                "source": self.source,
                "min": self.min_score,
                "max": self.max_score,
                "text": self.text,
                "owner": self.owner,
            },
        )


_ITEMS_FROM = """FROM prediction_unmatched_signals u
JOIN prediction_data_feeds f ON f.id = u.feed_id
JOIN prediction_data_sources s ON s.id = f.source_id"""


def review_items(
    conn: psycopg.Connection, where: ReviewFilter = ReviewFilter(), *, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest items the filter selects, with their market's title and the suggestion (its
    title only if the feed's owner can see it) and why each waits for review."""
    condition, params = where.where()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT i.*, CASE WHEN predict_sees_event(i.owner, predict_user_orgs(i.owner),
                                                       e.is_public, e.org_id, e.created_by)
                                 THEN e.title END AS suggested_title
                FROM (SELECT u.id, u.created_at, u.status, f.name AS feed, f.user_id AS owner,
                             u.source_event_id, u.signal_type, u.value::float8 AS value,
                             u.raw_data->'market'->>'title' AS title,
                             u.raw_data->>'review_reason' AS reason, u.suggested_event_id,
                             u.suggestion_confidence::float8 AS confidence,
                             u.resolved_event_id
                      {_ITEMS_FROM}
                      WHERE {condition}
                      ORDER BY u.created_at DESC, u.id LIMIT %(limit)s) i
                LEFT JOIN prediction_events e ON e.id = i.suggested_event_id
                ORDER BY i.created_at DESC, i.id""",  # noqa: S608
            {**params, "limit": limit},
        ).fetchall()
    for row in rows:
        row["market_id"] = linking.display_market_id(row["source_event_id"])
    return rows


def count_items(conn: psycopg.Connection, where: ReviewFilter = ReviewFilter()) -> int:
    condition, params = where.where()
    row = conn.execute(
        f"SELECT count(*) {_ITEMS_FROM} WHERE {condition}",
        params,
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(slots=True)
class BulkResolution:
    """What one resolution did: items and markets resolved, signals written, events created,
    and the items refused per reason (nothing of those changed)."""

    status: str
    items: int = 0
    markets: int = 0
    signals_written: int = 0
    events_created: int = 0
    event_ids: list[uuid.UUID] = field(default_factory=list)  # per market resolved
    refused: dict[str, int] = field(default_factory=dict)  # reason -> items


@dataclass(frozen=True, slots=True)
class Resolution:
    status: str  # MATCHED | NEW_EVENT_CREATED | DISCARDED
    event_id: uuid.UUID | None
    items: int  # pending items of the market resolved together
    signals_written: int


def resolve_item(
    conn: psycopg.Connection,
    item_id: uuid.UUID,
    *,
    event_id: uuid.UUID | None = None,
    new_event: bool = False,
    discard: bool = False,
    suggested: bool = False,
    resolved_by: uuid.UUID | None = None,
    now: datetime,
) -> Resolution:
    """Resolve one pending item, and its market's other pending items with it, atomically; a
    refusal (event not visible to the feed's owner, ...) changes nothing, is audited, and
    raises ReviewError."""
    decision = decision_of(
        event_id=event_id, new_event=new_event, discard=discard, suggested=suggested
    )
    with conn.transaction():
        row = conn.execute(
            "SELECT status FROM prediction_unmatched_signals WHERE id = %s", (item_id,)
        ).fetchone()
        if row is None:
            raise ReviewError(f"no review item {item_id}")
        if row[0] != "PENDING":
            raise ReviewError(f"review item {item_id} is already {row[0]}")
        done = resolve(
            conn,
            ReviewFilter(item_ids=(item_id,)),
            decision,
            event_id=event_id,
            resolved_by=resolved_by,
            now=now,
        )
    if done.refused:  # nothing changed but the refusal's audit row
        raise ReviewError("; ".join(done.refused))
    target = done.event_ids[0] if done.event_ids else None
    return Resolution(done.status, target, done.items, done.signals_written)


def decision_of(
    *, event_id: uuid.UUID | None, new_event: bool, discard: bool, suggested: bool
) -> Decision:
    chosen = [event_id is not None, suggested, new_event, discard]
    if chosen.count(True) != 1:
        raise ReviewError(
            "say exactly one of --event EVENT_ID, --suggested, --new-event or --discard"
        )
    decisions: tuple[Decision, ...] = ("event", "suggested", "new_event", "discard")
    return decisions[chosen.index(True)]


def resolve(
    conn: psycopg.Connection,
    where: ReviewFilter,
    decision: Decision,
    *,
    event_id: uuid.UUID | None = None,
    resolved_by: uuid.UUID | None = None,
    now: datetime,
    limit: int | None = None,
) -> BulkResolution:
    """Resolve the pending items the filter selects (at most `limit`, oldest first) and every
    other pending item of their markets, in one transaction of set-based statements."""
    if (decision == "event") != (event_id is not None):
        raise ReviewError("an event id goes with --event, and only with it")
    result = BulkResolution(_STATUS_OF[decision])
    with conn.transaction():
        if (
            decision == "event"
            and not conn.execute(
                "SELECT 1 FROM prediction_events WHERE id = %s", (event_id,)
            ).fetchone()
        ):
            raise ReviewError(f"no event {event_id}")
        result.refused = _unavailable(conn, where.item_ids)
        selected = _select_batch(conn, where, limit)
        if where.item_ids:
            outside = _outside(conn, where.item_ids)
            if outside:
                result.refused["pending, but outside the filter (another user's feed?)"] = outside
        if not selected:
            conn.execute("DROP TABLE pg_temp.review_batch")
            return result
        _decide_markets(conn, decision, event_id)
        if decision == "new_event":
            result.events_created = _create_events(conn, resolved_by)
        result.signals_written = _write_signals(conn)
        resolved = _apply(conn, result.status, resolved_by, now)
        result.items = len(resolved)
        result.markets = len({r["market"] for r in resolved})
        result.event_ids = list(
            dict.fromkeys(r["target"] for r in resolved if r["target"] is not None)
        )
        _audit(conn, resolved, result.status, resolved_by)
        result.refused.update(_refusals(conn, resolved_by))
        conn.execute("DROP TABLE pg_temp.review_batch, pg_temp.review_markets")
    return result


def _unavailable(conn: psycopg.Connection, item_ids: tuple[uuid.UUID, ...]) -> dict[str, int]:
    """Items named by id that cannot be resolved: missing, or no longer pending."""
    if not item_ids:
        return {}
    found: dict[uuid.UUID, str] = dict(
        conn.execute(
            "SELECT id, status FROM prediction_unmatched_signals WHERE id = ANY(%s::uuid[])",
            (list(item_ids),),
        ).fetchall()
    )
    reasons = Counter(
        "no such review item" if i not in found else f"already {found[i]}"
        for i in set(item_ids)
        if found.get(i) != "PENDING"
    )
    return dict(reasons)


def _outside(conn: psycopg.Connection, item_ids: tuple[uuid.UUID, ...]) -> int:
    """Pending items named by id that the rest of the filter left out."""
    row = conn.execute(
        "SELECT count(*) FROM prediction_unmatched_signals u WHERE u.id = ANY(%s::uuid[])"
        " AND u.status = 'PENDING' AND u.id NOT IN (SELECT id FROM review_batch)",
        (list(item_ids),),
    ).fetchone()
    return int(row[0]) if row else 0


def _select_batch(conn: psycopg.Connection, where: ReviewFilter, limit: int | None) -> int:
    """review_batch: the chosen items' markets, every pending item of each, locked; and
    review_markets: one row per market, with its owner and newest item's facts."""
    condition, params = replace(where, status="PENDING").where()  # only pending items
    conn.execute("DROP TABLE IF EXISTS pg_temp.review_batch, pg_temp.review_markets")
    conn.execute(
        f"""CREATE TEMP TABLE review_batch ON COMMIT DROP AS
            WITH chosen AS (
              SELECT DISTINCT u.feed_id, u.source_event_id FROM (
                SELECT u.feed_id, u.source_event_id {_ITEMS_FROM}
                WHERE {condition} ORDER BY u.created_at, u.id LIMIT %(limit)s) u
            ), locked AS (
              SELECT u.id FROM prediction_unmatched_signals u
              JOIN chosen c ON c.feed_id = u.feed_id
                           AND c.source_event_id IS NOT DISTINCT FROM u.source_event_id
              WHERE u.status = 'PENDING' ORDER BY u.id FOR UPDATE OF u
            )
            SELECT u.id, u.feed_id, u.source_event_id, u.signal_type, u.value, u.narrative,
                   u.raw_data, u.suggested_event_id, u.created_at, f.user_id AS owner,
                   s.source_id AS feed_source, coalesce(u.raw_data->>'source', s.source_id)
                   AS source, coalesce(f.default_weight, 1.0) AS weight,
                   dense_rank() OVER (ORDER BY u.feed_id, u.source_event_id) AS market,
                   false AS written
            {_ITEMS_FROM}
            WHERE u.id IN (SELECT id FROM locked)""",  # noqa: S608
        {**params, "limit": limit},
    )
    count = conn.execute("SELECT count(*) FROM review_batch").fetchone()
    return int(count[0]) if count else 0


def _decide_markets(conn: psycopg.Connection, decision: Decision, event_id: Any) -> None:
    """Each market's event (the named one, its suggestion, or none yet) and, when its owner
    cannot see that event, why it is refused."""
    conn.execute(
        """CREATE TEMP TABLE review_markets ON COMMIT DROP AS
           WITH markets AS (
             SELECT DISTINCT ON (b.market) b.market, b.feed_id, b.source_event_id, b.owner,
                    b.source, b.feed_source, b.raw_data, b.suggested_event_id
             FROM review_batch b ORDER BY b.market, b.created_at DESC, b.id
           ), owners AS (
             SELECT o.owner, predict_user_orgs(o.owner) AS orgs
             FROM (SELECT DISTINCT owner FROM markets) o
           )
           SELECT m.*, t.target,
                  CASE WHEN %(decision)s IN ('new_event', 'discard') THEN NULL
                       WHEN t.target IS NULL THEN 'the market has no suggested event'
                       WHEN NOT predict_sees_event(m.owner, o.orgs, e.is_public, e.org_id,
                                                   e.created_by)
                         THEN 'event ' || t.target || ' is not visible to the feed''s owner'
                  END AS refusal
           FROM markets m JOIN owners o ON o.owner = m.owner
           CROSS JOIN LATERAL (
             SELECT CASE %(decision)s WHEN 'event' THEN %(event)s::uuid
                                      WHEN 'suggested' THEN m.suggested_event_id END AS target
           ) t
           LEFT JOIN prediction_events e ON e.id = t.target""",
        {"decision": decision, "event": event_id},
    )


def _create_events(conn: psycopg.Connection, created_by: uuid.UUID | None) -> int:
    """An event for each market, from its facts, private to the feed's owner (one statement)."""
    with conn.cursor(row_factory=dict_row) as cur:
        markets = cur.execute(
            "SELECT market, owner, source, source_event_id, raw_data FROM review_markets"
            " WHERE refusal IS NULL ORDER BY market"
        ).fetchall()
    new = []
    for m in markets:
        facts = m["raw_data"].get("market") or {}
        closes = facts.get("close_time")
        new.append(
            linking.NewEvent(
                owner=m["owner"],
                source=m["source"],
                source_event_id=m["source_event_id"] or "",
                title=(facts.get("title") or "").strip()
                or linking.display_market_id(m["source_event_id"])
                or "event",
                close_time=datetime.fromisoformat(closes) if closes else None,
                source_url=m["raw_data"].get("source_url"),
                category_hints=tuple(
                    h for h in facts.get("category_hints") or [] if isinstance(h, str)
                ),
            )
        )
    created = linking.create_events(
        conn, new, created_by=created_by, reason="review: a new event from the market"
    )
    conn.execute(
        "UPDATE review_markets k SET target = x.event_id"
        " FROM unnest(%s::bigint[], %s::uuid[]) AS x(market, event_id) WHERE k.market = x.market",
        ([m["market"] for m in markets], created),
    )
    return len(created)


def _write_signals(conn: psycopg.Connection) -> int:
    """The queued values of the markets with an event become its signals (a stored dedup key
    is skipped); the months' partitions are made first."""
    months = conn.execute(
        """SELECT DISTINCT date_trunc('month', (b.raw_data->>'fetched_at')::timestamptz
                                    AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           FROM review_batch b JOIN review_markets k ON k.market = b.market
           WHERE k.target IS NOT NULL AND k.refusal IS NULL AND b.signal_type IS NOT NULL
             AND b.raw_data->>'fetched_at' IS NOT NULL"""
    ).fetchall()
    make_partitions(conn, "prediction_signals", [moment for (moment,) in months])
    reliability = {s.source_id: s.reliability for s in SOURCES.values()}
    cursor = conn.execute(
        """WITH written AS (
             INSERT INTO prediction_signals
               (event_id, feed_id, source, source_url, source_event_id, signal_type, value,
                raw_data, narrative, weight, reliability, fetched_at)
             SELECT k.target, b.feed_id, b.source, b.raw_data->>'source_url', b.source_event_id,
                    b.signal_type, b.value, b.raw_data->'record', b.narrative, b.weight,
                    r.reliability, (b.raw_data->>'fetched_at')::timestamptz
             FROM review_batch b JOIN review_markets k ON k.market = b.market
             LEFT JOIN unnest(%s::text[], %s::numeric[]) AS r(source_id, reliability)
               ON r.source_id = b.feed_source
             WHERE k.target IS NOT NULL AND k.refusal IS NULL AND b.signal_type IS NOT NULL
               AND b.raw_data->>'fetched_at' IS NOT NULL
             ON CONFLICT DO NOTHING
             RETURNING feed_id, source_event_id, signal_type, fetched_at, event_id),
           rescoring AS (
             -- Resolved events that got history are scored again (calibration/resolutions).
             UPDATE prediction_resolutions SET scored_at = NULL
             WHERE scored_at IS NOT NULL AND event_id IN (SELECT event_id FROM written))
           UPDATE review_batch b SET written = true FROM written w
           WHERE w.feed_id = b.feed_id AND w.source_event_id IS NOT DISTINCT FROM b.source_event_id
             AND w.signal_type = b.signal_type
             AND w.fetched_at = (b.raw_data->>'fetched_at')::timestamptz""",
        (list(reliability), list(reliability.values())),
    )
    return cursor.rowcount


def _apply(
    conn: psycopg.Connection, status: str, resolved_by: uuid.UUID | None, now: datetime
) -> list[dict[str, Any]]:
    """Items resolved; each owner's decision remembered for the market; settlements of the
    market carried over to its event. Returns the items resolved."""
    with conn.cursor(row_factory=dict_row) as cur:
        resolved = cur.execute(
            """UPDATE prediction_unmatched_signals u
               SET status = %(status)s, resolved_event_id = k.target,
                   resolved_by = %(by)s, resolved_at = %(now)s
               FROM review_batch b JOIN review_markets k ON k.market = b.market
               WHERE u.id = b.id AND k.refusal IS NULL
               RETURNING u.id, b.market, k.target, b.feed_id, b.owner, b.source,
                         b.source_event_id, b.signal_type, b.written, b.suggested_event_id""",
            {"status": status, "by": resolved_by, "now": now},
        ).fetchall()
    method = {"DISCARDED": "discarded", "NEW_EVENT_CREATED": "created"}.get(status, "review")
    conn.execute(
        """INSERT INTO predict_meta.market_links
             (source, user_id, source_event_id, event_id, method, linked_by)
           SELECT k.source, k.owner, k.source_event_id, k.target, %s, %s
           FROM review_markets k
           WHERE k.refusal IS NULL AND k.source_event_id IS NOT NULL
           ON CONFLICT (source, user_id, source_event_id) DO UPDATE
             SET event_id = EXCLUDED.event_id, method = EXCLUDED.method, confidence = NULL,
                 linked_by = EXCLUDED.linked_by, linked_at = now()""",
        (method, resolved_by),
    )
    # A settled market matched by review can now resolve its event (another user's row of the
    # same market, linked to their own event, is left as it is).
    conn.execute(
        """INSERT INTO predict_meta.market_settlements
             (source, source_event_id, event_id, resolution, resolution_probability,
              resolved_at, last_price, source_url, observed_at)
           SELECT DISTINCT ON (k.market) ms.source, ms.source_event_id, k.target, ms.resolution,
                  ms.resolution_probability, ms.resolved_at, ms.last_price, ms.source_url,
                  ms.observed_at
           FROM review_markets k
           JOIN predict_meta.market_settlements ms
             ON ms.source = k.source AND ms.source_event_id = k.source_event_id
           WHERE k.refusal IS NULL AND k.target IS NOT NULL
           ORDER BY k.market, ms.observed_at DESC
           ON CONFLICT DO NOTHING"""
    )
    return resolved


def _audit(
    conn: psycopg.Connection,
    resolved: list[dict[str, Any]],
    status: str,
    resolved_by: uuid.UUID | None,
) -> None:
    """One audit row per item resolved, in one statement."""
    record_audits(
        conn,
        action=f"unmatched_signal.{status.lower()}",
        resource_type="prediction_unmatched_signals",
        actor_type="user" if resolved_by else "service",
        actor_id=resolved_by,
        entries=[
            (
                r["id"],
                {
                    "feed_id": str(r["feed_id"]),
                    "owner": str(r["owner"]),
                    "source": r["source"],
                    "source_event_id": r["source_event_id"],
                    "signal_type": r["signal_type"],
                    "previous_status": "PENDING",
                    "status": status,
                    "event_id": str(r["target"]) if r["target"] else None,
                    "signal_written": r["written"],
                    "suggested_event_id": str(r["suggested_event_id"])
                    if r["suggested_event_id"]
                    else None,
                },
            )
            for r in resolved
        ],
    )


def _refusals(conn: psycopg.Connection, resolved_by: uuid.UUID | None) -> dict[str, int]:
    """Items refused (left pending), per reason. An event refused because the feed's owner
    cannot see it is audited per item as a warning (one statement)."""
    with conn.cursor(row_factory=dict_row) as cur:
        refused = cur.execute(
            """SELECT b.id, b.feed_id, b.owner, b.source_event_id, k.target, k.refusal
               FROM review_batch b JOIN review_markets k ON k.market = b.market
               WHERE k.refusal IS NOT NULL ORDER BY b.id"""
        ).fetchall()
    record_audits(
        conn,
        action="unmatched_signal.refused",
        resource_type="prediction_unmatched_signals",
        severity="WARNING",
        actor_type="user" if resolved_by else "service",
        actor_id=resolved_by,
        entries=[
            (
                r["id"],
                {
                    "feed_id": str(r["feed_id"]),
                    "owner": str(r["owner"]),
                    "source_event_id": r["source_event_id"],
                    "event_id": str(r["target"]) if r["target"] else None,
                    "reason": r["refusal"],
                },
            )
            for r in refused
            if r["target"] is not None  # a missing suggestion is no attempt on anything
        ],
    )
    return dict(Counter(r["refusal"] for r in refused))
