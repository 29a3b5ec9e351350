"""The normalised shapes every adapter produces and every later stage consumes.

Adapters are pure: they plan requests (`PageRequest`), read response bodies and return
`NormalisedRecord`s. They know nothing of HTTP transport, Postgres or Dagster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from predict_pipeline.feeds.parsing import TimestampOutOfRange

T = TypeVar("T")

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


# What reading one item of a page can raise: a body whose shape or values the adapter cannot
# read (PayloadError and the timestamp readers' errors are ValueErrors), or junk of a type the
# field readers did not expect.
ITEM_FAULTS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    RecursionError,  # nested junk deeper than the interpreter's stack
)
_DETAIL_CHARS = 300


def item_reject(
    index: int, item: Any, exc: BaseException, id_keys: tuple[str, ...]
) -> RecordReject:
    """The reject of item `index` that raised `exc`: its named reason, one line of detail, and
    its id when the item still names one."""
    ident = None
    if isinstance(item, dict):
        for key in id_keys:
            value = item.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                ident = str(value)[:MAX_SOURCE_EVENT_ID_BYTES]
                break
    detail = " ".join(str(exc).split())[:_DETAIL_CHARS] or type(exc).__name__
    cause = exc if isinstance(exc, TimestampOutOfRange) else exc.__cause__
    reason = cause.reason if isinstance(cause, TimestampOutOfRange) else "unreadable_item"
    return RecordReject(reason, detail, index, ident, item)


def read_each(
    items: list[Any], read: Callable[[int, Any], T], *, id_keys: tuple[str, ...] = ("id",)
) -> tuple[list[T], list[RecordReject]]:
    """`read(index, item)` for every item of a page; an item it cannot read becomes a reject
    with its reason and never stops the items after it."""
    results: list[T] = []
    rejects: list[RecordReject] = []
    for index, item in enumerate(items):
        try:
            results.append(read(index, item))
        except ITEM_FAULTS as exc:
            rejects.append(item_reject(index, item, exc, id_keys))
    return results, rejects
