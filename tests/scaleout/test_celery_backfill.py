"""A real Celery run: two dagster-celery workers on the local Redis take the steps of a
multi-partition backfill, and the rows equal those of the same backfill on the multiprocess
executor in another fresh database."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.db.connection import connect
from predict_pipeline.signals.linking import display_market_id
from tests.conftest import _scratch_database
from tests.scaleout.celery_workers import celery_workers
from tests.scaleout.history_server import HistoryServer, seed_history_feed

REDIS = "redis://127.0.0.1:6379"
ORIGIN = datetime(2025, 6, 1, tzinfo=UTC)
HOURS = 3
MARKETS = 40
ASSETS = ["raw_feed_fetches", "validated_signals", "event_snapshots"]
WORKERS = ("predict-w1", "predict-w2")


def _redis_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


pytestmark = [
    pytest.mark.slow,  # end-to-end: `make test-fast` leaves it out
    pytest.mark.skipif(
        not _redis_reachable(), reason="environment: no Redis broker on 127.0.0.1:6379"
    ),
]


@pytest.fixture
def second_db_url(pg_admin_url, template_db) -> Iterator[str]:
    yield from _scratch_database(pg_admin_url, template=template_db)


@pytest.fixture
def history() -> Iterator[HistoryServer]:
    server = HistoryServer(MARKETS, ORIGIN, HOURS)
    yield server
    server.close()


@pytest.fixture
def celery_queue(dagster_instance, tmp_path) -> Iterator[dict]:
    """Two worker processes on a queue (and Redis database) of their own; killed afterwards."""
    queue = f"predict-test-{uuid.uuid4().hex[:10]}"
    url = f"{REDIS}/{random.randrange(1, 16)}"
    with celery_workers(
        dagster_instance.root_directory, url, queue, tmp_path, WORKERS, ready_within_s=90
    ) as workers:
        yield {"queue": queue, "broker": url, "pgids": {p.pid for p in workers}}


def _seed(url: str, history: HistoryServer) -> str:
    with connect(url, role=None, autocommit=True) as conn:
        return str(seed_history_feed(conn, history.url, MARKETS))


def _backfill(instance, app_url: str, feed: str, landing: Path, execution: dict):
    """One run over the 3-hour range, as BackfillPolicy.multi_run(24) batches it."""
    recon = ReconstructableRepository.for_module(
        "predict_pipeline.definitions", "defs", working_directory=str(PROJECT_ROOT)
    ).get_reconstructable_job("__ASSET_JOB")
    run_config = {
        "execution": {"config": execution},
        "resources": {
            "database": {"config": {"url": app_url}},
            "landing": {"config": {"root": str(landing)}},
            "http": {"config": {"mode": "live", "allow_private_hosts": ["127.0.0.1"]}},
        },
        "ops": {"raw_feed_fetches": {"config": {"feed_ids": [feed], "mode": "backfill"}}},
    }
    with dg.execute_job(
        recon,
        instance=instance,
        run_config=run_config,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2025-06-01-00:00",
            ASSET_PARTITION_RANGE_END_TAG: "2025-06-01-02:00",
        },
        asset_selection=[dg.AssetKey(a) for a in ASSETS],
    ) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result.run_id


def _rows(url: str) -> dict[str, list[tuple]]:
    with connect(url, role=None) as conn:
        # Market ids as sent: each database's feed has its own id, hence its own namespace.
        signals = [
            (slug, source, display_market_id(sid), *rest)
            for slug, source, sid, *rest in conn.execute(
                """SELECT e.slug, s.source, s.source_event_id, s.signal_type, s.value, s.fetched_at
                   FROM prediction_signals s JOIN prediction_events e ON e.id = s.event_id
                   ORDER BY 1, 3, 6"""
            ).fetchall()
        ]
        snapshots = conn.execute(
            """SELECT e.slug, n.snapshot_at, n.probability, n.volatility, n.divergence,
                      n.signal_count
               FROM prediction_snapshots n JOIN prediction_events e ON e.id = n.event_id
               ORDER BY 1, 2"""
        ).fetchall()
    return {"signals": signals, "snapshots": snapshots}


def _step_processes(instance, run_id: str) -> dict[str, tuple[set[int], set[str]]]:
    """Per step: the pids its events came from and the Celery worker that took it."""
    steps: dict[str, tuple[set[int], set[str]]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        pids, hosts = steps.setdefault(event.step_key, (set(), set()))
        if event.event_type_value in ("STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION"):
            pids.add(event.pid)
        worker = (event.engine_event_data.metadata if event.is_engine_event else {}).get(
            "Celery worker"
        )
        if worker is not None:
            hosts.add(worker.value)
    return steps


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[2])


def test_backfill_on_two_celery_workers_equals_the_multiprocess_backfill(
    dagster_instance, db_url, second_db_url, history, celery_queue, tmp_path
):
    celery_feed = _seed(db_url, history)
    local_feed = _seed(second_db_url, history)

    celery = {
        "engine": "celery",
        "celery": {
            "broker": celery_queue["broker"],
            "backend": celery_queue["broker"],
            "config_source": {"task_default_queue": celery_queue["queue"]},
        },
    }
    run_id = _backfill(dagster_instance, db_url, celery_feed, tmp_path / "landing-celery", celery)
    local_run = _backfill(
        dagster_instance,
        second_db_url,
        local_feed,
        tmp_path / "landing-local",
        {"engine": "multiprocess"},
    )

    # Every step ran inside a worker's process group (worker or its pool child), never here.
    steps = _step_processes(dagster_instance, run_id)
    assert set(steps) == set(ASSETS)
    for step, (pids, hosts) in steps.items():
        assert pids and os.getpid() not in pids, step
        assert {_process_group(pid) for pid in pids} <= celery_queue["pgids"], step
        assert len(hosts) == 1 and hosts.pop().split("@")[0] in WORKERS, step
    local_pids = set().union(*(p for p, _ in _step_processes(dagster_instance, local_run).values()))
    assert not {_process_group(pid) for pid in local_pids} & celery_queue["pgids"]

    celery_rows, local_rows = _rows(db_url), _rows(second_db_url)
    assert len(celery_rows["signals"]) == MARKETS * HOURS
    assert len(celery_rows["snapshots"]) == (MARKETS // 2) * HOURS
    assert celery_rows == local_rows

    # Re-running the completed range (a retried batch) fetches again and writes nothing new.
    _backfill(dagster_instance, db_url, celery_feed, tmp_path / "landing-celery", celery)
    assert _rows(db_url) == celery_rows
    # History is fetched a day at a time: the 3 hours are one request per run, not three.
    assert history.requests == 3
