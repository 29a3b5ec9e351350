"""What one send may take, and how it is held to it.

Every send is bounded (`ResponseLimits`, per source in the registry): the body is streamed and
refused as soon as it passes `max_bytes` after decoding (a gzip bomb never inflates whole), and
the whole send (attempts, retry waits, redirects) ends at `deadline_s`.
"""

from __future__ import annotations

import contextvars
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from predict_pipeline.http.errors import DeadlineExceededError, ResponseTooLargeError
from predict_pipeline.http.stats import FetchStats

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a response body after content decoding
DECODED_CHUNK_BYTES = 1024 * 1024  # the most a compressed body is inflated by at a time
REQUEST_DEADLINE_S = 120.0  # one send, from the first attempt to the last byte


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """What one send may take: decoded body bytes, and seconds from its start to the last byte
    (every attempt, retry wait and redirect included)."""

    max_bytes: int = MAX_RESPONSE_BYTES
    deadline_s: float = REQUEST_DEADLINE_S

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not self.deadline_s > 0:
            raise ValueError(f"response limits must be positive, got {self}")

    def within(self, cap: ResponseLimits) -> ResponseLimits:
        """These limits, none looser than `cap`'s."""
        return ResponseLimits(
            min(self.max_bytes, cap.max_bytes), min(self.deadline_s, cap.deadline_s)
        )


# The deadline of the send under way in this thread; the live transport (transport.py) cuts
# every socket wait (connect, TLS, write, read) at it.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "predict_http_deadline", default=None
)


def _until_deadline(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("the request's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


def _read_body(
    response: httpx.Response,
    url: str,
    attempts: int,
    limits: ResponseLimits,
    stats: FetchStats,
) -> bytes:
    """The decoded body, streamed: refused as soon as it passes `limits.max_bytes` (unread when
    its Content-Length already does), or when the send's deadline passes."""
    declared = response.headers.get("Content-Length", "").strip()
    received = 0
    if not (declared.isdigit() and int(declared) > limits.max_bytes):
        chunks: list[bytes] = []
        for chunk in _decoded_chunks(response):
            received += len(chunk)
            if received > limits.max_bytes:
                break
            chunks.append(chunk)
            if _deadline_passed():  # a transport without our sockets (replay) is checked here
                raise DeadlineExceededError(url, "deadline passed", attempts=attempts)
        else:
            return b"".join(chunks)
    stats.count_response(response, received)
    raise ResponseTooLargeError(
        url,
        f"response_too_large: the body passed {_mib(limits.max_bytes)} after decoding "
        f"(HTTP {response.status_code}); refused without reading further",
        attempts=attempts,
        status_code=response.status_code,
    )


def _decoded_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as it is decoded, at most DECODED_CHUNK_BYTES at a time: a compressed chunk
    that inflates a thousandfold is never inflated whole. gzip and deflate (all the client
    asks for) are inflated here; any other encoding a server sends anyway goes through
    httpx's own decoders."""
    if response.is_stream_consumed:  # built whole in memory (replay): decoded already
        yield response.content
        return
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        yield from response.iter_raw()
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        yield from response.iter_bytes()
        return
    # gzip or zlib framing, told apart by its header; raw deflate when a "deflate" has none.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
    started = False
    for raw in response.iter_raw():
        data = raw
        while data:
            try:
                chunk = inflater.decompress(data, DECODED_CHUNK_BYTES)
            except zlib.error as exc:
                if started or encoding != "deflate":
                    raise httpx.DecodingError(f"{encoding} body: {exc}") from None
                inflater, started = zlib.decompressobj(-zlib.MAX_WBITS), True
                continue
            started = True
            if chunk:
                yield chunk
            data = inflater.unconsumed_tail
    tail = inflater.flush()
    if tail:
        yield tail


def _deadline_passed(after: float = 0.0) -> bool:
    deadline = _DEADLINE.get()
    return deadline is not None and time.monotonic() + after >= deadline


def _deadline_error(url: str, attempts: int, limits: ResponseLimits) -> DeadlineExceededError:
    return DeadlineExceededError(
        url,
        f"deadline_exceeded: no complete response within {limits.deadline_s:g} s",
        attempts=attempts,
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size} bytes"
