"""review: 1,000 pending review items (an upload feed's markets, queued by the real stage)
resolved as new events, by one `predict-pipeline signals resolve --feed F --new-event` call,
against the baseline of one `signals resolve ITEM --new-event` call per item measured in the
same run (CALLS calls, extrapolated to 1,000), and the in-process cost of one item at a time.

Prints `review: 1,000 items in X.XX s, ratio R (bulk / one call per item; target <= 0.01)`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import fresh_database

from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.signals.review import ReviewFilter, resolve, resolve_item, review_items
from predict_pipeline.signals.stage import validate_window

ITEMS = 1_000
CALLS = 10  # one CLI call per item, for the baseline
IN_PROCESS = 50  # resolve_item one at a time, in process
TARGET = 0.01
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


def seed(url: str, markets: int) -> uuid.UUID:
    """An upload feed with `markets` markets, queued for review by validated signals."""
    with connect(url, role=PIPELINE_ROLE, autocommit=True) as conn:
        user, feed = uuid.uuid4(), uuid.uuid4()
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, %s)", (user, f"{user}@example.com")
        )
        conn.execute(
            "INSERT INTO prediction_data_feeds (id, source_id, user_id, name, config)"
            " SELECT %s, id, %s, 'bench uploads', '{}' FROM prediction_data_sources"
            " WHERE source_id = 'upload'",
            (feed, user),
        )
        rows = [
            {
                "source_event_id": f"m{i}",
                "value": 0.3,
                "fetched_at": NOW.replace(minute=10).isoformat(),
                "title": f"Will market number {i} of the bench settle YES?",
                "category": "economy",
            }
            for i in range(markets)
        ]
        landing = LandingZone(tempfile.mkdtemp())
        body = "\n".join(json.dumps(r) for r in rows).encode()
        land_upload(conn, landing, load_feed(conn, feed), body, "bench.jsonl", now=lambda: NOW)
        [report] = validate_window(conn, landing, hour_window(NOW), now=NOW)
        assert report.unmatched == markets, report
    return feed


def cli(url: str, *args: str) -> float:
    env = {**os.environ, "PREDICT_DATABASE_URL": url}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "predict_pipeline.cli", "signals", "resolve", *args],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    with fresh_database() as url:
        feed = seed(url, ITEMS + CALLS + IN_PROCESS)
        with connect(url, role=PIPELINE_ROLE, autocommit=True) as conn:
            items = [i["id"] for i in review_items(conn, ReviewFilter(feed_id=feed), limit=10**6)]
            started = time.perf_counter()
            for item in items[:IN_PROCESS]:
                resolve_item(conn, item, new_event=True, now=NOW)
            per_item = (time.perf_counter() - started) / IN_PROCESS
        per_call = min(cli(url, str(item), "--new-event") for item in items[IN_PROCESS:][:CALLS])
        bulk = cli(url, "--feed", str(feed), "--new-event")
        with connect(url, role=PIPELINE_ROLE) as conn:
            done = resolve(conn, ReviewFilter(feed_id=feed), "new_event", now=NOW)
            resolved = conn.execute(
                "SELECT count(*) FROM prediction_unmatched_signals"
                " WHERE feed_id = %s AND status = 'NEW_EVENT_CREATED'",
                (feed,),
            ).fetchone()[0]
        assert done.items == 0 and resolved == ITEMS + CALLS + IN_PROCESS
        # The bulk call's own cost without the CLI process around it, on fresh items.
        feed = seed(url, ITEMS)
        with connect(url, role=PIPELINE_ROLE, autocommit=True) as conn:
            started = time.perf_counter()
            done = resolve(conn, ReviewFilter(feed_id=feed), "new_event", now=NOW)
            in_process = time.perf_counter() - started
        assert done.items == ITEMS
    baseline = per_call * ITEMS
    print(
        f"review: {ITEMS:,} items in {bulk:.2f} s, ratio {bulk / baseline:.4f} "
        f"(bulk / one call per item; target <= {TARGET})"
    )
    print(
        f"  one `signals resolve ITEM` call: {per_call:.2f} s (x {ITEMS:,} = {baseline:,.0f} s);"
        f" one item in process: {per_item * 1000:.1f} ms; the bulk resolution in process:"
        f" {in_process:.2f} s ({in_process / ITEMS * 1000:.2f} ms per item)"
    )


if __name__ == "__main__":
    main()
