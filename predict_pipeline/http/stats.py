"""One feed run's HTTP numbers: requests, bytes received, and the quota the source reports left."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx

# httpx headers are case-insensitive, so these also match "x-ratelimit-remaining".
RATE_LIMIT_REMAINING_HEADERS = ("X-RateLimit-Remaining", "RateLimit-Remaining")


@dataclass
class FetchStats:
    """One feed run's HTTP numbers; pass the same object to every `send` of the run."""

    requests: int = 0  # every attempt, retries included
    bytes_received: int = 0  # response bodies after content decoding
    rate_limit_remaining: int | None = None  # the last integer the source reported
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_response(self, response: httpx.Response, body_bytes: int) -> None:
        remaining = _rate_limit_remaining(response.headers)
        with self._lock:
            self.bytes_received += body_bytes
            if remaining is not None:
                self.rate_limit_remaining = remaining

    def as_dict(self) -> dict[str, int | None]:
        with self._lock:
            return {
                "requests": self.requests,
                "bytes_received": self.bytes_received,
                "rate_limit_remaining": self.rate_limit_remaining,
            }


def _rate_limit_remaining(headers: httpx.Headers) -> int | None:
    for name in RATE_LIMIT_REMAINING_HEADERS:
        value = headers.get(name)
        # Anything but a plain integer (for example a structured-field list) is not a count.
        if value is not None and value.strip().isdigit():
            return int(value.strip())
    return None
