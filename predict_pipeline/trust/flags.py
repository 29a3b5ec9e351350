"""Flags: the Flag record, its evidence and wording, and the price look-ups the detectors share
(each market's last price at a moment, the MARKET_PRICE consensus of those prices).

Severity grows with strength = the weakest of a detector's statistic / threshold ratios: below 2
WARNING, below 4 ALERT, else CRITICAL. INFO is left for flags reviewers raise by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.trust.config import PROBABILITY_CLIP
from predict_pipeline.trust.measure import Measurements


@dataclass(frozen=True, slots=True)
class Flag:
    """One manipulation flag, ready for prediction_trust_flags."""

    event_id: str
    flag_type: str
    severity: str
    description: str
    evidence: dict[str, Any]
    related_signals: list[str]
    dedup_key: str


def iso_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def clock_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _severity(strength: float) -> str:
    if strength < 2:
        return "WARNING"
    return "ALERT" if strength < 4 else "CRITICAL"


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN to None, floats to 6 decimals."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    return value


def new_flag(
    m: Measurements,
    event_id: str,
    flag_type: str,
    *,
    strength: float,
    description: str,
    statistic: str,
    baseline: Any,
    observed: Any,
    threshold: Any,
    related: list[str],
    **extra: Any,
) -> Flag:
    ids = list(dict.fromkeys(related))
    evidence = {
        "window_start": iso_time(m.start_ns),
        "window_end": iso_time(m.end_ns),
        "baseline_start": iso_time(m.window_start_ns),
        "baseline_end": iso_time(m.start_ns),
        "statistic": statistic,
        "baseline": baseline,
        "observed": observed,
        "threshold": threshold,
        **extra,
        "related_signal_count": len(ids),
    }
    return Flag(
        event_id=event_id,
        flag_type=flag_type,
        severity=_severity(strength),
        description=description,
        evidence=_plain(evidence),
        related_signals=ids[: m.config.max_related_signals],
        dedup_key=f"{event_id}|{flag_type}|{m.interval_start.isoformat()}",
    )


def minutes_text(span: timedelta) -> str:
    return f"{span / timedelta(minutes=1):g} min"


def multiple_text(ratio: float, of: str, unbounded: str) -> str:
    """'4.2x <of>', or the `unbounded` wording when the base was zero."""
    return f"{ratio:.1f}x {of}" if math.isfinite(ratio) else unbounded


def ratio_of(observed: float, baseline: float) -> float:
    return observed / baseline if baseline > 0 else math.inf


def interval_text(m: Measurements) -> str:
    return f"{clock_time(m.start_ns)}–{clock_time(m.end_ns)[-5:]} UTC"


def ids_by_event(frame: pd.DataFrame, by: list[str] | None = None, ascending: Any = True) -> dict:
    """event_id -> signal ids of the frame, in (by, t, id) order."""
    order = [*(by or []), "t", "id"]
    asc = [*(ascending if isinstance(ascending, list) else [ascending] * len(by or [])), True, True]
    ordered = frame.sort_values(order, ascending=asc, kind="stable")
    return lists_by_key(ordered["event_id"].to_numpy(), ordered["id"].to_numpy())


def lists_by_key(keys: np.ndarray, values: np.ndarray) -> dict:
    """key -> its values in row order, keys in order of first appearance (as a groupby with
    sort=False and agg(list) gives them, without a pandas group per key)."""
    out: dict = {}
    for key, value in zip(keys.tolist(), values.tolist(), strict=True):
        out.setdefault(key, []).append(value)
    return out


def logit(p: Any) -> Any:
    p = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return np.log(p / (1 - p))


def prices_at(m: Measurements, queries: pd.DataFrame, *, allow_exact: bool) -> pd.DataFrame:
    """Each market's last price at (or, allow_exact=False, before) each query's time t.

    queries: event_id and t, indexed by a query id. Returns query, source, market, is_market,
    value, mw (markets of every probability type; is_market marks MARKET_PRICE ones).
    """
    markets = m.prices.drop_duplicates(["event_id", "market"])[
        ["event_id", "source", "market", "is_market", "mw"]
    ]
    q = queries[["event_id", "t"]].rename_axis("query").reset_index()
    q = q.merge(markets, on="event_id").sort_values(["t", "query", "market"], kind="stable")
    right = m.prices[["t", "event_id", "market", "value"]].sort_values("t", kind="stable")
    got = pd.merge_asof(
        q, right, on="t", by=["event_id", "market"], allow_exact_matches=allow_exact
    )
    return got.dropna(subset=["value"])


def market_consensus(got: pd.DataFrame, index: pd.Index) -> pd.Series:
    """The MARKET_PRICE consensus of each query from prices_at rows."""
    got = got[got["is_market"]]
    weighted = (got["value"] * got["mw"]).groupby(got["query"]).sum()
    return (weighted / got.groupby("query")["mw"].sum()).reindex(index)
