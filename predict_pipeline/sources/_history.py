"""Readers shared by the Kalshi, Manifold and Metaculus adapters.

Field reads that fail raise `PayloadError` naming source, endpoint and the offending item;
history windows travel in a request's `context` so a landed page can be parsed again;
items an adapter deliberately does not turn into records are reported on the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator

from predict_pipeline.model import (
    FetchWindow,
    MarketFacts,
    NormalisedRecord,
    PageNavigation,
    PageRecords,
    PageRequest,
    PayloadError,
    RecordReject,
)
from predict_pipeline.sources.parsing import (
    finite_float,
    utc_from_epoch_ms,
    utc_from_epoch_s,
    utc_from_iso,
)


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """An item of a body that produced no record of some kind, and why (never silent)."""

    item: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordsWithSkips(PageRecords):
    """Records of a page that also say which items made no record, and why."""

    skipped: tuple[SkippedItem, ...] = ()


@dataclass(frozen=True, slots=True)
class WholePage:
    """Records and navigation of a page read together: where the follow-ups come from the
    items themselves (a backfill listing plans each market's history), or a page is small."""

    endpoint: str
    records: list[NormalisedRecord]
    next_requests: list[PageRequest] = field(default_factory=list)
    rejects: list[RecordReject] = field(default_factory=list)
    skipped: tuple[SkippedItem, ...] = ()
    items: int = 0

    def navigation(self) -> PageNavigation:
        return PageNavigation(self.endpoint, self.next_requests, items=self.items)

    def content(self) -> RecordsWithSkips:
        return RecordsWithSkips(self.endpoint, self.records, self.rejects, self.skipped)


class BodyReader:
    """Reads fields of one response body; every fault names source, endpoint and item."""

    def __init__(self, source: str, endpoint: str):
        self.source = source
        self.endpoint = endpoint

    def fail(self, reason: str) -> PayloadError:
        return PayloadError(self.source, self.endpoint, reason)

    def mapping(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{what}: expected an object, got {type(value).__name__}")
        return value

    def listing(self, value: Any, what: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(f"{what}: expected a list, got {type(value).__name__}")
        return value

    def identifier(self, obj: dict[str, Any], key: str, what: str) -> str:
        """A required id: a non-empty string or an integer, returned as text."""
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise self.fail(f"{what}: missing or invalid {key!r} (got {value!r})")
        return str(value)

    def text(self, obj: dict[str, Any], key: str, what: str) -> str | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{what}: {key!r} must be text, got {type(value).__name__}")
        return value

    def number(self, value: Any, what: str) -> float | None:
        """A finite number from a number or numeric string; None for null or ''."""
        try:
            return finite_float(value)
        except (TypeError, ValueError):
            raise self.fail(f"{what}: expected a number, got {value!r}") from None

    def probability(self, value: Any, what: str) -> float | None:
        number = self.number(value, what)
        if number is not None and not 0.0 <= number <= 1.0:
            raise self.fail(f"{what}: probability {number!r} is outside [0, 1]")
        return number

    def epoch_ms(self, value: Any, what: str) -> datetime | None:
        number = self.number(value, what)
        return None if number is None else utc_from_epoch_ms(number)

    def epoch_s(self, value: Any, what: str) -> datetime | None:
        number = self.number(value, what)
        return None if number is None else utc_from_epoch_s(number)

    def iso(self, value: Any, what: str) -> datetime | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(f"{what}: expected an ISO-8601 time, got {value!r}")
        try:
            return utc_from_iso(value)
        except ValueError:
            raise self.fail(f"{what}: expected an ISO-8601 time, got {value!r}") from None


def resolve_config(
    source: str, schema: dict[str, Any], defaults: dict[str, Any], config: dict[str, Any]
) -> dict[str, Any]:
    """The feed config over the defaults, validated; errors never echo credential values."""
    merged = {**defaults, **(config or {})}
    errors = sorted(Draft202012Validator(schema).iter_errors(merged), key=lambda e: e.json_path)
    if errors:
        first = errors[0]
        secret = "credentials" in first.absolute_path
        detail = f"invalid value ({first.validator})" if secret else first.message
        raise ValueError(f"{source} config {first.json_path}: {detail}")
    return merged


def window_context(window: FetchWindow) -> dict[str, str]:
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}


def window_of(request: PageRequest | None, window: FetchWindow | None) -> FetchWindow | None:
    """The window a page was fetched for: the caller's, else the one planned into the request."""
    if window is not None:
        return window
    context = request.context if request is not None else {}
    if "window_start" in context and "window_end" in context:
        return FetchWindow(
            start=utc_from_iso(context["window_start"]), end=utc_from_iso(context["window_end"])
        )
    return None


def is_backfill(request: PageRequest | None, window: FetchWindow | None) -> bool:
    """Backfill pages are marked in the planned context; a bare body with a window is history."""
    if request is not None:
        return request.context.get("mode") == "backfill"
    return window is not None


def in_window(moment: datetime, window: FetchWindow | None) -> bool:
    return window is None or window.start <= moment < window.end


def epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def epoch_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def facts_context(facts: MarketFacts) -> dict[str, Any]:
    """MarketFacts as JSON-ready values, so a history request carries what the poll knew."""
    return {
        "title": facts.title,
        "slug": facts.slug,
        "category_hints": list(facts.category_hints),
        "close_time": facts.close_time.isoformat() if facts.close_time else None,
        "status": facts.status,
        "resolution": facts.resolution,
        "resolution_probability": facts.resolution_probability,
        "resolution_time": facts.resolution_time.isoformat() if facts.resolution_time else None,
        "parent_id": facts.parent_id,
        "outcome": facts.outcome,
    }


def facts_from_context(context: dict[str, Any] | None) -> MarketFacts:
    if not context:
        return MarketFacts()
    close_time = context.get("close_time")
    resolution_time = context.get("resolution_time")
    return MarketFacts(
        title=context.get("title"),
        slug=context.get("slug"),
        category_hints=tuple(context.get("category_hints") or ()),
        close_time=utc_from_iso(close_time) if close_time else None,
        status=context.get("status") or "unknown",
        resolution=context.get("resolution"),
        resolution_probability=context.get("resolution_probability"),
        resolution_time=utc_from_iso(resolution_time) if resolution_time else None,
        parent_id=context.get("parent_id"),
        outcome=context.get("outcome"),
    )
