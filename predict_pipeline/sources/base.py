"""The adapter contract and the registry of built-in adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from predict_pipeline.model import FetchMode, FetchWindow, PageNavigation, PageRecords, PageRequest


class Adapter(Protocol):
    source: str

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """The first requests of a fetch: the latest state (poll) or the window's history."""
        ...

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageNavigation:
        """Where one decoded JSON body leads (next page, follow-ups, cursor), read without
        building records: what a fetch needs to walk the pages.

        Raises PayloadError naming source, endpoint and fault when the body cannot be read.
        """
        ...

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageRecords:
        """The records of one decoded JSON body and the items it could not read. With no
        request, recognise the endpoint from content.

        Raises PayloadError naming source, endpoint and fault when the body cannot be read.
        """
        ...


@dataclass(frozen=True, slots=True)
class ReadPage:
    """Both readings of one body, for tests and diagnosis: the pipeline never needs both at
    once (a fetch navigates, the signals stage reads records). Attributes of either reading
    are read through (`page.records`, `page.next_requests`, an adapter's own extras)."""

    navigation: PageNavigation
    content: PageRecords

    def __getattr__(self, name: str) -> Any:
        for part in (self.content, self.navigation):
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(name)

    @property
    def endpoint(self) -> str:
        return self.content.endpoint

    @property
    def skipped(self) -> tuple[Any, ...]:
        """Items either reading skipped, with why (a record not made, a page not asked for)."""
        return tuple(getattr(self.content, "skipped", ())) + tuple(
            getattr(self.navigation, "skipped", ())
        )


def read_page(
    adapter: Adapter,
    payload: Any,
    *,
    fetched_at: datetime,
    request: PageRequest | None = None,
    window: FetchWindow | None = None,
) -> ReadPage:
    """Navigation and records of one body (tests and diagnosis)."""
    return ReadPage(
        navigation=adapter.navigate(payload, request=request, window=window),
        content=adapter.read_records(
            payload, fetched_at=fetched_at, request=request, window=window
        ),
    )
