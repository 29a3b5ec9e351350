"""The webhook receiver: `POST /webhooks/<feed id>` and `GET /health`, an ASGI app under uvicorn.

Run it with `predict-pipeline webhooks serve`. What it answers (JSON bodies, `{"error": ...}` on
a refusal; the header contract is in sources/push/signature.py and the README's webhook section):

- 202 landed (`records`, `feed_run_id`, `delivery_id`); 200 a delivery id landed before
  (`duplicate: true` and the earlier `feed_run_id`): nothing is landed twice.
- 400 a malformed or negative Content-Length or a malformed body (line and column), 401 a
  missing, wrong or stale signature, 403 a feed without a secret, 404 an unknown feed, 409 not a
  webhook feed or disabled, 408 a request head or body that did not arrive in time, 413 a body
  over `max_body_bytes` (refused on its declared length before reading, or when a chunked body
  passes the cap, which stops the reading), 431 a request head over MAX_HEAD_BYTES.
- 503 with Retry-After when `max_in_flight` deliveries are already being read or landed, when
  `max_connections` sockets are open, when no database connection frees up in `pool_wait_s`, or
  while shutting down.

Bounds: a database pool of `pool_size` connections, landed by as many threads; a deadline for
each request head (uvicorn arms none before a first response, so a stalled client would hold
its socket forever) and for each body. SIGTERM or SIGINT stops accepting connections, lets the
deliveries in flight finish (at most `shutdown_timeout_s`), then exits 0. One JSON line per
delivery and per lifecycle event goes to stderr; no header value but the delivery id, no body,
no secret and no key is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import psycopg
import uvicorn
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from predict_pipeline.db.connection import connect, connection_pool
from predict_pipeline.errors import CommandError
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.pushed import PushRefused, land_webhook
from predict_pipeline.ingestion.runner import credentials_aad
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.secrets import (
    ENCRYPTION_KEY_ENV,
    SecretDecryptError,
    SecretKeyError,
    decrypt_json,
    key_id,
    load_key_from_env,
)
from predict_pipeline.sources.push.signature import DELIVERY_HEADER

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
# A request refused before its body was read: how long and how much of the rest is read and
# dropped after the answer, so that the client reads the answer before the socket is reset.
LINGER_S = 2.0
LINGER_BYTES = 16 * 1024 * 1024
LOGGER = logging.getLogger("predict_pipeline.webhooks")


@dataclass(frozen=True, slots=True)
class ReceiverLimits:
    max_body_bytes: int = MAX_BODY_BYTES
    # Deliveries being read or landed at once; beyond it 503. Bounds memory to this x body cap.
    # Four per landing thread: more would only queue inside the receiver instead of the sender.
    max_in_flight: int = 32
    pool_size: int = 8  # PostgreSQL connections, and the threads that land deliveries
    pool_wait_s: float = 10.0
    max_connections: int = 1000  # open sockets, idle or not
    head_timeout_s: float = 10.0  # from connecting (or the last response) to a complete head
    body_timeout_s: float = 30.0  # from a complete head to the last byte of the body
    keep_alive_s: int = 5
    shutdown_timeout_s: int = 30
    retry_after_s: int = 1


class StartRefused(CommandError):
    """The receiver cannot do its work and does not start; the message is one line."""


# ---------------------------------------------------------------------------------------------
# Start-up


def load_receiver_key() -> bytes:
    try:
        return load_key_from_env()
    except SecretKeyError as exc:
        raise StartRefused(f"{exc}; the webhook receiver did not start") from None


def check_key_opens_secrets(conn: psycopg.Connection, key: bytes) -> list[uuid.UUID]:
    """The enabled webhook feeds whose secret `key` cannot open; StartRefused when it opens none.

    A receiver started with the wrong key would refuse every delivery; a few unopenable feeds
    (a half-done key rotation) are logged and answered 503 while the others are served.
    """
    rows = conn.execute(
        """SELECT f.id, f.credentials_encrypted FROM prediction_data_feeds f
           JOIN prediction_data_sources s ON s.id = f.source_id
           WHERE s.source_id = 'webhook' AND f.enabled AND f.credentials_encrypted IS NOT NULL"""
    ).fetchall()
    unopened = []
    for feed_id, envelope in rows:
        try:
            decrypt_json(envelope, key=key, aad=credentials_aad(feed_id))
        except SecretDecryptError:
            unopened.append(feed_id)
    if rows and len(unopened) == len(rows):
        raise StartRefused(
            f"{ENCRYPTION_KEY_ENV} (key id {key_id(key)}) opens none of the {len(rows)} webhook "
            "feeds' secrets: it is not the key they were stored with; the webhook receiver did "
            "not start"
        )
    return unopened


# ---------------------------------------------------------------------------------------------
# The application


class Receiver:
    """The ASGI app and what it holds: the pool, the landing threads and the in-flight count."""

    def __init__(
        self,
        pool: ConnectionPool,
        landing: LandingZone,
        key: bytes,
        limits: ReceiverLimits,
    ):
        self.pool = pool
        self.landing = landing
        self.limits = limits
        self._key = key
        self.in_flight = 0
        self.draining = False
        self.executor = ThreadPoolExecutor(limits.pool_size, thread_name_prefix="land")
        self.app = Starlette(
            routes=[
                Route("/webhooks/{feed_id}", self.deliver, methods=["POST"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )

    def _busy(self, reason: str) -> JSONResponse:
        return _answer(
            503,
            {"error": reason},
            {"Retry-After": str(self.limits.retry_after_s), "Connection": "close"},
        )

    async def deliver(self, request: Request) -> JSONResponse:
        started = time.monotonic()
        feed_key = request.path_params["feed_id"]
        delivery_id = request.headers.get(DELIVERY_HEADER, "")[:128]
        fields: dict[str, Any] = {"feed_id": feed_key, "delivery_id": delivery_id}
        if request.client is not None:
            fields["client"] = request.client.host
        response = await self._deliver(request, feed_key, fields)
        fields.update(status=response.status_code, ms=round((time.monotonic() - started) * 1000))
        LOGGER.info("delivery", extra={"fields": fields})
        return response

    async def _deliver(
        self, request: Request, feed_key: str, fields: dict[str, Any]
    ) -> JSONResponse:
        try:
            feed_id = uuid.UUID(feed_key)
        except ValueError:
            return _answer(404, {"error": "unknown feed"})
        declared = request.headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            # uvicorn's parser refuses these first; kept for any server in front of the app.
            return _answer(400, {"error": "Content-Length must be a non-negative integer"}, _CLOSE)
        if declared is not None and int(declared) > self.limits.max_body_bytes:
            return self._too_large()
        if self.draining:
            return self._busy("the receiver is shutting down; retry later")
        if self.in_flight >= self.limits.max_in_flight:
            return self._busy(f"{self.in_flight} deliveries in flight; retry later")
        self.in_flight += 1
        try:
            try:
                body = await self._read_body(request)
            except _BodyTooLarge as exc:
                fields["bytes_read"] = exc.args[0]
                return self._too_large()
            except TimeoutError:
                reason = f"the body did not arrive within {self.limits.body_timeout_s:g} s"
                return _answer(408, {"error": reason}, _CLOSE)
            except ClientDisconnect:
                return _answer(400, {"error": "the client went away"}, _CLOSE)
            fields["bytes"] = len(body)
            land = functools.partial(self._land, feed_id, body, dict(request.headers), fields)
            status, answer = await asyncio.get_running_loop().run_in_executor(self.executor, land)
        finally:
            self.in_flight -= 1
        extra = {"Retry-After": str(self.limits.retry_after_s)} if status == 503 else None
        return _answer(status, answer, extra)

    def _too_large(self) -> JSONResponse:
        reason = f"body larger than {self.limits.max_body_bytes} bytes"
        return _answer(413, {"error": reason}, _CLOSE)

    async def _read_body(self, request: Request) -> bytes:
        chunks, size = [], 0
        async with asyncio.timeout(self.limits.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.limits.max_body_bytes:
                    raise _BodyTooLarge(size)
                chunks.append(chunk)
        return b"".join(chunks)

    def _land(
        self,
        feed_id: uuid.UUID,
        body: bytes,
        headers: dict[str, str],
        fields: dict[str, Any],
    ) -> tuple[int, dict[str, Any]]:
        """In a landing thread: one pooled connection for the whole delivery."""
        try:
            with self.pool.connection() as conn:
                feed = load_feed(conn, feed_id)
                if feed is None:
                    return 404, {"error": "unknown feed"}
                report = land_webhook(
                    conn, self.landing, feed, body, headers, encryption_key=lambda: self._key
                )
        except PushRefused as exc:
            fields["reason"] = str(exc)
            return exc.status, {"error": str(exc)}
        except PoolTimeout:
            fields["reason"] = "no database connection free"
            return 503, {"error": "the receiver is busy; retry later"}
        except psycopg.OperationalError as exc:
            fields["reason"] = " ".join(str(exc).split())[:300]
            return 503, {"error": "the database is unavailable; retry later"}
        except Exception as exc:  # one delivery's fault must not end the receiver
            fields["reason"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            LOGGER.error("delivery failed", extra={"fields": dict(fields)})
            return 500, {"error": "the delivery could not be landed; retry later"}
        fields.update(records=report.records, duplicate=report.duplicate)
        answer = {
            "records": report.records,
            "feed_run_id": report.feed_run_id,
            "delivery_id": fields["delivery_id"],
        }
        if report.duplicate:
            return 200, {**answer, "duplicate": True}
        return 202, answer

    async def health(self, request: Request) -> JSONResponse:
        state: dict[str, Any] = {
            "in_flight": self.in_flight,
            "max_in_flight": self.limits.max_in_flight,
            "pool": {k: v for k, v in self.pool.get_stats().items() if k.startswith("pool_")},
        }
        if self.draining:
            return _answer(503, {"status": "draining", **state})
        try:
            await asyncio.to_thread(self._ping)
        except (PoolTimeout, psycopg.Error):
            return _answer(503, {"status": "database unavailable", **state})
        return _answer(200, {"status": "ok", **state})

    def _ping(self) -> None:
        with self.pool.connection(timeout=2.0) as conn:
            conn.execute("SELECT 1")


class _BodyTooLarge(Exception):
    pass


_CLOSE = {"Connection": "close"}  # refused before its body is read: do not read it either


def _answer(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


# ---------------------------------------------------------------------------------------------
# The HTTP protocol: deadlines and caps uvicorn does not have


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on each request head, and a
    cap on open connections; `limits` is set on the subclass `protocol_for` makes."""

    limits: ReceiverLimits
    # What connection_made wraps uvicorn's transport in: a proxy of it, not a Transport subclass.
    transport: _LingeringTransport  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _LingeringTransport(transport, self)
        self._head_bytes = 0
        self._head_deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "too many open connections; retry later")
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.transport.drop(len(data))  # the rest of a refused body: never parsed
            return
        super().data_received(data)
        if self._head_deadline is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, f"request head larger than {MAX_HEAD_BYTES} bytes")

    def send_400_response(self, msg: str) -> None:
        # httptools refused the head: a Content-Length of -1 or "abc" ends here, answered.
        self._refuse(
            400,
            "malformed HTTP request: its request line or a header (such as a Content-Length "
            "that is not a whole number) cannot be read",
        )

    def on_headers_complete(self) -> None:
        self._stop_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_deadline()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._head_bytes = 0
        self._head_deadline = self.loop.call_later(self.limits.head_timeout_s, self._head_late)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        self._head_deadline = None
        if self._head_bytes == 0:
            self.transport.close()  # an idle keep-alive connection: nothing to answer
            return
        late = f"the request head did not arrive within {self.limits.head_timeout_s:g} s"
        self._refuse(408, late)

    def _refuse(self, status: int, reason: str) -> None:
        self._stop_head_deadline()
        if self.transport.is_closing():
            return
        body = json.dumps({"error": reason}).encode()
        retry = f"retry-after: {self.limits.retry_after_s}\r\n" if status == 503 else ""
        phrase = HTTPStatus(status).phrase
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{retry}connection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()
        fields = {"status": status, "reason": reason}
        if self.client is not None:
            fields["client"] = self.client[0]
        LOGGER.info("request refused", extra={"fields": fields})


class _LingeringTransport:
    """The connection's transport, closed the way a refusal needs: closing a socket with a
    request body still arriving makes the kernel send a reset, which can destroy the answer
    before the client reads it. So it half-closes, drops what still comes (at most LINGER_S
    and LINGER_BYTES), then closes."""

    def __init__(self, transport: asyncio.Transport, protocol: _GuardedProtocol):
        self._transport = transport
        self._protocol = protocol
        self.lingering = False
        self._dropped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        cycle = self._protocol.cycle
        body_pending = cycle is not None and cycle.more_body
        if self.lingering or not body_pending or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()
        self._transport.resume_reading()
        self._protocol.loop.call_later(LINGER_S, self._transport.close)

    def drop(self, size: int) -> None:
        self._dropped += size
        if self._dropped > LINGER_BYTES:
            self._transport.close()


def protocol_for(limits: ReceiverLimits) -> type[_GuardedProtocol]:
    return type("ReceiverProtocol", (_GuardedProtocol,), {"limits": limits})


class _Server(uvicorn.Server):
    """Logs where it listens and when it drains; a signal is a normal stop (exit 0)."""

    def __init__(self, config: uvicorn.Config, receiver: Receiver):
        super().__init__(config)
        self.receiver = receiver

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal once stopped, which would end the process by SIGTERM.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                url = f"http://{host}:{port}"
                LOGGER.info("listening", extra={"fields": {"url": url, "port": port}})

    async def shutdown(self, sockets: Any = None) -> None:
        self.receiver.draining = True
        LOGGER.info("draining", extra={"fields": {"in_flight": self.receiver.in_flight}})
        await super().shutdown(sockets=sockets)


# ---------------------------------------------------------------------------------------------
# Logs and the command


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, event and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            entry["error"] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        return json.dumps(entry, default=str)


def log_json_lines(stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines())
    for name in ("predict_pipeline.webhooks", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(
    database_url: str,
    landing: LandingZone,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    limits: ReceiverLimits | None = None,
) -> int:
    """Check the key and the database, then receive until SIGTERM/SIGINT; StartRefused if not."""
    limits = limits or ReceiverLimits()
    key = load_receiver_key()
    with connect(database_url, autocommit=True) as conn:
        unopened = check_key_opens_secrets(conn, key)
    log_json_lines()
    if unopened:
        fields = {"feeds": [str(f) for f in unopened], "key_id": key_id(key)}
        LOGGER.warning("feeds whose secret the key cannot open get 503", extra={"fields": fields})
    pool = connection_pool(database_url, max_size=limits.pool_size, timeout=limits.pool_wait_s)
    try:
        pool.open(wait=True, timeout=limits.pool_wait_s)
    except PoolTimeout:
        pool.close()
        raise StartRefused(
            "the database stopped answering; the webhook receiver did not start"
        ) from None
    receiver = Receiver(pool, landing, key, limits)
    config = uvicorn.Config(
        receiver.app,
        host=host,
        port=port,
        http=protocol_for(limits),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=limits.shutdown_timeout_s,
    )
    try:
        _Server(config, receiver).run()
    finally:
        receiver.executor.shutdown(wait=True)
        pool.close()
        LOGGER.info("stopped")
    return 0
