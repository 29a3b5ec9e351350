"""The contract a signal row meets before it may become a prediction_signals row.

One pandera schema holds one named check per rule; the check names are the reasons users see.
The schema validates the *check frame* (`signal_check_frame`): the columns the rules read, on a
positional index, plus facts derived once — fetched_at read as UTC, raw_data's JSON verdict, and
the value seen per signal type — so that every rule is a vectorised column check. Validation
never raises because of the data: every row ends up either valid or rejected with its reasons.
"""

from __future__ import annotations

import math
import reprlib
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from predict_pipeline.model import (
    MAX_SOURCE_BYTES,
    MAX_SOURCE_EVENT_ID_BYTES,
    PROBABILITY_TYPES,
    SIGNAL_TYPES,
)
from predict_pipeline.signals.faults import (
    MAX_RAW_DATA_BYTES,
    _is_null,
    _number,
    _numbers,
    _raw_data_fault,
    _raw_data_faults,
    _read_fetched_at,
    _text_fault,
    _text_faults,
    _utc_timestamp,
)
from predict_pipeline.sources.parsing import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP

VALUE_REQUIRED_TYPES = frozenset({"MARKET_PRICE", "EXPERT", "SENTIMENT", "VOLUME"})
MAX_NARRATIVE_CHARS = 10_000
MAX_ABS_VALUE = 999_999.9999  # DECIMAL(10,4) of prediction_signals.value
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)
WEIGHT_RANGE = (0.0, 5.0)
RELIABILITY_RANGE = (0.0, 1.0)

# A rejection's detail names the first failed check in this order.
CHECK_NAMES = (
    "signal_type_known",
    "value_present",
    "value_finite",
    "value_fits_column",
    "probability_in_unit_interval",
    "sentiment_in_range",
    "volume_non_negative",
    "fetched_at_timezone_aware",
    "fetched_at_in_range",
    "fetched_at_not_in_future",
    "source_event_id_present",
    "source_event_id_size",
    "source_size",
    "weight_in_range",
    "reliability_in_range",
    "narrative_size",
    "raw_data_size",
    "text_valid_utf8",
)
TEXT_COLUMNS = ("source_event_id", "source_url", "narrative", "title")
CHECKED_COLUMNS = (
    "source",
    "signal_type",
    "value",
    "fetched_at",
    *TEXT_COLUMNS,
    "raw_data",
    "weight",
    "reliability",
)
_RANK = {name: rank for rank, name in enumerate(CHECK_NAMES)}
# Where text_valid_utf8 fails on several columns, the detail names the first of these.
_TEXT_RANK = {column: rank for rank, column in enumerate((*TEXT_COLUMNS, "raw_data_text_fault"))}
_ALPHABETICAL = {name: rank for rank, name in enumerate(sorted(CHECK_NAMES))}
_DETAIL_CHARS = 240

# Compact UTF-8 JSON is the size measure; NaN/Infinity are not JSON and PostgreSQL refuses them.


@dataclass(frozen=True)
class ValidationResult:
    """Every input row in exactly one of the two frames, under its original index."""

    valid: pd.DataFrame  # input columns; fetched_at datetime64[ns, UTC], numbers float64
    rejected: pd.DataFrame  # input columns plus `reasons` (sorted check names) and `detail`


def validate_signals(
    frame: pd.DataFrame,
    *,
    now: datetime,
    pull_source: bool = True,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> ValidationResult:
    """Split a signal frame into the rows that pass every rule and the rows that do not.

    Raises ValueError only for programmer errors: a missing column or a naive `now`.
    """
    schema = signal_schema(now=now, pull_source=pull_source, clock_skew=clock_skew)
    checks = signal_check_frame(frame)
    failures = _failures(schema, checks)
    positions = np.arange(len(frame))
    rejected_at = failures["position"].unique()
    valid_at = np.setdiff1d(positions, rejected_at, assume_unique=True)

    valid = frame.take(valid_at)
    valid["fetched_at"] = checks["fetched_at"].array[valid_at]
    for column in ("value", "weight", "reliability"):
        if valid[column].dtype != np.float64:
            valid[column] = _numbers(frame[column])[0][valid_at]

    rejected = frame.take(rejected_at)
    latest = _utc_timestamp(now) + clock_skew
    reasons, details = _explain(failures, frame, checks, latest, clock_skew)
    rejected["reasons"] = reasons
    rejected["detail"] = details
    return ValidationResult(valid=valid, rejected=rejected)


def signal_schema(
    *, now: datetime, pull_source: bool = True, clock_skew: timedelta = DEFAULT_CLOCK_SKEW
) -> pa.DataFrameSchema:
    """The rules over a check frame (see `signal_check_frame`), one named check per rule."""
    latest = _utc_timestamp(now) + clock_skew

    def not_in_future(stamps: pd.Series) -> pd.Series:
        return stamps.isna() | (stamps <= latest)

    text_check = _check(_text_valid, "text_valid_utf8")
    event_id_checks = [text_check]
    if pull_source:  # pushed rows (uploads, webhooks) may lack an id; dedup then skips them
        event_id_checks.insert(0, _check(_event_id_present, "source_event_id_present"))
    columns = {
        "signal_type": _column(_check(_signal_type_known, "signal_type_known")),
        "value": _column(
            _check(_value_finite, "value_finite"), _check(_value_fits, "value_fits_column")
        ),
        "type_without_value": _column(_check(_value_not_required, "value_present")),
        "probability": _column(_check(_within(0.0, 1.0), "probability_in_unit_interval")),
        "sentiment": _column(_check(_within(-1.0, 1.0), "sentiment_in_range")),
        "volume": _column(_check(_within(0.0, math.inf), "volume_non_negative")),
        "fetched_at": _column(_check(not_in_future, "fetched_at_not_in_future")),
        "fetched_at_fault": _column(_check(_no_fault, "fetched_at_timezone_aware")),
        "fetched_at_range_fault": _column(_check(_no_fault, "fetched_at_in_range")),
        "source": _column(_check(_fits(MAX_SOURCE_BYTES), "source_size")),
        "source_event_id": _column(
            *event_id_checks, _check(_fits(MAX_SOURCE_EVENT_ID_BYTES), "source_event_id_size")
        ),
        "source_url": _column(text_check),
        "narrative": _column(_check(_narrative_size, "narrative_size"), text_check),
        "title": _column(text_check),
        "raw_data_fault": _column(_check(_no_fault, "raw_data_size")),
        "raw_data_text_fault": _column(_check(_no_fault, "text_valid_utf8")),
        "weight": _column(_check(_weight_in_range, "weight_in_range")),
        "reliability": _column(_check(_reliability_in_range, "reliability_in_range")),
    }
    return pa.DataFrameSchema(columns, strict=True, name="prediction_signals")


def signal_check_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """What the schema validates: the checked columns on a positional index, with

    - fetched_at as datetime64[ns, UTC] (NaT where unusable), `fetched_at_fault` saying why,
      and `fetched_at_range_fault` ("before" / "after") for a moment outside the accepted range
      [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP) (NaT where pandas cannot hold it either);
    - raw_data replaced by its JSON verdicts `raw_data_fault` and `raw_data_text_fault`;
    - the rules that depend on signal_type as columns of their own: `type_without_value`
      (the type of a row with no value) and the value of PROBABILITY_TYPES rows as
      `probability`, of SENTIMENT rows as `sentiment`, of VOLUME rows as `volume` (NaN for
      other rows). Every check is then a column check: pandera reshapes the failures of a
      dataframe-wide check row by row in Python, which takes seconds for a bad page.
    """
    missing = [column for column in CHECKED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"signal frame lacks column(s) {', '.join(map(repr, missing))}")
    columns: dict[str, Any] = {
        column: frame[column].array
        for column in CHECKED_COLUMNS
        if column not in ("fetched_at", "raw_data")
    }
    number, missing_value, _ = _numbers(frame["value"])
    kinds = frame["signal_type"]
    columns["type_without_value"] = np.where(missing_value, kinds.to_numpy(dtype=object), None)
    for column, types in (
        ("probability", PROBABILITY_TYPES),
        ("sentiment", ["SENTIMENT"]),
        ("volume", ["VOLUME"]),
    ):
        columns[column] = np.where(kinds.isin(types).to_numpy(), number, np.nan)
    stamps, faults, outside = _read_fetched_at(frame["fetched_at"])
    columns["fetched_at"], columns["fetched_at_fault"] = stamps, faults
    columns["fetched_at_range_fault"] = outside
    columns["raw_data_fault"], columns["raw_data_text_fault"] = _raw_data_faults(frame["raw_data"])
    # No copy: the checks only read, and the frame is the caller's to keep.
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)), copy=False)


def rejection_summary(rejected: pd.DataFrame, limit: int = 5) -> dict[str, Any]:
    """For a feed run's error_details: rows rejected, counts per reason, a few samples.

    Every value is JSON (no NaN) that PostgreSQL can store (no NUL, no lone surrogate).
    """
    counts = Counter(reason for reasons in rejected["reasons"] for reason in reasons)
    samples = [
        {
            "source_event_id": _json_text(row["source_event_id"]),
            "signal_type": _json_text(row["signal_type"]),
            "value": _json_number(row["value"]),
            "reasons": list(row["reasons"]),
            "detail": row["detail"],
        }
        for _, row in rejected.head(limit).iterrows()
    ]
    return {
        "rejected": len(rejected),
        # Validation's checks in their order, then the readers' own reasons (RecordReject).
        "reasons": {name: counts[name] for name in sorted(counts, key=_reason_order)},
        "samples": samples,
    }


def _reason_order(name: str) -> tuple[int, str]:
    return _RANK.get(name, len(_RANK)), name


# --- the schema's pieces ------------------------------------------------------------------


def _check(fn: Callable[[Any], pd.Series], name: str) -> pa.Check:
    # ignore_na=False: every check decides for itself what a missing value means.
    return pa.Check(fn, name=name, ignore_na=False)


def _column(*checks: pa.Check) -> pa.Column:
    # No dtype and nullable: a wrong type or a null is judged by the named checks alone.
    return pa.Column(checks=list(checks), nullable=True, required=True)


def _signal_type_known(types: pd.Series) -> pd.Series:
    return types.isin(SIGNAL_TYPES)


def _value_finite(values: pd.Series) -> pd.Series:
    number, _, not_number = _numbers(values)
    return pd.Series(~not_number & ~np.isinf(number), index=values.index)


def _value_fits(values: pd.Series) -> pd.Series:
    number = _numbers(values)[0]  # ±inf is value_finite's to reject
    return pd.Series(~(np.isfinite(number) & (np.abs(number) > MAX_ABS_VALUE)), index=values.index)


def _value_not_required(types_without_value: pd.Series) -> pd.Series:
    return ~types_without_value.isin(VALUE_REQUIRED_TYPES)


def _within(low: float, high: float) -> Callable[[pd.Series], pd.Series]:
    """A finite value within [low, high] passes; NaN (another type, no value) and ±inf
    (value_finite's to reject) pass too."""

    def check(values: pd.Series) -> pd.Series:
        number = values.to_numpy(dtype=np.float64)
        return pd.Series(
            ~(np.isfinite(number) & ((number < low) | (number > high))), index=values.index
        )

    return check


def _weight_in_range(weights: pd.Series) -> pd.Series:
    number, missing, not_number = _numbers(weights)
    low, high = WEIGHT_RANGE
    inside = ~missing & ~not_number & (number >= low) & (number <= high)
    return pd.Series(inside, index=weights.index)


def _reliability_in_range(reliabilities: pd.Series) -> pd.Series:
    number, missing, not_number = _numbers(reliabilities)
    low, high = RELIABILITY_RANGE
    inside = missing | (~not_number & (number >= low) & (number <= high))
    return pd.Series(inside, index=reliabilities.index)


def _event_id_present(ids: pd.Series) -> pd.Series:
    values = ids.to_numpy(dtype=object)
    present = ~pd.isna(values)
    texts = values[present]
    if pd.api.types.infer_dtype(texts, skipna=False) in ("string", "empty"):
        blank = texts == ""
        blank |= np.fromiter(map(str.isspace, texts), dtype=bool, count=len(texts))
    else:  # non-text counts as present: it is text_valid_utf8's to reject
        blank = np.array([isinstance(v, str) and not v.strip() for v in texts], dtype=bool)
    present[present] = ~blank
    return pd.Series(present, index=ids.index)


def _narrative_size(narratives: pd.Series) -> pd.Series:
    values = narratives.to_numpy(dtype=object)
    fits = np.ones(len(values), dtype=bool)
    texts = ~pd.isna(values)
    if pd.api.types.infer_dtype(values[texts], skipna=False) in ("string", "empty"):
        lengths = np.fromiter(map(len, values[texts]), dtype=np.int64, count=int(texts.sum()))
        fits[texts] = lengths <= MAX_NARRATIVE_CHARS
    else:  # non-text is text_valid_utf8's to reject
        fits[texts] = [
            not (isinstance(v, str) and len(v) > MAX_NARRATIVE_CHARS) for v in values[texts]
        ]
    return pd.Series(fits, index=narratives.index)


def _text_valid(texts: pd.Series) -> pd.Series:
    faults = _text_faults(texts)
    clean = np.ones(len(texts), dtype=bool) if faults is None else pd.isna(faults)
    return pd.Series(clean, index=texts.index)


def _no_fault(faults: pd.Series) -> pd.Series:
    return faults.isna()


def _fits(max_bytes: int) -> Callable[[pd.Series], pd.Series]:
    """Text of at most `max_bytes` in UTF-8 passes; missing values and non-text pass (other
    checks judge them). Only text long enough to possibly exceed the limit is encoded."""

    def check(texts: pd.Series) -> pd.Series:
        values = texts.to_numpy(dtype=object)
        fits = np.ones(len(values), dtype=bool)
        long = [
            at
            for at, value in enumerate(values)
            if isinstance(value, str) and len(value) * 4 > max_bytes
        ]
        for at in long:
            fits[at] = _utf8_size(values[at]) <= max_bytes
        return pd.Series(fits, index=texts.index)

    return check


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# --- failures and their explanation ---------------------------------------------------------


def _failures(schema: pa.DataFrameSchema, checks: pd.DataFrame) -> pd.DataFrame:
    """One row per (position, failed check, column), ordered by position, then check name."""
    # Validation is the point here, whatever pandera's global switches say.
    with (
        config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA),
        warnings.catch_warnings(),
    ):
        # pandera concatenates all-null failure cases (a missing id), which pandas deprecates.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            schema.validate(checks, lazy=True, inplace=True)
        except SchemaErrors as errors:
            cases = errors.failure_cases
        else:
            cases = pd.DataFrame({"index": [], "check": [], "column": []}, dtype=object)
    unexplained = cases["index"].isna() | ~cases["check"].isin(CHECK_NAMES)
    if unexplained.any():  # a check crashed or a schema-level error: a bug, not bad data
        first = cases[unexplained].iloc[0]
        raise RuntimeError(
            f"signal validation failed as a whole: {first['check']} on {first['column']}: "
            f"{first['failure_case']}"
        )
    position = cases["index"].to_numpy(dtype=np.int64)
    check = cases["check"].to_numpy(dtype=object)
    by_name = pd.Series(check).map(_ALPHABETICAL).to_numpy(dtype=np.int64)
    order = np.lexsort((by_name, position))
    return pd.DataFrame(
        {
            "position": position[order],
            "check": check[order],
            "column": cases["column"].to_numpy(dtype=object)[order],
        }
    )


def _explain(
    failures: pd.DataFrame,
    frame: pd.DataFrame,
    checks: pd.DataFrame,
    latest: pd.Timestamp,
    clock_skew: timedelta,
) -> tuple[np.ndarray, np.ndarray]:
    """Per rejected row (in position order): its sorted reasons and a sentence on the first."""
    position = failures["position"].to_numpy()
    check = failures["check"].to_numpy()
    column = failures["column"].to_numpy()
    new_row = _first_of_runs(position)
    new_reason = new_row | _first_of_runs(check)  # text_valid_utf8 may fail on many columns
    starts = np.flatnonzero(new_row)
    names = check[new_reason].tolist()
    bounds = np.append(np.flatnonzero(new_row[new_reason]), len(names)).tolist()
    reasons = np.empty(len(starts), dtype=object)
    for slot in range(len(starts)):  # one by one: lists of equal length would make a 2-D array
        reasons[slot] = names[bounds[slot] : bounds[slot + 1]]

    # The failure a detail names: the first in CHECK_NAMES order, then in _TEXT_RANK order.
    rank = pd.Series(check).map(_RANK).to_numpy(dtype=np.int64)
    column_rank = pd.Series(column).map(_TEXT_RANK).fillna(0).to_numpy(dtype=np.int64)
    order = np.lexsort((column_rank, rank, position))
    firsts = order[_first_of_runs(position[order])]
    first_position, first_check, first_column = position[firsts], check[firsts], column[firsts]
    details = np.empty(len(starts), dtype=object)
    groups = pd.DataFrame({"check": first_check, "column": first_column}).groupby(
        ["check", "column"], sort=False
    )
    # Values are fetched per (check, column) group, only for the rows that need them.
    for (name, source), slots in groups.indices.items():
        at = first_position[slots]
        shown = {"signal_type", "value"} | ({source} & set(CHECKED_COLUMNS))
        shown |= {
            "fetched_at_fault": {"fetched_at"},
            "fetched_at_range_fault": {"fetched_at"},
            "raw_data_fault": {"raw_data"},
        }.get(source, set())
        values = {key: frame[key].take(at).to_numpy(dtype=object) for key in shown}
        if source not in frame.columns:
            values[source] = checks[source].take(at).to_numpy(dtype=object)
        suffix = f" (now + {clock_skew} is {latest.isoformat()})" if source == "fetched_at" else ""
        keys = list(values)
        for slot, row in zip(slots, zip(*values.values(), strict=True), strict=True):
            sentence = _describe(name, source, dict(zip(keys, row, strict=True)))
            details[slot] = _shorten(f"{name}: {sentence}{suffix}")
    return reasons, details


def _first_of_runs(values: np.ndarray) -> np.ndarray:
    """True where a value differs from the one before it (and at the start)."""
    first = np.ones(len(values), dtype=bool)
    first[1:] = values[1:] != values[:-1]
    return first


def _describe(check: str, column: str, row: dict[str, Any]) -> str:
    kind, value = row["signal_type"], row["value"]
    if check == "signal_type_known":
        return f"signal_type {_show(kind)} is not one of {', '.join(SIGNAL_TYPES)}"
    if check == "value_present":
        return f"value is missing, which a {kind} signal needs"
    if check == "value_finite":
        return f"value {_show(value)} is not a finite number"
    if check == "value_fits_column":
        return f"value {_show(value)} is beyond ±{MAX_ABS_VALUE} (DECIMAL(10,4))"
    if check == "probability_in_unit_interval":
        return f"{kind} value {_show(value)} is not a probability in [0, 1]"
    if check == "sentiment_in_range":
        return f"SENTIMENT value {_show(value)} is outside [-1, 1]"
    if check == "volume_non_negative":
        return f"VOLUME value {_show(value)} is negative"
    if check == "fetched_at_timezone_aware":
        fault = row[column]
        if fault == "missing":
            return "fetched_at is missing"
        problem = {"naive": "has no timezone", "not_timestamp": "is not a timestamp"}[fault]
        return f"fetched_at {_show(row['fetched_at'])} {problem}"
    if check == "fetched_at_in_range":
        return (
            f"fetched_at {_show(row['fetched_at'])} is {row[column]} the accepted range "
            f"{EARLIEST_TIMESTAMP:%Y-%m-%d} .. {LATEST_TIMESTAMP:%Y-%m-%d} (UTC)"
        )
    if check == "fetched_at_not_in_future":
        return f"fetched_at {_show(row['fetched_at'])} is in the future"
    if check == "source_event_id_present":
        shown = _show(row["source_event_id"])
        return f"source_event_id is missing ({shown}); a pull source must give one"
    if check == "weight_in_range":
        return f"weight {_show(row['weight'])} is not within [0, 5]"
    if check == "reliability_in_range":
        return f"reliability {_show(row['reliability'])} is not within [0, 1]"
    if check == "source_event_id_size":
        size = _utf8_size(row["source_event_id"])
        return f"source_event_id is {size} bytes, over the {MAX_SOURCE_EVENT_ID_BYTES} indexed"
    if check == "source_size":
        return f"source is {_utf8_size(row['source'])} bytes, over the {MAX_SOURCE_BYTES} indexed"
    if check == "narrative_size":
        return f"narrative has {len(row['narrative'])} characters, over {MAX_NARRATIVE_CHARS}"
    if check == "raw_data_size":
        raw = row["raw_data"]
        if row[column] == "not_object":
            return f"raw_data is a {type(raw).__name__}, not a JSON object"
        size_fault, _, words = _raw_data_fault(raw)
        if size_fault == "unserialisable":
            return f"raw_data is not JSON-serialisable ({words})"
        return f"raw_data is {words}, over {MAX_RAW_DATA_BYTES}"
    # text_valid_utf8
    if column == "raw_data_text_fault":
        problem = "a NUL character" if row[column] == "nul" else "a lone surrogate (not UTF-8)"
        return f"raw_data holds a string with {problem}"
    fault = _text_fault(row[column])
    if fault is None:
        raise ValueError(f"{column} was reported as a text fault but holds valid text")
    problem = {
        "not_text": "is not text",
        "nul": "contains a NUL character",
        "surrogate": "contains a lone surrogate (not UTF-8)",
    }[fault]
    return f"{column} {_show(row[column])} {problem}"


_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlevel = 2


def _show(value: Any) -> str:
    """A short, printable rendering: repr escapes NUL and lone surrogates."""
    if isinstance(value, datetime):
        return value.isoformat()
    return _SHORT.repr(value)


def _shorten(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


def _json_text(value: Any) -> str | None:
    if _is_null(value):
        return None
    if isinstance(value, str) and _text_fault(value) is None and len(value) <= 200:
        return value
    return _show(value)


def _json_number(value: Any) -> float | str | None:
    number, not_number = _number(value)
    if not_number:
        return _show(value)
    if math.isnan(number):
        return None
    return number if math.isfinite(number) else repr(number)
