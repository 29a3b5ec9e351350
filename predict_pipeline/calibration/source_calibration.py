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

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.calibration.metrics import (
    CalibrationRow,
    series_calibration_rows,
    to_column_precision,
)
from predict_pipeline.db.connection import local_setting
from predict_pipeline.db.rows import one_row

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

# Each market's traded volume and trader count up to close, and the event's over its markets:
# read only when a volume or trader filter is on.
_MARKETS_SQL = """
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
)"""

_MARKET_JOINS_SQL = """
LEFT JOIN markets m ON ms.source <> 'pooled' AND m.event_id = ms.event_id
  AND m.source = ms.source AND m.source_event_id = ms.source_event_id
LEFT JOIN events ev ON ms.source = 'pooled' AND ev.event_id = ms.event_id"""


def _scored_sql(filters: SeriesFilters) -> str:
    """v_market_scores' reads (each series' probability of a YES/NO resolution) from its table,
    without the view's relative_brier window, which is not needed here; the signals and
    snapshots are read only for the filters that are on. One row of arrays: the resolutions'
    (numbered n, by id) and the reads', each naming its resolution by n, so the client builds
    no Python object per read but the market's id."""
    by_market = filters.min_volume > 0 or filters.min_traders > 0
    ctes = [CLOSE_AND_TRUST_SQL] if by_market or filters.min_trust > 0 else []
    if by_market:
        ctes.append(_MARKETS_SQL)
    ctes.append(_RESOLVED_SQL)
    conditions = ["true"]
    if filters.min_volume > 0:
        conditions.append("coalesce(m.volume, ev.volume, 0) >= %(min_volume)s")
    if filters.min_traders > 0:
        conditions.append("coalesce(m.traders, ev.traders) >= %(min_traders)s")
    if filters.min_trust > 0:
        conditions.append("t.trust >= %(min_trust)s")
    return (
        f"WITH {','.join(ctes)}\n"
        + _ARRAYS_SQL
        + (_MARKET_JOINS_SQL if by_market else "")
        + ("\nLEFT JOIN trust_at_close t ON t.event_id = ms.event_id" if filters.min_trust else "")
        + "\nWHERE "
        + " AND ".join(conditions)
        + ") reads"
    )


# Numbered by id in both places it is read, so the numbers agree (a plain CTE is inlined).
_RESOLVED_SQL = """
resolved AS NOT MATERIALIZED (
  SELECT r.id, r.event_id, (r.outcome = 'YES')::int AS outcome, e.category_id, r.resolved_at,
         (row_number() OVER (ORDER BY r.id))::int - 1 AS n
  FROM prediction_resolutions r JOIN prediction_events e ON e.id = r.event_id
  WHERE r.outcome IN ('YES', 'NO')
)"""

_ARRAYS_SQL = """SELECT resolutions.*, reads.*
FROM (SELECT array_agg(event_id::text ORDER BY n) AS event_ids,
             array_agg(outcome ORDER BY n) AS outcomes,
             array_agg(coalesce(array_position(%(categories)s::uuid[], category_id), 0)
                       ORDER BY n) AS category_codes,
             array_agg((extract(epoch FROM resolved_at) * 1000000)::bigint ORDER BY n)
               AS resolved_us
      FROM resolved) resolutions,
     (SELECT array_agg(v.n) AS resolution_n, array_agg(ms.source) AS sources,
             array_agg(ms.source_event_id) AS markets,
             array_agg(array_position(%(horizons)s::text[], ms.horizon)) AS horizon_codes,
             array_agg(ms.probability) AS probabilities
      FROM prediction_market_scores ms JOIN resolved v ON v.id = ms.resolution_id"""

# The read's joins hash every scored read: in memory, not in batches on disk.
SCORED_WORK_MEM = "64MB"


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
    """Every scored (event, series, horizon) of a YES/NO resolution that passes the filters:
    ids and the category as text (None: none), resolved_at in UTC, probability and its Brier,
    (p − o)² as the view defines it."""
    categories = [c for (c,) in conn.execute("SELECT id::text FROM prediction_categories")]
    params = {
        "min_volume": float(filters.min_volume),
        "min_traders": float(filters.min_traders),
        "min_trust": float(filters.min_trust),
        "categories": categories,
        "horizons": list(HORIZONS),
    }
    with conn.transaction(), local_setting(conn, "work_mem", SCORED_WORK_MEM):
        read = one_row(conn.execute(_scored_sql(filters), params, binary=True))
    (event_ids, outcomes, category_codes, resolved_us, n, sources, markets, horizons, p) = (
        [] if column is None else column for column in read
    )
    of_read = np.asarray(n, dtype=np.int64)
    probability = np.asarray(p, dtype=np.float64)
    category_of = np.array([None, *categories], dtype=object)
    horizon_code = np.asarray(horizons, dtype=np.int64) - 1
    # A fixed order (series, resolution, market), so sums over a series add in the same order
    # whatever order the server returned the reads in.
    source_code = pd.factorize(np.asarray(sources, dtype=object), sort=True)[0]
    market_code = pd.factorize(np.asarray(markets, dtype=object), sort=True)[0]
    order = np.lexsort((market_code, of_read, horizon_code, source_code))
    of_read, probability, horizon_code = of_read[order], probability[order], horizon_code[order]
    outcome = np.asarray(outcomes, dtype=np.int64)[of_read]
    return pd.DataFrame(
        {
            "event_id": np.asarray(event_ids, dtype=object)[of_read],
            "source": np.asarray(sources, dtype=object)[order],
            "source_event_id": np.asarray(markets, dtype=object)[order],
            "horizon": np.asarray(HORIZONS, dtype=object)[horizon_code],
            "probability": probability,
            "outcome": outcome,
            "brier_score": (probability - outcome) ** 2,
            "category_id": category_of[np.asarray(category_codes, dtype=np.int64)[of_read]],
            "resolved_at": pd.to_datetime(
                np.asarray(resolved_us, dtype=np.int64)[of_read], unit="us", utc=True
            ),
        }
    )


def source_calibration_rows(
    scored: pd.DataFrame, *, now: datetime, categories: Iterable[uuid.UUID | None]
) -> list[SourceCalibrationRow]:
    """metrics.calibration_rows for each (source, horizon) present, pooled first, horizons in
    HORIZONS order; every series in one pass (metrics.series_calibration_rows)."""
    requested = list(categories)
    if scored.empty:
        return []
    sources = sorted(scored["source"].unique(), key=lambda s: (s != POOLED, s))
    source_code = pd.Categorical(scored["source"], categories=sources).codes.astype(np.int64)
    horizon_code = pd.Categorical(scored["horizon"], categories=HORIZONS).codes.astype(np.int64)
    if (horizon_code < 0).any():
        raise SourceCalibrationError(f"unknown horizons {set(scored['horizon']) - set(HORIZONS)}")
    series = source_code * len(HORIZONS) + horizon_code
    forecasts = pd.DataFrame(
        {
            "event_id": scored["event_id"].to_numpy(),
            "category_id": scored["category_id"].to_numpy(),
            "outcome": np.where(scored["outcome"].to_numpy() == 1, "YES", "NO"),
            "final_probability": scored["probability"].to_numpy(),
            "resolved_at": scored["resolved_at"],
        }
    )
    count = len(sources) * len(HORIZONS)
    per_series = series_calibration_rows(forecasts, series, count, now=now, categories=requested)
    present = np.bincount(series, minlength=count) > 0
    return [
        SourceCalibrationRow(sources[k // len(HORIZONS)], HORIZONS[k % len(HORIZONS)], row)
        for k in range(count)
        if present[k]
        for row in per_series[k]
    ]


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
    names = {str(k): v for k, v in category_names.items()}
    paired["category"] = [
        None if pd.isna(c) else names.get(str(c), str(c)) for c in paired["category_id"]
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
