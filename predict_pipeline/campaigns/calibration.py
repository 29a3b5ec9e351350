"""How well the campaign loop predicted: the rows of prediction_campaign_calibration.

Scored: result rows that had a prediction in force when they were recorded (results.py freezes
it: predicted_success_probability p, predicted rates, the primary metric and benchmark). Rows
are grouped per tenant (an org's campaigns, or a user's campaigns outside any org) × platform ×
campaign type, and per tenant over every platform and type ('all', 'all'); windows 7D, 30D,
90D and ALL_TIME hold the rows whose result period ended in (now − N days, now] (ALL_TIME: at
or before now). In each:

- scored_results: rows with p and an outcome `success` (the row's primary rate reached the
  benchmark frozen with the prediction, see model.success_definition); successes: how many
  succeeded.
- brier_score = mean((p − success)²) over those rows, success as 1 or 0; log_score,
  accuracy_at_50 and the ten-bin calibration_curve as for events: the rows go through the
  events' `calibration.metrics.calibration_rows` (outcome YES for success), so both scores
  mean the same thing.
- mae_engagement_rate = mean |predicted_engagement_rate − actual_engagement_rate| over the
  rows having both (engagement_scored of them); mae_conversion_rate likewise
  (conversion_scored).
- direction_accuracy: the share of prediction_direction_correct = true among the rows where it
  is not NULL (direction_scored).

A score over no row is NULL. The global rows (every tenant) are drawn as the reliability
diagram of the asset's materialisation, for the operator; the table holds tenant rows only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.calibration.metrics import (
    TIME_WINDOWS,
    CalibrationRow,
    calibration_rows,
    to_column_precision,
)

ALL = "all"
_GROUP_NAMESPACE = uuid.UUID("6d0f3c1e-5f7a-4c1b-9a57-0c3a2c1f7e70")
ZERO_UUID = "00000000-0000-0000-0000-000000000000"

_SCORED_SQL = """
SELECT r.id, c.user_id, c.org_id,
       coalesce(c.platform, 'unknown') AS platform,
       coalesce(c.campaign_type, 'unknown') AS campaign_type,
       r.predicted_success_probability::float8 AS p, r.success,
       r.predicted_engagement_rate::float8 AS predicted_engagement,
       r.actual_engagement_rate::float8 AS actual_engagement,
       r.predicted_conversion_rate::float8 AS predicted_conversion,
       r.actual_conversion_rate::float8 AS actual_conversion,
       r.prediction_direction_correct AS direction,
       coalesce(r.result_period_end, r.recorded_at) AS ended_at
FROM prediction_campaign_results r JOIN prediction_campaigns c ON c.id = r.campaign_id
WHERE r.predicted_metric IS NOT NULL
"""

_SAVE_SQL = f"""
INSERT INTO prediction_campaign_calibration AS k
  (user_id, org_id, platform, campaign_type, time_window, scored_results, successes,
   brier_score, log_score, accuracy_at_50, engagement_scored, mae_engagement_rate,
   conversion_scored, mae_conversion_rate, direction_scored, direction_accuracy,
   calibration_curve, computed_at)
SELECT x.user_id, x.org_id, x.platform, x.campaign_type, x.time_window, x.scored_results,
       x.successes, x.brier_score, x.log_score, x.accuracy_at_50, x.engagement_scored,
       round(x.mae_engagement_rate, 6), x.conversion_scored, round(x.mae_conversion_rate, 6),
       x.direction_scored, round(x.direction_accuracy, 4), x.calibration_curve, %(now)s
FROM jsonb_to_recordset(%(rows)s) AS x(
  user_id uuid, org_id uuid, platform text, campaign_type text, time_window text,
  scored_results integer, successes integer, brier_score numeric, log_score numeric,
  accuracy_at_50 numeric, engagement_scored integer, mae_engagement_rate numeric,
  conversion_scored integer, mae_conversion_rate numeric, direction_scored integer,
  direction_accuracy numeric, calibration_curve jsonb)
ON CONFLICT ((COALESCE(user_id, '{ZERO_UUID}'::uuid)), (COALESCE(org_id, '{ZERO_UUID}'::uuid)),
             platform, campaign_type, time_window)
DO UPDATE SET scored_results = EXCLUDED.scored_results, successes = EXCLUDED.successes,
  brier_score = EXCLUDED.brier_score, log_score = EXCLUDED.log_score,
  accuracy_at_50 = EXCLUDED.accuracy_at_50, engagement_scored = EXCLUDED.engagement_scored,
  mae_engagement_rate = EXCLUDED.mae_engagement_rate,
  conversion_scored = EXCLUDED.conversion_scored,
  mae_conversion_rate = EXCLUDED.mae_conversion_rate,
  direction_scored = EXCLUDED.direction_scored,
  direction_accuracy = EXCLUDED.direction_accuracy,
  calibration_curve = EXCLUDED.calibration_curve, computed_at = EXCLUDED.computed_at
"""  # noqa: S608 (module constants only)


@dataclass(frozen=True, slots=True)
class CampaignCalibration:
    """Tenant rows for the table (JSON-ready dicts) and the global rows (every tenant) per
    window, as the events' CalibrationRow, with the global rate errors."""

    rows: list[dict[str, Any]]
    global_rows: list[CalibrationRow]
    global_errors: dict[str, dict[str, Any]]


def read_scored(conn: psycopg.Connection) -> pd.DataFrame:
    cursor = conn.execute(_SCORED_SQL)
    columns = [d.name for d in cursor.description or []]
    return pd.DataFrame(cursor.fetchall(), columns=columns)


def calibrate_campaigns(scored: pd.DataFrame, *, now: datetime) -> CampaignCalibration:
    """The calibration of the scored rows (module docstring)."""
    frame = scored.copy()
    tenant = np.where(
        frame["org_id"].notna(),
        "org:" + frame["org_id"].astype(str),
        "user:" + frame["user_id"].astype(str),
    )
    frame["tenant"] = tenant
    frame["fine"] = [
        _group_id(t, p, k)
        for t, p, k in zip(tenant, frame["platform"], frame["campaign_type"], strict=True)
    ]
    frame["coarse"] = [_group_id(t, ALL, ALL) for t in tenant]
    groups: dict[uuid.UUID, tuple[str, str, str]] = {}
    for t, p, k, fine, coarse in zip(
        tenant,
        frame["platform"],
        frame["campaign_type"],
        frame["fine"],
        frame["coarse"],
        strict=True,
    ):
        groups.setdefault(fine, (t, p, k))
        groups.setdefault(coarse, (t, ALL, ALL))
    events = pd.DataFrame(
        {
            "event_id": frame["id"],
            "outcome": np.where(
                frame["success"].isna(),
                "AMBIGUOUS",  # no outcome: neither counted nor scored
                np.where(frame["success"].fillna(False).astype(bool), "YES", "NO"),
            ),
            "final_probability": frame["p"].astype(float),
            "resolved_at": pd.to_datetime(frame["ended_at"], utc=True),
        }
    )
    fine_rows = calibration_rows(
        events.assign(category_id=frame["fine"]), now=now, categories=frame["fine"].unique()
    )
    coarse_rows = calibration_rows(
        events.assign(category_id=frame["coarse"]), now=now, categories=frame["coarse"].unique()
    )
    errors = _rate_errors(frame, now)
    rows = [
        _table_row(row, groups[row.category_id], errors.get((row.category_id, row.time_window)))
        for row in (*fine_rows, *coarse_rows)
        if row.category_id is not None
    ]
    return CampaignCalibration(
        rows=rows,
        global_rows=[r for r in fine_rows if r.category_id is None],
        global_errors={
            window: errors.get((None, window), _EMPTY_ERRORS) for window in TIME_WINDOWS
        },
    )


def _group_id(tenant: str, platform: str, campaign_type: str) -> uuid.UUID:
    return uuid.uuid5(_GROUP_NAMESPACE, f"{tenant}|{platform}|{campaign_type}")


_EMPTY_ERRORS: dict[str, Any] = {
    "successes": 0,
    "engagement_scored": 0,
    "mae_engagement_rate": None,
    "conversion_scored": 0,
    "mae_conversion_rate": None,
    "direction_scored": 0,
    "direction_accuracy": None,
}


def _rate_errors(
    frame: pd.DataFrame, now: datetime
) -> dict[tuple[uuid.UUID | None, str], dict[str, Any]]:
    """Successes, MAE per rate and direction accuracy per group (fine, coarse, None: all) and
    window, vectorised."""
    ended = pd.to_datetime(frame["ended_at"], utc=True)
    at = pd.Timestamp(now).tz_convert("UTC")
    measures = pd.DataFrame(
        {
            "successes": (frame["success"].fillna(False).astype(bool) & frame["p"].notna()),
            "engagement_error": (frame["predicted_engagement"] - frame["actual_engagement"]).abs(),
            "conversion_error": (frame["predicted_conversion"] - frame["actual_conversion"]).abs(),
            "direction": frame["direction"].map({True: 1.0, False: 0.0}).astype(float),
        }
    )
    found: dict[tuple[uuid.UUID | None, str], dict[str, Any]] = {}
    for window, length in TIME_WINDOWS.items():
        inside = ended <= at
        if length is not None:
            inside &= ended > at - length
        mask = inside.to_numpy()
        for column in ("fine", "coarse", None):
            keys = frame[column].to_numpy() if column else np.full(len(frame), "*", dtype=object)
            part = measures[mask].assign(_group=keys[mask])
            summary = part.groupby("_group").agg(
                successes=("successes", "sum"),
                engagement_scored=("engagement_error", "count"),
                mae_engagement_rate=("engagement_error", "mean"),
                conversion_scored=("conversion_error", "count"),
                mae_conversion_rate=("conversion_error", "mean"),
                direction_scored=("direction", "count"),
                direction_accuracy=("direction", "mean"),
            )
            for group, values in summary.iterrows():
                key = None if column is None else group
                found[(key, window)] = {
                    name: _plain(value, whole=name in _COUNTS)
                    for name, value in values.to_dict().items()
                }
    return found


_COUNTS = frozenset({"successes", "engagement_scored", "conversion_scored", "direction_scored"})


def _plain(value: Any, *, whole: bool) -> int | float | None:
    """A summary value as JSON: counts as int, a mean of nothing as None."""
    number = float(value)
    if np.isnan(number):
        return None
    return int(number) if whole else number


def _table_row(
    row: CalibrationRow, group: tuple[str, str, str], errors: dict[str, Any] | None
) -> dict[str, Any]:
    tenant, platform, campaign_type = group
    kind, _, owner = tenant.partition(":")
    stored = to_column_precision(row)
    return {
        "user_id": owner if kind == "user" else None,
        "org_id": owner if kind == "org" else None,
        "platform": platform,
        "campaign_type": campaign_type,
        "time_window": row.time_window,
        "scored_results": row.resolved_predictions,
        "brier_score": _number(stored["brier_score"]),
        "log_score": _number(stored["log_score"]),
        "accuracy_at_50": _number(stored["accuracy_at_50"]),
        "calibration_curve": {"bins": row.calibration_curve["bins"]},
        **(errors or _EMPTY_ERRORS),
    }


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def save_campaign_calibration(
    conn: psycopg.Connection, calibration: CampaignCalibration, now: datetime
) -> int:
    """Upsert the tenant rows; rows of groups that no longer have results go. One transaction."""
    with conn.transaction():
        if calibration.rows:
            conn.execute(_SAVE_SQL, {"rows": Jsonb(calibration.rows), "now": now})
        conn.execute("DELETE FROM prediction_campaign_calibration WHERE computed_at <> %s", (now,))
    return len(calibration.rows)
