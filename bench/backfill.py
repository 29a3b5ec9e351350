"""backfill: one year of hourly prices for 1,000 markets (8.76 million points) from a local
history server through the Dagster backfill — raw_feed_fetches -> validated_signals ->
event_snapshots, in runs of BACKFILL_POLICY's batches — into prediction_signals and
prediction_snapshots; once on the multiprocess executor and once on two Celery workers.

The ratio is against the ingest write path's rate measured in this same run (bench/ingest.py's
200,000 records). Peak RSS is the largest peak of any process of the run (orchestrators, step
processes, Celery workers and their pool), read from /proc while it runs. Four runs go at
a time, as the project's run queue launches them (dagster.yaml's max_concurrent_runs; on
Celery the two workers still run one step each at a time).

The default is eight weeks (1,344 hours x 1,000 markets, 1.34 M points) so `make bench` stays
within 20 minutes; PREDICT_BENCH_FULL=1 runs the whole year. PREDICT_BENCH_BACKFILL_HOURS /
_MARKETS set the size directly,
PREDICT_BENCH_BACKFILL_EXECUTORS picks the executors (default "multiprocess,celery") and
PREDICT_BENCH_BACKFILL_RUNS the runs at once.
Needs Redis on 127.0.0.1:6379 for the Celery part (PREDICT_BENCH_CELERY_BROKER to change).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multiprocessing import get_context

import yaml
from _db import FULL, fresh_database

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.db.bootstrap import EVENT_BATCH_SIZE, EVENT_BATCH_VAR
from predict_pipeline.db.connection import connect, dagster_storage_url
from predict_pipeline.defs.storage import storage_config
from tests.scaleout.celery_workers import celery_workers
from tests.scaleout.history_server import HistoryServer, seed_history_feed

HOURS = int(os.environ.get("PREDICT_BENCH_BACKFILL_HOURS") or (8760 if FULL else 1344))
MARKETS = int(os.environ.get("PREDICT_BENCH_BACKFILL_MARKETS") or 1000)
BROKER = os.environ.get("PREDICT_BENCH_CELERY_BROKER") or "redis://127.0.0.1:6379"
ORIGIN = datetime(2025, 1, 1, tzinfo=UTC)
# Runs at once: as many as the project's run queue launches (dagster.yaml).
CONCURRENT_RUNS = int(
    os.environ.get("PREDICT_BENCH_BACKFILL_RUNS")
    or yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())["concurrency"]["runs"][
        "max_concurrent_runs"
    ]
)
ASSETS = ["raw_feed_fetches", "validated_signals", "event_snapshots"]


class PeakRss:
    """The largest peak RSS among the run's processes, read from /proc while it runs: each
    descendant's VmHWM (its own lifetime peak) and this process's current VmRSS (its lifetime
    peak would count the ingest baseline's records, which are not part of the backfill)."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in _descendants(os.getpid()):
                field = "VmRSS:" if pid == os.getpid() else "VmHWM:"
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith(field):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def ingest_rate() -> float:
    """Records/s of bench/ingest.py's write path, measured now (best of two), in a process of
    its own: the 200,000 records it holds would stay in this process's RSS (575 MiB after it,
    against 293 MiB for the largest process of a backfill run) and be counted as the run's."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_measure_ingest).result()


def _measure_ingest() -> float:
    from ingest import ROWS, make_records, run_ours, seed, truncate

    records = make_records(random.Random(20261122))
    with fresh_database() as url:
        feed = seed(url)
        best = float("inf")
        for _ in range(2):
            elapsed, _report, _timings = run_ours(url, feed, records)
            best = min(best, elapsed)
            truncate(url)
    return ROWS / best


def _instance_dir(root: Path, url: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": storage_config(dagster_storage_url(url)),
                "telemetry": {"enabled": False},
            }
        )
    )
    return root


def _run_hours() -> int:
    from predict_pipeline.defs.partitions import BACKFILL_POLICY

    return BACKFILL_POLICY.max_partitions_per_run or HOURS


def _batches() -> list[tuple[str, str]]:
    """The runs a backfill of the range makes under BACKFILL_POLICY (first, last key)."""
    from predict_pipeline.defs.partitions import HOURLY

    start = HOURLY.get_partition_key_for_timestamp(ORIGIN.timestamp())
    keys = HOURLY.get_partition_keys_in_range(
        __import__("dagster").PartitionKeyRange(
            start,
            HOURLY.get_partition_key_for_timestamp(ORIGIN.timestamp() + (HOURS - 1) * 3600),
        )
    )
    size = _run_hours()
    return [
        (chunk[0], chunk[-1]) for chunk in (keys[i : i + size] for i in range(0, len(keys), size))
    ]


def _run_batch(home: str, app_url: str, feed: str, landing: str, execution: dict, batch) -> None:
    """One backfill run (what the run launcher starts for a batch), in a pool process."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    recon = ReconstructableRepository.for_module(
        "predict_pipeline.definitions", "defs", working_directory=str(PROJECT_ROOT)
    ).get_reconstructable_job("__ASSET_JOB")
    with (
        dg.DagsterInstance.from_config(home) as instance,
        dg.execute_job(
            recon,
            instance=instance,
            run_config={
                "execution": {"config": execution},
                "resources": {
                    "database": {"config": {"url": app_url}},
                    "landing": {"config": {"root": landing}},
                    "http": {"config": {"mode": "live", "allow_private_hosts": ["127.0.0.1"]}},
                },
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                "ops": {"raw_feed_fetches": {"config": {"feed_ids": [feed], "mode": "backfill"}}},
            },
            tags={
                ASSET_PARTITION_RANGE_START_TAG: batch[0],
                ASSET_PARTITION_RANGE_END_TAG: batch[1],
            },
            asset_selection=[dg.AssetKey(a) for a in ASSETS],
        ) as result,
    ):
        if not result.success:
            failures = [
                e.step_failure_data.error.to_string() if e.is_step_failure else e.message
                for e in result.all_events
                if e.is_failure
            ]
            raise RuntimeError(f"backfill run {batch} failed: {failures}")


def backfill(label: str, ingest: float, celery: bool) -> None:
    with (
        fresh_database() as url,
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as stack,
    ):
        history = HistoryServer(MARKETS, ORIGIN, HOURS)
        stack.callback(history.close)
        with connect(url, role=None, autocommit=True) as conn:
            feed = str(seed_history_feed(conn, history.url, MARKETS))
        home = _instance_dir(Path(tmp) / "dagster", url)
        if celery:
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            broker = f"{BROKER}/{random.randrange(1, 16)}"
            names = [f"bench-w1-{queue}", f"bench-w2-{queue}"]
            stack.enter_context(celery_workers(str(home), broker, queue, Path(tmp), names))
            execution = {
                "engine": "celery",
                "celery": {
                    "broker": broker,
                    "backend": broker,
                    "config_source": {"task_default_queue": queue},
                },
            }
        else:
            execution = {
                "engine": "multiprocess",
                "multiprocess": {"start_method": {"forkserver": {}}},
            }
        batches = _batches()
        with PeakRss() as rss:
            started = time.perf_counter()
            # spawn: a forked orchestrator would share the parent's broker and server sockets.
            with ProcessPoolExecutor(CONCURRENT_RUNS, mp_context=get_context("spawn")) as pool:
                futures = [
                    pool.submit(
                        _run_batch,
                        str(home),
                        url,
                        feed,
                        str(Path(tmp) / "landing"),
                        execution,
                        batch,
                    )
                    for batch in batches
                ]
                for future in futures:
                    future.result()
            elapsed = time.perf_counter() - started
        with connect(url, role=None) as conn:
            signals, snapshots = conn.execute(
                "SELECT (SELECT count(*) FROM prediction_signals),"
                " (SELECT count(*) FROM prediction_snapshots)"
            ).fetchone()
    expected = HOURS * MARKETS
    if signals != expected:
        raise RuntimeError(f"{label}: {signals:,} signals written, expected {expected:,}")
    rate = signals / elapsed
    print(
        f"{label}: {rate:,.0f} rows/s, ratio {rate / ingest:.2f} of ingest (target >= 0.75),"
        f" peak RSS {rss.peak_kib / 1024:,.0f} MiB (target <= 512)"
    )
    print(
        f"  {signals:,} signals and {snapshots:,} snapshots in {elapsed:,.1f} s,"
        f" {len(batches)} runs of at most {_run_hours()} hours, {CONCURRENT_RUNS} at a time,"
        f" {history.requests:,} requests"
    )


def main() -> None:
    os.environ.setdefault(EVENT_BATCH_VAR, EVENT_BATCH_SIZE)  # as `predict-pipeline` sets it
    ingest = ingest_rate()
    load = os.getloadavg()[0]
    executors = os.environ.get("PREDICT_BENCH_BACKFILL_EXECUTORS") or "multiprocess,celery"
    if "multiprocess" in executors:
        backfill("backfill", ingest, celery=False)
    if "celery" in executors:
        backfill("backfill (2 celery workers)", ingest, celery=True)
    print(
        f"  ingest write path: {ingest:,.0f} records/s; {HOURS:,} hours x {MARKETS:,} markets;"
        f" load average {load:.1f} at start ({os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
