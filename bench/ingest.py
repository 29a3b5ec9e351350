"""ingest: 200,000 normalised records through the project's write path (validation, dedup,
matching, COPY, queue, accounting) against `psql \\copy` of the rows it writes, in one run.

Realistic mix: 5,000 markets, prices, volumes, sentiment and news with narratives and
raw_data; 1 % duplicates within a 5-minute bucket; 2 % of markets unmatched. Prints
`ingest: ratio X.XX (target <= 1.20)`, rows/s of both, and where the time goes.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import fresh_database, psql_binary

from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.model import MarketFacts, NormalisedRecord
from predict_pipeline.signals.frames import RecordBatch
from predict_pipeline.signals.ingest import FeedValidationReport, ingest_batches
from predict_pipeline.signals.linking import save_links
from predict_pipeline.signals.routing import MatchingSettings
from predict_pipeline.signals.store import COPY_COLUMNS

ROWS = 200_000
MARKETS = 7_200  # x 12 buckets x ~2.33 kinds: about 200k records
EVENTS = 2_000
PAGE = 1_000  # records per landed page
WINDOW_START = datetime(2026, 11, 1, 10, tzinfo=UTC)
NOW = WINDOW_START + timedelta(hours=2)


def make_records(rng: random.Random) -> list[NormalisedRecord]:
    """Each market reports a price and a volume every 5 minutes, a third of the time also
    sentiment or news; 1 % of records arrive twice within their 5-minute bucket."""
    records: list[NormalisedRecord] = []
    buckets = [WINDOW_START + timedelta(minutes=5 * b) for b in range(12)]
    for bucket in buckets:
        for i in range(MARKETS):
            market = f"mkt-{i:05d}"
            kinds = ["MARKET_PRICE", "VOLUME"]
            if rng.random() < 1 / 3:
                kinds.append(rng.choice(["SENTIMENT", "NEWS"]))
            for kind in kinds:
                at = bucket + timedelta(seconds=rng.randrange(300))
                value = {
                    "MARKET_PRICE": round(rng.random(), 4),
                    "VOLUME": round(rng.uniform(0, 5_000_000), 2),
                    "SENTIMENT": round(rng.uniform(-1, 1), 4),
                    "NEWS": round(rng.uniform(-1, 1), 4),
                }[kind]
                record = NormalisedRecord(
                    source="polymarket",
                    source_event_id=market,
                    signal_type=kind,
                    value=value,
                    fetched_at=at,
                    source_url=f"https://polymarket.com/event/{market}",
                    narrative=f"Headline about {market}: officials comment on the outlook."
                    if kind == "NEWS"
                    else None,
                    raw_data={
                        "id": market,
                        "outcome": "Yes",
                        "bestBid": value,
                        "spread": 0.01,
                        "clobTokenIds": [str(rng.getrandbits(64))],
                    },
                    market=MarketFacts(title=f"Question {market}?", status="open"),
                )
                records.append(record)
                if rng.random() < 0.01:
                    again = bucket + timedelta(seconds=rng.randrange(300))
                    records.append(replace(record, fetched_at=again))
    rng.shuffle(records)
    return records[:ROWS]


def seed(url: str) -> uuid.UUID:
    user, feed = uuid.uuid4(), uuid.uuid4()
    with connect(url, role=PIPELINE_ROLE) as conn, conn.transaction():
        conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'bench@example.com')", (user,))
        conn.execute(
            "INSERT INTO prediction_data_feeds (id, source_id, user_id, name)"
            " SELECT %s, id, %s, 'bench' FROM prediction_data_sources"
            " WHERE source_id = 'polymarket'",
            (feed, user),
        )
        events = [uuid.uuid4() for _ in range(EVENTS)]
        with conn.cursor().copy("COPY prediction_events (id, title, slug) FROM STDIN") as copy:
            for i, event in enumerate(events):
                copy.write_row((event, f"Bench event {i}", f"bench-event-{i}"))
        # 98 % of markets were matched before (confirmed links); 2 % are new and unmatched.
        links = [
            (f"mkt-{i:05d}", events[i % EVENTS], "similarity", 0.95)
            for i in range(MARKETS)
            if i % 50 != 0
        ]
        save_links(conn, "polymarket", user, links)
    return feed


class NoSimilarity:
    """The 2 % new markets meet an event list that matches none of them (no model, no luck)."""

    def match_many(self, markets, events, *, threshold):
        from predict_pipeline.signals.similarity import MatchDecision

        return [MatchDecision(None, 0.0, "none", []) for _ in markets]


def run_ours(url: str, feed_id: uuid.UUID, records) -> tuple[float, FeedValidationReport, dict]:
    pages = [RecordBatch(records[i : i + PAGE]) for i in range(0, len(records), PAGE)]
    with connect(url, role=PIPELINE_ROLE, autocommit=True) as conn:
        feed = load_feed(conn, feed_id)
        report = FeedValidationReport(str(feed_id), "bench", "polymarket")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        with conn.transaction():
            ingest_batches(
                conn,
                feed,
                pages,
                report,
                now=NOW,
                matching=MatchingSettings(matcher=NoSimilarity()),
                events=lambda: [],
                timings=timings,
            )
        elapsed = time.perf_counter() - started
    return elapsed, report, timings


def export_written(url: str, path: Path) -> int:
    cols = ", ".join(COPY_COLUMNS)
    with connect(url, role=None, autocommit=True) as conn:
        with (
            open(path, "wb") as out,
            conn.cursor().copy(
                f"COPY (SELECT {cols} FROM prediction_signals) TO STDOUT WITH (FORMAT csv)"  # noqa: S608
            ) as copy,
        ):
            for block in copy:
                out.write(block)
        count = conn.execute("SELECT count(*) FROM prediction_signals").fetchone()[0]
        conn.execute("TRUNCATE prediction_signals")
        conn.execute("VACUUM ANALYZE prediction_signals")
    return count


def run_psql(url: str, path: Path) -> float:
    cols = ", ".join(COPY_COLUMNS)
    started = time.perf_counter()
    subprocess.run(
        [
            psql_binary(),
            url,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f"\\copy prediction_signals ({cols}) FROM '{path}' WITH (FORMAT csv)",
        ],
        check=True,
    )
    return time.perf_counter() - started


def truncate(url: str) -> None:
    with connect(url, role=None, autocommit=True) as conn:
        conn.execute("TRUNCATE prediction_signals")
        conn.execute("DELETE FROM prediction_unmatched_signals")
        conn.execute("VACUUM ANALYZE prediction_signals")


def main() -> None:
    rng = random.Random(20261122)
    records = make_records(rng)
    with fresh_database() as url, tempfile.TemporaryDirectory() as tmp:
        feed = seed(url)
        csv_path = Path(tmp) / "signals.csv"
        ours_runs, psql_runs = [], []
        for _ in range(2):
            elapsed, report, timings = run_ours(url, feed, records)
            ours_runs.append((elapsed, report, timings))
            written = export_written(url, csv_path)  # the rows our path wrote, as CSV
            psql_runs.append(run_psql(url, csv_path))
            truncate(url)
        ours, report, timings = min(ours_runs, key=lambda r: r[0])
        baseline = min(psql_runs)
    ratio = ours / baseline
    print(f"ingest: ratio {ratio:.2f} (target <= 1.20)")
    print(
        f"  project write path: {ROWS / ours:,.0f} records/s ({ours:.2f} s for {ROWS:,} records,"
        f" {report.written:,} written, {report.deduplicated:,} duplicates,"
        f" {report.unmatched:,} queued unmatched, {report.rejected:,} rejected)"
    )
    print(
        f"  psql \\copy baseline: {written / baseline:,.0f} rows/s ({baseline:.2f} s for "
        f"{written:,} rows)"
    )
    print(
        "  where the time goes: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        + " (blocks_client runs during the pipeline's COPY)"
    )


if __name__ == "__main__":
    main()
