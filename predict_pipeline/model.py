"""The vocabulary every stage shares: signal types (and which carry a probability),
resolutions, the normalised record and its market facts, page requests, navigation and
records, rejects, and the time windows fetches and stages work in.

Adapters (sources/) produce these; ingestion, signals, trust and rules read them. Nothing
here knows of HTTP, Postgres or Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

SIGNAL_TYPES = ("MARKET_PRICE", "SENTIMENT", "VOLUME", "NEWS", "SOCIAL", "EXPERT", "MANUAL")
# The types whose value is a probability: the ones pooled, scored and compared.
PROBABILITY_TYPES = ("MARKET_PRICE", "EXPERT", "MANUAL")
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
    # The probability a market resolved to when it settled at neither 1 nor 0 (Manifold MKT,
    # Kalshi scalar, a Polymarket 50-50): kept beside its AMBIGUOUS resolution.
    resolution_probability: float | None = None
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
class PageNavigation:
    """Where one response leads: the next page, the follow-up requests (history of the markets
    it lists) and the feed's cursor. A fetch walks pages with this alone and never builds a
    record; the records are read once, later, from the landed page (`PageRecords`)."""

    endpoint: str
    next_requests: list[PageRequest] = field(default_factory=list)
    cursor: str | None = None  # incremental cursor to persist for the feed
    # Entries the page offers (markets, points, rows): what the fetch counts without reading them.
    items: int = 0


@dataclass(frozen=True, slots=True)
class PageRecords:
    """The records read from one response, and its items that could not be read."""

    endpoint: str
    records: list[NormalisedRecord]
    rejects: list[RecordReject] = field(default_factory=list)


FetchMode = Literal["poll", "backfill"]


@dataclass(frozen=True, slots=True)
class FetchWindow:
    """The half-open time window [start, end) a fetch covers (tz-aware UTC)."""

    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        """The UTC date of the window's first instant."""
        return self.start.astimezone(UTC).date()

    @property
    def last_day(self) -> date:
        """The UTC date of the window's last instant (the end itself is not in the window)."""
        return (self.end - _TICK).astimezone(UTC).date()


_TICK = timedelta(microseconds=1)


def history_chunks(windows: Sequence[FetchWindow]) -> list[FetchWindow]:
    """Contiguous windows merged into chunks of at most one UTC day, never across midnight.

    A backfill fetches and validates a chunk at a time: one request sequence, one feed run and
    one landed file per feed and day instead of per hour, with memory bounded by the day.
    """
    chunks: list[FetchWindow] = []
    for window in windows:
        last = chunks[-1] if chunks else None
        if last is not None and last.end == window.start and last.first_day == window.last_day:
            chunks[-1] = FetchWindow(last.start, window.end)
        else:
            chunks.append(window)
    return chunks
