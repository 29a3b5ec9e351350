"""fetch_path: the fetch of one backfill day, in microseconds per point: plan, send, decode and
walk every page (`fetch_feed`, what raw_feed_fetches runs per feed), with the network taken
out, against decoding the same bodies alone (`json.loads`), measured in the same run.

Two sources, each one UTC day of hourly history:
- custom_api: tests/scaleout/history_server.py's history (the feed bench/backfill.py
  backfills), 500 points a page, served from memory by an httpx MockTransport.
- polymarket: one CLOB /prices-history page per market token (minute points), planned from a
  Gamma listing of the recorded markets, served from memory.

What is left above the decode baseline is what the fetch itself costs per point: reading a
page for where it leads, and (before the adapters split navigation from records) building
every record the signals stage builds again from the landed page. PREDICT_BENCH_FETCH_MARKETS
sets the custom_api markets (default 500: 12,000 points). Prints each source's figures, then
`fetch_path: ratio X.XX (target <= 3.0)`, the larger of the two ratios to json.loads.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predict_pipeline.http import HttpClient
from predict_pipeline.ingestion.fetcher import fetch_feed
from predict_pipeline.ingestion.store import Feed
from predict_pipeline.model import FetchWindow
from predict_pipeline.sources import custom_api, polymarket
from tests.scaleout.history_server import HistoryServer, feed_config

MARKETS = int(os.environ.get("PREDICT_BENCH_FETCH_MARKETS") or 500)
ORIGIN = datetime(2025, 1, 1, tzinfo=UTC)
DAY = FetchWindow(ORIGIN, ORIGIN + timedelta(days=1))
HISTORY_MARKETS = 60  # polymarket: markets of the listing, two tokens each
RUNS = 5


def _feed(source: str, config: dict) -> Feed:
    return Feed(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        name=f"bench-{source}",
        source=source,
        adapter_type=source,
        config=config,
        config_schema=None,
        default_config=None,
        credentials_encrypted=None,
        poll_interval_minutes=None,
        cron_expression=None,
        next_run_at=None,
        enabled=True,
        consecutive_failures=0,
        supports_pull=True,
        supports_backfill=True,
        rate_limit_rpm=None,
        cursor=None,
    )


def _client(bodies: dict[str, bytes]) -> HttpClient:
    """A client whose every answer is a body made before the clock starts."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=bodies[str(request.url)]
        )

    return HttpClient(transport=httpx.MockTransport(answer), resolver=None, max_retries=0)


def custom_api_case() -> tuple[Feed, dict[str, bytes], int]:
    server = HistoryServer(MARKETS, ORIGIN, 24)
    try:
        config = feed_config("http://history.bench/prices")
        [first] = custom_api.ADAPTER.plan(config, "backfill", DAY, None)
        bodies, points, offset = {}, 0, 0
        while True:
            params = {**first.params, "offset": str(offset)}
            items = server.items(DAY.start, DAY.end, offset, 500)
            url = str(httpx.URL(first.url, params=params))
            bodies[url] = orjson.dumps({"items": items})
            points += len(items)
            if len(items) < 500:
                break
            offset += 500
    finally:
        server.close()
    return _feed("custom_api", config), bodies, points


def polymarket_case() -> tuple[Feed, dict[str, bytes], int]:
    recorded = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
    listing = json.loads((recorded / "polymarket_gamma_markets.json").read_text())
    template = next(m for m in listing if m.get("clobTokenIds"))
    markets = []
    for index in range(HISTORY_MARKETS):
        tokens = [str(10**20 + 2 * index), str(10**20 + 2 * index + 1)]
        markets.append({**template, "id": str(900000 + index), "clobTokenIds": json.dumps(tokens)})
    config = {"page_size": 100, "history_fidelity_minutes": 1}
    [first] = polymarket.ADAPTER.plan(config, "backfill", DAY, None)
    bodies = {str(httpx.URL(first.url, params=first.params)): orjson.dumps(markets)}
    start = int(DAY.start.timestamp())
    points = 0
    navigation = polymarket.ADAPTER.navigate(markets, request=first, window=DAY)
    for request in navigation.next_requests:
        token = int(
            parse_qs(urlsplit(str(httpx.URL(request.url, params=request.params))).query)["market"][
                0
            ]
        )
        history = [
            {"t": start + 60 * k, "p": round(0.5 + 0.4 * ((token + k) % 97) / 97 - 0.2, 4)}
            for k in range(24 * 60)
        ]
        bodies[str(httpx.URL(request.url, params=request.params))] = orjson.dumps(
            {"history": history}
        )
        points += len(history)
    return _feed("polymarket", config), bodies, points


def measure(name: str, feed: Feed, bodies: dict[str, bytes], points: int) -> float:
    adapter = custom_api.ADAPTER if feed.source == "custom_api" else polymarket.ADAPTER

    def fetch() -> None:
        with _client(bodies) as client:
            outcome = fetch_feed(
                feed, adapter, client, mode="backfill", window=DAY, feed_run_id="bench"
            )
        assert outcome.result.status == "SUCCESS", outcome.result.error_message
        assert len(outcome.pages) == len(bodies)

    def decode() -> None:
        for body in bodies.values():
            json.loads(body)

    fetched = _best(fetch)
    decoded = _best(decode)
    print(
        f"  {name}: {fetched / points * 1e6:.2f} us/point over {points:,} points "
        f"({len(bodies)} pages); json.loads alone {decoded / points * 1e6:.2f} us/point; "
        f"ratio {fetched / decoded:.2f}"
    )
    return fetched / decoded


def _best(run) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


# The fetch walks pages by navigation alone: about twice json.loads of the same bodies (it
# parsed every page whole before, 15-21 times json.loads; 7-8 us a point more).
TARGET = 3.0


def main() -> None:
    ratios = [measure("custom_api", *custom_api_case()), measure("polymarket", *polymarket_case())]
    print(f"fetch_path: ratio {max(ratios):.2f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
