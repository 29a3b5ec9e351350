"""A real local HTTP history API: hourly prices for many markets, generated deterministically.

`GET /prices?start=ISO&end=ISO&offset=N&limit=N` answers `{"items": [...]}` with one point
per market and hour whose hour starts in [start, end), in market order, paged by offset —
the shape a custom_api feed with window parameters and offset pagination reads. Used by the
scale-out test and by bench/backfill.py, so both backfill the same history.
"""

from __future__ import annotations

import math
import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import psycopg
from psycopg.types.json import Jsonb

PAGE_SIZE = 500


def market_id(index: int) -> str:
    return f"hist-{index:05d}"


def price(index: int, hour: int) -> float:
    """A smooth, market-specific walk inside (0.02, 0.98), rounded like a quoted price."""
    phase = (index * 0.6180339887) % 1.0
    wave = math.sin(2 * math.pi * (hour / (24 * (7 + index % 23)) + phase))
    return round(0.5 + 0.45 * wave * (0.6 + 0.4 * math.cos(hour / 97 + index)), 4)


class HistoryServer:
    """Serves `markets` markets' hourly history from `origin` for `hours` hours."""

    def __init__(self, markets: int, origin: datetime, hours: int) -> None:
        if (
            origin.utcoffset() != timedelta(0)
            or origin.minute
            or origin.second
            or origin.microsecond
        ):
            raise ValueError("the history starts on a whole UTC hour")
        self.markets = markets
        self.origin = origin
        self.hours = hours
        # What a point's fields take from its market alone, made once: the server shares the
        # bench's two cores with the pipeline, so it should cost little per point.
        self._market_fields = [
            (market_id(i), f"History market {i}?", f":{(i * 7) % 60:02d}:{i % 60:02d}Z")
            for i in range(markets)
        ]
        self._hour_text: dict[int, str] = {}
        self.requests = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/prices"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def items(self, start: datetime, end: datetime, offset: int, limit: int) -> list[dict]:
        first = max(0, math.ceil((start - self.origin).total_seconds() / 3600))
        last = min(self.hours, math.ceil((end - self.origin).total_seconds() / 3600))
        page = []
        # Point k of the window is (hour first + k // markets, market k % markets).
        for k in range(offset, min(offset + limit, max(0, last - first) * self.markets)):
            hour, index = first + k // self.markets, k % self.markets
            ident, title, minute_second = self._market_fields[index]
            # Observed inside the hour, spread over its minutes, so 5-minute buckets differ.
            page.append(
                {
                    "id": ident,
                    "p": price(index, hour),
                    "t": self._hour(hour) + minute_second,
                    "title": title,
                }
            )
        return page

    def _hour(self, hour: int) -> str:
        text = self._hour_text.get(hour)
        if text is None:
            text = (self.origin + timedelta(hours=hour)).strftime("%Y-%m-%dT%H")
            self._hour_text[hour] = text
        return text

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go in two writes: with Nagle's algorithm on, the client's
            # delayed ACK would hold every response ~40 ms, as no real server does.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                server.requests += 1
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                try:
                    body = orjson.dumps(
                        {
                            "items": server.items(
                                datetime.fromisoformat(query["start"]),
                                datetime.fromisoformat(query["end"]),
                                int(query.get("offset", 0)),
                                int(query.get("limit", PAGE_SIZE)),
                            )
                        }
                    )
                    status = 200
                except (KeyError, ValueError) as exc:
                    body, status = orjson.dumps({"error": str(exc)}), 400
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def feed_config(url: str) -> dict[str, Any]:
    """A custom_api feed that backfills the server's history window by window."""
    return {
        "url": url,
        "records_path": "$.items[*]",
        "fields": {"source_event_id": "id", "value": "p", "fetched_at": "t", "title": "title"},
        "window_start_param": "start",
        "window_end_param": "end",
        "window_format": "iso",
        "pagination": {
            "mode": "offset",
            "limit_param": "limit",
            "offset_param": "offset",
            "page_size": PAGE_SIZE,
            "max_pages": 100,
        },
    }


def seed_history_feed(
    conn: psycopg.Connection, url: str, markets: int, *, markets_per_event: int = 2
) -> uuid.UUID:
    """A user, the feed, an event per `markets_per_event` markets and the user's link of each
    market.

    A local server publishes no rate limit, so custom_api's polite default is lifted here.
    """
    user, feed = uuid.uuid4(), uuid.uuid4()
    with conn.transaction():
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, 'history@example.com')", (user,)
        )
        conn.execute(
            "UPDATE prediction_data_sources SET rate_limit_rpm = NULL"
            " WHERE source_id = 'custom_api'"
        )
        conn.execute(
            """INSERT INTO prediction_data_feeds (id, source_id, user_id, name, config)
               SELECT %s, id, %s, 'history', %s FROM prediction_data_sources
               WHERE source_id = 'custom_api'""",
            (feed, user, Jsonb(feed_config(url))),
        )
        events = [uuid.uuid4() for _ in range(math.ceil(markets / markets_per_event))]
        with conn.cursor().copy("COPY prediction_events (id, title, slug) FROM STDIN") as copy:
            for i, event in enumerate(events):
                copy.write_row((event, f"History event {i}", f"history-event-{i}"))
        # The owner's links; a custom_api feed's market ids live in the feed's namespace.
        with conn.cursor().copy(
            "COPY predict_meta.market_links"
            " (source, user_id, source_event_id, event_id, method, confidence) FROM STDIN"
        ) as copy:
            for i in range(markets):
                copy.write_row(
                    (
                        "custom_api",
                        user,
                        f"feed:{feed}:{market_id(i)}",
                        events[i // markets_per_event],
                        "manual",
                        1.0,
                    )
                )
    return feed
