"""The real webhook receiver (`predict-pipeline webhooks serve`) as a process on a free port."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from predict_pipeline.sources.push.signature import sign_delivery
from tests.support.feeds import KEY

SECRET = "whsec-receiver-test"
KEY_TEXT = base64.b64encode(KEY).decode()
STARTUP_S = 60.0


class Receiver:
    """A running receiver: its URL, its process and its JSON log lines (read as they come)."""

    def __init__(self, process: subprocess.Popen[str]):
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = int(self.wait_for("listening")["port"])
        self.base = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def events(self) -> list[dict[str, Any]]:
        with self._changed:
            return [json.loads(line) for line in self.lines]

    def wait_for(self, event: str, timeout: float = STARTUP_S, **fields: Any) -> dict[str, Any]:
        """The first log entry of `event` with `fields`; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    entry = json.loads(line)
                    if entry["event"] == event and all(
                        entry.get(k) == v for k, v in fields.items()
                    ):
                        return entry
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {event} {fields} in the log: {self.lines[-20:]}")
                self._changed.wait(min(left, 0.5))

    def url(self, feed_id: uuid.UUID | str) -> str:
        return f"{self.base}/webhooks/{feed_id}"

    def threads(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def receiver_env(db_url: str, landing_root: str, key_text: str = KEY_TEXT) -> dict[str, str]:
    return {
        **os.environ,
        "PREDICT_DATABASE_URL": db_url,
        "PREDICT_ENCRYPTION_KEY": key_text,
        "PREDICT_LANDING_ZONE": landing_root,
    }


def serve_command(*flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "predict_pipeline.cli",
        "webhooks",
        "serve",
        "--port",
        "0",
        *flags,
    ]


@contextmanager
def running_receiver(db_url: str, landing_root: str, *flags: str) -> Iterator[Receiver]:
    process = subprocess.Popen(
        serve_command(*flags),
        env=receiver_env(db_url, landing_root),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        receiver = Receiver(process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    try:
        yield receiver
    finally:
        if receiver.process.poll() is None:
            try:
                receiver.stop()
            except subprocess.TimeoutExpired:
                receiver.process.kill()
                receiver.process.wait()


def signed_headers(
    body: bytes,
    *,
    delivery_id: str | None = None,
    sent_at: datetime | None = None,
    secret: str = SECRET,
) -> dict[str, str]:
    return sign_delivery(
        secret,
        body,
        sent_at=sent_at or datetime.now(UTC),
        delivery_id=delivery_id or uuid.uuid4().hex,
    )


def delivery_body(source_event_id: str, value: float = 0.5) -> bytes:
    return json.dumps([{"source_event_id": source_event_id, "value": value}]).encode()


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "state") -> None:
    """Poll `check` until it holds: tests wait on state, never on a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
