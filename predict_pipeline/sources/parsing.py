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

# The moments the product accepts, [EARLIEST, LATEST): far inside what pandas' nanosecond
# timestamps hold (1677-09-21 .. 2262-04-11), so one record's year 0001 or 9999 is that record's
# named reject, never an overflow that sinks its whole batch.
EARLIEST_TIMESTAMP = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2200, 1, 1, tzinfo=UTC)
_EARLIEST_EPOCH_S = EARLIEST_TIMESTAMP.timestamp()
_LATEST_EPOCH_S = LATEST_TIMESTAMP.timestamp()


class TimestampOutOfRange(ValueError):
    """A readable timestamp outside [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP)."""

    reason = "timestamp_out_of_range"

    def __init__(self, shown: str):
        super().__init__(
            f"timestamp {shown} is outside {EARLIEST_TIMESTAMP:%Y-%m-%d} .. "
            f"{LATEST_TIMESTAMP:%Y-%m-%d} (UTC)"
        )


def within_range(moment: datetime) -> datetime:
    """`moment` (aware) when it lies in the accepted range, else TimestampOutOfRange."""
    if not EARLIEST_TIMESTAMP <= moment < LATEST_TIMESTAMP:
        raise TimestampOutOfRange(moment.isoformat())
    return moment


def utc_from_iso(text: str, *, assume_tz: Any = UTC) -> datetime:
    """Parse an ISO-8601-ish timestamp; naive values are taken in `assume_tz`, result is UTC."""
    if text.endswith("Z") and len(text) == 20:  # "2026-01-01T00:00:00Z", the usual: one call
        try:
            return within_range(datetime.fromisoformat(text))
        except TimestampOutOfRange:
            raise
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
    try:
        return within_range(parsed.astimezone(UTC))
    except OverflowError:  # the offset moves it past year 1 or 9999
        raise TimestampOutOfRange(repr(text)) from None


def utc_from_epoch_ms(value: float | int | str) -> datetime:
    return _from_epoch(float(value) / 1000.0, value, "epoch milliseconds")


def utc_from_epoch_s(value: float | int | str) -> datetime:
    return _from_epoch(float(value), value, "epoch seconds")


def _from_epoch(seconds: float, given: Any, unit: str) -> datetime:
    if not math.isfinite(seconds):
        raise ValueError(f"expected finite {unit}, got {given!r}")
    if not _EARLIEST_EPOCH_S <= seconds < _LATEST_EPOCH_S:
        raise TimestampOutOfRange(f"{given!r} ({unit})")
    return datetime.fromtimestamp(seconds, tz=UTC)


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
