"""`predict-pipeline dev`: the Dagster UI and daemon as supervised children, stopped by Ctrl-C.

`dagster dev` left its webserver and daemon hanging in Dagster's shutdown-pipe monitor after
Ctrl-C. Here this process starts `dagster-webserver` and `dagster-daemon run` itself, each in
its own session (so the terminal's Ctrl-C reaches only this process), and on Ctrl-C, SIGTERM or
SIGHUP interrupts each whole process group the way a terminal would, waits INTERRUPT_GRACE_S
for Dagster's own shutdown (run workers record their runs as failed), then kills whatever is
left: every process it started, code servers, run workers and step processes included.

The embedded PostgreSQL is deliberately left running: it was started before the services (it
is not one of their processes), other commands share it, and no client of it is left behind.
A run whose worker had to be killed is marked failed afterwards, so the stop leaves no run
STARTING, STARTED or CANCELING; queued runs stay queued for the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from predict_pipeline.errors import CommandError

PREFIX = "predict-pipeline dev"
# Dagster's clean shutdown (servers close, run workers record their failure) gets this long;
# the kill that follows is bounded too, so every process is gone well within 10 s.
INTERRUPT_GRACE_S = 6.0
KILL_WAIT_S = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.2
REAP_EVERY_S = 5.0
# How long the stopped session may take to mark its orphaned runs before it gives up.
RUNS_CHECK_TIMEOUT_S = 20.0
IN_PROGRESS = ("STARTING", "STARTED", "CANCELING")
GRPC_INFO_TAG = ".dagster/grpc_info"  # Dagster's tag naming the code server that runs a run
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Service:
    name: str  # as the user reads it: "the Dagster UI"
    argv: Sequence[str]
    log: Path


@dataclass(frozen=True)
class StopReport:
    seconds: float
    stopped: int  # processes that exited after the interrupt
    killed: int  # processes that had to be killed
    left: tuple[int, ...]  # pids still alive after the kill (should be none)
    code_servers: frozenset[str]  # "socket:PATH" / "port:N" of every code server seen


def serve(
    host: str,
    port: int,
    *,
    workspace: Path,
    log_dir: Path,
    http_mode: str,
    embedded_database: bool,
) -> int:
    """Run the Dagster UI and daemon until Ctrl-C; 0 after a requested stop, 1 if one died."""
    require_free_port(host, port)
    bin_dir = Path(sys.executable).parent
    log_dir.mkdir(parents=True, exist_ok=True)
    services = [
        Service(
            "the Dagster UI",
            [str(bin_dir / "dagster-webserver"), "-h", host, "-p", str(port), "-w", str(workspace)],
            log_dir / "webserver.log",
        ),
        Service(
            "the Dagster daemon",
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
            log_dir / "daemon.log",
        ),
    ]
    url = f"http://{host}:{port}"
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    # Loaded while the services start, so marking orphaned runs after a stop is quick.
    threading.Thread(target=_preload_dagster, daemon=True).start()
    database_line = (
        "the embedded PostgreSQL keeps running (predict-pipeline db stop-embedded stops it)"
        if embedded_database
        else None
    )
    return supervise(
        services,
        starting_line=f"starting the Dagster UI and daemon (HTTP {http_mode}; logs in {log_dir})",
        is_ready=lambda: _answers(probe_host, port),
        ready_line=f"Dagster UI at {url}; the daemon runs the sensors and schedules. "
        "Ctrl-C stops both",
        after_stop=_fail_orphaned_runs,
        stopped_note=database_line,
    )


def supervise(
    services: Sequence[Service],
    *,
    starting_line: str,
    is_ready: Callable[[], bool],
    ready_line: str,
    after_stop: Callable[[StopReport], str | None] | None = None,
    stopped_note: str | None = None,
) -> int:
    """Start `services`, announce readiness once, and stop all of them on a signal or a death."""
    requests: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signo, _: requests.append(signo)) for sig in STOP_SIGNALS
    }
    _become_subreaper()
    # Children this process had before (a first main job's forkserver) are not the services'.
    foreign = frozenset(psutil.Process().children())
    started: list[tuple[Service, subprocess.Popen[bytes]]] = []
    try:
        _say(starting_line)
        for service in services:
            try:
                with open(service.log, "wb") as log:
                    process = subprocess.Popen(
                        service.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own group: the terminal's Ctrl-C is ours
                    )
            except OSError as exc:
                _say(f"could not start {service.name}: {exc}")
                stop_process_trees([process for _, process in started], foreign=foreign)
                return 1
            started.append((service, process))
        ready, next_reap = False, 0.0
        died: tuple[Service, int] | None = None
        while not requests and died is None:
            for service, process in started:
                if process.poll() is not None:
                    died = (service, process.returncode)
                    break
            else:
                if not ready and is_ready():
                    ready = True
                    _say(ready_line)
                if time.monotonic() > next_reap:  # a scan of the process table: not every poll
                    _reap_adopted(process for _, process in started)
                    next_reap = time.monotonic() + REAP_EVERY_S
                time.sleep(POLL_S)
        if died is not None:
            service, code = died
            _say(f"{service.name} exited on its own (code {code}), see {service.log}; stopping")
        else:
            how = "Ctrl-C" if requests[0] == signal.SIGINT else signal.Signals(requests[0]).name
            _say(f"stopping ({how})")
        report = stop_process_trees(
            [process for _, process in started], foreign=foreign, force=lambda: len(requests) > 1
        )
        killed = f" ({report.killed} killed after the {INTERRUPT_GRACE_S:.0f} s grace)"
        total = report.stopped + report.killed
        _say(
            f"stopped {total} processes in {report.seconds:.1f} s{killed if report.killed else ''}"
        )
        if report.left:
            _say(f"processes still running after the kill: {', '.join(map(str, report.left))}")
        if after_stop is not None:
            note = after_stop(report)
            if note:
                _say(note)
        if stopped_note:
            _say(stopped_note)
        return 1 if died is not None or report.left else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_process_trees(
    leaders: Sequence[subprocess.Popen[bytes]],
    *,
    foreign: frozenset[psutil.Process] = frozenset(),
    grace_s: float = INTERRUPT_GRACE_S,
    kill_wait_s: float = KILL_WAIT_S,
    force: Callable[[], bool] = lambda: False,
) -> StopReport:
    """Interrupt each leader's process group, then kill every descendant still alive after grace.

    Descendants are tracked by walking the leaders, the processes already tracked, and this
    process's other children (orphans come back to it as a subreaper) except `foreign` ones,
    so a process that left its group or lost its parent is still found.
    """
    begin = time.monotonic()
    me = psutil.Process()
    tracked: dict[int, psutil.Process] = {}

    def refresh() -> None:
        children: dict[int, list[psutil.Process]] = {}
        for process in psutil.process_iter(["ppid"]):  # one pass over the process table
            children.setdefault(process.info["ppid"], []).append(process)
        mine = [child for child in children.get(me.pid, []) if child not in foreign]
        frontier, seen = [*mine, *tracked.values()], set()
        while frontier:
            process = frontier.pop()
            if process.pid not in seen:
                seen.add(process.pid)
                tracked.setdefault(process.pid, process)
                frontier.extend(children.get(process.pid, []))

    refresh()
    code_servers = frozenset(_code_server_addresses(tracked.values()))
    groups = {leader.pid for leader in leaders}
    for group in groups:
        _signal_group(group, signal.SIGINT)
    for process in tracked.values():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) not in groups:
                process.send_signal(signal.SIGINT)

    def alive() -> list[psutil.Process]:
        for leader in leaders:
            leader.poll()
        _reap_adopted(leaders)
        refresh()
        return [p for p in tracked.values() if _running(p)]

    deadline = begin + grace_s
    remaining = alive()
    while remaining and time.monotonic() < deadline and not force():
        time.sleep(POLL_S / 2)
        remaining = alive()
    killed = len(remaining)
    if remaining:
        for group in groups:
            _signal_group(group, signal.SIGKILL)
        for process in remaining:
            with contextlib.suppress(psutil.Error):
                process.kill()
        deadline = time.monotonic() + kill_wait_s
        while remaining and time.monotonic() < deadline:
            time.sleep(POLL_S / 2)
            remaining = alive()
    for leader in leaders:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout=0.1)
    return StopReport(
        seconds=time.monotonic() - begin,
        stopped=len(tracked) - killed,
        killed=killed,
        left=tuple(p.pid for p in remaining),
        code_servers=code_servers,
    )


def _fail_orphaned_runs(report: StopReport) -> str | None:
    """Mark failed the runs this session's code servers were running that did not finish."""
    if not report.code_servers:
        return None
    outcome: list[str | None] = []

    def check() -> None:
        try:
            outcome.append(_fail_runs_of(report.code_servers))
        except Exception as exc:  # a user reads one line, whatever the storage raised
            first = (str(exc).splitlines() or [""])[0]
            outcome.append(f"could not check the runs in progress: {type(exc).__name__}: {first}")

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(RUNS_CHECK_TIMEOUT_S)
    if not outcome:
        return f"could not check the runs in progress: no answer in {RUNS_CHECK_TIMEOUT_S:.0f} s"
    return outcome[0]


def _fail_runs_of(code_servers: frozenset[str]) -> str | None:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        statuses = [dg.DagsterRunStatus(status) for status in IN_PROGRESS]
        runs = instance.get_runs(dg.RunsFilter(statuses=statuses))
        orphaned = [run for run in runs if _launched_by(run.tags, code_servers)]
        for run in orphaned:
            message = "predict-pipeline dev stopped while this run was in progress"
            if run.status == dg.DagsterRunStatus.CANCELING:
                instance.report_run_canceled(run, message=message)
            else:
                instance.report_run_failed(run, message=message)
    if not orphaned:
        return None
    ids = ", ".join(run.run_id for run in orphaned)
    return f"ended {len(orphaned)} run(s) the stop interrupted (failed, or canceled): {ids}"


def _launched_by(tags: Mapping[str, str], code_servers: frozenset[str]) -> bool:
    try:
        info = json.loads(tags.get(GRPC_INFO_TAG) or "{}")
    except ValueError:
        return False
    return bool(
        (info.get("socket") and f"socket:{info['socket']}" in code_servers)
        or (info.get("port") and f"port:{info['port']}" in code_servers)
    )


def _code_server_addresses(processes: Iterable[psutil.Process]) -> set[str]:
    """Where each Dagster code server (`dagster api grpc`, `dagster code-server`) listens."""
    addresses = set()
    for process in processes:
        with contextlib.suppress(psutil.Error):
            argv = process.cmdline()
            if "grpc" not in argv and "code-server" not in argv:
                continue
            for flag, kind in (("--socket", "socket"), ("--port", "port"), ("-p", "port")):
                if flag in argv[:-1]:
                    addresses.add(f"{kind}:{argv[argv.index(flag) + 1]}")
    return addresses


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap_adopted(own: Iterable[subprocess.Popen[bytes]]) -> None:
    """Collect exited orphans re-parented here (not the services: their Popen reaps them)."""
    mine = {process.pid for process in own}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            if child.pid not in mine:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(child.pid, os.WNOHANG)


def _become_subreaper() -> None:
    """On Linux, orphaned descendants are re-parented here, so none escapes the stop."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def require_free_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the webserver binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            advice = (
                "choose another port with --port (make dev PORT=3100)"
                if exc.errno == errno.EADDRINUSE
                else "check --host"
            )
            raise CommandError(
                f"cannot serve the UI on {host}:{port} ({exc.strerror or exc}): {advice}"
            ) from None


def _answers(host: str, port: int) -> bool:
    """True once the webserver answers /server_info (a local probe, not a feed request)."""
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", "/server_info")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _preload_dagster() -> None:
    """Import Dagster and its storage once now: the first instance takes seconds to build."""
    with contextlib.suppress(Exception):
        import dagster as dg

        with dg.DagsterInstance.get():
            pass


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
        print(f"{PREFIX}: {line}", flush=True)
