"""Detectors of market flags: VOLUME_SPIKE, WASH_TRADING, INSIDER_TIMING and
SOURCE_MANIPULATION (their definitions are in `detectors`)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.trust.config import nanoseconds
from predict_pipeline.trust.explain import explanations
from predict_pipeline.trust.flags import (
    Flag,
    clock_time,
    ids_by_event,
    interval_text,
    iso_time,
    minutes_text,
    multiple_text,
    new_flag,
    prices_at,
    ratio_of,
)
from predict_pipeline.trust.measure import Measurements, is_type


def _news_reports(m: Measurements) -> pd.Series:
    """Per event: reliable NEWS signals in [start - explain_lookback, end)."""
    cfg = m.config
    sig = m.signals
    news = (
        is_type(sig, "NEWS")
        & (sig["reliability"].to_numpy() >= cfg.low_reliability)
        & (sig["t"].to_numpy() >= m.start_ns - nanoseconds(cfg.explain_lookback))
    )
    return sig.loc[news, "event_id"].value_counts(sort=False).sort_index()


def _venue_hits(m: Measurements, hit: pd.Series) -> pd.DataFrame:
    """The venues that hit, with `explained` (a rise the event's other venues share, reported
    by news_min_reports reliable NEWS) and `news_reports`; unexplained first, strongest first."""
    cfg = m.config
    v = m.venue_volume[hit.to_numpy()].copy()
    reports = _news_reports(m)
    v["news_reports"] = reports.reindex(v["event_id"]).fillna(0).astype("int64").to_numpy()
    repriced = m.move["jump_z"].reindex(v["event_id"]).to_numpy() >= cfg.repricing_jump_z
    v["explained"] = (
        (v["peers_rising"] >= cfg.volume_shared_share)
        & (v["news_reports"] >= cfg.news_min_reports)
        & repriced
    )
    return v


def _venue_evidence(row: Any) -> dict[str, Any]:
    return {
        "venue": row["source"],
        "market": row["source_event_id"],
        "baseline": row["baseline"],
        "observed": row["observed"],
        "ratio": row["ratio"],
        "z": row["z"],
        "price_move": row["dp"],
        "price_jump_z": row["jump_z"],
        "peer_ratio": row["peer_ratio"],
        "peers_rising": row["peers_rising"],
    }


def _venues_by_event(hits: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """event_id -> every venue of it that hit, in the hits' order."""
    venues: dict[str, list[dict[str, Any]]] = {}
    for row in hits.to_dict("records"):
        venues.setdefault(row["event_id"], []).append(_venue_evidence(row))
    return venues


def _event_level(m: Measurements, event_id: str) -> dict[str, Any]:
    """The event's summed volume, for the record: a venue's spike is diluted in it."""
    row = m.volume.loc[event_id]
    return {
        "observed": row["observed"],
        "baseline": row["baseline"],
        "ratio": ratio_of(row["observed"], row["baseline"]),
        "z": row["z"],
        "basis": row["basis"],
    }


def _venue_volume_ids(m: Measurements, chosen: pd.DataFrame) -> dict:
    """event_id -> the chosen venue's VOLUME signals of the interval (largest first); all the
    event's where the chosen row is its event-level volume."""
    current = m.current()
    # the chosen events' rows first: the merge below then joins a few rows, not the hour's
    current = current[
        is_type(current, "VOLUME") & current["event_id"].isin(chosen["event_id"]).to_numpy()
    ]
    at_venue = chosen["source"].notna()
    mine = current.merge(
        chosen.loc[at_venue, ["event_id", "source", "source_event_id"]],
        on=["event_id", "source", "source_event_id"],
    )
    whole = current[current["event_id"].isin(chosen.loc[~at_venue, "event_id"])]
    return ids_by_event(pd.concat([mine, whole], ignore_index=True), ["value"], False)


def _venue_text(row: Any) -> str:
    if pd.isna(row["source"]):
        return "The event's volume"
    return f"Volume on {row['source']} ({row['source_event_id']})"


def volume_spike(m: Measurements) -> list[Flag]:
    cfg = m.config
    v = m.venue_volume
    hits = _venue_hits(
        m, (v["z"] > cfg.volume_spike_z) & (v["ratio"] >= cfg.volume_spike_min_ratio)
    )
    hits = hits[~hits["explained"]]
    if hits.empty:
        return []
    hits["strength"] = np.minimum(
        hits["z"] / cfg.volume_spike_z, hits["ratio"] / cfg.volume_spike_min_ratio
    )
    hits = hits.sort_values(["event_id", "strength"], ascending=[True, False], kind="stable")
    chosen = hits.drop_duplicates("event_id")
    volume_ids = _venue_volume_ids(m, chosen)
    current = m.current()
    current = current[current["event_id"].isin(chosen["event_id"])]
    price_ids = ids_by_event(current[current["signal_type"] == "MARKET_PRICE"])
    venues = _venues_by_event(hits)
    flags = []
    for _, row in chosen.iterrows():
        event_id = row["event_id"]
        multiple = multiple_text(row["ratio"], "its trailing median", "up from nothing")
        flags.append(
            new_flag(
                m,
                event_id,
                "VOLUME_SPIKE",
                strength=row["strength"],
                description=(
                    f"{_venue_text(row)}: {row['observed']:,.0f} in {interval_text(m)} is "
                    f"{row['z']:.1f} robust SDs above its trailing median of "
                    f"{row['baseline']:,.0f}, {multiple} "
                    f"(thresholds {cfg.volume_spike_z} SDs, {cfg.volume_spike_min_ratio}x)."
                ),
                statistic="robust_z_log_volume",
                baseline=row["baseline"],
                observed=row["observed"],
                threshold={
                    "z": cfg.volume_spike_z,
                    "ratio": cfg.volume_spike_min_ratio,
                    "shared_ratio": cfg.volume_shared_ratio,
                    "shared_share": cfg.volume_shared_share,
                    "news_reports": cfg.news_min_reports,
                    "repricing_jump_z": cfg.repricing_jump_z,
                },
                related=volume_ids.get(event_id) or price_ids.get(event_id, []),
                venue=row["source"],
                market=row["source_event_id"],
                ratio=row["ratio"],
                z=row["z"],
                sigma_log=row["sigma"],
                baseline_intervals=row["n"],
                volume_basis=row["basis"],
                peer_ratio=row["peer_ratio"],
                peers_rising=row["peers_rising"],
                news_reports=row["news_reports"],
                venues=venues[event_id],
                event_level=_event_level(m, event_id),
            )
        )
    return flags


def _quiet_volume(m: Measurements) -> pd.DataFrame:
    """Per event, its strongest venue with volume far above its median and a price that barely
    moved (see WASH_TRADING), unless the rise is shared and reported."""
    cfg = m.config
    v = m.venue_volume
    quiet = (
        (v["z"] >= cfg.volume_spike_z)
        & (v["ratio"] >= cfg.wash_volume_ratio)
        & (v["dp"].abs() <= cfg.wash_max_move)
        & ~(v["jump_z"] > cfg.wash_max_move_z)
    )
    hits = _venue_hits(m, quiet)
    hits = hits[~hits["explained"]]
    hits["strength"] = np.minimum(
        hits["z"] / cfg.volume_spike_z, hits["ratio"] / cfg.wash_volume_ratio
    )
    hits = hits.sort_values(["event_id", "strength"], ascending=[True, False], kind="stable")
    venues = _venues_by_event(hits)
    chosen = hits.drop_duplicates("event_id").set_index(pd.Index(hits["event_id"].unique()))
    return chosen.assign(venues=[venues[e] for e in chosen.index])


def wash_trading(m: Measurements) -> list[Flag]:
    cfg = m.config
    quiet = _quiet_volume(m)
    rounds = m.wash
    churn = (rounds["round_trips"] >= cfg.wash_min_round_trips) & (
        rounds["share"] >= cfg.wash_min_share
    )
    hit_quiet, hit_churn = set(quiet.index), set(rounds.index[churn])
    if not hit_quiet and not hit_churn:
        return []
    volume_ids = _venue_volume_ids(m, quiet)
    trades = m.trades[m.trades["involved"] & m.trades["event_id"].isin(hit_churn)]
    accounts = trades.groupby("event_id")["account"].agg(lambda a: sorted(set(a))).to_dict()
    venues_of = trades.groupby("event_id")["source"].agg(lambda a: sorted(set(a))).to_dict()
    involved = m.trade_signals[
        m.trade_signals["involved"] & m.trade_signals["event_id"].isin(hit_churn)
    ]
    trade_ids = ids_by_event(involved.rename(columns={"signal_id": "id"}))
    flags = []
    for event_id in sorted(hit_quiet | hit_churn):
        quiet_evidence = None
        if event_id in hit_quiet:
            row = quiet.loc[event_id]
            quiet_evidence = {
                "statistic": "volume_without_price_impact",
                **_venue_evidence(row),
                "venues": row["venues"],
                "event_level": _event_level(m, event_id),
                "threshold": {
                    "z": cfg.volume_spike_z,
                    "volume_ratio": cfg.wash_volume_ratio,
                    "max_price_move": cfg.wash_max_move,
                    "max_price_jump_z": cfg.wash_max_move_z,
                },
            }
            quiet_strength = row["strength"]
        if event_id in hit_churn:
            r = rounds.loc[event_id]
            strength = min(
                r["round_trips"] / cfg.wash_min_round_trips, r["share"] / cfg.wash_min_share
            )
            if quiet_evidence is not None:
                strength = max(strength, quiet_strength)
            flags.append(
                new_flag(
                    m,
                    event_id,
                    "WASH_TRADING",
                    strength=strength,
                    description=(
                        f"{int(r['round_trips'])} round trips by {int(r['accounts'])} account(s) "
                        f"within {minutes_text(cfg.wash_window)} in {interval_text(m)} "
                        f"carry {r['share']:.0%} "
                        f"of the {r['amount']:,.1f} traded (thresholds "
                        f"{cfg.wash_min_round_trips} round trips, {cfg.wash_min_share:.0%})."
                    ),
                    statistic="account_round_trips",
                    baseline={"min_round_trips": cfg.wash_min_round_trips},
                    observed={
                        "round_trips": int(r["round_trips"]),
                        "share": r["share"],
                        "wash_amount": r["wash_amount"],
                        "amount": r["amount"],
                        "accounts": int(r["accounts"]),
                    },
                    threshold={
                        "round_trips": cfg.wash_min_round_trips,
                        "share": cfg.wash_min_share,
                    },
                    related=trade_ids.get(event_id, []),
                    round_trip_window_minutes=cfg.wash_window / timedelta(minutes=1),
                    accounts=accounts.get(event_id, []),
                    venues=venues_of.get(event_id, []),
                    volume_without_price_impact=quiet_evidence,
                )
            )
        else:
            if quiet_evidence is None:  # not churn, so the event is in hit_quiet
                raise RuntimeError(f"no quiet-volume evidence for {event_id}")
            row = quiet.loc[event_id]
            flags.append(
                new_flag(
                    m,
                    event_id,
                    "WASH_TRADING",
                    strength=quiet_strength,
                    description=(
                        f"{_venue_text(row)}: {row['observed']:,.0f} in {interval_text(m)} is "
                        f"{row['ratio']:.1f}x its trailing median of {row['baseline']:,.0f} "
                        f"(z {row['z']:.1f}) while its probability moved only "
                        f"{row['dp']:+.3f} (at most {cfg.wash_max_move}, or no more than its "
                        f"usual hourly move)."
                    ),
                    statistic="volume_without_price_impact",
                    baseline=row["baseline"],
                    observed=row["observed"],
                    threshold=quiet_evidence["threshold"],
                    related=volume_ids.get(event_id, []),
                    venue=row["source"],
                    market=row["source_event_id"],
                    volume_ratio=row["ratio"],
                    z=row["z"],
                    price_move=row["dp"],
                    price_jump_z=row["jump_z"],
                    peer_ratio=row["peer_ratio"],
                    venues=row["venues"],
                    event_level=quiet_evidence["event_level"],
                )
            )
    return flags


def insider_timing(m: Measurements) -> list[Flag]:
    cfg = m.config
    ev, move = m.events, m.move
    direction = ev["outcome_direction"]
    close = ev["close_ns"]
    toward = move["dp"] * direction
    window = nanoseconds(cfg.insider_window)
    hit = (
        (direction != 0)
        & (close >= 0)
        & (close - window < m.end_ns)
        & (close > m.start_ns)
        & (toward >= cfg.insider_min_move)
        & (move["jump_z"] >= cfg.insider_jump_z)
    )
    cand = move[hit].assign(direction=direction[hit], toward=toward[hit])
    if cand.empty:
        return []
    prices = m.prices[
        (m.prices["bucket"] == 0) & m.prices["is_market"] & m.prices["event_id"].isin(cand.index)
    ]
    prices = prices.join(cand[["p_prev", "direction", "toward"]], on="event_id")
    crossed = prices[
        (prices["value"] - prices["p_prev"]) * prices["direction"] >= 0.5 * prices["toward"]
    ]
    moved_at = crossed.groupby("event_id")["t"].min().reindex(cand.index).fillna(m.end_ns - 1)
    targets = pd.DataFrame(
        {
            "event_id": cand.index,
            "direction": cand["direction"],
            "p_ref": cand["p_prev"],
            "move": cand["toward"],
            "since": m.start_ns - nanoseconds(cfg.explain_lookback),
            "until": moved_at.astype("int64"),
        },
        index=cand.index,
    )
    explained = explanations(m, targets, ("NEWS",))
    related = ids_by_event(crossed)
    flags = []
    for event_id, row in cand.iterrows():
        if explained.at[event_id, "ids"]:
            continue
        side = "YES" if row["direction"] > 0 else "NO"
        hours = (close[event_id] - m.start_ns) / 3.6e12
        flags.append(
            new_flag(
                m,
                event_id,
                "INSIDER_TIMING",
                strength=min(
                    row["toward"] / cfg.insider_min_move, row["jump_z"] / cfg.insider_jump_z
                ),
                description=(
                    f"The probability moved {row['p_prev']:.3f} -> {row['p_now']:.3f} toward the "
                    f"eventual {side} in {interval_text(m)}, {hours:.1f} h before close, a "
                    f"{row['jump_z']:.1f}-sigma move (threshold {cfg.insider_jump_z}, at least "
                    f"{cfg.insider_min_move}) "
                    f"with no news signal before it."
                ),
                statistic="robust_z_logit_move",
                baseline={"median_move": row["median"], "sigma": row["sigma"]},
                observed={
                    "p_before": row["p_prev"],
                    "p_after": row["p_now"],
                    "move_toward_outcome": row["toward"],
                    "z": row["jump_z"],
                },
                threshold={"min_move": cfg.insider_min_move, "z": cfg.insider_jump_z},
                related=related.get(event_id, []),
                outcome=side,
                close_at=iso_time(int(close[event_id])),
                moved_at=iso_time(int(moved_at[event_id])),
                news_searched_from=iso_time(int(targets.at[event_id, "since"])),
            )
        )
    return flags


def source_manipulation(m: Measurements) -> list[Flag]:
    cfg = m.config
    outliers = _source_outliers(m)
    takeovers = _source_takeovers(m)
    flags = []
    for event_id in sorted(set(outliers) | set(takeovers)):
        takeover = takeovers.get(event_id)
        if event_id in outliers:
            o = outliers[event_id]
            strength = o["gap"] / cfg.source_outlier_gap
            if takeover is not None:
                strength = max(strength, takeover["share"] / cfg.source_dominance_share)
            flags.append(
                new_flag(
                    m,
                    event_id,
                    "SOURCE_MANIPULATION",
                    strength=strength,
                    description=(
                        f"{o['source']} priced the event at {o['price']:.3f}, at least "
                        f"{o['gap']:.3f} from every other source (which agree within "
                        f"{o['spread']:.3f}), for {o['minutes']:.0f} minutes up to "
                        f"{clock_time(o['last'])} UTC (thresholds {cfg.source_outlier_gap}, "
                        f"{minutes_text(cfg.source_outlier_duration)})."
                    ),
                    statistic="source_gap_from_all_others",
                    baseline={"others": o["others"], "others_spread": o["spread"]},
                    observed={
                        "source": o["source"],
                        "price": o["price"],
                        "gap": o["gap"],
                        "minutes": o["minutes"],
                    },
                    threshold={
                        "gap": cfg.source_outlier_gap,
                        "minutes": cfg.source_outlier_duration / timedelta(minutes=1),
                    },
                    related=o["ids"],
                    outlier_since=iso_time(o["since"]),
                    takeover=None
                    if takeover is None
                    else {k: v for k, v in takeover.items() if k != "ids"},
                )
            )
        else:
            t = takeovers[event_id]  # not an outlier, so it is here
            flood = multiple_text(
                t["flood"], "its usual weight per interval", "where it had no weight before"
            )
            flood = f"with {flood}" if math.isfinite(t["flood"]) else flood
            flags.append(
                new_flag(
                    m,
                    event_id,
                    "SOURCE_MANIPULATION",
                    strength=min(
                        t["share"] / cfg.source_dominance_share,
                        t["rise"] / cfg.source_dominance_rise,
                        t["flood"] / cfg.source_flood_ratio,
                    ),
                    description=(
                        f"{t['source']} carries {t['share']:.0%} of the weight of {t['sources']} "
                        f"sources in {interval_text(m)}, up from {t['trailing_share']:.0%} over "
                        f"the "
                        f"trailing window, "
                        f"{flood} "
                        f"(thresholds {cfg.source_dominance_share:.0%}, rise "
                        f"{cfg.source_dominance_rise:.0%}, {cfg.source_flood_ratio}x)."
                    ),
                    statistic="source_weight_share",
                    baseline=t["trailing_share"],
                    observed=t["share"],
                    threshold={
                        "share": cfg.source_dominance_share,
                        "rise": cfg.source_dominance_rise,
                        "flood": cfg.source_flood_ratio,
                    },
                    flood=t["flood"],
                    related=t["ids"],
                    source=t["source"],
                    sources=t["sources"],
                )
            )
    return flags


def _source_outliers(m: Measurements) -> dict[str, dict[str, Any]]:
    cfg = m.config
    gap_min = cfg.source_outlier_gap
    live = m.prices[m.prices["bucket"] == 0][["event_id", "source"]].drop_duplicates()
    now = m.source_probability[0].dropna().rename("p").reset_index()
    now = now.merge(live, on=["event_id", "source"])
    now = now[now.groupby("event_id")["source"].transform("size") >= 3]
    if now.empty:
        return {}
    now = now.sort_values(["event_id", "p", "source"], kind="stable").reset_index(drop=True)
    g = now.groupby("event_id")["p"]
    lo, hi = g.transform("min"), g.transform("max")
    prev, nxt = g.shift(1), g.shift(-1)
    pos, size = g.cumcount(), g.transform("size")
    second_lo = now["p"].where(pos == 1).groupby(now["event_id"]).transform("max")
    second_hi = now["p"].where(pos == size - 2).groupby(now["event_id"]).transform("max")
    top = nxt.isna() & (now["p"] - prev >= gap_min) & (second_hi - lo < gap_min)
    bottom = prev.isna() & (nxt - now["p"] >= gap_min) & (hi - second_lo < gap_min)
    cand = now[top | bottom][["event_id", "source"]]
    if cand.empty:
        return {}
    since = m.start_ns - nanoseconds(cfg.source_outlier_lookback)
    own = m.prices[m.prices["t"] >= since].merge(cand, on=["event_id", "source"])
    own = own.sort_values(["event_id", "t", "id"], kind="stable").reset_index(drop=True)
    got = prices_at(m, own[["event_id", "t"]], allow_exact=True)
    got = got.merge(
        own[["source"]].rename(columns={"source": "own"}), left_on="query", right_index=True
    )
    got = got[got["source"] != got["own"]]
    others = got.groupby(["query", "source"])["value"].mean().rename("p").reset_index()
    others = others.join(own["value"].rename("v"), on="query")
    others["gap"] = (others["p"] - others["v"]).abs()
    per = others.groupby("query").agg(
        gap=("gap", "min"), lo=("p", "min"), hi=("p", "max"), n=("p", "size")
    )
    per = per.reindex(own.index)
    own["outlier"] = (
        (per["gap"] >= gap_min) & (per["hi"] - per["lo"] < gap_min) & (per["n"] >= 2)
    ).to_numpy()
    others = others.set_index("query")
    found = {}
    for (event_id, source), rows in own.groupby(["event_id", "source"], sort=True):
        flags = rows["outlier"].to_numpy()
        if not flags[-1]:
            continue
        breaks = np.nonzero(~flags)[0]
        run = rows.iloc[breaks[-1] + 1 :] if len(breaks) else rows
        start, last = int(run["t"].iat[0]), int(run["t"].iat[-1])
        if last - start < nanoseconds(cfg.source_outlier_duration):
            continue
        q = int(run.index[-1])
        other = others.loc[[q]]
        found[event_id] = {
            "source": source,
            "price": float(run["value"].iat[-1]),
            "gap": float(per.at[q, "gap"]),
            "spread": float(per.at[q, "hi"] - per.at[q, "lo"]),
            "others": dict(zip(other["source"], other["p"].astype(float), strict=True)),
            "minutes": (last - start) / 6e10,
            "since": start,
            "last": last,
            "ids": list(run["id"][::-1]),
        }
    return found


def _source_takeovers(m: Measurements) -> dict[str, dict[str, Any]]:
    cfg = m.config
    sig = m.signals
    n_src = int(sig["src"].max()) + 1 if len(sig) else 1
    key = sig["ev"].to_numpy() * n_src + sig["src"].to_numpy()
    w = sig["w"].to_numpy()
    now = sig["bucket"].to_numpy() == 0
    size = len(m.event_ids) * n_src
    share_now = np.bincount(key[now], weights=w[now], minlength=size).reshape(-1, n_src)
    share_before = np.bincount(key[~now], weights=w[~now], minlength=size).reshape(-1, n_src)
    present = np.bincount(key[now], minlength=size).reshape(-1, n_src) > 0
    total_now = share_now.sum(axis=1)
    total_before = share_before.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share_now = share_now / total_now[:, None]
        share_before = share_before / total_before[:, None]
    top = np.argmax(np.where(present, share_now, -1.0), axis=1)
    rows = np.arange(len(top))
    share = share_now[rows, top]
    trailing = share_before[rows, top]
    # weight of the dominant source now vs its mean weight per trailing interval
    weight_now = share * total_now
    weight_before = share_before[rows, top] * total_before / (len(m.buckets) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        flood = weight_now / weight_before
    hit = (
        (present.sum(axis=1) >= 2)
        & (share >= cfg.source_dominance_share)
        & (share - trailing >= cfg.source_dominance_rise)
        & (flood >= cfg.source_flood_ratio)
    )
    if not hit.any():
        return {}
    names = sig.drop_duplicates("src").set_index("src")["source"]
    chosen = pd.DataFrame(
        {
            "ev": rows[hit],
            "src": top[hit],
            "share": share[hit],
            "trailing_share": trailing[hit],
            "sources": present.sum(axis=1)[hit],
            "flood": flood[hit],
        }
    )
    mine = sig[now].merge(chosen[["ev", "src"]], on=["ev", "src"])
    ids = ids_by_event(mine, ["w"], False)
    found = {}
    for row in chosen.itertuples(index=False):
        event_id = m.event_ids[row.ev]
        found[event_id] = {
            "source": names[row.src],
            "share": float(row.share),
            "trailing_share": float(row.trailing_share),
            "rise": float(row.share - row.trailing_share),
            "flood": float(row.flood),
            "sources": int(row.sources),
            "ids": ids.get(event_id, []),
        }
    return found
