"""The adapter contract and the registry of built-in adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from predict_pipeline.feeds.records import PageRequest, ParsedPage

FetchMode = Literal["poll", "backfill"]


@dataclass(frozen=True, slots=True)
class FetchWindow:
    """The half-open time window [start, end) a fetch covers (tz-aware UTC)."""

    start: datetime
    end: datetime


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
