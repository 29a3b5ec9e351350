"""Per-source rate limiting: a token bucket sized from a source's `rate_limit_rpm`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Thread-safe token bucket: `rate_per_minute` sustained, up to `burst` at once.

    Size it from a source's `rate_limit_rpm`. `acquire()` reserves a token and sleeps until it
    is due, so concurrent callers queue in order instead of racing.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: int = 1,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be positive, got {rate_per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self._per_second = rate_per_minute / 60.0
        self._tokens = float(burst)
        self._sleep = sleep
        self._clock = clock
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self._per_second)
            self._updated = now
            self._tokens -= 1.0
            wait = -self._tokens / self._per_second if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
