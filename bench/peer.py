"""peer: the loaders a user would pick instead of this project, on the same records and table.

The 200,000 records of the ingest bench go through this project's write path (validation,
5-minute dedup against stored rows, matching to events, the unmatched queue, accounting,
COPY). The peers load the rows that path wrote, handed to them ready-made (matched, typed,
deduplicated: work they would otherwise have to do and do not), into a table of the same
definition:

  (a) dlt, postgres destination, `write_disposition="merge"` on the dedup key (source,
      source_event_id, signal_type, 5-minute bucket), with its default loader (INSERT VALUES
      files) and with its csv loader (COPY), into its own dataset;
  (b) pandas `to_sql(method="multi")` over SQLAlchemy + psycopg, into prediction_signals;
  (c) `psql \\copy` of the same rows into prediction_signals (the baseline);
  (d) this project's write path, from the raw records.

Interleaved rounds (three by default), each on fresh table state; the median of each is divided
by the median of (c). The two slowest peers (dlt's default loader and pandas, 4x and 13x the
baseline, 8 of the bench's 15 minutes at three rounds) run in the first round only unless
PREDICT_BENCH_FULL=1 or PREDICT_BENCH_PEER_ROUNDS is set: neither is the better peer the target
is read from, and `make bench` stays within 20 minutes. Prints `peer: ratio X (target <= Y)`
where X is this project's ratio and Y the better peer's: the project must be faster than both
peers while doing more.
dlt is a bench-only dependency (`uv sync --group bench`, which `make bench` runs).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import FULL, fresh_database
from ingest import ROWS, export_written, make_records, run_ours, run_psql, seed, truncate

from predict_pipeline.db.connection import connect
from predict_pipeline.signals.store import COPY_COLUMNS

ROUNDS = int(os.environ.get("PREDICT_BENCH_PEER_ROUNDS", "3"))
# The peers that run every round; the slow ones run once unless every round is asked for.
EVERY_ROUND = FULL or "PREDICT_BENCH_PEER_ROUNDS" in os.environ
SLOW_PEERS = ("dlt merge (default)", "pandas to_sql multi")
DEDUP_KEY = ["source", "source_event_id", "signal_type", "bucket"]
DLT_DATASET = "peer_dlt"

DOES = {
    "this project": "validates, dedups within the batch and against stored rows, matches to "
    "events, queues the unmatched, accounts the run, FK-checked COPY",
    "dlt merge (default)": "skips validation, matching and the unmatched queue; dedup by "
    "replacing on the key (staging table + DELETE/INSERT); no FK checks (own table)",
    "dlt merge (csv)": "the same, with COPY of csv files into staging",
    "pandas to_sql multi": "skips validation, dedup, matching and the queue; multi-row INSERTs "
    "with FK checks",
    "psql \\copy": "the baseline: COPY of the final rows, nothing else",
}


def read_rows(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, names=list(COPY_COLUMNS), keep_default_na=False, na_values=[""])
    frame["fetched_at"] = pd.to_datetime(frame["fetched_at"], utc=True, format="ISO8601")
    frame["raw_data"] = frame["raw_data"].map(json.loads)  # documents, as a user's loader has
    return frame


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def run_pandas(url: str, rows: pd.DataFrame) -> float:
    from sqlalchemy import create_engine
    from sqlalchemy.dialects.postgresql import JSONB, UUID

    engine = create_engine(sqlalchemy_url(url))
    try:
        started = time.perf_counter()
        rows.to_sql(
            "prediction_signals",
            engine,
            if_exists="append",
            index=False,
            method="multi",
            chunksize=1_000,
            dtype={"event_id": UUID(), "feed_id": UUID(), "raw_data": JSONB()},
        )
        return time.perf_counter() - started
    finally:
        engine.dispose()


def dlt_credentials(url: str) -> dict:
    """dlt reads host from the URL's authority, which the embedded server's socket URL lacks;
    a socket directory goes there percent-encoded, as libpq's URLs allow."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(url)
    return {
        "database": parts.get("dbname"),
        "username": parts.get("user") or "postgres",
        "password": parts.get("password") or "",
        "host": quote(parts.get("host") or "127.0.0.1", safe=""),
        "port": int(parts.get("port") or 5432),
    }


def run_dlt(url: str, rows: pd.DataFrame, loader: str | None, workdir: Path) -> float:
    import dlt

    # dlt's merge needs the key as columns: the bucket the project's unique index computes.
    keyed = rows.assign(bucket=rows["fetched_at"].dt.floor("5min"))
    records = keyed.to_dict("records")
    pipeline = dlt.pipeline(
        pipeline_name=f"peer_{loader or 'default'}",
        pipelines_dir=str(workdir),
        destination=dlt.destinations.postgres(credentials=dlt_credentials(url)),
        dataset_name=DLT_DATASET,
        progress=None,
    )
    resource = dlt.resource(
        records,
        name="prediction_signals",
        write_disposition="merge",
        primary_key=DEDUP_KEY,
        columns={"raw_data": {"data_type": "json"}, "value": {"data_type": "double"}},
    )
    started = time.perf_counter()
    pipeline.run(resource, loader_file_format=loader)
    return time.perf_counter() - started


def dlt_rows(url: str) -> int:
    with connect(url, role=None, autocommit=True) as conn:
        return conn.execute(
            f"SELECT count(*) FROM {DLT_DATASET}.prediction_signals"  # noqa: S608
        ).fetchone()[0]


def reset(url: str) -> None:
    truncate(url)
    with connect(url, role=None, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {DLT_DATASET} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {DLT_DATASET}_staging CASCADE")


def stored(url: str) -> int:
    with connect(url, role=None, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM prediction_signals").fetchone()[0]


def main() -> None:
    records = make_records(random.Random(20261122))
    times: dict[str, list[float]] = {name: [] for name in DOES}
    with fresh_database() as url, tempfile.TemporaryDirectory() as tmp:
        feed = seed(url)
        csv_path = Path(tmp) / "signals.csv"
        run_ours(url, feed, records)  # once untimed: the rows every peer loads
        written = export_written(url, csv_path)
        rows = read_rows(csv_path)
        reset(url)
        for round_no in range(ROUNDS):
            workdir = Path(tmp) / f"dlt-{round_no}"
            elapsed, report, _ = run_ours(url, feed, records)
            times["this project"].append(elapsed)
            assert report.written == written, (report.written, written)
            reset(url)
            times["psql \\copy"].append(run_psql(url, csv_path))
            assert stored(url) == written
            reset(url)
            times["dlt merge (csv)"].append(run_dlt(url, rows, "csv", workdir))
            assert dlt_rows(url) == written
            reset(url)
            if round_no > 0 and not EVERY_ROUND:
                continue
            times["dlt merge (default)"].append(run_dlt(url, rows, None, workdir))
            assert dlt_rows(url) == written
            reset(url)
            times["pandas to_sql multi"].append(run_pandas(url, rows))
            assert stored(url) == written
            reset(url)
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    baseline = medians["psql \\copy"]
    ratios = {name: median / baseline for name, median in medians.items()}
    best_peer = min(ratios[n] for n in ratios if n.startswith(("dlt", "pandas")))
    print(f"peer: ratio {ratios['this project']:.2f} (target <= {best_peer:.2f})")
    slow = "" if EVERY_ROUND else f" ({' and '.join(SLOW_PEERS)}: the first round only)"
    print(
        f"  {ROWS:,} records in, {written:,} rows stored; median of {ROUNDS} interleaved rounds"
        f"{slow}, fresh table state each"
    )
    for name in sorted(medians, key=medians.get):
        count = ROWS if name == "this project" else written
        print(
            f"  {name:<20} ratio {ratios[name]:5.2f}  {count / medians[name]:>9,.0f} rows/s"
            f"  ({', '.join(f'{t:.2f}' for t in times[name])} s): {DOES[name]}"
        )


if __name__ == "__main__":
    main()
