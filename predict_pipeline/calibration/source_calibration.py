"""Calibration per scored series: each market source and `pooled` (the platform's forecast), per
category (and globally) × window × horizon, over v_market_scores — the rows of
prediction_source_calibration.

Scores are metrics.py's, not a fork: the scored rows of one (source, horizon) are handed to
`calibration_rows` as if each were an event, so Brier, log score, accuracy at 50/70/90 %, the
ten bins and the windows (by the resolution's resolved_at) mean exactly what they mean for the
pooled rows of prediction_calibration_scores. A source with two markets on one event scores
both (each market is a forecast). The horizon curves of metrics.py are dropped: here the
horizon is a key of the row.

**Filters** (0 turns each off), applied in SQL to the rows counted:
- min_volume: the market's traded volume up to close, in source units (× 1000: VOLUME signals
  hold thousands): its largest lifetime total (`raw_data.volume_scope` "lifetime_…") plus the
  sum of its flow volumes. `pooled` uses the event's total over its markets. A series with no
  VOLUME signal has volume 0.
- min_traders: no adapter records a trader count today (no traders or unique-bettors field in
  any source's raw_data or metadata). The filter reads `raw_data.unique_bettors` (a JSON
  number, the largest seen up to close) where a source provides it; with min_traders > 0 a
  series without it is left out. `pooled` uses the sum over its markets.
- min_trust: the event's trust_score at its last snapshot at or before close; with
  min_trust > 0 an event without such a snapshot is left out.

A resolution's close is the event's resolution date or the resolution time, whichever is
earlier (as resolutions.py defines it).

**Pooled against the best single source** (`pooled_vs_best_source`, CLOSE horizon, every event
resolved at or before `now`): for each source, on the events both it and pooled scored, the
source's Brier (its markets' mean per event) and pooled's; the best source is the one with the
lowest Brier; `difference` = pooled − best (negative: pooling beat every single source).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.calibration.metrics import (
    CalibrationRow,
    calibration_rows,
    to_column_precision,
)

POOLED = "pooled"
HORIZONS = ("CLOSE", "MIDPOINT", "TIME_AVERAGE", "12H", "1D", "7D", "30D")
GLOBAL = "global"

# The close of each resolved event and its trust at its last snapshot at or before close: shared
# by the source filters and the trust bands, so both read trust the same way.
CLOSE_AND_TRUST_SQL = """
closes AS (
  SELECT r.event_id, e.category_id, r.resolved_at,
         least(coalesce(e.resolution_date, r.resolved_at), r.resolved_at) AS closes_at
  FROM prediction_resolutions r JOIN prediction_events e ON e.id = r.event_id
  WHERE r.outcome IN ('YES', 'NO')
),
trust_at_close AS (
  SELECT DISTINCT ON (sn.event_id) sn.event_id, sn.trust_score::float8 AS trust
  FROM prediction_snapshots sn JOIN closes c ON c.event_id = sn.event_id
  WHERE sn.snapshot_at <= c.closes_at AND sn.trust_score IS NOT NULL
  ORDER BY sn.event_id, sn.snapshot_at DESC
)"""

_SCORED_SQL = f"""
WITH {CLOSE_AND_TRUST_SQL},
markets AS (
  SELECT s.event_id, s.source, s.source_event_id,
         1000 * (coalesce(max(s.value::float8) FILTER (
                   WHERE s.signal_type = 'VOLUME'
                     AND s.raw_data->>'volume_scope' LIKE 'lifetime%%'), 0)
                 + coalesce(sum(s.value::float8) FILTER (
                   WHERE s.signal_type = 'VOLUME'
                     AND coalesce(s.raw_data->>'volume_scope', '') NOT LIKE 'lifetime%%'), 0))
           AS volume,
         max((s.raw_data->>'unique_bettors')::float8) FILTER (
           WHERE jsonb_typeof(s.raw_data->'unique_bettors') = 'number') AS traders
  FROM prediction_signals s JOIN closes c ON c.event_id = s.event_id
  WHERE s.fetched_at <= c.closes_at AND s.source_event_id IS NOT NULL
  GROUP BY s.event_id, s.source, s.source_event_id
),
events AS (
  SELECT event_id, sum(volume) AS volume, sum(traders) AS traders
  FROM markets GROUP BY event_id
)
SELECT v.event_id, v.source, v.source_event_id, v.horizon, v.probability, v.outcome,
       v.brier_score, c.category_id, c.resolved_at
FROM v_market_scores v
JOIN closes c ON c.event_id = v.event_id
LEFT JOIN markets m ON v.source <> 'pooled' AND m.event_id = v.event_id
  AND m.source = v.source AND m.source_event_id = v.source_event_id
LEFT JOIN events ev ON v.source = 'pooled' AND ev.event_id = v.event_id
LEFT JOIN trust_at_close t ON t.event_id = v.event_id
WHERE (%(min_volume)s = 0 OR coalesce(m.volume, ev.volume, 0) >= %(min_volume)s)
  AND (%(min_traders)s = 0 OR coalesce(m.traders, ev.traders) >= %(min_traders)s)
  AND (%(min_trust)s = 0 OR t.trust >= %(min_trust)s)
ORDER BY v.source, v.horizon, v.event_id, v.source_event_id
"""  # noqa: S608 (constant CTE text, no input)

_INSERT_SQL = """
INSERT INTO prediction_source_calibration
  (source, category_id, time_window, horizon, total_predictions, resolved_predictions,
   brier_score, log_score, accuracy_at_50, accuracy_at_70, accuracy_at_90, calibration_curve,
   min_volume, min_traders, min_trust, computed_at)
VALUES (%(source)s, %(category_id)s, %(time_window)s, %(horizon)s, %(total_predictions)s,
        %(resolved_predictions)s, %(brier_score)s, %(log_score)s, %(accuracy_at_50)s,
        %(accuracy_at_70)s, %(accuracy_at_90)s, %(calibration_curve)s, %(min_volume)s,
        %(min_traders)s, %(min_trust)s, %(computed_at)s)
"""


class SourceCalibrationError(ValueError):
    """A filter is out of range."""


@dataclass(frozen=True, slots=True)
class SeriesFilters:
    min_volume: float = 0.0
    min_traders: int = 0
    min_trust: float = 0.0

    def __post_init__(self) -> None:
        if self.min_volume < 0 or self.min_traders < 0:
            raise SourceCalibrationError(
                f"min_volume and min_traders must be ≥ 0, got {self.min_volume}, {self.min_traders}"
            )
        if not 0 <= self.min_trust <= 1:
            raise SourceCalibrationError(f"min_trust must be in [0, 1], got {self.min_trust}")


@dataclass(frozen=True, slots=True)
class SourceCalibrationRow:
    source: str
    horizon: str
    row: CalibrationRow


def scored_series(conn: psycopg.Connection, filters: SeriesFilters) -> pd.DataFrame:
    """Every scored (event, series, horizon) of a YES/NO resolution that passes the filters."""
    with conn.cursor() as cur:
        cur.execute(
            _SCORED_SQL,
            {
                "min_volume": float(filters.min_volume),
                "min_traders": float(filters.min_traders),
                "min_trust": float(filters.min_trust),
            },
        )
        columns = [d.name for d in cur.description or []]
        frame = pd.DataFrame(cur.fetchall(), columns=columns)
    if frame.empty:
        return frame
    frame["resolved_at"] = pd.to_datetime(frame["resolved_at"], utc=True)
    frame["probability"] = frame["probability"].astype(float)
    frame["brier_score"] = frame["brier_score"].astype(float)
    return frame


def source_calibration_rows(
    scored: pd.DataFrame, *, now: datetime, categories: Iterable[uuid.UUID | None]
) -> list[SourceCalibrationRow]:
    """metrics.calibration_rows for each (source, horizon) present, pooled first."""
    requested = list(categories)
    rows: list[SourceCalibrationRow] = []
    if scored.empty:
        return rows
    order = sorted(scored["source"].unique(), key=lambda s: (s != POOLED, s))
    for source in order:
        of_source = scored[scored["source"] == source]
        for horizon in HORIZONS:
            series = of_source[of_source["horizon"] == horizon]
            if series.empty:
                continue
            # Each scored series is one forecast: metrics.py wants a unique id per forecast.
            as_events = pd.DataFrame(
                {
                    "event_id": [uuid.UUID(int=i) for i in range(len(series))],
                    "category_id": series["category_id"].to_numpy(),
                    "outcome": ["YES" if o == 1 else "NO" for o in series["outcome"]],
                    "final_probability": series["probability"].to_numpy(),
                    "resolved_at": series["resolved_at"].to_numpy(),
                }
            )
            as_events["resolved_at"] = pd.to_datetime(as_events["resolved_at"], utc=True)
            for row in calibration_rows(as_events, now=now, categories=requested):
                rows.append(SourceCalibrationRow(source, horizon, row))
    return rows


def save_source_calibration(
    conn: psycopg.Connection,
    rows: list[SourceCalibrationRow],
    filters: SeriesFilters,
    computed_at: datetime,
) -> int:
    """Replaces the table's rows: a source that no longer passes the filters leaves no row."""
    params = []
    for r in rows:
        values = to_column_precision(r.row)
        values["calibration_curve"] = Jsonb({"bins": values["calibration_curve"]["bins"]})
        values.update(
            source=r.source,
            horizon=r.horizon,
            min_volume=filters.min_volume,
            min_traders=filters.min_traders,
            min_trust=filters.min_trust,
            computed_at=computed_at,
        )
        params.append(values)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM prediction_source_calibration")
        cur.executemany(_INSERT_SQL, params)
    return len(params)


def pooled_vs_best_source(
    scored: pd.DataFrame, *, now: datetime, category_names: dict[uuid.UUID, str]
) -> list[dict[str, Any]]:
    """Per category that has pooled-and-source events (global first): pooled Brier, best
    source, its Brier, pooled − best and the events compared (see the module doc)."""
    if scored.empty:
        return []
    close = scored[(scored["horizon"] == "CLOSE") & (scored["resolved_at"] <= pd.Timestamp(now))]
    per_event = (
        close.groupby(["event_id", "source"], sort=False)
        .agg(brier=("brier_score", "mean"), category_id=("category_id", "first"))
        .reset_index()
    )
    pooled = per_event[per_event["source"] == POOLED][["event_id", "brier"]]
    markets = per_event[per_event["source"] != POOLED]
    paired = markets.merge(pooled, on="event_id", suffixes=("_source", "_pooled"))
    if paired.empty:
        return []
    paired["category"] = [
        category_names.get(c, str(c)) if c is not None else None for c in paired["category_id"]
    ]
    scopes = [paired.assign(category=GLOBAL), paired[paired["category"].notna()]]
    per_source = (
        pd.concat(scopes)
        .groupby(["category", "source"])
        .agg(
            source_brier=("brier_source", "mean"),
            pooled_brier=("brier_pooled", "mean"),
            events=("event_id", "count"),
        )
        .reset_index()
        .sort_values(["category", "source_brier", "source"])
    )
    best = per_source.groupby("category", sort=False).head(1)
    best = best.assign(difference=best["pooled_brier"] - best["source_brier"])
    best = best.sort_values("category", key=lambda c: c != GLOBAL, kind="stable")
    return [
        {
            "category": r.category,
            "pooled_brier": float(r.pooled_brier),
            "best_source": r.source,
            "best_source_brier": float(r.source_brier),
            "difference": float(r.difference),
            "events": int(r.events),
        }
        for r in best.itertuples()
    ]
