"""prediction_calibration_scores: one row per category (and a global one) per window,
updated in place through the table's unique index."""

from __future__ import annotations

import uuid
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.calibration.metrics import CalibrationRow, to_column_precision

_UPSERT_SQL = """
INSERT INTO prediction_calibration_scores
  (category_id, time_window, total_predictions, resolved_predictions, brier_score, log_score,
   accuracy_at_50, accuracy_at_70, accuracy_at_90, calibration_curve, computed_at)
VALUES (%(category_id)s, %(time_window)s, %(total_predictions)s, %(resolved_predictions)s,
        %(brier_score)s, %(log_score)s, %(accuracy_at_50)s, %(accuracy_at_70)s,
        %(accuracy_at_90)s, %(calibration_curve)s, %(computed_at)s)
ON CONFLICT (COALESCE(category_id, '00000000-0000-0000-0000-000000000000'), time_window)
DO UPDATE SET total_predictions = EXCLUDED.total_predictions,
  resolved_predictions = EXCLUDED.resolved_predictions, brier_score = EXCLUDED.brier_score,
  log_score = EXCLUDED.log_score, accuracy_at_50 = EXCLUDED.accuracy_at_50,
  accuracy_at_70 = EXCLUDED.accuracy_at_70, accuracy_at_90 = EXCLUDED.accuracy_at_90,
  calibration_curve = EXCLUDED.calibration_curve, computed_at = EXCLUDED.computed_at
"""


def active_categories(conn: psycopg.Connection) -> list[uuid.UUID]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM prediction_categories WHERE is_active ORDER BY sort_order, name"
        )
    ]


def save_calibration(
    conn: psycopg.Connection, rows: list[CalibrationRow], computed_at: datetime
) -> int:
    params = []
    for row in rows:
        values = to_column_precision(row)
        values["calibration_curve"] = Jsonb(values["calibration_curve"])
        values["computed_at"] = computed_at
        params.append(values)
    with conn.cursor() as cur:
        cur.executemany(_UPSERT_SQL, params)
    return len(params)
