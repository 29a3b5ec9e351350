"""Stage 4: trust scores and manipulation flags.

`compute_trust` scores one interval for every event with signals in it (or an ACTIVE event with
a snapshot in it): pure pandas over frames the caller loads, no database and no Dagster. The
formulas are documented in `measure` (series and statistics), `score` (components, penalties,
risk) and `detectors` (flags).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from predict_pipeline.trust.config import FLAG_TYPES, SCORE_COLUMNS, TrustConfig, TrustInputError
from predict_pipeline.trust.detectors import Flag, detect_all
from predict_pipeline.trust.measure import measure
from predict_pipeline.trust.score import raw_components, score

__all__ = [
    "FLAG_TYPES",
    "SCORE_COLUMNS",
    "Flag",
    "TrustConfig",
    "TrustInputError",
    "TrustResult",
    "compute_trust",
]


@dataclass(frozen=True, slots=True)
class TrustResult:
    scores: pd.DataFrame  # SCORE_COLUMNS, one row per scored event, sorted by event_id
    flags: list[Flag]  # sorted by (event_id, flag_type); at most one per event and type


def compute_trust(
    signals: pd.DataFrame,
    snapshots: pd.DataFrame,
    events: pd.DataFrame,
    *,
    interval_start: datetime,
    interval_end: datetime,
    config: TrustConfig | None = None,
) -> TrustResult:
    """Trust scores and manipulation flags of [interval_start, interval_end) for all events."""
    m = measure(
        signals,
        snapshots,
        events,
        interval_start=interval_start,
        interval_end=interval_end,
        config=config or TrustConfig(),
    )
    flags = detect_all(m)
    raised = pd.DataFrame(
        [(f.event_id, f.flag_type, f.severity) for f in flags],
        columns=["event_id", "flag_type", "severity"],
    )
    return TrustResult(scores=score(raw_components(m), raised), flags=flags)
