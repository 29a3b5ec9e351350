"""Explanations of price moves: the NEWS and EXPERT signals that account for a move
(temporal_consistency's e; INSIDER_TIMING, BOT_SENTIMENT and NARRATIVE_PLANT search them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from predict_pipeline.trust.config import nanoseconds
from predict_pipeline.trust.flags import lists_by_key
from predict_pipeline.trust.measure import Measurements, is_type


def explanations(
    m: Measurements, targets: pd.DataFrame, types: tuple[str, ...] = ("NEWS", "EXPERT")
) -> pd.DataFrame:
    """For each target row, the signals of `types` (NEWS, EXPERT) that explain a move.

    targets: event_id, direction (+1/-1), p_ref (the price before the move), move (>= 0, in
    probability), since and until (ns, inclusive), and optionally exclude_origin. A NEWS signal
    explains when its sentiment sign is the direction and |value| >= news_min_sentiment; an
    EXPERT forecast when it lies at least half the move beyond p_ref on the move's side.
    Returns, on the targets' index, `reliability` (the best, 0 when none) and `ids`.
    """
    cfg = m.config
    sig = m.signals
    wanted = m.event_ids.get_indexer(pd.unique(targets["event_id"].to_numpy()))
    pool = sig[
        is_type(sig, *types)
        & sig["value"].notna().to_numpy()
        & (sig["t"].to_numpy() >= (targets["since"].min() if len(targets) else 0))
        & np.isin(sig["ev"].to_numpy(), wanted[wanted >= 0])
    ]
    result = pd.DataFrame(
        {"reliability": 0.0, "ids": [[] for _ in range(len(targets))]}, index=targets.index
    )
    if pool.empty or targets.empty:
        return result
    joined = (
        targets.rename_axis("_target")
        .reset_index()
        .merge(
            pool[["id", "event_id", "signal_type", "value", "reliability", "t", "origin"]],
            on="event_id",
        )
    )
    in_time = (joined["t"] >= joined["since"]) & (joined["t"] <= joined["until"])
    news = (
        (joined["signal_type"] == "NEWS")
        & (np.sign(joined["value"]) == joined["direction"])
        & (joined["value"].abs() >= cfg.news_min_sentiment)
    )
    expert = (joined["signal_type"] == "EXPERT") & (
        (joined["value"] - joined["p_ref"]) * joined["direction"] >= 0.5 * joined["move"]
    )
    keep = in_time & (news | expert)
    if "exclude_origin" in joined.columns:
        keep &= joined["origin"] != joined["exclude_origin"]
    found = joined[keep].sort_values(["_target", "t", "id"], kind="stable")
    best = found.groupby("_target")["reliability"].max()
    ids = lists_by_key(found["_target"].to_numpy(), found["id"].to_numpy())
    return pd.DataFrame(
        {
            "reliability": best.reindex(targets.index).fillna(0.0).to_numpy(),
            "ids": [ids.get(i, []) for i in targets.index],
        },
        index=targets.index,
    )


def interval_explanations(m: Measurements) -> pd.DataFrame:
    """Explanations of each scored event's interval move (temporal_consistency's e)."""
    mv = m.move.dropna(subset=["dp"])
    mv = mv[mv["dp"] != 0]
    lookback = nanoseconds(m.config.explain_lookback)
    targets = pd.DataFrame(
        {
            "event_id": mv.index,
            "direction": np.sign(mv["dp"]).astype("int64"),
            "p_ref": mv["p_prev"],
            "move": mv["dp"].abs(),
            "since": m.start_ns - lookback,
            "until": m.end_ns - 1,
        },
        index=mv.index,
    )
    return explanations(m, targets)
