"""One record from the fields a user sent (`normalise_fields`): the readers of each accepted
field, shared by webhook and upload deliveries and by custom_api, so a field means the same
whichever way it arrives."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from predict_pipeline.model import (
    MARKET_STATUSES,
    MAX_SOURCE_EVENT_ID_BYTES,
    RESOLUTIONS,
    SIGNAL_TYPES,
    MarketFacts,
    NormalisedRecord,
)
from predict_pipeline.sources.parsing import (
    TimestampOutOfRange,
    finite_float,
    utc_from_epoch_ms,
    utc_from_epoch_s,
    utc_from_iso,
)

# Signal types whose whole meaning is a number; the others may be narrative only.
NUMERIC_SIGNAL_TYPES = frozenset({"MARKET_PRICE", "VOLUME", "SENTIMENT"})
MAX_WEIGHT = 5.0
SOURCE_EVENT_ID_TOO_LONG = "source_event_id_too_long"  # a reject's named reason

_STATUS_WORDS = {
    "open": "open",
    "active": "open",
    "closed": "closed",
    "resolved": "resolved",
    "settled": "resolved",
    "finalized": "resolved",
    "finalised": "resolved",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "unknown": "unknown",
}
# Every platform's documented resolution words (upper-cased), as outcomes of the schema.
RESOLUTION_VALUES = {
    **{word: word for word in RESOLUTIONS},
    "CANCELED": "CANCELLED",
    "CANCEL": "CANCELLED",  # Manifold: N/A
    "N/A": "CANCELLED",
    "MKT": "AMBIGUOUS",  # Manifold: resolved to a probability
    "VOID": "CANCELLED",  # Kalshi: positions returned at cost
    "SCALAR": "AMBIGUOUS",  # Kalshi: settled at a fraction of the payout
    "ANNULLED": "CANCELLED",  # Metaculus
    "TRUE": "YES",
    "FALSE": "NO",
}
# Metaculus's earlier API (api2) wrote these numbers for its unscored resolutions.
_LEGACY_RESOLUTION_NUMBERS = {-1.0: "AMBIGUOUS", -2.0: "CANCELLED"}
UNMAPPABLE_RESOLUTION = "unmappable_resolution"  # a reject's named reason
UNMAPPABLE_STATUS = "unmappable_status"
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PLAIN_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?#][!-~]*)?", re.IGNORECASE)
_SHOWN_CHARS = 60


class FieldError(ValueError):
    """One field of one record that cannot be read.

    `code` is set for a well-formed value outside what the product accepts (a timestamp past
    the accepted range, an id too long to index): that record alone is rejected under this
    named reason. Without a code the value is malformed, and a push refuses its delivery whole.
    """

    def __init__(self, field: str, reason: str, *, code: str | None = None):
        self.field = field
        self.reason = reason
        self.code = code
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class FieldRules:
    """How one feed's values are read: default signal type, scale, timestamp format."""

    signal_type: str = "MARKET_PRICE"
    value_scale: float = 1.0
    timestamp_format: str = "iso"
    timezone: tzinfo | None = None
    missing_values: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FieldRules:
        zone = config.get("timezone")
        return cls(
            signal_type=config.get("signal_type", "MARKET_PRICE"),
            value_scale=float(config.get("value_scale", 1)),
            timestamp_format=config.get("timestamp_format", "iso"),
            timezone=ZoneInfo(zone) if zone else None,
            missing_values=frozenset(config.get("missing_values", ())),
        )


def normalise_fields(
    fields: Mapping[str, Any],
    *,
    source: str,
    rules: FieldRules,
    observed_at: datetime,
    raw_data: dict[str, Any],
) -> NormalisedRecord:
    """One record from the accepted fields (see the module docstring); FieldError on a fault.

    Fields are read in one fixed order, so the first fault reported is deterministic. Every
    backfilled point passes here twice (fetch, then validation): absent fields cost a lookup.
    """
    missing = rules.missing_values
    present = {}
    for key, given in fields.items():
        if given is None:
            continue
        if isinstance(given, str):
            stripped = given.strip()
            if not stripped or stripped in missing:
                continue
        present[key] = given
    get = present.get
    name = "source_event_id"
    try:
        given = get(name)
        if given is None:
            raise FieldError(name, "missing")
        source_event_id = _event_id(given)
        name = "signal_type"
        given = get(name)
        signal_type = rules.signal_type if given is None else _signal_type(given)
        name = "value"
        given = get(name)
        value = None if given is None else _scaled(_number(given), rules.value_scale)
        if value is None and signal_type in NUMERIC_SIGNAL_TYPES:
            raise FieldError(name, f"missing; a {signal_type} signal needs a number")
        name = "fetched_at"
        given = get(name)
        fetched_at = observed_at if given is None else _timestamp(given, rules)
        later = {}
        for name, reader in _LATER_FIELDS:
            given = get(name)
            if given is not None:
                later[name] = reader(given, rules)
    except FieldError:
        raise
    except TimestampOutOfRange as exc:
        raise FieldError(name, str(exc), code=exc.reason) from exc
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise FieldError(name, str(exc)) from exc
    resolution, resolved_to = later.get("resolution") or (None, None)
    if resolved_to is None and resolution == "AMBIGUOUS":
        resolved_to = later.get("resolution_probability")
    status = later.get("status") or ("resolved" if resolution is not None else "unknown")
    if "weight" in later:
        raw_data = {**raw_data, "weight": later["weight"]}
    return NormalisedRecord(
        source=source,
        source_event_id=source_event_id,
        signal_type=signal_type,
        value=value,
        fetched_at=fetched_at,
        source_url=later.get("source_url"),
        narrative=later.get("narrative"),
        raw_data=raw_data,
        market=MarketFacts(
            title=later.get("title"),
            category_hints=later.get("category", ()),
            close_time=later.get("close_time"),
            status=status,
            resolution=resolution,
            resolution_probability=resolved_to,
        ),
    )


# The fields read after identity, type, value and time, in reading order (the first fault is
# reported); a reader is called only for a field that is present.
_LATER_FIELDS: tuple[tuple[str, Callable[[Any, FieldRules], Any]], ...] = (
    ("title", lambda value, _rules: _text(value)),
    ("narrative", lambda value, _rules: _text(value)),
    ("source_url", lambda value, _rules: _http_url(value)),
    ("weight", lambda value, _rules: _weight(value)),
    ("close_time", lambda value, rules: _timestamp(value, rules)),
    ("category", lambda value, _rules: _category_hints(value)),
    ("status", lambda value, _rules: _status(value)),
    ("resolution", lambda value, _rules: _resolution(value)),
    ("resolution_probability", lambda value, _rules: _probability(value)),
)


def shown_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _event_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"expected text or an integer, got {shown_value(value)}")
    # A UTF-8 character is at most 4 bytes: only a long id needs encoding to be measured.
    if len(text) * 4 > MAX_SOURCE_EVENT_ID_BYTES:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_SOURCE_EVENT_ID_BYTES:
            raise FieldError(
                "source_event_id",
                f"{size} bytes, over the {MAX_SOURCE_EVENT_ID_BYTES} an indexed id may have",
                code=SOURCE_EVENT_ID_TOO_LONG,
            )
    return text


def _signal_type(value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in SIGNAL_TYPES:
        return value.strip().upper()
    raise ValueError(f"unknown signal type {shown_value(value)}; expected one of {SIGNAL_TYPES}")


def _number(value: Any) -> float:
    if value.__class__ is float and math.isfinite(value):  # the usual JSON number, at once
        return value
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip()):
            raise ValueError(f"expected a number, got {shown_value(value)}")
        value = value.strip()
    elif not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {shown_value(value)}")
    number = finite_float(value)
    if number is None:
        raise ValueError(f"expected a number, got {shown_value(value)}")
    return number


def _scaled(number: float, scale: float) -> float:
    scaled = number * scale
    if not math.isfinite(scaled):
        raise ValueError(f"{number:g} times the value_scale {scale:g} is not a finite number")
    return scaled


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {shown_value(value)}")
    return value.strip()


def _http_url(value: Any) -> str:
    url = _text(value)
    if _PLAIN_HTTP_URL.fullmatch(url):  # the usual URL, which urlsplit would accept: no split
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {shown_value(value)}")
    return url


def _weight(value: Any) -> float:
    weight = _number(value)
    if not 0 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight must be between 0 and {MAX_WEIGHT:g}, got {weight:g}")
    return weight


def _category_hints(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = value.split(";")
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = value
    else:
        raise ValueError(f"expected text or a list of text, got {shown_value(value)}")
    return tuple(part.strip() for part in parts if part.strip())


def _status(value: Any) -> str:
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _STATUS_WORDS:
        return _STATUS_WORDS[word]
    raise FieldError(
        "status",
        f"unknown status {shown_value(value)}; expected one of {MARKET_STATUSES}",
        code=UNMAPPABLE_STATUS,
    )


def _resolution(value: Any) -> tuple[str, float | None]:
    """A platform's resolution value as (outcome, the probability it resolved to, if any)."""
    if isinstance(value, bool):
        return ("YES" if value else "NO"), None
    if isinstance(value, str):
        text = value.strip()
        word = text.upper()
        if word in RESOLUTION_VALUES:
            return RESOLUTION_VALUES[word], None
        if text.startswith("["):
            with contextlib.suppress(ValueError):  # not JSON: refused below as unmappable
                value = json.loads(text)
        elif _NUMBER.fullmatch(text):
            value = float(text)
    if isinstance(value, list) and value:
        # Polymarket's final outcome prices, the Yes (first) outcome's price first.
        prices = [_share(price) for price in value]
        if None not in prices and abs(sum(prices) - 1.0) < 1e-9:  # type: ignore[arg-type]
            return _resolution(prices[0])
    elif isinstance(value, int | float) and math.isfinite(value):
        number = float(value)
        if number in _LEGACY_RESOLUTION_NUMBERS:
            return _LEGACY_RESOLUTION_NUMBERS[number], None
        if number == 1.0:
            return "YES", None
        if number == 0.0:
            return "NO", None
        if 0.0 < number < 1.0:
            return "AMBIGUOUS", number
    raise FieldError(
        "resolution",
        f"unmappable resolution {shown_value(value)}; expected a platform's resolution value "
        f"({', '.join(sorted(RESOLUTION_VALUES))}), true/false, or a final price from 0 to 1",
        code=UNMAPPABLE_RESOLUTION,
    )


def _share(value: Any) -> float | None:
    """A price or probability from 0 to 1 given as a number or numeric text, else None."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def _probability(value: Any) -> float:
    share = _share(value)
    if share is None:
        raise FieldError(
            "resolution_probability",
            f"expected a probability from 0 to 1, got {shown_value(value)}",
            code=UNMAPPABLE_RESOLUTION,
        )
    return share


class _NaiveTimestamp(Exception):
    pass


class _RefuseNaive(tzinfo):
    """Stands in for a missing zone: any use of it means the timestamp had no offset."""

    def utcoffset(self, dt: datetime | None) -> None:
        raise _NaiveTimestamp

    def dst(self, dt: datetime | None) -> None:
        raise _NaiveTimestamp

    def tzname(self, dt: datetime | None) -> None:
        raise _NaiveTimestamp


_REFUSE_NAIVE = _RefuseNaive()


def _timestamp(value: Any, rules: FieldRules) -> datetime:
    if rules.timestamp_format == "iso":
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO-8601 timestamp, got {shown_value(value)}")
        try:
            return utc_from_iso(value, assume_tz=rules.timezone or _REFUSE_NAIVE)
        except TimestampOutOfRange:
            raise
        except _NaiveTimestamp:
            raise ValueError(
                f"timestamp {shown_value(value)} has no UTC offset; add one (e.g. 'Z') "
                "or set the feed's timezone"
            ) from None
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"expected an ISO-8601 timestamp, got {shown_value(value)}") from exc
    unit = "seconds" if rules.timestamp_format == "epoch_s" else "milliseconds"
    try:
        number = _number(value)
        to_utc = utc_from_epoch_s if rules.timestamp_format == "epoch_s" else utc_from_epoch_ms
        return to_utc(number)
    except TimestampOutOfRange:
        raise
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"expected epoch {unit}, got {shown_value(value)}") from exc


# The field readers, shared with other pushed data: campaign results read numbers and times
# the way feed records do.
read_number = _number
read_timestamp = _timestamp
