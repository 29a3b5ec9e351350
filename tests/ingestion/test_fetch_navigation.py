"""A fetch walks pages by their navigation alone: it never builds the records the signals stage
reads from the landed pages (the adapter contract's two sides, sources/base.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from predict_pipeline.http import HttpClient
from predict_pipeline.ingestion.fetcher import fetch_feed
from predict_pipeline.ingestion.store import Feed
from predict_pipeline.model import FetchWindow
from predict_pipeline.sources import custom_api

NOW = datetime(2026, 11, 22, 15, 5, tzinfo=UTC)
WINDOW = FetchWindow(NOW - timedelta(hours=1), NOW)
API = "https://api.example.org/v1/prices"
CONFIG = {
    "url": API,
    "records_path": "$.items[*]",
    "fields": {"source_event_id": "id", "value": "p"},
    "pagination": {
        "mode": "offset",
        "limit_param": "limit",
        "offset_param": "offset",
        "page_size": 2,
    },
}


class RecordsNeverRead:
    """custom_api whose records side fails loudly: any fetch that reads records fails."""

    source = "custom_api"

    def __init__(self) -> None:
        self.navigated = 0

    def plan(self, *args, **kwargs):
        return custom_api.ADAPTER.plan(*args, **kwargs)

    def navigate(self, payload, *, request=None, window=None):
        self.navigated += 1
        return custom_api.ADAPTER.navigate(payload, request=request, window=window)

    def read_records(self, *args, **kwargs):
        raise AssertionError("a fetch read records")


def _feed() -> Feed:
    return Feed(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        name="navigation",
        source="custom_api",
        adapter_type="custom_api",
        config=CONFIG,
        config_schema=None,
        default_config=None,
        credentials_encrypted=None,
        poll_interval_minutes=15,
        cron_expression=None,
        next_run_at=None,
        enabled=True,
        consecutive_failures=0,
        supports_pull=True,
        supports_backfill=True,
        rate_limit_rpm=None,
        cursor=None,
    )


def test_a_fetch_pages_on_by_navigation_and_counts_items_without_reading_them():
    # Page 2 holds an item no record can be made of: the fetch neither reads nor refuses it.
    pages = {
        "0": [{"id": "m1", "p": 0.61}, {"id": "m2", "p": 0.2}],
        "2": [{"id": "m3", "p": "about half"}, {"id": "m4", "p": 0.4}],
        "4": [{"id": "m5", "p": 0.9}],
    }
    asked = []

    def answer(request: httpx.Request) -> httpx.Response:
        offset = request.url.params["offset"]
        asked.append(offset)
        return httpx.Response(200, json={"items": pages[offset]})

    adapter = RecordsNeverRead()
    with HttpClient(transport=httpx.MockTransport(answer), resolver=None, max_retries=0) as client:
        outcome = fetch_feed(
            _feed(),
            adapter,
            client,
            mode="poll",
            window=WINDOW,
            feed_run_id="run",
            now=lambda: NOW,
        )
    assert outcome.result.status == "SUCCESS"
    assert asked == ["0", "2", "4"] and adapter.navigated == 3
    assert [page.payload for page in outcome.pages] == [{"items": p} for p in pages.values()]
    assert outcome.result.signals_fetched == 5  # items the pages offered, one of them unreadable
    # The records are read once, from the landed pages: the unreadable item is rejected there.
    page = outcome.pages[1]
    read = custom_api.ADAPTER.read_records(
        page.payload, fetched_at=NOW, request=page.page_request()
    )
    assert [r.source_event_id for r in read.records] == ["m4"]
    assert [(r.item_index, r.reason) for r in read.rejects] == [(0, "unreadable_item")]
    assert json.loads(json.dumps(page.request))["params"]["offset"] == "2"
