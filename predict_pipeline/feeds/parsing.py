"""Small readers for the field formats the real APIs use (shared by every adapter)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

# "2026-10-06 02:22:39+00" (Polymarket market closedTime) has a space and a bare hour offset.
_SHORT_OFFSET = re.compile(r"([+-]\d{2})$")
# PredictIt/Kalshi send up to 7 fractional digits; Python reads at most 6.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def utc_from_iso(text: str, *, assume_tz: Any = UTC) -> datetime:
    """Parse an ISO-8601-ish timestamp; naive values are taken in `assume_tz`, result is UTC."""
    if text.endswith("Z") and len(text) == 20:  # "2026-01-01T00:00:00Z", the usual: one call
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # read below the long way, which says what is wrong with it
    s = text.strip().replace(" ", "T", 1)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    s = _SHORT_OFFSET.sub(r"\1:00", s) if re.search(r"T.*[+-]\d{2}$", s) else s
    s = _LONG_FRACTION.sub(r"\1", s)
    parsed = datetime.fromisoformat(s)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=assume_tz)
    return parsed.astimezone(UTC)


def utc_from_epoch_ms(value: float | int | str) -> datetime:
    return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)


def utc_from_epoch_s(value: float | int | str) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


def json_list(value: Any) -> list[Any]:
    """Polymarket sends lists as JSON-encoded strings inside JSON; accept both forms."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        decoded = json.loads(value)
        if not isinstance(decoded, list):
            raise ValueError(f"expected a JSON list, got {type(decoded).__name__}")
        return decoded
    raise ValueError(f"expected a list or a JSON-encoded list, got {type(value).__name__}")


def finite_float(value: Any) -> float | None:
    """A number from a number or numeric string; None for null/empty; error for NaN/inf/junk."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number
