"""The adapter contract and the registry of built-in adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol

from predict_pipeline.feeds.records import PageRequest, ParsedPage

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


class Adapter(Protocol):
    source: str

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """The first requests of a fetch: the latest state (poll) or the window's history."""
        ...

    def parse(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> ParsedPage:
        """Read one decoded JSON body. With no request, recognise the endpoint from content.

        Raises PayloadError naming source, endpoint and fault when the body cannot be read.
        """
        ...
