"""Trust checked against accuracy: the pooled forecast at CLOSE scored by the event's trust band
at close (trust = the trust_score of the event's last snapshot at or before close).

Bands: low < 0.5 ≤ fair < 0.7 ≤ good < 0.85 ≤ high. The band is assigned in SQL over every
pooled CLOSE score at once; events without a snapshot at or before close fall in no band and are
counted as `untrusted_events`. Per band: events, Brier, a 95 % bootstrap interval of the Brier
(BOOTSTRAP_DRAWS resamples of the band's events, a fixed seed so a rerun gives the same bands),
and accuracy at 50 % (as metrics.py defines it) with its 95 % Wilson interval.

`band_order_violations`: each pair of neighbouring bands, both with at least MIN_BAND_EVENTS
events, where the higher band's Brier is not lower than the lower band's. Twenty events keep one
lucky or unlucky market from raising a warning while still letting a young platform be checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg

from predict_pipeline.calibration.diagram import wilson_interval
from predict_pipeline.calibration.metrics import EDGE_TOLERANCE
from predict_pipeline.calibration.source_calibration import CLOSE_AND_TRUST_SQL

# (band, lower edge inclusive): each band runs up to the next one's edge.
TRUST_BANDS = (("< 0.5", 0.0), ("0.5–0.7", 0.5), ("0.7–0.85", 0.7), ("≥ 0.85", 0.85))
MIN_BAND_EVENTS = 20
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 20261205

_POOLED_AT_CLOSE_SQL = f"""
WITH {CLOSE_AND_TRUST_SQL}
SELECT v.event_id, v.probability, v.outcome, v.brier_score,
       CASE WHEN t.trust IS NULL THEN NULL
            WHEN t.trust < 0.5 THEN 0 WHEN t.trust < 0.7 THEN 1
            WHEN t.trust < 0.85 THEN 2 ELSE 3 END AS band
FROM v_market_scores v
JOIN closes c ON c.event_id = v.event_id
LEFT JOIN trust_at_close t ON t.event_id = v.event_id
WHERE v.source = 'pooled' AND v.horizon = 'CLOSE'
"""  # noqa: S608 (constant CTE text, no input)


@dataclass(frozen=True, slots=True)
class TrustBand:
    band: str
    events: int
    brier_score: float | None
    brier_low: float | None
    brier_high: float | None
    accuracy_at_50: float | None
    accuracy_low: float | None
    accuracy_high: float | None


@dataclass(frozen=True, slots=True)
class TrustBandReport:
    bands: list[TrustBand]
    untrusted_events: int


def pooled_at_close_by_band(conn: psycopg.Connection) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(_POOLED_AT_CLOSE_SQL)
        columns = [d.name for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def trust_band_report(scored: pd.DataFrame) -> TrustBandReport:
    """The four bands in order (empty ones with 0 events and None scores)."""
    if scored.empty:
        return TrustBandReport(
            [_band(name, np.array([]), np.array([])) for name, _ in TRUST_BANDS], 0
        )
    in_band = scored[scored["band"].notna()]
    bands = []
    for index, (name, _) in enumerate(TRUST_BANDS):
        rows = in_band[in_band["band"] == index]
        bands.append(
            _band(
                name,
                rows["brier_score"].to_numpy(dtype=float),
                _right_side(rows["probability"].to_numpy(dtype=float), rows["outcome"].to_numpy()),
            )
        )
    return TrustBandReport(bands, int(scored["band"].isna().sum()))


def band_order_violations(report: TrustBandReport) -> list[tuple[TrustBand, TrustBand]]:
    """(lower, higher) neighbours, both with ≥ MIN_BAND_EVENTS, where higher does not score a
    lower Brier."""
    bands = report.bands
    return [
        (lower, higher)
        for lower, higher in zip(bands, bands[1:], strict=False)
        if lower.events >= MIN_BAND_EVENTS
        and higher.events >= MIN_BAND_EVENTS
        and higher.brier_score is not None
        and lower.brier_score is not None
        and higher.brier_score >= lower.brier_score
    ]


def _right_side(p: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """1.0 / 0.0 per called prediction (p ≠ 0.5), NaN for an uncalled one (metrics.py's
    accuracy_at_50)."""
    called = np.abs(p - 0.5) > EDGE_TOLERANCE
    right = ((p > 0.5) == (outcome.astype(int) == 1)).astype(float)
    return np.where(called, right, np.nan)


def _band(name: str, brier: np.ndarray, right: np.ndarray) -> TrustBand:
    n = len(brier)
    if n == 0:
        return TrustBand(name, 0, None, None, None, None, None, None)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = brier[rng.integers(0, n, size=(BOOTSTRAP_DRAWS, n))].mean(axis=1)
    low, high = np.quantile(draws, [0.025, 0.975])
    called = right[~np.isnan(right)]
    accuracy = acc_low = acc_high = None
    if len(called):
        accuracy = float(called.mean())
        acc_low, acc_high = (float(v) for v in wilson_interval(called.sum(), len(called)))
    return TrustBand(
        name, n, float(brier.mean()), float(low), float(high), accuracy, acc_low, acc_high
    )
