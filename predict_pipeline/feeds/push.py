"""Records users push to us: webhook deliveries and CSV/JSON file uploads.

Both share one normaliser (`normalise_fields`), which the custom JSON API adapter uses too, so
a field means the same thing whichever way a user's data arrives.

Accepted fields (CSV columns or JSON keys; `columns` in the feed config renames them):

- `source_event_id` (required): the user's id for the question; text or an integer.
- `value` (required as a CSV column): a number, scaled by `value_scale`. It may be empty for
  signals without a number (NEWS, SOCIAL, EXPERT, MANUAL) but not for MARKET_PRICE, VOLUME or
  SENTIMENT.
- `signal_type`: one of SIGNAL_TYPES (any case); the feed's `signal_type` when absent.
- `fetched_at`: when the value was observed, in `timestamp_format` (ISO-8601 by default); the
  time of receipt when absent. Naive ISO timestamps are refused unless the config names a
  `timezone`.
- `title`, `narrative`: text. `source_url`: an http(s) URL.
- `weight`: a number from 0 to 5. NormalisedRecord has no weight field, so the parsed weight
  travels in `raw_data["weight"]`.
- `close_time` (same format as `fetched_at`), `category` (one hint, or several separated by
  `;`; a list of strings in JSON), `status` (open, active, closed, resolved, settled,
  finalized, cancelled), `resolution` and `resolution_probability`: these fill MarketFacts.
- `resolution` takes each platform's own values (`RESOLUTION_VALUES`, any case): YES, NO,
  AMBIGUOUS, CANCELLED; Manifold's MKT (AMBIGUOUS, resolved to `resolution_probability`) and
  CANCEL; Kalshi's yes, no, void (CANCELLED) and scalar (AMBIGUOUS); Metaculus's annulled
  (CANCELLED) and ambiguous, and its earlier numbers -1 (ambiguous) and -2 (annulled); true and
  false; a final price or probability: 1 YES, 0 NO, anything between AMBIGUOUS resolved to it;
  Polymarket's final outcome prices as a list (or JSON-encoded list) with the Yes price first,
  `["1", "0"]`. A well-formed value that maps to none of them rejects its record alone
  (`unmappable_resolution`, `unmappable_status`), never the file.

Other columns or keys are kept in `raw_data`. Empty cells, JSON nulls and the strings listed in
`missing_values` count as absent.

Formats:

- CSV (`.csv`): UTF-8 (a BOM is fine), a header row, CRLF or LF, RFC 4180 quoting (quoted
  fields may hold commas and newlines). Blank rows are skipped; a row with a different number
  of cells than the header refuses the file.
- JSON (`.json`, and every webhook body): a list of record objects, `{"records": [...]}`, one
  record object, or JSON Lines (`.jsonl`, `.ndjson`: one object per line).

A malformed delivery is refused whole with an UploadError carrying the 1-based line and
column: for CSV the record's first line and the 1-based column index (plus the column name);
for JSON the line and character column of the offending value (or of the record's `{` when a
required key is missing). `column` is None only when the fault is not in one cell (a missing
column, an unterminated quote).

Webhooks to a feed with a secret must carry three headers (`verify_signature`, `sign_delivery`):
`X-Predict-Timestamp: <unix seconds>` (the time of sending, within SIGNATURE_TOLERANCE of the
receiver's clock), `X-Predict-Delivery: <id>` (the sender's id of the delivery, kept across
retries: 1-128 of `A-Z a-z 0-9 . _ : -`) and `X-Predict-Signature: sha256=<hex>` (the header name
is configurable), the HMAC-SHA256 under the feed's secret of `<timestamp>.<delivery id>.<raw body>`.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import hashlib
import hmac
import io
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema

from predict_pipeline.feeds.parsing import (
    TimestampOutOfRange,
    finite_float,
    utc_from_epoch_ms,
    utc_from_epoch_s,
    utc_from_iso,
)
from predict_pipeline.feeds.records import (
    MARKET_STATUSES,
    MAX_SOURCE_EVENT_ID_BYTES,
    RESOLUTIONS,
    SIGNAL_TYPES,
    MarketFacts,
    NormalisedRecord,
    RecordReject,
)

RATE_LIMIT_RPM = None  # nothing is fetched: users push to us
SUPPORTS_BACKFILL = False  # history arrives as an upload, not as a fetch

FIELD_NAMES = (
    "source_event_id",
    "signal_type",
    "value",
    "fetched_at",
    "title",
    "narrative",
    "source_url",
    "weight",
    "close_time",
    "category",
    "status",
    "resolution",
    "resolution_probability",
)
REQUIRED_CSV_COLUMNS = ("source_event_id", "value")
SIGNATURE_HEADER = "X-Predict-Signature"
TIMESTAMP_HEADER = "X-Predict-Timestamp"
DELIVERY_HEADER = "X-Predict-Delivery"
# How far a delivery's signed timestamp may be from the receiver's clock; older ones are replays.
SIGNATURE_TOLERANCE = timedelta(minutes=5)
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
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_NEWLINE = re.compile("\n")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DELIVERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PLAIN_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?#][!-~]*)?", re.IGNORECASE)
_SHOWN_CHARS = 60
_MAY_HOLD_CREDENTIALS = frozenset({"url", "params", "headers", "body"})

# Properties custom_api shares: how a user's values are read into a record.
RULE_PROPERTIES: dict[str, Any] = {
    "signal_type": {
        "description": "Signal type of records that do not name their own.",
        "enum": list(SIGNAL_TYPES),
    },
    "value_scale": {
        "description": "Factor applied to every value (0.01 turns cents into dollars).",
        "type": "number",
        "exclusiveMinimum": 0,
    },
    "timestamp_format": {
        "description": "How timestamps are written: ISO-8601 text, epoch seconds or epoch ms.",
        "enum": ["iso", "epoch_s", "epoch_ms"],
    },
    "timezone": {
        "description": "IANA zone for ISO timestamps without an offset; without it they are "
        "refused.",
        "type": "string",
        "minLength": 1,
    },
    "missing_values": {
        "description": "Text values that mean 'no value' (e.g. \"NA\"), besides empty and null.",
        "type": "array",
        "items": {"type": "string"},
    },
}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Webhook / upload feed",
    "description": "How pushed records (webhook bodies, CSV/JSON uploads) are read.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "columns": {
            "description": "Renames: accepted field name -> the column or key used in the data.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {
                    "description": f"Column or key that holds {name}.",
                    "type": "string",
                    "minLength": 1,
                }
                for name in FIELD_NAMES
            },
        },
        **RULE_PROPERTIES,
        "signature_header": {
            "description": "Webhook header carrying 'sha256=<hex>': the HMAC-SHA256 of "
            "'<X-Predict-Timestamp>.<X-Predict-Delivery>.<body>'.",
            "type": "string",
            "pattern": "^[A-Za-z0-9-]+$",
        },
    },
}

DEFAULT_CONFIG: dict[str, Any] = {
    "columns": {},
    "signal_type": "MARKET_PRICE",
    "value_scale": 1,
    "timestamp_format": "iso",
    "missing_values": [],
    "signature_header": SIGNATURE_HEADER,
}


class UploadError(ValueError):
    """A malformed upload file or webhook body; the whole delivery is refused."""

    def __init__(
        self,
        source: str,
        name: str,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ):
        self.source = source
        self.name = name
        self.reason = reason
        self.line = line
        self.column = column
        self.field = field
        where = [f"line {line}"] if line is not None else []
        if column is not None:
            where.append(f"column {column}")
        if field is not None:
            where.append(f"({field})")
        place = f" {', '.join(where)}" if where else ""
        super().__init__(f"{source} {name}{place}: {reason}")


class SignatureError(ValueError):
    """A webhook delivery whose signature is missing or wrong. Never carries the secret."""


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    """What a verified signature vouches for besides the body: the sender's id and time."""

    delivery_id: str
    sent_at: datetime


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


def validated_config(
    config: Mapping[str, Any] | None,
    *,
    schema: dict[str, Any],
    defaults: Mapping[str, Any],
    source: str,
) -> dict[str, Any]:
    """The feed config over the defaults, checked against the schema; ValueError names the fault."""
    merged = {**defaults, **(config or {})}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(merged)
    )
    if error is not None:
        error = _branch_error(error)
        # URLs, params, headers and bodies may carry credentials: name the rule, not the value.
        sensitive = bool(error.absolute_path) and error.absolute_path[0] in _MAY_HOLD_CREDENTIALS
        message = f"fails the {error.validator!r} rule" if sensitive else error.message
        raise ValueError(f"{source} config: {error.json_path}: {message}")
    if "timezone" in merged:
        try:
            ZoneInfo(merged["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"{source} config: $.timezone: unknown time zone {merged['timezone']!r}"
            ) from exc
    return merged


def _branch_error(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a oneOf of tagged variants (pagination modes), the fault inside the variant the
    config chose, or the tag's own fault, instead of "not valid under any of the schemas"."""
    if error.validator != "oneOf" or not error.context:
        return error
    by_branch: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    chosen = [errs for errs in by_branch.values() if all(e.validator != "const" for e in errs)]
    if chosen:
        return _branch_error(jsonschema.exceptions.best_match(chosen[0]))
    tags = [e for e in error.context if e.validator == "const"]
    allowed = ", ".join(repr(e.validator_value) for e in tags)
    tags[0].message = f"expected one of {allowed}"
    return tags[0]


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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _event_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"expected text or an integer, got {_shown(value)}")
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
    raise ValueError(f"unknown signal type {_shown(value)}; expected one of {SIGNAL_TYPES}")


def _number(value: Any) -> float:
    if value.__class__ is float and math.isfinite(value):  # the usual JSON number, at once
        return value
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip()):
            raise ValueError(f"expected a number, got {_shown(value)}")
        value = value.strip()
    elif not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {_shown(value)}")
    number = finite_float(value)
    if number is None:
        raise ValueError(f"expected a number, got {_shown(value)}")
    return number


def _scaled(number: float, scale: float) -> float:
    scaled = number * scale
    if not math.isfinite(scaled):
        raise ValueError(f"{number:g} times the value_scale {scale:g} is not a finite number")
    return scaled


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {_shown(value)}")
    return value.strip()


def _http_url(value: Any) -> str:
    url = _text(value)
    if _PLAIN_HTTP_URL.fullmatch(url):  # the usual URL, which urlsplit would accept: no split
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {_shown(value)}")
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
        raise ValueError(f"expected text or a list of text, got {_shown(value)}")
    return tuple(part.strip() for part in parts if part.strip())


def _status(value: Any) -> str:
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _STATUS_WORDS:
        return _STATUS_WORDS[word]
    raise FieldError(
        "status",
        f"unknown status {_shown(value)}; expected one of {MARKET_STATUSES}",
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
        f"unmappable resolution {_shown(value)}; expected a platform's resolution value "
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
            f"expected a probability from 0 to 1, got {_shown(value)}",
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
            raise ValueError(f"expected an ISO-8601 timestamp, got {_shown(value)}")
        try:
            return utc_from_iso(value, assume_tz=rules.timezone or _REFUSE_NAIVE)
        except TimestampOutOfRange:
            raise
        except _NaiveTimestamp:
            raise ValueError(
                f"timestamp {_shown(value)} has no UTC offset; add one (e.g. 'Z') "
                "or set the feed's timezone"
            ) from None
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"expected an ISO-8601 timestamp, got {_shown(value)}") from exc
    unit = "seconds" if rules.timestamp_format == "epoch_s" else "milliseconds"
    try:
        number = _number(value)
        to_utc = utc_from_epoch_s if rules.timestamp_format == "epoch_s" else utc_from_epoch_ms
        return to_utc(number)
    except TimestampOutOfRange:
        raise
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"expected epoch {unit}, got {_shown(value)}") from exc


# --- reading deliveries ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """One record as delivered: its raw object and the accepted fields found in it."""

    raw: dict[str, Any]
    fields: dict[str, Any]


class _Places(Protocol):
    def of(self, row: int, field: str) -> tuple[int, int | None, str]:
        """(line, column, name in the data) of a row's field, or of the row when it lacks it."""
        ...


def parse_upload(
    data: bytes,
    filename: str,
    *,
    feed_config: Mapping[str, Any] | None,
    received_at: datetime,
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    """Every record of an uploaded CSV/JSON/JSON Lines file and the records rejected alone
    (see FieldError.code), or UploadError for the whole file."""
    config = validated_config(
        feed_config, schema=CONFIG_SCHEMA, defaults=DEFAULT_CONFIG, source="upload"
    )
    observed_at = _aware_utc(received_at, "upload")
    rows, places = _delivery_rows(data, filename, _names_in_data(config))
    return _records(rows, places, config, "upload", filename, observed_at)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One record as delivered, with where each of its fields sits in the delivery."""

    raw: dict[str, Any]
    fields: dict[str, Any]
    start: tuple[int, int | None]
    places: dict[str, tuple[int, int | None, str]]  # field -> (line, column, name in data)


def read_delivery(
    data: bytes,
    filename: str,
    names: Mapping[str, str],
    *,
    required: tuple[str, ...] = REQUIRED_CSV_COLUMNS,
    source: str = "upload",
) -> list[DeliveryRow]:
    """The rows of a CSV, JSON or JSON Lines file (by its suffix), each with where its fields
    sit, or UploadError for the whole file. `names` maps each accepted field to its column or
    key in the data; a CSV header must hold the `required` fields. Other pushed data (campaign
    results) is read here too, so a file reads the same whatever it carries; every field is
    placed, so it is meant for files of hundreds of rows, not feed deliveries."""
    rows, places = _delivery_rows(data, filename, names, required, source)
    return [
        DeliveryRow(
            raw=row.raw,
            fields=row.fields,
            start=places.of(index, "")[:2],
            places={name: places.of(index, name) for name in row.fields},
        )
        for index, row in enumerate(rows)
    ]


def _delivery_rows(
    data: bytes,
    filename: str,
    names: Mapping[str, str],
    required: tuple[str, ...] = REQUIRED_CSV_COLUMNS,
    source: str = "upload",
) -> tuple[list[_Row], _Places]:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in ("csv", "json", "jsonl", "ndjson"):
        raise UploadError(
            source, filename, "unsupported file type; expected .csv, .json, .jsonl or .ndjson"
        )
    text = _decode(data, source, filename)
    if suffix == "csv":
        return _csv_rows(text, names, filename, required, source)
    return _json_rows(text, names, source, filename)


def parse_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    feed_config: Mapping[str, Any] | None,
    secret: bytes | None,
    received_at: datetime,
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    """Every record of a webhook delivery (JSON) and the records rejected alone, after checking
    its signature when the feed has a secret. SignatureError when the signature is missing or
    wrong, UploadError when the body is malformed."""
    config = validated_config(
        feed_config, schema=CONFIG_SCHEMA, defaults=DEFAULT_CONFIG, source="webhook"
    )
    observed_at = _aware_utc(received_at, "webhook")
    if secret is not None:
        verify_signature(body, headers, secret, header=config["signature_header"], now=observed_at)
    text = _decode(body, "webhook", "body")
    rows, places = _json_rows(text, _names_in_data(config), "webhook", "body")
    return _records(rows, places, config, "webhook", "body", observed_at)


def signed_message(timestamp: int, delivery_id: str, body: bytes) -> bytes:
    """What the signature covers: the timestamp and delivery id bind the body to one sending."""
    return f"{timestamp}.{delivery_id}.".encode("ascii") + body


def sign_delivery(
    secret: str | bytes,
    body: bytes,
    *,
    sent_at: datetime,
    delivery_id: str,
    header: str = SIGNATURE_HEADER,
) -> dict[str, str]:
    """The headers that make `body` a signed delivery (what verify_signature checks)."""
    if _DELIVERY_ID.fullmatch(delivery_id) is None:
        raise ValueError("a delivery id is 1-128 characters of A-Z a-z 0-9 . _ : -")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    timestamp = int(sent_at.timestamp())
    digest = hmac.new(key, signed_message(timestamp, delivery_id, body), hashlib.sha256)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: delivery_id,
        header: f"sha256={digest.hexdigest()}",
    }


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: bytes,
    *,
    now: datetime,
    header: str = SIGNATURE_HEADER,
    tolerance: timedelta = SIGNATURE_TOLERANCE,
) -> SignedDelivery:
    """Check the signature in constant time, then that it was sent within `tolerance` of `now`.

    SignatureError names the header at fault and never carries the secret or the digest.
    """
    if not secret:
        raise ValueError("webhook secret is empty; store a secret or none at all")
    provided = _header_values(headers, (header, TIMESTAMP_HEADER, DELIVERY_HEADER))
    for name, value in zip((header, TIMESTAMP_HEADER, DELIVERY_HEADER), provided, strict=True):
        if value is None:
            raise SignatureError(f"webhook: missing {name} header on a feed that has a secret")
    signature, timestamp, delivery_id = (value.strip() for value in provided if value is not None)
    match = _SIGNATURE.fullmatch(signature)
    if match is None:
        raise SignatureError(f"webhook: {header} must look like 'sha256=<64 hex digits>'")
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise SignatureError(f"webhook: {TIMESTAMP_HEADER} must be the unix time in seconds")
    if _DELIVERY_ID.fullmatch(delivery_id) is None:
        raise SignatureError(
            f"webhook: {DELIVERY_HEADER} must be 1-128 characters of A-Z a-z 0-9 . _ : -"
        )
    message = signed_message(int(timestamp), delivery_id, body)
    expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group(1).lower()):
        raise SignatureError(
            f"webhook: {header} does not match the timestamp, delivery id and body"
        )
    sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    skew = abs((now - sent_at).total_seconds())
    if skew > tolerance.total_seconds():
        raise SignatureError(
            f"webhook: {TIMESTAMP_HEADER} is {skew:.0f} s from the receiver's clock, more than "
            f"the {tolerance.total_seconds():.0f} s tolerated: a stale or replayed delivery"
        )
    return SignedDelivery(delivery_id, sent_at)


def _header_values(headers: Mapping[str, str], names: tuple[str, ...]) -> list[str | None]:
    """Values of `names`, looked up case-insensitively as HTTP header names are."""
    lowered = {key.lower(): value for key, value in headers.items()}
    return [lowered.get(name.lower()) for name in names]


def _names_in_data(config: Mapping[str, Any]) -> dict[str, str]:
    """Accepted field name -> the column/key that carries it in this feed's data."""
    renames = config.get("columns") or {}
    return {name: renames.get(name, name) for name in FIELD_NAMES}


def _records(
    rows: list[_Row],
    places: _Places,
    config: Mapping[str, Any],
    source: str,
    name: str,
    observed_at: datetime,
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    rules = FieldRules.from_config(config)
    records, rejects = [], []
    for index, row in enumerate(rows):
        try:
            record = normalise_fields(
                row.fields, source=source, rules=rules, observed_at=observed_at, raw_data=row.raw
            )
        except FieldError as fault:
            line, column, label = places.of(index, fault.field)
            if fault.code is None:
                raise UploadError(
                    source, name, fault.reason, line=line, column=column, field=label
                ) from fault
            at = f"line {line}" + (f", column {column}" if column is not None else "")
            identity = row.fields.get("source_event_id")
            readable = isinstance(identity, str | int) and fault.field != "source_event_id"
            rejects.append(
                RecordReject(
                    reason=fault.code,
                    detail=f"{at} ({label}): {fault.reason}",
                    item_index=index,
                    source_event_id=str(identity).strip() if readable else None,
                    item=row.raw,
                )
            )
            continue
        records.append(record)
    if not rows:
        raise UploadError(source, name, "holds no records")
    return records, rejects


def _aware_utc(moment: datetime, source: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{source}: received_at must be timezone-aware")
    return moment.astimezone(UTC)


def _decode(data: bytes, source: str, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        codec = "utf-8-sig" if line_start == 0 else "utf-8"  # a BOM is no column
        before = data[line_start : exc.start].decode(codec, errors="replace")
        raise UploadError(
            source,
            name,
            f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded",
            line=data.count(b"\n", 0, exc.start) + 1,
            column=len(before) + 1,
        ) from None


# --- CSV ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CsvPlaces:
    lines: list[int]  # each row's first line
    columns: dict[str, tuple[int, str]]  # field -> (0-based index, column name)

    def of(self, row: int, field: str) -> tuple[int, int | None, str]:
        if field in self.columns:
            index, column = self.columns[field]
            return self.lines[row], index + 1, column
        return self.lines[row], None, field


def _csv_rows(
    text: str,
    names: Mapping[str, str],
    filename: str,
    required: tuple[str, ...] = REQUIRED_CSV_COLUMNS,
    source: str = "upload",
) -> tuple[list[_Row], _CsvPlaces]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)

    def fault(reason: str, line: int, column: int | None = None, field: str | None = None):
        return UploadError(source, filename, reason, line=line, column=column, field=field)

    rows: list[_Row] = []
    lines: list[int] = []
    header: list[str] | None = None
    columns: dict[str, tuple[int, str]] = {}  # field -> (index, column name), set by the header
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise fault(f"unreadable CSV: {exc}", line) from None
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = _csv_header(cells, names, fault, line, required)
            columns = {
                name: (header.index(column), column)
                for name, column in names.items()
                if column in header
            }
            continue
        if len(cells) != len(header):
            first_bad = min(len(cells), len(header))
            field = header[first_bad] if len(cells) < len(header) else None
            reason = f"the row has {len(cells)} cells but the header has {len(header)} columns"
            raise fault(reason, line, first_bad + 1, field)
        rows.append(
            _Row(
                raw=dict(zip(header, cells, strict=True)),
                fields={name: cells[index] for name, (index, _) in columns.items()},
            )
        )
        lines.append(line)
    if header is None:
        raise fault("the file is empty; expected a header row", 1)
    return rows, _CsvPlaces(lines, columns)


def _csv_header(
    cells: list[str],
    names: Mapping[str, str],
    fault: Callable[..., UploadError],
    line: int,
    required: tuple[str, ...],
) -> list[str]:
    header = [cell.strip() for cell in cells]
    for index, column in enumerate(header):
        if not column:
            raise fault("the header has an unnamed column", line, index + 1)
        if column in header[:index]:
            raise fault("the header repeats this column", line, index + 1, column)
    for name in required:
        if names[name] not in header:
            raise fault(f"missing required column {names[name]!r}", line, field=names[name])
    return header


# --- JSON and JSON Lines --------------------------------------------------------------------
#
# One reader of the shapes (`_json_objects`), two ways of reading each record object: the
# standard decoder at C speed, noting only where each record starts, or member by member,
# noting where each value starts. The second runs only when something is wrong: over the whole
# delivery to say where a fault is, or over one record to place its rejected field.

_Located = list[tuple[dict[str, Any], dict[str, int] | None, int]]


class _JsonFault(Exception):
    def __init__(self, reason: str, pos: int):
        self.reason = reason
        self.pos = pos


class _RepeatedKey(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _RepeatedKey
    return members


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_QUICK_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def _json_rows(
    text: str, names: Mapping[str, str], source: str, name: str
) -> tuple[list[_Row], _JsonPlaces]:
    try:
        located = _json_objects(text, _quick_object)
    except (_JsonFault, ValueError, RecursionError):
        # Read again member by member: the fault, wherever the quick read met it, is placed.
        try:
            located = _json_objects(text, _object)
        except _JsonFault as exc:
            line, column = _line_column(text, exc.pos)
            raise UploadError(source, name, exc.reason, line=line, column=column) from None
    rows = [
        _Row(raw=obj, fields={field: obj[key] for field, key in names.items() if key in obj})
        for obj, _, _ in located
    ]
    return rows, _JsonPlaces(text, names, located)


def _quick_object(text: str, pos: int) -> tuple[dict[str, Any], None, int]:
    """The object at `pos` by the standard decoder (a repeated key anywhere inside, NaN or
    nesting too deep raise), without the places of its values."""
    obj, end = _QUICK_DECODER.raw_decode(text, pos)
    return obj, None, end


class _JsonPlaces:
    """Where each record and field sits; a record read quickly is read again member by member
    the first time one of its fields is asked for."""

    def __init__(self, text: str, names: Mapping[str, str], located: _Located):
        self._text = text
        self._names = names
        self._located = located
        self._newlines: list[int] | None = None

    def of(self, row: int, field: str) -> tuple[int, int | None, str]:
        obj, positions, start = self._located[row]
        if positions is None:
            positions = _object(self._text, start)[1]
            self._located[row] = (obj, positions, start)
        key = self._names.get(field, field)
        if key in positions:
            return (*self._line_column(positions[key]), key)
        return (*self._line_column(start), field)

    def _line_column(self, pos: int) -> tuple[int, int]:
        """As `_line_column`, by bisecting the newline offsets found once."""
        if self._newlines is None:
            self._newlines = [match.start() for match in _NEWLINE.finditer(self._text)]
        before = bisect.bisect_left(self._newlines, pos)
        return before + 1, pos - (self._newlines[before - 1] if before else -1)


_ReadObject = Callable[[str, int], tuple[dict[str, Any], dict[str, int] | None, int]]


def _json_objects(text: str, read: _ReadObject) -> _Located:
    """The record objects of a JSON document or JSON Lines text, each with where it starts
    (and, read by `_object`, where its values start, so a bad value is reported at its own
    line and column). The first top-level object is always read member by member: it may be
    the {"records": [...]} wrapper, whose list is then read record by record."""
    pos = _skip_space(text, 0)
    if pos == len(text):
        raise _JsonFault("holds no JSON", pos)
    if text[pos] == "[":
        records, end = _object_array(text, pos, read)
        if _skip_space(text, end) != len(text):
            raise _JsonFault("unexpected data after the JSON array", _skip_space(text, end))
        return records
    if text[pos] != "{":
        raise _JsonFault("expected a JSON array or object of records", pos)
    first, positions, end = _object(text, pos)
    if _skip_space(text, end) == len(text):
        if "records" not in first:
            return [(first, positions, pos)]
        start = positions["records"]
        if text[start] != "[":
            raise _JsonFault('"records" must be a list of record objects', start)
        return _object_array(text, start, read)[0]
    records: _Located = [(first, positions, pos)]
    pos = _skip_space(text, end)
    while pos < len(text):  # JSON Lines: one object after another
        if text[pos] != "{":
            raise _JsonFault("expected a JSON object on each line", pos)
        obj, places, end = read(text, pos)
        records.append((obj, places, pos))
        pos = _skip_space(text, end)
    return records


def _object_array(text: str, pos: int, read: _ReadObject) -> tuple[_Located, int]:
    records: _Located = []
    pos = _skip_space(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return records, pos + 1
    while True:
        if text[pos : pos + 1] != "{":
            raise _JsonFault("each record must be a JSON object", pos)
        obj, positions, end = read(text, pos)
        records.append((obj, positions, pos))
        pos = _skip_space(text, end)
        separator = text[pos : pos + 1]
        if separator == "]":
            return records, pos + 1
        if separator != ",":
            raise _JsonFault("expected ',' or ']' after a record", pos)
        pos = _skip_space(text, pos + 1)


def _object(text: str, pos: int) -> tuple[dict[str, Any], dict[str, int], int]:
    """Decode the object at `pos` member by member, noting where each value starts."""
    members: dict[str, Any] = {}
    positions: dict[str, int] = {}
    pos = _skip_space(text, pos + 1)
    if text[pos : pos + 1] == "}":
        return members, positions, pos + 1
    while True:
        if text[pos : pos + 1] != '"':
            raise _JsonFault("expected a key in double quotes", pos)
        key, end = _decode_value(text, pos)
        if key in members:
            raise _JsonFault(f"the key {_shown(key)} appears twice in this record", pos)
        pos = _skip_space(text, end)
        if text[pos : pos + 1] != ":":
            raise _JsonFault("expected ':' after the key", pos)
        pos = _skip_space(text, pos + 1)
        members[key], end = _decode_value(text, pos)
        positions[key] = pos
        pos = _skip_space(text, end)
        separator = text[pos : pos + 1]
        if separator == "}":
            return members, positions, pos + 1
        if separator != ",":
            raise _JsonFault("expected ',' or '}' in the object", pos)
        pos = _skip_space(text, pos + 1)


def _decode_value(text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _JsonFault(exc.msg, exc.pos) from None
    except ValueError as exc:  # NaN / Infinity, refused by _refuse_constant
        raise _JsonFault(str(exc), pos) from None
    except RecursionError:
        raise _JsonFault("the value is nested too deeply", pos) from None


def _skip_space(text: str, pos: int) -> int:
    match = _JSON_SPACE.match(text, pos)
    return match.end() if match else pos


def _line_column(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of `pos`, counted the way json.JSONDecodeError counts them."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - text.rfind("\n", 0, pos)


@dataclass(frozen=True, slots=True)
class PushSource:
    """A source whose records are delivered to us rather than fetched."""

    source: str
    parse: Callable[..., tuple[list[NormalisedRecord], list[RecordReject]]]


# The field readers, shared with other pushed data: campaign results read numbers and times
# the way feed records do.
read_number = _number
read_timestamp = _timestamp

WEBHOOK = PushSource("webhook", parse_webhook)
UPLOAD = PushSource("upload", parse_upload)
