"""How long to wait before a retry: full-jitter exponential backoff, or the source's Retry-After."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_SECONDS = re.compile(r"\d+(\.\d+)?")


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full-jitter exponential backoff before retry number `attempt` (1-based): [0, ceiling)."""
    if attempt < 1:
        raise ValueError(f"retry attempt numbers start at 1, got {attempt}")
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    return rng() * ceiling


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date); None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
