"""Calibration rows against an independent computation, and at every edge of the definitions."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import brier_score_loss

from predict_pipeline.calibration.metrics import (
    TIME_WINDOWS,
    CalibrationInputError,
    CalibrationRow,
    calibration_rows,
    to_column_precision,
)

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
CAT_A = uuid.UUID("0a000000-0000-4000-8000-00000000000a")
CAT_B = uuid.UUID("0b000000-0000-4000-8000-00000000000b")
CAT_EMPTY = uuid.UUID("0c000000-0000-4000-8000-00000000000c")
CAT_UNLISTED = uuid.UUID("0d000000-0000-4000-8000-00000000000d")
NAN = float("nan")
DAY = timedelta(days=1)
COLUMNS = ["event_id", "category_id", "outcome", "final_probability", "resolved_at"]


def event(n, category, outcome, p, resolved_at, p_1d=NAN, p_7d=NAN, p_30d=NAN) -> dict:
    return {
        "event_id": uuid.UUID(int=n),
        "category_id": category,
        "outcome": outcome,
        "final_probability": p,
        "resolved_at": resolved_at,
        "p_1d": p_1d,
        "p_7d": p_7d,
        "p_30d": p_30d,
    }


def frame(events: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(events, columns=[*COLUMNS, "p_1d", "p_7d", "p_30d"])


# Two categories, an empty one, an unlisted one and none; every outcome; every window.
EVENTS = [
    event(1, CAT_A, "YES", 0.82, NOW - 1 * DAY, p_1d=0.75, p_7d=0.6),
    event(2, CAT_A, "NO", 0.30, NOW - 2 * DAY, p_1d=0.35, p_30d=0.5),
    event(3, CAT_A, "YES", 0.45, NOW - 5 * DAY, p_7d=0.4),
    event(4, CAT_A, "NO", 0.05, NOW - 7 * DAY, p_1d=0.1, p_7d=0.2, p_30d=0.4),
    event(5, CAT_A, "YES", NAN, NOW - 3 * DAY, p_1d=0.9),
    event(6, CAT_A, "AMBIGUOUS", 0.5, NOW - 4 * DAY, p_1d=0.5),
    event(7, CAT_A, "CANCELLED", 0.9, NOW - 10 * DAY, p_1d=0.9),
    event(8, CAT_A, "YES", 0.5, NOW - 12 * DAY, p_30d=0.55),
    event(9, CAT_A, "NO", 0.93, NOW - 29 * DAY, p_1d=0.91, p_7d=0.8),
    event(10, CAT_A, "YES", 1.0, NOW - 45 * DAY, p_1d=0.99, p_7d=0.97, p_30d=0.7),
    event(11, CAT_A, "NO", 0.0, NOW - 80 * DAY),
    event(12, CAT_A, "YES", 0.0, NOW - 100 * DAY, p_30d=0.3),
    event(13, CAT_A, "NO", 0.61, NOW - 200 * DAY, p_1d=0.6),
    event(14, CAT_B, "YES", 0.97, NOW, p_1d=0.96, p_7d=0.9, p_30d=0.8),
    event(15, CAT_B, "NO", 0.15, NOW - 6.5 * DAY, p_7d=0.25),
    event(16, CAT_B, "YES", 0.70, NOW - 20 * DAY, p_1d=0.7),
    event(17, CAT_B, "NO", 0.71, NOW - 60 * DAY, p_30d=0.6),
    event(18, CAT_B, "YES", 0.99, NOW + timedelta(hours=1), p_1d=0.99),
    event(19, CAT_B, "AMBIGUOUS", NAN, NOW - 1 * DAY),
    event(20, None, "YES", 0.66, NOW - 3 * DAY, p_1d=0.6),
    event(21, CAT_UNLISTED, "NO", 0.2, NOW - 15 * DAY, p_7d=0.3),
    event(22, CAT_B, "NO", NAN, NOW - 95 * DAY),
    event(23, CAT_B, "YES", 0.88, NOW - 89 * DAY, p_1d=0.85, p_30d=0.65),
    event(24, CAT_B, "CANCELLED", 0.1, NOW - 50 * DAY),
]
CATEGORIES = [CAT_A, CAT_B, CAT_EMPTY]


def in_window(resolved_at: datetime, length: timedelta | None) -> bool:
    return resolved_at <= NOW and (length is None or resolved_at > NOW - length)


def expected_row(events: list[dict], category: uuid.UUID | None, window: str) -> dict:
    """The row computed the slow, obvious way: Python filters, sklearn and plain numpy."""
    scope = [
        e
        for e in events
        if in_window(e["resolved_at"], TIME_WINDOWS[window])
        and (category is None or e["category_id"] == category)
        and e["outcome"] in ("YES", "NO")
    ]
    scored = [e for e in scope if not math.isnan(e["final_probability"])]
    y = np.array([1 if e["outcome"] == "YES" else 0 for e in scored])
    p = np.array([e["final_probability"] for e in scored])
    row = {
        "total_predictions": len(scope),
        "resolved_predictions": len(scored),
        "brier_score": brier_score_loss(y, p, labels=[0, 1]) if len(scored) else None,
        "log_score": None,
        "accuracy_at_50": None,
        "accuracy_at_70": None,
        "accuracy_at_90": None,
    }
    if len(scored):
        clipped = np.clip(p, 0.0001, 0.9999)
        row["log_score"] = float(np.mean(np.log(np.where(y == 1, clipped, 1 - clipped))))
    for column, qualifies in (
        ("accuracy_at_50", p != 0.5),
        ("accuracy_at_70", np.maximum(p, 1 - p) >= 0.7),
        ("accuracy_at_90", np.maximum(p, 1 - p) >= 0.9),
    ):
        if qualifies.any():
            row[column] = float(np.mean((p[qualifies] > 0.5) == (y[qualifies] == 1)))
    bins = []
    for k in range(10):
        # Exact decimal binning, independent of the float arithmetic under test.
        members = [i for i, v in enumerate(p) if min(int(Decimal(repr(float(v))) * 10), 9) == k]
        bins.append(
            {
                "bin_lower": k / 10,
                "bin_upper": (k + 1) / 10,
                "count": len(members),
                "mean_predicted": float(np.mean(p[members])) if members else None,
                "observed_frequency": float(np.mean(y[members])) if members else None,
            }
        )
    horizons = {}
    for horizon in ("1d", "7d", "30d"):
        has = [e for e in scored if not math.isnan(e[f"p_{horizon}"])]
        brier = None
        if has:
            brier = brier_score_loss(
                [1 if e["outcome"] == "YES" else 0 for e in has],
                [e[f"p_{horizon}"] for e in has],
                labels=[0, 1],
            )
        horizons[horizon] = {"count": len(has), "brier_score": brier}
    row["calibration_curve"] = {"bins": bins, "horizons": horizons}
    return row


def assert_close(actual, expected, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{i}]")
    elif expected is None or isinstance(expected, int):
        assert actual == expected and type(actual) is type(expected), where
    else:
        assert isinstance(actual, float) and abs(actual - expected) <= 1e-9, (
            f"{where}: {actual} != {expected}"
        )


def row_for(rows: list[CalibrationRow], category, window: str) -> CalibrationRow:
    [row] = [r for r in rows if r.category_id == category and r.time_window == window]
    return row


def quantized(value: float | None) -> Decimal | None:
    if value is None:
        return None
    return Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def test_every_column_of_every_row_matches_an_independent_computation():
    rows = calibration_rows(frame(EVENTS), now=NOW, categories=CATEGORIES)

    expected_keys = [(c, w) for w in TIME_WINDOWS for c in (None, *CATEGORIES)]
    assert [(r.category_id, r.time_window) for r in rows] == expected_keys
    for row in rows:
        expected = expected_row(EVENTS, row.category_id, row.time_window)
        where = f"{row.category_id}/{row.time_window}"
        for column, value in expected.items():
            assert_close(getattr(row, column), value, f"{where}.{column}")
        stored = to_column_precision(row)
        for column in ("brier_score", "log_score", "accuracy_at_50", "accuracy_at_70"):
            assert stored[column] == quantized(expected[column]), f"{where}.{column}"
        assert stored["accuracy_at_90"] == quantized(expected["accuracy_at_90"])
        assert stored["calibration_curve"] == row.calibration_curve
        assert stored["total_predictions"] == expected["total_predictions"]


def test_category_a_last_7_days_by_hand():
    rows = calibration_rows(frame(EVENTS), now=NOW, categories=CATEGORIES)
    row = row_for(rows, CAT_A, "7D")

    # Events 1, 2, 3 are scored, 5 has no probability, 4 resolved exactly 7 days ago is out.
    assert (row.total_predictions, row.resolved_predictions) == (4, 3)
    assert row.brier_score == pytest.approx((0.18**2 + 0.30**2 + 0.55**2) / 3, abs=1e-12)
    assert row.log_score == pytest.approx(
        (math.log(0.82) + math.log(0.7) + math.log(0.45)) / 3, abs=1e-12
    )
    assert row.accuracy_at_50 == pytest.approx(2 / 3, abs=1e-12)
    assert row.accuracy_at_70 == 1.0  # 0.82 on YES and 0.30 on NO (70% sure of NO)
    assert row.accuracy_at_90 is None
    assert to_column_precision(row)["brier_score"] == Decimal("0.1416")
    assert to_column_precision(row)["log_score"] == Decimal("-0.4512")
    assert to_column_precision(row)["accuracy_at_50"] == Decimal("0.6667")
    counts = [b["count"] for b in row.calibration_curve["bins"]]
    assert counts == [0, 0, 0, 1, 1, 0, 0, 0, 1, 0]
    assert row.calibration_curve["horizons"] == {
        "1d": {"count": 2, "brier_score": pytest.approx((0.25**2 + 0.35**2) / 2, abs=1e-12)},
        "7d": {"count": 2, "brier_score": pytest.approx((0.4**2 + 0.6**2) / 2, abs=1e-12)},
        "30d": {"count": 1, "brier_score": pytest.approx(0.25, abs=1e-12)},
    }


def test_probabilities_of_zero_and_one_are_clipped_for_the_log_score():
    events = [
        event(1, CAT_A, "NO", 0.0, NOW - DAY),
        event(2, CAT_A, "YES", 0.0, NOW - DAY),
        event(3, CAT_A, "YES", 1.0, NOW - DAY),
    ]
    row = row_for(calibration_rows(frame(events), now=NOW, categories=[]), None, "7D")

    assert row.log_score == pytest.approx((2 * math.log(0.9999) + math.log(0.0001)) / 3, abs=1e-12)
    assert row.brier_score == pytest.approx(1 / 3, abs=1e-12)
    assert to_column_precision(row)["log_score"] == Decimal("-3.0702")


def test_global_rows_count_uncategorised_and_unlisted_categories():
    rows = calibration_rows(frame(EVENTS), now=NOW, categories=CATEGORIES)
    everywhere = row_for(rows, None, "30D")
    listed = [row_for(rows, c, "30D") for c in CATEGORIES]

    # Event 20 (no category) and 21 (an unlisted category) are in the global row only.
    assert everywhere.total_predictions == sum(r.total_predictions for r in listed) + 2
    assert not any(r.category_id == CAT_UNLISTED for r in rows)


def test_ambiguous_and_cancelled_events_change_nothing():
    decided = [e for e in EVENTS if e["outcome"] in ("YES", "NO")]
    undecided = [e for e in EVENTS if e["outcome"] not in ("YES", "NO")]
    assert {e["outcome"] for e in undecided} == {"AMBIGUOUS", "CANCELLED"}

    with_them = calibration_rows(frame(EVENTS), now=NOW, categories=CATEGORIES)
    without_them = calibration_rows(frame(decided), now=NOW, categories=CATEGORIES)
    only_them = calibration_rows(frame(undecided), now=NOW, categories=CATEGORIES)

    assert with_them == without_them
    assert all(r.total_predictions == 0 and r.brier_score is None for r in only_them)


BOUNDARY_EVENTS = [
    # Each event has its own probability bin, so a bin's count says whether it is in.
    (0.05, NOW + timedelta(microseconds=1)),
    (0.15, NOW),
    (0.25, NOW - timedelta(days=7) + timedelta(microseconds=1)),
    (0.35, NOW - timedelta(days=7)),
    (0.45, NOW - timedelta(days=30) + timedelta(microseconds=1)),
    (0.55, NOW - timedelta(days=30)),
    (0.65, NOW - timedelta(days=90) + timedelta(microseconds=1)),
    (0.75, NOW - timedelta(days=90)),
]


@pytest.mark.parametrize("now", [NOW, NOW.astimezone(timezone(timedelta(hours=2)))])
def test_window_membership_at_the_boundaries(now):
    events = [event(i, CAT_A, "YES", p, t) for i, (p, t) in enumerate(BOUNDARY_EVENTS)]
    rows = calibration_rows(frame(events), now=now, categories=[CAT_A])

    def members(window: str) -> list[int]:
        bins = row_for(rows, CAT_A, window).calibration_curve["bins"]
        return [b["count"] for b in bins]

    assert members("7D") == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert members("30D") == [0, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert members("90D") == [0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert members("ALL_TIME") == [0, 1, 1, 1, 1, 1, 1, 1, 0, 0]


def test_empty_input_gives_zero_rows_for_every_category_and_window():
    rows = calibration_rows(frame([]), now=NOW, categories=[CAT_A, None, CAT_B, CAT_A])

    # None and a repeated category do not produce extra rows.
    assert [(r.category_id, r.time_window) for r in rows] == [
        (c, w) for w in TIME_WINDOWS for c in (None, CAT_A, CAT_B)
    ]
    for row in rows:
        assert (row.total_predictions, row.resolved_predictions) == (0, 0)
        assert row.brier_score is row.log_score is row.accuracy_at_50 is None
        assert row.accuracy_at_70 is row.accuracy_at_90 is None
        assert row.calibration_curve["bins"][3] == {
            "bin_lower": 0.3,
            "bin_upper": 0.4,
            "count": 0,
            "mean_predicted": None,
            "observed_frequency": None,
        }
        assert sum(b["count"] for b in row.calibration_curve["bins"]) == 0
        assert row.calibration_curve["horizons"] == {
            h: {"count": 0, "brier_score": None} for h in ("1d", "7d", "30d")
        }
        assert to_column_precision(row)["brier_score"] is None


def test_a_window_with_only_unscored_predictions_has_counts_but_no_scores():
    events = [event(1, CAT_A, "YES", NAN, NOW - DAY, p_1d=0.4), event(2, CAT_A, "NO", NAN, NOW)]
    row = row_for(calibration_rows(frame(events), now=NOW, categories=[CAT_A]), CAT_A, "7D")

    assert (row.total_predictions, row.resolved_predictions) == (2, 0)
    assert row.brier_score is row.log_score is row.accuracy_at_50 is None
    assert row.calibration_curve["horizons"]["1d"] == {"count": 0, "brier_score": None}


def test_bins_at_their_edges():
    probabilities = [0.0, 0.0999, 0.1, 0.3, 0.29999999999999993, 0.1 + 0.2, 0.7, 0.9, 0.95, 1.0]
    events = [event(i, CAT_A, "YES", p, NOW - DAY) for i, p in enumerate(probabilities)]
    row = row_for(calibration_rows(frame(events), now=NOW, categories=[]), None, "7D")
    bins = row.calibration_curve["bins"]

    assert [(b["bin_lower"], b["bin_upper"]) for b in bins] == [
        (0.0, 0.1),
        (0.1, 0.2),
        (0.2, 0.3),
        (0.3, 0.4),
        (0.4, 0.5),
        (0.5, 0.6),
        (0.6, 0.7),
        (0.7, 0.8),
        (0.8, 0.9),
        (0.9, 1.0),
    ]
    # 0.1 opens [0.1, 0.2); 0.3 and both float neighbours of it open [0.3, 0.4); 1.0 closes the
    # last bin.
    assert [b["count"] for b in bins] == [2, 1, 0, 3, 0, 0, 0, 1, 0, 3]
    assert bins[0]["mean_predicted"] == pytest.approx(0.0999 / 2, abs=1e-12)
    assert bins[3]["mean_predicted"] == pytest.approx(0.3, abs=1e-12)
    assert bins[9]["mean_predicted"] == pytest.approx((0.9 + 0.95 + 1.0) / 3, abs=1e-12)
    assert bins[9]["observed_frequency"] == 1.0
    assert bins[2]["mean_predicted"] is None


def test_observed_frequency_per_bin():
    events = [
        event(1, CAT_A, "YES", 0.62, NOW - DAY),
        event(2, CAT_A, "NO", 0.64, NOW - DAY),
        event(3, CAT_A, "NO", 0.68, NOW - DAY),
        event(4, CAT_A, "YES", 0.6, NOW - DAY),
    ]
    row = row_for(calibration_rows(frame(events), now=NOW, categories=[]), None, "7D")

    assert row.calibration_curve["bins"][6] == {
        "bin_lower": 0.6,
        "bin_upper": 0.7,
        "count": 4,
        "mean_predicted": pytest.approx(0.635, abs=1e-12),
        "observed_frequency": 0.5,
    }


def test_accuracy_thresholds():
    events = [
        event(1, CAT_A, "YES", 0.5, NOW - DAY),  # a coin flip calls no side: not at 50
        event(2, CAT_A, "NO", 0.3, NOW - DAY),  # 70% sure of NO, right
        event(3, CAT_A, "NO", 0.69, NOW - DAY),  # wrong, and only 69% sure
        event(4, CAT_A, "YES", 0.7 - 1e-12, NOW - DAY),  # 0.7 after float noise, right
        event(5, CAT_A, "YES", 0.1, NOW - DAY),  # 90% sure of NO, wrong
        event(6, CAT_A, "NO", 0.1, NOW - DAY),  # 90% sure of NO, right
        event(7, CAT_A, "YES", 0.9, NOW - DAY),  # 90% sure of YES, right
    ]
    row = row_for(calibration_rows(frame(events), now=NOW, categories=[]), None, "7D")

    assert row.accuracy_at_50 == pytest.approx(4 / 6, abs=1e-12)
    assert row.accuracy_at_70 == pytest.approx(4 / 5, abs=1e-12)
    assert row.accuracy_at_90 == pytest.approx(2 / 3, abs=1e-12)


def test_horizons_score_only_scored_events_with_that_horizon():
    events = [
        event(1, CAT_A, "YES", 0.8, NOW - DAY, p_1d=0.7, p_7d=0.6),
        event(2, CAT_A, "NO", 0.2, NOW - DAY, p_1d=0.1),
        event(3, CAT_A, "YES", NAN, NOW - DAY, p_1d=0.9, p_7d=0.9, p_30d=0.9),  # not scored
        event(4, CAT_A, "AMBIGUOUS", 0.5, NOW - DAY, p_1d=0.5, p_30d=0.5),
    ]
    row = row_for(calibration_rows(frame(events), now=NOW, categories=[]), None, "7D")

    assert row.calibration_curve["horizons"] == {
        "1d": {"count": 2, "brier_score": pytest.approx((0.09 + 0.01) / 2, abs=1e-12)},
        "7d": {"count": 1, "brier_score": pytest.approx(0.16, abs=1e-12)},
        "30d": {"count": 0, "brier_score": None},
    }


def test_horizon_columns_are_optional():
    events = frame(EVENTS)[COLUMNS]
    row = row_for(calibration_rows(events, now=NOW, categories=[]), None, "ALL_TIME")

    assert row.resolved_predictions == 17
    assert row.calibration_curve["horizons"]["7d"] == {"count": 0, "brier_score": None}


def test_database_shaped_input_is_read():
    # psycopg returns NUMERIC as Decimal; ids may arrive as text.
    events = frame(
        [
            event(1, str(CAT_A), "YES", Decimal("0.7500"), NOW - DAY, p_1d=Decimal("0.6")),
            event(2, CAT_A, "NO", None, NOW - DAY),
        ]
    )
    row = row_for(calibration_rows(events, now=NOW, categories=[str(CAT_A)]), CAT_A, "7D")

    assert (row.total_predictions, row.resolved_predictions) == (2, 1)
    assert row.brier_score == pytest.approx(0.0625, abs=1e-12)
    assert row.calibration_curve["horizons"]["1d"]["brier_score"] == pytest.approx(0.16)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (0.12345, Decimal("0.1235")),  # half away from zero on the decimal a reader sees
        (0.12344999, Decimal("0.1234")),
        (-0.00005, Decimal("-0.0001")),
        (-2.71825, Decimal("-2.7183")),
        (0.99995, Decimal("1.0000")),
        (0.5, Decimal("0.5000")),
    ],
)
def test_to_column_precision_rounds_half_away_from_zero(value, stored):
    row = CalibrationRow(
        category_id=CAT_A,
        time_window="30D",
        total_predictions=7,
        resolved_predictions=5,
        brier_score=value,
        log_score=value,
        accuracy_at_50=value,
        accuracy_at_70=None,
        accuracy_at_90=value,
        calibration_curve={"bins": []},
    )
    columns = to_column_precision(row)

    assert columns == {
        "category_id": CAT_A,
        "time_window": "30D",
        "total_predictions": 7,
        "resolved_predictions": 5,
        "brier_score": stored,
        "log_score": stored,
        "accuracy_at_50": stored,
        "accuracy_at_70": None,
        "accuracy_at_90": stored,
        "calibration_curve": {"bins": []},
    }
    assert str(columns["brier_score"]) == str(stored)


def test_to_column_precision_refuses_nan():
    row = row_for(calibration_rows(frame(EVENTS), now=NOW, categories=[]), None, "7D")
    broken = CalibrationRow(**{**to_column_precision(row), "brier_score": NAN})

    with pytest.raises(CalibrationInputError, match="brier_score must be finite"):
        to_column_precision(broken)


def _naive_times(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(resolved_at=f["resolved_at"].dt.tz_localize(None))


def _one_time_missing(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(resolved_at=f["resolved_at"].where(f["event_id"] != uuid.UUID(int=3)))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: f.drop(columns=["outcome"]), r"lack the columns \['outcome'\]"),
        (lambda f: f.assign(outcome="MAYBE"), "outcome must be one of"),
        (lambda f: f.assign(final_probability=1.2), r"final_probability must be a probability"),
        (lambda f: f.assign(p_7d=-0.1), r"p_7d must be a probability in \[0, 1\]"),
        (lambda f: f.assign(final_probability="high"), "final_probability must hold numbers"),
        (_naive_times, "resolved_at must hold tz-aware timestamps"),
        (_one_time_missing, re.escape(f"resolved_at is null for events ['{uuid.UUID(int=3)}']")),
        (lambda f: f.assign(outcome="MAYBE"), re.escape(f"events ['{uuid.UUID(int=1)}', '")),
        (lambda f: f.assign(event_id=f["event_id"].iloc[0]), "repeated"),
        (lambda f: f.assign(category_id="sports"), "category_id: category ids must be UUIDs"),
    ],
)
def test_bad_input_is_refused(spoil, message):
    with pytest.raises(CalibrationInputError, match=message):
        calibration_rows(spoil(frame(EVENTS)), now=NOW, categories=CATEGORIES)


def test_bad_arguments_are_refused():
    with pytest.raises(CalibrationInputError, match="now must be a tz-aware datetime"):
        calibration_rows(frame(EVENTS), now=datetime(2025, 6, 30), categories=CATEGORIES)
    with pytest.raises(CalibrationInputError, match="categories: category ids must be UUIDs"):
        calibration_rows(frame(EVENTS), now=NOW, categories=[42])


events_strategy = st.lists(
    st.tuples(
        st.sampled_from([CAT_A, CAT_B, None]),
        st.sampled_from(["YES", "NO", "AMBIGUOUS", "CANCELLED"]),
        st.one_of(st.just(NAN), st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 0.7, 1.0])),
        st.integers(-2 * 86_400, 200 * 86_400),
        st.one_of(st.just(NAN), st.floats(0.0, 1.0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_scores_stay_in_range_and_counts_add_up(drawn):
    events = [
        event(i, cat, outcome, p, NOW - timedelta(seconds=age), p_1d=h)
        for i, (cat, outcome, p, age, h) in enumerate(drawn)
    ]
    rows = calibration_rows(frame(events), now=NOW, categories=[CAT_A, CAT_B])

    for row in rows:
        curve = row.calibration_curve
        assert 0 <= row.resolved_predictions <= row.total_predictions
        assert sum(b["count"] for b in curve["bins"]) == row.resolved_predictions
        assert curve["horizons"]["1d"]["count"] <= row.resolved_predictions
        if row.resolved_predictions == 0:
            assert row.brier_score is None and row.log_score is None
        else:
            assert 0.0 <= row.brier_score <= 1.0
            assert row.log_score <= 0.0
        for accuracy in (row.accuracy_at_50, row.accuracy_at_70, row.accuracy_at_90):
            assert accuracy is None or 0.0 <= accuracy <= 1.0
        for b in curve["bins"]:
            if b["count"]:
                assert b["bin_lower"] - 1e-9 <= b["mean_predicted"] <= b["bin_upper"] + 1e-9
                assert 0.0 <= b["observed_frequency"] <= 1.0
    for category in (None, CAT_A, CAT_B):
        totals = [row_for(rows, category, w).total_predictions for w in TIME_WINDOWS]
        assert totals == sorted(totals)
    for window in TIME_WINDOWS:
        parts = sum(row_for(rows, c, window).resolved_predictions for c in (CAT_A, CAT_B))
        assert row_for(rows, None, window).resolved_predictions >= parts


def test_100k_events_in_six_categories_count_every_decided_event():
    # Speed is measured in bench/, not asserted here; this proves the large case is right.
    rng = np.random.default_rng(20250630)
    n = 100_000
    categories = [uuid.UUID(int=c + 1) for c in range(6)]
    probability = rng.random(n)
    events = pd.DataFrame(
        {
            "event_id": [uuid.UUID(int=1_000 + i) for i in range(n)],
            "category_id": np.array(categories, dtype=object)[rng.integers(0, 6, n)],
            "outcome": np.array(["YES", "NO", "AMBIGUOUS", "CANCELLED"])[
                rng.choice(4, n, p=[0.45, 0.45, 0.05, 0.05])
            ],
            "final_probability": np.where(rng.random(n) < 0.05, np.nan, probability),
            "resolved_at": pd.Timestamp(NOW)
            - pd.to_timedelta(rng.integers(0, 400 * 86_400, n), unit="s"),
            "p_1d": probability,
            "p_7d": probability,
            "p_30d": np.where(rng.random(n) < 0.3, np.nan, probability),
        }
    )

    rows = calibration_rows(events, now=NOW, categories=categories)

    assert len(rows) == 4 * 7
    everything = row_for(rows, None, "ALL_TIME")
    decided = events["outcome"].isin(["YES", "NO"])
    assert everything.total_predictions == int(decided.sum())
    assert everything.resolved_predictions == int(
        (decided & events["final_probability"].notna()).sum()
    )
