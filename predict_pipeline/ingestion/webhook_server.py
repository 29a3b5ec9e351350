"""A small receiver for webhook feeds: POST /webhooks/<feed id> with a signed JSON body.

Answers 202 with the number of records landed, 400 with the line and column of a malformed
body, 401 for a bad signature, 404 for an unknown feed. Run it with
`predict-pipeline webhooks serve`; put TLS and a body-size limit in front of it in production.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.pushed import PushRefused, land_webhook
from predict_pipeline.ingestion.store import load_feed

MAX_BODY_BYTES = 5 * 1024 * 1024


def make_server(
    database_url: str,
    landing: LandingZone,
    encryption_key: Callable[[], bytes],
    host: str = "127.0.0.1",
    port: int = 8787,
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            status, answer = self._deliver()
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _deliver(self) -> tuple[int, dict[str, Any]]:
            parts = self.path.strip("/").split("/")
            if len(parts) != 2 or parts[0] != "webhooks":
                return 404, {"error": "POST /webhooks/<feed id>"}
            try:
                feed_id = uuid.UUID(parts[1])
            except ValueError:
                return 404, {"error": "unknown feed"}
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return 413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"}
            body = self.rfile.read(length)
            with connect(database_url, role=PIPELINE_ROLE, autocommit=True) as conn:
                feed = load_feed(conn, feed_id)
                if feed is None:
                    return 404, {"error": "unknown feed"}
                try:
                    report = land_webhook(
                        conn,
                        landing,
                        feed,
                        body,
                        dict(self.headers.items()),
                        encryption_key=encryption_key,
                    )
                except PushRefused as exc:
                    return exc.status, {"error": str(exc)}
            return 202, {"records": report.records, "feed_run_id": report.feed_run_id}

        def log_message(self, format: str, *args: Any) -> None:
            pass  # request lines could carry feed ids into shared logs; the feed run records it

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
