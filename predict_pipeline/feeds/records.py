"""The normalised shapes every adapter produces and every later stage consumes.

Adapters are pure: they plan requests (`PageRequest`), read response bodies and return
`NormalisedRecord`s. They know nothing of HTTP transport, Postgres or Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SIGNAL_TYPES = ("MARKET_PRICE", "SENTIMENT", "VOLUME", "NEWS", "SOCIAL", "EXPERT", "MANUAL")
RESOLUTIONS = ("YES", "NO", "AMBIGUOUS", "CANCELLED")
MARKET_STATUSES = ("open", "closed", "resolved", "cancelled", "unknown")
# Text that Postgres indexes (idx_signals_dedup, the unmatched queue's and market links' keys):
# a btree entry holds at most 2704 bytes, so these bounds keep a whole key far below it.
MAX_SOURCE_EVENT_ID_BYTES = 1024
MAX_SOURCE_BYTES = 128


class PayloadError(ValueError):
    """A response body that cannot be read; names the source, the endpoint and the fault."""

    def __init__(self, source: str, endpoint: str, reason: str):
        self.source = source
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"{source} {endpoint}: {reason}")


@dataclass(frozen=True, slots=True)
class MarketFacts:
    """What later stages need to match a market to an event and to resolve it."""

    title: str | None = None
    slug: str | None = None
    category_hints: tuple[str, ...] = ()
    close_time: datetime | None = None
    status: str = "unknown"  # one of MARKET_STATUSES
    resolution: str | None = None  # one of RESOLUTIONS once settled
    resolution_time: datetime | None = None
    parent_id: str | None = None  # event / series / market group the question belongs to
    outcome: str | None = None  # the outcome this question prices ("Yes", an answer's text)


@dataclass(frozen=True, slots=True)
class NormalisedRecord:
    source: str
    source_event_id: str
    signal_type: str  # one of SIGNAL_TYPES
    value: float | None
    fetched_at: datetime  # when the value was observed, tz-aware UTC
    source_url: str | None = None
    narrative: str | None = None
    raw_data: dict[str, Any] = field(default_factory=dict)
    market: MarketFacts = field(default_factory=MarketFacts)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One HTTP request an adapter wants made; `endpoint` tells the adapter how to read it.

    `context` carries what the adapter already knows when it plans the request (for
    example the market facts of a token whose price history is asked for); it is kept
    with the page in the landing zone so the page can be parsed again later.
    """

    endpoint: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordReject:
    """An item of a page that could not be read into records: kept with its named reason, so
    one bad item never sinks the rest of its page."""

    reason: str  # a named reason, snake_case: "unreadable_item", "timestamp_out_of_range", ...
    detail: str  # one line saying what was wrong
    item_index: int  # the item's position in the page, as the adapter walked it
    source_event_id: str | None = None
    item: Any = None  # the item as received (kept for review; never a secret)


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """Records read from one response, and the requests it leads to (next page, history)."""

    endpoint: str
    records: list[NormalisedRecord]
    next_requests: list[PageRequest] = field(default_factory=list)
    cursor: str | None = None  # incremental cursor to persist for the feed
    rejects: list[RecordReject] = field(default_factory=list)
