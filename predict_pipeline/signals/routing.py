"""Where each market of a feed goes: an event, the discard pile, or review (with why).

The event is a manual mapping's, the owner's saved link's, a similarity match's, or one created
for the market; only events the feed's owner can see are ever chosen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from predict_pipeline.ingestion.store import Feed
from predict_pipeline.model import NormalisedRecord
from predict_pipeline.signals import linking
from predict_pipeline.signals.matcher import Matcher, SimilarityMatcher
from predict_pipeline.signals.similarity import (
    DEFAULT_MATCH_THRESHOLD,
    EventRef,
    MarketRef,
    MatchDecision,
)


@dataclass(frozen=True, slots=True)
class MatchingSettings:
    threshold: float = DEFAULT_MATCH_THRESHOLD
    matcher: Matcher = field(default_factory=SimilarityMatcher)


# A market becomes an event of its own when nothing its owner can see resembles it: no open
# event scores this or more (a near-twin capped for a conflicting number or direction scores
# exactly 0.40, and goes to a reviewer, who knows whether it is a new question) and its facts
# make a question: a price, a title of its own and a close time. `ai` mapping creates for any
# source; `auto` only for a user-defined source (upload, webhook, custom_api), whose markets are
# the user's own questions; a platform listing of hundreds of markets waits for review in
# `auto` rather than becoming hundreds of events.
AUTO_CREATE_BELOW = 0.40
AUTO_CREATE_REASON = "auto: no open event the owner can see resembles the market"


@dataclass(slots=True)
class _Routing:
    """Where each market of a feed goes: an event, the discard pile, or review (with why)."""

    links: dict[str, uuid.UUID] = field(default_factory=dict)
    discarded: set[str] = field(default_factory=set)
    decisions: dict[str, MatchDecision] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # why a market waits for review
    created: int = 0


def _route_markets(
    conn: psycopg.Connection,
    feed: Feed,
    markets: dict[str, NormalisedRecord],
    priced: set[str],
    matching: MatchingSettings,
    events: Callable[[], list[EventRef]],
    namespace: str | None,
) -> _Routing:
    """Event of each market: manual mapping, then the owner's link, then similarity against
    the events the owner can see, then an event of its own (AUTO_CREATE_BELOW). Only events
    visible to the feed's owner are ever chosen; a mapping or link to any other goes to review,
    saying so."""
    ids = list(markets)
    routing = _Routing()
    manual, refused = _manual_mappings(conn, feed, namespace)
    for sid in ids:
        if sid in manual:
            routing.links[sid] = manual[sid]
        elif sid in refused:
            routing.reasons[sid] = refused[sid]
    if feed.event_mapping_mode == "manual":
        for sid in ids:
            if sid not in routing.links and sid not in routing.reasons:
                routing.reasons[sid] = "manual mapping mode: no manual_event_mappings entry"
        return routing
    todo = [sid for sid in ids if sid not in routing.links and sid not in routing.reasons]
    for sid, link in linking.load_links(conn, feed.source, feed.user_id, todo).items():
        if link.event_id is None:
            routing.discarded.add(sid)
        elif link.visible:
            routing.links[sid] = link.event_id
        else:
            routing.reasons[sid] = (
                f"linked to event {link.event_id}, which the feed's owner can no longer see"
            )
    todo = [
        sid
        for sid in todo
        if sid not in routing.links and sid not in routing.discarded and sid not in routing.reasons
    ]
    if not todo:
        return routing
    refs = [_market_ref(markets[sid]) for sid in todo]
    accepted: list[tuple[str, uuid.UUID | None, str, float | None]] = []
    new: list[linking.NewEvent] = []
    creates = feed.event_mapping_mode == "ai" or namespace is not None
    candidates = events()
    allowed = {event.id for event in candidates}
    chosen = matching.matcher.match_many(refs, candidates, threshold=matching.threshold)
    for ref, decision in zip(refs, chosen, strict=True):
        sid = ref.source_event_id
        routing.decisions[sid] = decision
        if decision.event_id is not None and decision.event_id not in allowed:
            # A pluggable matcher answers with an event it was not offered: never followed.
            routing.reasons[sid] = (
                f"the matcher chose event {decision.event_id}, which the feed's owner cannot see"
            )
        elif decision.event_id is not None:
            event_id = uuid.UUID(str(decision.event_id))
            routing.links[sid] = event_id
            accepted.append((sid, event_id, "similarity", round(decision.confidence, 2)))
        elif creates and sid in priced and _creatable(markets[sid], decision):
            new.append(_new_event(markets[sid], feed.user_id))
    if new:
        created = linking.create_events(conn, new, created_by=None, reason=AUTO_CREATE_REASON)
        for market, event_id in zip(new, created, strict=True):
            routing.links[market.source_event_id] = event_id
            accepted.append((market.source_event_id, event_id, "created", None))
        routing.created = len(created)
    linking.save_links(conn, feed.source, feed.user_id, accepted)
    return routing


def _creatable(record: NormalisedRecord, decision: MatchDecision) -> bool:
    """AUTO_CREATE_BELOW: nothing resembles the market, and its facts make a question."""
    best = decision.attempts[0].score if decision.attempts else 0.0
    facts = record.market
    title = (facts.title or "").strip()
    return (
        best < AUTO_CREATE_BELOW
        and bool(title)
        and title != linking.display_market_id(record.source_event_id)
        and _aware(facts.close_time) is not None
    )


def _new_event(record: NormalisedRecord, owner: uuid.UUID) -> linking.NewEvent:
    facts = record.market
    return linking.NewEvent(
        owner=owner,
        source=record.source,
        source_event_id=record.source_event_id,
        title=(facts.title or "").strip(),
        close_time=_aware(facts.close_time),
        source_url=record.source_url,
        category_hints=tuple(h for h in facts.category_hints if isinstance(h, str)),
    )


def _aware(moment: Any) -> datetime | None:
    return moment if isinstance(moment, datetime) and moment.tzinfo is not None else None


def _market_ref(record: NormalisedRecord) -> MarketRef:
    m = record.market
    close = m.close_time if isinstance(m.close_time, datetime) and m.close_time.tzinfo else None
    return MarketRef(
        source=record.source,
        source_event_id=record.source_event_id,
        title=m.title or linking.display_market_id(record.source_event_id) or "",
        slug=m.slug,
        close_time=close,
        category_hints=tuple(m.category_hints),
        outcome=m.outcome,
    )


def _manual_mappings(
    conn: psycopg.Connection, feed: Feed, namespace: str | None
) -> tuple[dict[str, uuid.UUID], dict[str, str]]:
    """The feed's manual_event_mappings (market id as sent -> event id) that name events its
    owner can see, by stored market id; and why each other mapping of an existing event was
    refused. Mappings of events that do not exist, or that are not ids, are ignored."""
    raw = feed.manual_event_mappings or {}
    wanted: dict[str, uuid.UUID] = {}
    for sid, value in raw.items():
        try:
            wanted[(namespace or "") + str(sid)] = uuid.UUID(str(value))
        except ValueError:
            continue
    visible = linking.event_visibility(conn, feed.user_id, wanted.values())
    mapped = {sid: eid for sid, eid in wanted.items() if visible.get(eid)}
    refused = {
        sid: f"manual_event_mappings names event {eid}, which the feed's owner cannot see"
        for sid, eid in wanted.items()
        if visible.get(eid) is False
    }
    return mapped, refused
