"""Calibration of the platform's pooled probabilities: the rows of prediction_calibration_scores.

Input is one row per resolved event, with the columns `event_id`, `category_id` (None when the
event has no category), `outcome` ('YES', 'NO', 'AMBIGUOUS', 'CANCELLED'), `final_probability`
(float, NaN when the event never had a pooled probability), `resolved_at` (tz-aware) and,
optionally, `p_1d`, `p_7d`, `p_30d`: the pooled probability 1, 7 and 30 days before close (NaN
when no snapshot existed then). With o = 1 for YES and 0 for NO and p = final_probability:

- Windows: 7D, 30D and 90D hold the events with `resolved_at` in (now − N days, now]; an event
  resolved exactly N days before `now` is out, one resolved a microsecond later is in. ALL_TIME
  holds every event resolved at or before `now`. An event resolved after `now` is in no window.
- Only YES and NO are scored. AMBIGUOUS and CANCELLED events are left out of every count and score.
- total_predictions: the YES/NO events in scope, whether or not they had a probability.
- resolved_predictions: those of them that are scored, i.e. that have a final_probability.
- brier_score = mean((p − o)²).
- log_score = mean(ln(o·p' + (1 − o)·(1 − p'))), p' = clip(p, 0.0001, 0.9999); ≤ 0, 0 is best.
- accuracy_at_50: the share of the scored predictions with p ≠ 0.5 that picked the right side,
  (p > 0.5) == (o == 1). accuracy_at_70 / accuracy_at_90: the same over the predictions with
  max(p, 1 − p) ≥ 0.7 / ≥ 0.9.
- calibration_curve: {"bins": [10 bins], "horizons": {"1d": …, "7d": …, "30d": …}}. Bins have
  width 0.1: [0.0, 0.1), [0.1, 0.2), …, [0.9, 1.0], the last one closed. Each bin is
  {"bin_lower", "bin_upper", "count", "mean_predicted", "observed_frequency"}, with count 0 and
  null means when empty. A horizon is {"count", "brier_score"} over the scored events that have
  that horizon's probability, its Brier score taken with that probability.
- A score over no prediction is None (NULL): an empty window or category gives counts 0 and None
  scores, never an error. NaN never leaves this module.

Comparisons at an edge (bin edges, 0.5, 0.7, 0.9) allow EDGE_TOLERANCE, because a probability
everyone reads as 0.3 may arrive as 0.29999999999999993 after floating-point arithmetic.

One global row (category_id None) and one row per requested category are produced for every
window. An event whose category was not requested (an archived category) counts in the global rows
only. Scores are exact floats; `to_column_precision` rounds them to the columns' DECIMAL scales.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd

TIME_WINDOWS: dict[str, timedelta | None] = {
    "7D": timedelta(days=7),
    "30D": timedelta(days=30),
    "90D": timedelta(days=90),
    "ALL_TIME": None,
}
SCORED_OUTCOMES = ("YES", "NO")
UNSCORED_OUTCOMES = ("AMBIGUOUS", "CANCELLED")
REQUIRED_COLUMNS = ("event_id", "category_id", "outcome", "final_probability", "resolved_at")
HORIZON_COLUMNS = {"1d": "p_1d", "7d": "p_7d", "30d": "p_30d"}
BIN_COUNT = 10
EDGE_TOLERANCE = 1e-9
LOG_CLIP_LOW, LOG_CLIP_HIGH = 0.0001, 0.9999
# accuracy column → the confidence max(p, 1 − p) a prediction needs to count in it.
CONFIDENCE_LEVELS = {"accuracy_at_70": 0.7, "accuracy_at_90": 0.9}
# DECIMAL scales of prediction_calibration_scores (brier (6,4), log (8,4), accuracies (5,4)).
COLUMN_SCALES = {
    "brier_score": 4,
    "log_score": 4,
    "accuracy_at_50": 4,
    "accuracy_at_70": 4,
    "accuracy_at_90": 4,
}


class CalibrationInputError(ValueError):
    """The resolved-events frame or the arguments break the contract of `calibration_rows`."""


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """One row of prediction_calibration_scores (without id and computed_at), scores exact."""

    category_id: uuid.UUID | None
    time_window: str
    total_predictions: int
    resolved_predictions: int
    brier_score: float | None
    log_score: float | None
    accuracy_at_50: float | None
    accuracy_at_70: float | None
    accuracy_at_90: float | None
    calibration_curve: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Events:
    """Per-event arrays; every measure is 0 for an event that is not scored."""

    resolved_at: pd.Series
    category_slot: np.ndarray  # index into the requested categories, -1 when not requested
    counted: np.ndarray  # YES/NO: counts in total_predictions
    measures: dict[str, np.ndarray]  # summed per group
    bin_index: np.ndarray
    bin_measures: dict[str, np.ndarray]  # summed per group and bin


@dataclass(frozen=True, slots=True)
class _Sums:
    totals: dict[str, np.ndarray]  # name → one sum per group
    bins: dict[str, np.ndarray]  # name → (groups, BIN_COUNT) sums


def calibration_rows(
    resolved: pd.DataFrame, *, now: datetime, categories: Iterable[uuid.UUID | str | None]
) -> list[CalibrationRow]:
    """Rows for every window: the global one first, then one per category in the given order."""
    return _rows_per_series(resolved, None, 1, now=now, categories=categories)[0]


def series_calibration_rows(
    forecasts: pd.DataFrame,
    series: np.ndarray,
    series_count: int,
    *,
    now: datetime,
    categories: Iterable[uuid.UUID | str | None],
) -> list[list[CalibrationRow]]:
    """`calibration_rows` of several series of forecasts at once, one list per series index.

    `series` holds each row's series (an int in [0, series_count)); a series' rows are scored
    exactly as `calibration_rows` scores events, except that two rows may name one event (two
    markets of a source forecast the same event). One pass over the frame for every series."""
    codes = np.asarray(series, dtype=np.int64)
    if len(codes) != len(forecasts) or (
        len(codes) and (codes.min() < 0 or codes.max() >= series_count)
    ):
        raise CalibrationInputError(
            f"series must give each of the {len(forecasts)} rows an index in [0, {series_count})"
        )
    return _rows_per_series(forecasts, codes, series_count, now=now, categories=categories)


def _rows_per_series(
    resolved: pd.DataFrame,
    series: np.ndarray | None,
    series_count: int,
    *,
    now: datetime,
    categories: Iterable[uuid.UUID | str | None],
) -> list[list[CalibrationRow]]:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise CalibrationInputError(f"now must be a tz-aware datetime, got {now!r}")
    requested = _requested_categories(categories)
    events = _read_events(resolved, requested, unique_events=series is None)
    if series is None:
        series = np.zeros(len(events.counted), dtype=np.int64)
    now_utc = pd.Timestamp(now).tz_convert("UTC")
    slots = len(requested)
    # Each (series, category) is one group of the per-category sums.
    by_category = series * slots + events.category_slot
    rows: list[list[CalibrationRow]] = [[] for _ in range(series_count)]
    for window, length in TIME_WINDOWS.items():
        in_window = (events.resolved_at <= now_utc).to_numpy()
        if length is not None:
            in_window &= (events.resolved_at > now_utc - length).to_numpy()
        overall = _group_sums(events, in_window, series, series_count)
        listed = in_window & (events.category_slot >= 0)
        per_category = _group_sums(events, listed, by_category, series_count * slots)
        for k, of_series in enumerate(rows):
            of_series.append(_row(None, window, overall, k))
            of_series.extend(
                _row(c, window, per_category, k * slots + i) for i, c in enumerate(requested)
            )
    return rows


def to_column_precision(row: CalibrationRow) -> dict[str, Any]:
    """The row's column values as stored: scores as Decimal rounded half away from zero to the
    column's scale (0.12345 → Decimal('0.1235')), everything else unchanged."""
    values = {f.name: getattr(row, f.name) for f in fields(row)}
    for column, scale in COLUMN_SCALES.items():
        values[column] = _decimal(values[column], scale, column)
    return values


def _decimal(value: float | None, scale: int, column: str) -> Decimal | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise CalibrationInputError(f"{column} must be finite or None, got {value!r}")
    # The float's shortest decimal form is rounded, not its binary expansion (0.12345 is
    # 0.1234499… in binary): the value a reader sees is the value that gets rounded.
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-scale), ROUND_HALF_UP)


def _requested_categories(categories: Iterable[uuid.UUID | str | None]) -> list[uuid.UUID]:
    """Distinct non-null categories in the caller's order (the global row is always produced)."""
    distinct: dict[uuid.UUID, None] = {}
    for category in categories:
        if category is not None:
            distinct.setdefault(_as_uuid(category, "categories"), None)
    return list(distinct)


def _as_uuid(value: object, where: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise CalibrationInputError(f"{where}: category ids must be UUIDs or None, got {value!r}")


def _read_events(
    frame: pd.DataFrame, requested: list[uuid.UUID], *, unique_events: bool = True
) -> _Events:
    if not isinstance(frame, pd.DataFrame):
        raise CalibrationInputError(f"resolved events must be a pandas DataFrame, got {frame!r}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CalibrationInputError(f"resolved events lack the columns {missing}")
    event_ids = frame["event_id"].to_numpy()
    duplicated = (
        frame["event_id"].duplicated(keep=False).to_numpy()
        if unique_events
        else np.zeros(len(frame), dtype=bool)
    )
    if duplicated.any():
        raise CalibrationInputError(
            f"resolved events must hold each event once; repeated: {_sample(event_ids[duplicated])}"
        )
    outcome = frame["outcome"]
    known = outcome.isin(SCORED_OUTCOMES + UNSCORED_OUTCOMES).to_numpy()
    if not known.all():
        raise CalibrationInputError(
            f"outcome must be one of {SCORED_OUTCOMES + UNSCORED_OUTCOMES}; events "
            f"{_sample(event_ids[~known])} have {_sample(outcome.to_numpy()[~known])}"
        )
    counted = outcome.isin(SCORED_OUTCOMES).to_numpy()
    yes = (outcome == "YES").to_numpy()
    probability = _probabilities(frame, "final_probability", event_ids)
    scored = counted & ~np.isnan(probability)
    p = np.where(scored, probability, 0.0)
    o = np.where(scored & yes, 1.0, 0.0)

    clipped = np.clip(p, LOG_CLIP_LOW, LOG_CLIP_HIGH)
    confidence = np.maximum(p, 1.0 - p)
    right_side = (p > 0.5) == yes
    measures = {
        "scored": scored.astype(float),
        "squared_error": np.where(scored, (p - o) ** 2, 0.0),
        "log_likelihood": np.where(scored, np.log(np.where(yes, clipped, 1.0 - clipped)), 0.0),
    }
    called_50 = scored & (confidence > 0.5 + EDGE_TOLERANCE)
    measures["called:accuracy_at_50"] = called_50.astype(float)
    measures["right:accuracy_at_50"] = (called_50 & right_side).astype(float)
    for column, level in CONFIDENCE_LEVELS.items():
        called = scored & (confidence >= level - EDGE_TOLERANCE)
        measures[f"called:{column}"] = called.astype(float)
        measures[f"right:{column}"] = (called & right_side).astype(float)
    for horizon, column in HORIZON_COLUMNS.items():
        if column in frame.columns:
            at_horizon = _probabilities(frame, column, event_ids)
        else:
            at_horizon = np.full(len(frame), np.nan)
        has = scored & ~np.isnan(at_horizon)
        measures[f"count:{horizon}"] = has.astype(float)
        measures[f"squared_error:{horizon}"] = np.where(has, (at_horizon - o) ** 2, 0.0)

    bin_index = np.minimum(np.floor(p * BIN_COUNT + EDGE_TOLERANCE), BIN_COUNT - 1)
    return _Events(
        resolved_at=_resolution_times(frame["resolved_at"], event_ids),
        category_slot=_category_slots(frame["category_id"], requested),
        counted=counted.astype(float),
        measures=measures,
        bin_index=bin_index.astype(np.int64),
        bin_measures={"count": measures["scored"], "probability": p, "outcome": o},
    )


def _probabilities(frame: pd.DataFrame, column: str, event_ids: np.ndarray) -> np.ndarray:
    try:
        values = pd.to_numeric(frame[column]).to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise CalibrationInputError(f"{column} must hold numbers or nulls: {exc}") from exc
    outside = ~np.isnan(values) & ~((values >= 0.0) & (values <= 1.0))
    if outside.any():
        raise CalibrationInputError(
            f"{column} must be a probability in [0, 1] or null; events "
            f"{_sample(event_ids[outside])} have {_sample(values[outside])}"
        )
    return values


def _resolution_times(column: pd.Series, event_ids: np.ndarray) -> pd.Series:
    if len(column) == 0:
        return pd.Series([], dtype="datetime64[ns, UTC]")
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        raise CalibrationInputError(
            f"resolved_at must hold tz-aware timestamps (e.g. pd.to_datetime(..., utc=True)), "
            f"got dtype {column.dtype}"
        )
    missing = column.isna().to_numpy()
    if missing.any():
        raise CalibrationInputError(f"resolved_at is null for events {_sample(event_ids[missing])}")
    return column.dt.tz_convert("UTC").reset_index(drop=True)


def _category_slots(column: pd.Series, requested: list[uuid.UUID]) -> np.ndarray:
    """Each event's index in `requested` (-1 for no category or one not requested), read once per
    distinct category rather than per event."""
    codes, distinct = pd.factorize(column, use_na_sentinel=True)
    slot_of = {category: i for i, category in enumerate(requested)}
    slots = [slot_of.get(_as_uuid(c, "category_id"), -1) for c in distinct]
    # The trailing -1 is where the NA sentinel code (-1) lands.
    return np.array([*slots, -1], dtype=np.int64)[codes]


def _group_sums(events: _Events, include: np.ndarray, group: np.ndarray, groups: int) -> _Sums:
    g = group[include]
    totals = {"total": np.bincount(g, weights=events.counted[include], minlength=groups)}
    for name, values in events.measures.items():
        totals[name] = np.bincount(g, weights=values[include], minlength=groups)
    key = g * BIN_COUNT + events.bin_index[include]
    bins = {
        name: np.bincount(key, weights=values[include], minlength=groups * BIN_COUNT).reshape(
            groups, BIN_COUNT
        )
        for name, values in events.bin_measures.items()
    }
    return _Sums(totals=totals, bins=bins)


def _row(category_id: uuid.UUID | None, window: str, sums: _Sums, i: int) -> CalibrationRow:
    t = {name: values[i] for name, values in sums.totals.items()}
    scored = t["scored"]
    return CalibrationRow(
        category_id=category_id,
        time_window=window,
        total_predictions=int(t["total"]),
        resolved_predictions=int(scored),
        brier_score=_mean(t["squared_error"], scored),
        log_score=_mean(t["log_likelihood"], scored),
        accuracy_at_50=_mean(t["right:accuracy_at_50"], t["called:accuracy_at_50"]),
        accuracy_at_70=_mean(t["right:accuracy_at_70"], t["called:accuracy_at_70"]),
        accuracy_at_90=_mean(t["right:accuracy_at_90"], t["called:accuracy_at_90"]),
        calibration_curve=_curve(sums, t, i),
    )


def _curve(sums: _Sums, t: dict[str, float], i: int) -> dict[str, Any]:
    bins = []
    for k in range(BIN_COUNT):
        count = sums.bins["count"][i, k]
        bins.append(
            {
                "bin_lower": k / BIN_COUNT,
                "bin_upper": (k + 1) / BIN_COUNT,
                "count": int(count),
                "mean_predicted": _mean(sums.bins["probability"][i, k], count),
                "observed_frequency": _mean(sums.bins["outcome"][i, k], count),
            }
        )
    horizons = {
        horizon: {
            "count": int(t[f"count:{horizon}"]),
            "brier_score": _mean(t[f"squared_error:{horizon}"], t[f"count:{horizon}"]),
        }
        for horizon in HORIZON_COLUMNS
    }
    return {"bins": bins, "horizons": horizons}


def _mean(total: float, count: float) -> float | None:
    return None if count == 0 else float(total / count)


def _sample(values: np.ndarray, limit: int = 5) -> list:
    """A few offending values for an error message."""
    sample = [v.item() if isinstance(v, np.generic) else v for v in values[:limit]]
    return [str(v) if isinstance(v, uuid.UUID) else v for v in sample]
