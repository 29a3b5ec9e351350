"""Detectors of narrative flags: COORDINATED_ACTION, BOT_SENTIMENT and NARRATIVE_PLANT (their
definitions are in `detectors`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.trust.config import SENTIMENT_TYPES, nanoseconds
from predict_pipeline.trust.explain import explanations
from predict_pipeline.trust.flags import (
    Flag,
    clock_time,
    ids_by_event,
    interval_text,
    iso_time,
    logit,
    market_consensus,
    minutes_text,
    new_flag,
    prices_at,
)
from predict_pipeline.trust.measure import Measurements, is_type


def coordinated_action(m: Measurements) -> list[Flag]:
    cfg = m.config
    n = m.narratives
    shared = set(
        n.loc[(n["signal_type"] == "NEWS") & (n["reliability"] >= cfg.low_reliability), "cluster"]
    )
    posts = n[(n["signal_type"] == "SOCIAL") & ~n["cluster"].isin(shared)]
    sizes = posts.groupby("cluster").size()
    posts = posts[posts["cluster"].isin(sizes.index[sizes >= cfg.coordination_min_signals])]
    span = nanoseconds(cfg.coordination_window)
    best: dict[str, dict[str, Any]] = {}
    for _, rows in posts.groupby("cluster", sort=False):
        t = rows["t"].to_numpy()
        ends = np.searchsorted(t, t + span, side="right")
        for i in np.nonzero(ends - np.arange(len(t)) >= cfg.coordination_min_signals)[0]:
            window = rows.iloc[i : ends[i]]
            origins = window["origin"].nunique()
            if origins < cfg.coordination_min_origins or t[ends[i] - 1] < m.start_ns:
                continue
            found = {"rows": window, "origins": origins}
            event_id = window["event_id"].iat[0]
            prior = best.get(event_id)
            if prior is None or (len(window), origins) > (len(prior["rows"]), prior["origins"]):
                best[event_id] = found
    flags = []
    for event_id in sorted(best):
        rows, origins = best[event_id]["rows"], best[event_id]["origins"]
        count = len(rows)
        first, last = int(rows["t"].iat[0]), int(rows["t"].iat[-1])
        flags.append(
            new_flag(
                m,
                event_id,
                "COORDINATED_ACTION",
                strength=min(
                    count / cfg.coordination_min_signals, origins / cfg.coordination_min_origins
                ),
                description=(
                    f"{count} near-identical SOCIAL posts from {origins} distinct origins within "
                    f"{(last - first) / 6e10:.1f} minutes "
                    f"({clock_time(first)}–{clock_time(last)[-5:]} "
                    f"UTC; "
                    f"thresholds {cfg.coordination_min_signals} posts, "
                    f"{cfg.coordination_min_origins} origins, "
                    f"{minutes_text(cfg.coordination_window)})."
                ),
                statistic="near_duplicate_posts_in_window",
                baseline={
                    "min_signals": cfg.coordination_min_signals,
                    "min_origins": cfg.coordination_min_origins,
                },
                observed={"signals": count, "origins": origins},
                threshold={
                    "signals": cfg.coordination_min_signals,
                    "origins": cfg.coordination_min_origins,
                    "similarity": cfg.narrative_similarity,
                },
                related=list(rows["id"]),
                burst_start=iso_time(first),
                burst_end=iso_time(last),
                origins=sorted(rows["origin"].unique()),
                narrative_example=rows["text"].iat[0][:200],
            )
        )
    return flags


def bot_sentiment(m: Measurements) -> list[Flag]:
    cfg = m.config
    b = m.burst
    cand = b[(b["z"] >= cfg.burst_z) & (b["count"] >= cfg.burst_min_signals)]
    if cand.empty:
        return []
    current = m.current()
    posts = current[
        current["signal_type"].isin(SENTIMENT_TYPES) & current["event_id"].isin(cand.index)
    ]
    duplicate = set(m.narratives.loc[~m.narratives["first"], "id"])
    botlike = (posts["reliability"] < cfg.low_reliability) | posts["id"].isin(duplicate)
    weight = posts.groupby("event_id")["weight"].sum()
    share = posts["weight"].where(botlike, 0.0).groupby(posts["event_id"]).sum() / weight.where(
        weight > 0
    )
    lean = (posts["weight"] * posts["value"]).groupby(posts["event_id"]).sum()
    direction = np.sign(lean).astype("int64")
    cand = cand.assign(share=share, direction=direction)
    cand = cand[(cand["share"] >= cfg.bot_min_share) & (cand["direction"] != 0)]
    if cand.empty:
        return []
    move = m.move.reindex(cand.index)
    # support: a move its way that is both sizeable and unusual for this market
    priced = ((move["dp"] * cand["direction"]).fillna(0.0) >= cfg.support_min_move) & ~(
        move["jump_z"] < cfg.support_jump_z
    )
    targets = pd.DataFrame(
        {
            "event_id": cand.index,
            "direction": cand["direction"],
            "p_ref": move["p_prev"].fillna(0.5),
            "move": 2 * cfg.support_min_move,
            "since": m.start_ns - nanoseconds(cfg.explain_lookback),
            "until": m.end_ns - 1,
        },
        index=cand.index,
    )
    support = explanations(m, targets, ("NEWS",))["reliability"] >= cfg.low_reliability
    cand = cand[~priced & ~support]
    related = ids_by_event(posts[botlike & posts["event_id"].isin(cand.index)])
    flags = []
    for event_id, row in cand.iterrows():
        way = "positive" if row["direction"] > 0 else "negative"
        flags.append(
            new_flag(
                m,
                event_id,
                "BOT_SENTIMENT",
                strength=min(
                    row["z"] / cfg.burst_z,
                    row["count"] / cfg.burst_min_signals,
                    row["share"] / cfg.bot_min_share,
                ),
                description=(
                    f"{int(row['count'])} sentiment posts in {interval_text(m)} against a trailing "
                    f"median of "
                    f"{row['baseline']:.1f} per interval (burst z {row['z']:.1f}, threshold "
                    f"{cfg.burst_z}); {row['share']:.0%} of their weight is low-reliability or "
                    f"duplicate, {way}, with no price move or news behind it."
                ),
                statistic="anscombe_burst_z",
                baseline=row["baseline"],
                observed={"signals": row["count"], "z": row["z"], "bot_share": row["share"]},
                threshold={
                    "z": cfg.burst_z,
                    "min_signals": cfg.burst_min_signals,
                    "bot_share": cfg.bot_min_share,
                },
                related=related.get(event_id, []),
                direction=way,
                price_move=move.at[event_id, "dp"],
            )
        )
    return flags


def narrative_plant(m: Measurements) -> list[Flag]:
    cfg = m.config
    sig = m.signals
    news = sig[
        is_type(sig, "NEWS")
        & (sig["t"].to_numpy() >= m.start_ns - nanoseconds(cfg.plant_lookback))
        & (sig["reliability"].to_numpy() < cfg.low_reliability)
        & (np.abs(sig["value"].to_numpy()) >= cfg.plant_min_sentiment)
    ]
    move = m.move
    news = news[news["event_id"].isin(move.index[move["n"] >= cfg.min_baseline_intervals])]
    if news.empty:
        return []
    news = news.set_index(pd.Index(news["id"].to_numpy(), name="news"))
    before = market_consensus(prices_at(m, news[["event_id", "t"]], allow_exact=False), news.index)
    direction = np.sign(news["value"]).astype("int64")
    now = move["p_now"].reindex(news["event_id"]).to_numpy()
    at_start = move["p_prev"].reindex(news["event_id"]).to_numpy()
    sigma = move["sigma"].reindex(news["event_id"]).to_numpy()
    gain = (now - before) * direction
    z = np.abs(logit(now) - logit(before.to_numpy())) / sigma
    earlier = (news["t"] < m.start_ns) & ((at_start - before) * direction >= cfg.plant_min_move)
    cand = news.assign(before=before, now=now, gain=gain, z=z, direction=direction)
    cand = cand[(cand["gain"] >= cfg.plant_min_move) & (cand["z"] >= cfg.plant_jump_z) & ~earlier]
    if cand.empty:
        return []
    targets = pd.DataFrame(
        {
            "event_id": cand["event_id"],
            "direction": cand["direction"],
            "p_ref": cand["before"],
            "move": cand["gain"],
            "since": cand["t"] - nanoseconds(cfg.corroboration_window),
            "until": m.end_ns - 1,
            "exclude_origin": cand["origin"],
        },
        index=cand.index,
    )
    corroborated = explanations(m, targets, ("NEWS",))["ids"].map(len) > 0
    cand = cand[~corroborated.to_numpy()]
    cand = cand.sort_values(
        ["event_id", "gain", "t", "id"], ascending=[True, False, True, True], kind="stable"
    ).drop_duplicates("event_id")
    prices = m.prices[m.prices["is_market"] & m.prices["event_id"].isin(cand["event_id"])]
    prices = prices.join(cand.set_index("event_id")["t"].rename("news_t"), on="event_id")
    after = ids_by_event(prices[prices["t"] >= prices["news_t"]])
    flags = []
    for _, row in cand.iterrows():
        flags.append(
            new_flag(
                m,
                row["event_id"],
                "NARRATIVE_PLANT",
                strength=min(row["gain"] / cfg.plant_min_move, row["z"] / cfg.plant_jump_z),
                description=(
                    f"A NEWS signal from {row['origin']} (reliability {row['reliability']:.2f}, "
                    f"sentiment {row['value']:+.2f}) at {clock_time(int(row['t']))} UTC was "
                    f"followed "
                    f"by a move {row['before']:.3f} -> {row['now']:.3f} its way by "
                    f"{clock_time(m.end_ns)} UTC "
                    f"(z {row['z']:.1f}, threshold {cfg.plant_jump_z}) that no other source "
                    f"corroborates."
                ),
                statistic="robust_z_logit_move_after_news",
                baseline={
                    "p_before_news": row["before"],
                    "sigma": move.at[row["event_id"], "sigma"],
                },
                observed={"p_at_interval_end": row["now"], "move": row["gain"], "z": row["z"]},
                threshold={
                    "min_move": cfg.plant_min_move,
                    "z": cfg.plant_jump_z,
                    "max_reliability": cfg.low_reliability,
                },
                related=[row["id"], *after.get(row["event_id"], [])],
                news_signal=row["id"],
                news_at=iso_time(int(row["t"])),
                news_origin=row["origin"],
                corroboration_searched_from=iso_time(
                    int(row["t"] - nanoseconds(cfg.corroboration_window))
                ),
            )
        )
    return flags
