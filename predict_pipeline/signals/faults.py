"""What is wrong with a signal column's values, read once per block for validation's checks.

Numbers (and what is not one), fetched_at read as UTC, text PostgreSQL cannot store (NUL, lone
surrogates), and raw_data that is not JSON or is too large.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from datetime import datetime
from decimal import Decimal
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.sources.parsing import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP

# raw_data's JSON text may take at most this many bytes (raw_data_size).
MAX_RAW_DATA_BYTES = 64 * 1024
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_JSON_ERRORS = (TypeError, ValueError, RecursionError)
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # a JSON \u0000, not an escaped backslash
_EARLIEST = pd.Timestamp(EARLIEST_TIMESTAMP)
_LATEST = pd.Timestamp(LATEST_TIMESTAMP)


# --- numbers --------------------------------------------------------------------------------


def _numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, missing, present but not a number) of a numeric column."""
    dtype = series.dtype
    if (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    ):
        number = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return number, np.isnan(number), np.zeros(len(number), dtype=bool)
    # Objects only reach here when the frame builder passed bad input through.
    judged = [_number(v) for v in series.to_numpy(dtype=object)]
    number = np.fromiter((n for n, _ in judged), dtype=np.float64, count=len(judged))
    not_number = np.fromiter((bad for _, bad in judged), dtype=bool, count=len(judged))
    return number, np.isnan(number) & ~not_number, not_number


# np.where's "no fault": None as a 0-d object array, the same result but an ArrayLike to numpy.
_NO_FAULT = np.array(None, dtype=object)


def _number(value: Any) -> tuple[float, bool]:
    """(the value as a float, whether it is something other than a number or a null)."""
    if _is_null(value):
        return math.nan, False
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | Decimal):
        return math.nan, True
    try:
        return float(value), False
    except OverflowError:  # an int beyond float range
        return (-math.inf if value < 0 else math.inf), False
    except ValueError:  # Decimal("sNaN")
        return math.nan, True


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


# --- fetched_at -----------------------------------------------------------------------------


def _utc_timestamp(now: datetime) -> pd.Timestamp:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {now!r}")
    return pd.Timestamp(now).tz_convert("UTC")


def _read_fetched_at(series: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(fetched_at as datetime64[ns, UTC], NaT where unusable; the fault: None, "missing",
    "naive" or "not_timestamp"; the range fault: None, "before" or "after" the accepted range).
    Aware times beyond pandas' own range (1677..2262) are NaT with their range fault."""
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        try:
            stamps = series.dt.tz_convert("UTC").dt.as_unit("ns").reset_index(drop=True)
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            return _read_stamp_objects(series.to_numpy(dtype=object))
        faults = np.where(stamps.isna().to_numpy(), "missing", _NO_FAULT)
        return stamps, faults, _range_faults(stamps)
    if pd.api.types.is_datetime64_dtype(dtype):
        nat = pd.Series(pd.NaT, index=pd.RangeIndex(len(series)), dtype="datetime64[ns, UTC]")
        faults = np.where(series.isna().to_numpy(), "missing", "naive")
        return nat, faults, np.full(len(series), None, dtype=object)
    return _read_stamp_objects(series.to_numpy(dtype=object))


def _read_stamp_objects(values: np.ndarray) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    faults = np.full(len(values), None, dtype=object)
    outside = np.full(len(values), None, dtype=object)
    aware_at: list[int] = []
    for position, value in enumerate(values):
        fault = _stamp_fault(value)
        if fault is None:
            aware_at.append(position)
        else:
            faults[position] = fault
    utc = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    if aware_at:
        aware = values[aware_at]
        read = pd.to_datetime(pd.Series(aware, dtype=object), utc=True, errors="coerce")
        for offset in np.flatnonzero(read.isna().to_numpy()):  # beyond pandas' range
            outside[aware_at[offset]] = "after" if aware[offset] >= LATEST_TIMESTAMP else "before"
        utc[aware_at] = read.dt.tz_convert(None).to_numpy()
    stamps = pd.Series(utc).dt.tz_localize("UTC")
    inside = _range_faults(stamps)
    return stamps, faults, np.where(pd.isna(outside), inside, outside)


def _range_faults(stamps: pd.Series) -> np.ndarray:
    """Per stamp None, or "before" / "after" the accepted range (NaT: None)."""
    early = (stamps < _EARLIEST).to_numpy()
    late = (stamps >= _LATEST).to_numpy()
    return np.where(early, "before", np.where(late, "after", _NO_FAULT))


def _stamp_fault(value: Any) -> str | None:
    if _is_null(value):
        return "missing"
    if isinstance(value, np.datetime64):
        return "missing" if np.isnat(value) else "naive"
    if not isinstance(value, datetime):
        return "not_timestamp"
    return None if value.utcoffset() is not None else "naive"


# --- text -----------------------------------------------------------------------------------


def _text_faults(series: pd.Series) -> np.ndarray | None:
    """None when every value is fine, else per value None or why PostgreSQL text cannot hold
    it: "not_text", "nul", "surrogate"."""
    values = series.to_numpy(dtype=object)
    present = ~pd.isna(values)
    texts = values[present]
    if pd.api.types.infer_dtype(texts, skipna=False) in ("string", "empty"):
        joined = "".join(texts)  # one scan of all values; faults are rare
        if "\x00" not in joined and (joined.isascii() or _encodes(joined)):
            return None
    faults = np.full(len(values), None, dtype=object)
    faults[present] = [_text_fault(v) for v in texts]
    return faults


def _text_fault(value: Any) -> str | None:
    if not isinstance(value, str):
        return "not_text"
    if "\x00" in value:
        return "nul"
    return None if value.isascii() or _encodes(value) else "surrogate"


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


# --- raw_data -------------------------------------------------------------------------------


def _raw_data_faults(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row (size fault, text fault). Size faults: "not_object", "unserialisable",
    "too_large"; text faults: "nul", "surrogate" in any key or string inside.

    Rows are serialised in chunks sized to stay under the limit: a clean chunk clears all its
    rows in one C call; the rows of a chunk that is not clean are judged one by one.
    """
    values = series.to_numpy(dtype=object)
    size_faults = np.full(len(values), None, dtype=object)
    text_faults = np.full(len(values), None, dtype=object)
    is_object = np.fromiter(map(isinstance, values, repeat(dict)), dtype=bool, count=len(values))
    size_faults[~is_object & ~pd.isna(values)] = "not_object"
    positions = np.flatnonzero(is_object)
    objects = values[positions].tolist()
    start, size = 0, 64
    while start < len(objects):
        chunk = objects[start : start + size]
        clean, nbytes = _probe(chunk)
        if clean:  # grow, to about half the limit's worth of rows
            fitting = MAX_RAW_DATA_BYTES // 2 * len(chunk) // max(nbytes, 1)
            size = max(1, min(2 * size, fitting, 4096))
        else:
            for position, raw in zip(positions[start : start + len(chunk)], chunk, strict=True):
                size_faults[position], text_faults[position], _ = _raw_data_fault(raw)
            size = max(1, size // 2)
        start += len(chunk)
    return size_faults, text_faults


def _probe(chunk: list[Any]) -> tuple[bool, int]:
    """(whether the chunk serialises cleanly within the limit, its size in bytes)."""
    try:
        text = _JSON.encode(chunk)
    except _JSON_ERRORS:
        return False, 0
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        return False, 0
    if text.isascii():
        return len(text) <= MAX_RAW_DATA_BYTES, len(text)
    try:
        nbytes = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return False, 0
    return nbytes <= MAX_RAW_DATA_BYTES, nbytes


def _raw_data_fault(raw: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(size fault, text fault, a few words on the size fault) of one raw_data object."""
    try:
        text = _JSON.encode(raw)
    except _JSON_ERRORS as error:
        return "unserialisable", _lenient_text_fault(raw), f"{type(error).__name__}: {error}"
    text_fault = "nul" if "\\u0000" in text and _NUL_ESCAPE.search(text) else None
    if _encodes(text):
        nbytes = len(text.encode("utf-8"))
    else:
        text_fault = text_fault or "surrogate"
        nbytes = len(text.encode("utf-8", "surrogatepass"))
    size_fault = "too_large" if nbytes > MAX_RAW_DATA_BYTES else None
    return size_fault, text_fault, f"{nbytes} bytes as JSON"


def _lenient_text_fault(raw: dict[str, Any]) -> str | None:
    """The text fault of an unserialisable object, reading the strings inside sets too."""
    lenient = json.JSONEncoder(
        ensure_ascii=False,
        skipkeys=True,
        default=lambda o: list(o) if isinstance(o, set | frozenset) else None,
    )
    try:
        text = lenient.encode(raw)
    except _JSON_ERRORS:  # circular or too deep: the size fault already rejects the row
        return None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        return "nul"
    return None if _encodes(text) else "surrogate"
