"""`predict-pipeline dev` stops every process it started within 10 s of Ctrl-C.

The real command runs against a test database with the demo feeds (so it skips the main job
and the daemon's sensor launches fetch runs); the test waits on state (the UI answering, the
daemon's heartbeat, a run in progress), sends SIGINT to the command's process group as a
terminal's Ctrl-C does, and watches every descendant go. Start-up gets generous deadlines (a
loaded machine is slow to import Dagster); the stop gets none beyond the documented 10 s.
Toy services (tests/support/supervised.py) prove the rest of the supervision: a service that
dies stops the others, and an orphan that ignores SIGINT and SIGTERM is killed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import psutil
import pytest

from predict_pipeline.config import (
    DAGSTER_DATABASE_URL_VAR,
    DATABASE_URL_VAR,
    HTTP_MODE_VAR,
    PROJECT_ROOT,
    REPLAY_DIR_VAR,
    STATE_DIR_VAR,
)
from predict_pipeline.db.bootstrap import DAGSTER_URL_VAR
from predict_pipeline.db.connection import connect
from predict_pipeline.demo import REPLAY_DIR, seed_demo
from predict_pipeline.secrets import ENCRYPTION_KEY_ENV, decode_key, generate_key

# End-to-end: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 300
STOP_BOUND_S = 10.0
BIN = Path(sys.executable).parent
IN_PROGRESS = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_until(
    check: Callable[[], object], what: str, process: subprocess.Popen, output: Path
) -> object:
    """Poll `check` until it returns something truthy; fail if `process` exits first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if value := check():
            return value
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before {what}:\n{output.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} in {STARTUP_TIMEOUT_S} s:\n{output.read_text()}")
        time.sleep(0.25)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop_within_bound(pid: int, watched: dict[int, psutil.Process]) -> float:
    """SIGINT to the group of `pid`; seconds until every watched process (and new ones) is gone."""
    began = time.monotonic()
    os.killpg(pid, signal.SIGINT)
    while time.monotonic() - began < STOP_BOUND_S + 5:
        for child in _descendants(pid):  # the supervisor adopts orphans: they stay visible
            watched.setdefault(child.pid, child)
        if all(_gone(p) for p in watched.values()):
            return time.monotonic() - began
        time.sleep(0.05)
    return time.monotonic() - began


@pytest.fixture
def cleanup() -> Iterator[list[psutil.Process]]:
    """Processes to kill if a test fails half-way, so none outlives it."""
    processes: list[psutil.Process] = []
    yield processes
    for process in processes:
        for child in [*_descendants(process.pid), process]:
            if not _gone(child):
                child.kill()


@pytest.mark.slow
def test_ctrl_c_stops_every_process_dev_started(db_url, dagster_instance, tmp_path, cleanup):
    key = generate_key()
    with connect(db_url) as conn, conn.transaction():
        seed_demo(conn, encryption_key=decode_key(key))
    port = _free_port()
    env = {
        **os.environ,
        DATABASE_URL_VAR: db_url,
        ENCRYPTION_KEY_ENV: key,
        STATE_DIR_VAR: str(tmp_path / "state"),
        HTTP_MODE_VAR: "replay",
        REPLAY_DIR_VAR: str(REPLAY_DIR),
        "DAGSTER_HOME": str(PROJECT_ROOT),
    }
    for inherited in (DAGSTER_DATABASE_URL_VAR, DAGSTER_URL_VAR):
        env.pop(inherited, None)  # dev derives Dagster's storage from the test database
    output = tmp_path / "dev.out"
    with output.open("wb") as out:
        dev = subprocess.Popen(
            [str(BIN / "predict-pipeline"), "dev", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal's foreground job
        )
    cleanup.append(psutil.Process(dev.pid))

    _wait_until(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), "UI", dev, output)
    _wait_until(dagster_instance.get_daemon_heartbeats, "daemon heartbeat", dev, output)
    started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    run = _wait_until(
        lambda: next(iter(dagster_instance.get_runs(started)), None), "run in progress", dev, output
    )
    watched = {p.pid: p for p in _descendants(dev.pid)}
    commands = [" ".join(p.cmdline()) for p in watched.values() if not _gone(p)]
    assert sum("dagster-webserver" in c for c in commands) == 1, commands
    assert sum("dagster-daemon run" in c for c in commands) == 1, commands
    assert sum("dagster api grpc" in c for c in commands) >= 2, commands  # a code server each

    seconds = _stop_within_bound(dev.pid, watched)

    left = [(p.pid, " ".join(p.cmdline())) for p in watched.values() if not _gone(p)]
    assert left == [], f"still running {seconds:.1f} s after Ctrl-C"
    assert seconds <= STOP_BOUND_S
    assert dev.wait(timeout=60) == 0
    text = output.read_text()
    lines = text.splitlines()
    assert "Traceback" not in text
    assert all(line.startswith("predict-pipeline dev: ") for line in lines), text
    assert f"predict-pipeline dev: Dagster UI at http://127.0.0.1:{port}" in text
    assert "predict-pipeline dev: stopping (Ctrl-C)" in lines
    stopped = re.search(r"stopped (\d+) processes in ([\d.]+) s", text)
    assert stopped is not None, text
    assert int(stopped[1]) >= 4  # at least the webserver, the daemon and their code servers
    assert float(stopped[2]) <= STOP_BOUND_S
    print(f"dev stopped {len(watched)} processes in {seconds:.1f} s: {stopped[0]}")
    # The stop leaves no run in progress: the interrupted one ended, by its worker or by dev.
    assert dagster_instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)) == []
    ended = dagster_instance.get_run_by_id(run.run_id)
    assert ended is not None and ended.is_finished, ended
    with connect(db_url, role=None) as conn:  # the database outlives the stop, and answers
        assert conn.execute("SELECT count(*) FROM prediction_data_feeds").fetchone()[0] > 0


def _start_toys(state: Path, cleanup: list[psutil.Process]) -> tuple[subprocess.Popen, Path]:
    output = state / "supervisor.out"
    with output.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tests.support.supervised", str(state)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cleanup.append(psutil.Process(supervisor.pid))
    ready = "predict-pipeline dev: toy services ready"
    _wait_until(lambda: ready in output.read_text(), "toy services", supervisor, output)
    return supervisor, output


def test_ctrl_c_kills_an_orphan_that_ignores_it(tmp_path, cleanup):
    supervisor, output = _start_toys(tmp_path, cleanup)
    orphan = psutil.Process(int((tmp_path / "orphan.pid").read_text()))
    watched = {p.pid: p for p in [orphan, *_descendants(supervisor.pid)]}

    seconds = _stop_within_bound(supervisor.pid, watched)

    assert [p.pid for p in watched.values() if not _gone(p)] == []
    assert seconds <= STOP_BOUND_S
    assert supervisor.wait(timeout=30) == 0
    lines = output.read_text().splitlines()
    assert lines[:3] == [
        "predict-pipeline dev: starting the toy services",
        "predict-pipeline dev: toy services ready",
        "predict-pipeline dev: stopping (Ctrl-C)",
    ]
    assert re.fullmatch(
        r"predict-pipeline dev: stopped \d+ processes in [\d.]+ s \(1 killed after the 6 s grace\)",
        lines[3],
    ), lines
    assert len(lines) == 4


def test_a_service_that_dies_stops_the_others(tmp_path, cleanup):
    supervisor, output = _start_toys(tmp_path, cleanup)
    orphan = psutil.Process(int((tmp_path / "orphan.pid").read_text()))
    watched = {p.pid: p for p in [orphan, *_descendants(supervisor.pid)]}

    (tmp_path / "die").touch()

    assert supervisor.wait(timeout=STARTUP_TIMEOUT_S) == 1
    assert [p.pid for p in watched.values() if not _gone(p)] == []
    lines = output.read_text().splitlines()
    assert lines[2] == (
        "predict-pipeline dev: the fragile service exited on its own (code 3), "
        f"see {tmp_path / 'fragile.log'}; stopping"
    )
    assert re.fullmatch(r"predict-pipeline dev: stopped \d+ processes in [\d.]+ s .*", lines[3])
    assert len(lines) == 4


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(BIN / "predict-pipeline"), "dev", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env={**os.environ, STATE_DIR_VAR: str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"predict-pipeline: error: cannot serve the UI on 127.0.0.1:{port} (Address already in "
        "use): choose another port with --port (make dev PORT=3100)"
    ]
