"""dagster-celery workers on a queue of their own, for the scale-out test and bench/backfill.py:
started with the project's worker config, ready when every one answers a ping, and stopped
with their pool (each worker leads its own process group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml
from celery import Celery

from predict_pipeline.config import PROJECT_ROOT, Settings
from predict_pipeline.defs.executors import celery_worker_config


@contextmanager
def celery_workers(
    home: str,
    broker: str,
    queue: str,
    logs: Path,
    names: Sequence[str],
    *,
    ready_within_s: float = 120,
) -> Iterator[list[subprocess.Popen]]:
    """Workers named `names` (concurrency 1 each) for the Dagster instance at `home`."""
    settings = Settings.from_env(
        {
            "PREDICT_CELERY_BROKER_URL": broker,
            "PREDICT_CELERY_BACKEND_URL": broker,
            "PREDICT_CELERY_QUEUE": queue,
        }
    )
    config = logs / "worker.yaml"
    config.write_text(yaml.safe_dump(celery_worker_config(settings)))
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DAGSTER_HOME": home,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with ExitStack() as stack:
        workers: list[subprocess.Popen] = []
        stack.callback(_stop, workers)
        for name in names:
            log = stack.enter_context(open(logs / f"{name}.log", "wb"))
            workers.append(
                subprocess.Popen(
                    [
                        str(bin_dir / "dagster-celery"),
                        *("worker", "start", "-A", "dagster_celery.app", "-y", str(config)),
                        *("-q", queue, "-n", name, "-l", "WARNING", "--", "--concurrency=1"),
                    ],
                    env=env,
                    cwd=PROJECT_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopping takes the pool too
                )
            )
        app = stack.enter_context(Celery(broker=broker, backend=broker))
        deadline = time.monotonic() + ready_within_s
        ready: set[str] = set()
        while not ready >= set(names):
            if time.monotonic() > deadline:
                tails = "".join((logs / f"{n}.log").read_text()[-2000:] for n in names)
                raise RuntimeError(f"workers did not answer a ping in {ready_within_s} s: {tails}")
            for reply in app.control.ping(timeout=1.0) or []:
                ready.update(node.split("@")[0] for node in reply)
        yield workers


def _stop(workers: list[subprocess.Popen]) -> None:
    for process in workers:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
