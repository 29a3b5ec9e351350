"""Manipulation-flag detectors: one function per flag type, each over all scored events at once.

Every detector reads the interval's shared measurements (`measure.measure`: the series, robust
statistics and origins are defined there) and raises at most one Flag per event and interval;
`dedup_key` = "event_id|flag_type|interval_start" makes re-running an interval idempotent. A
"matching" NEWS signal has the sign of the move (positive sentiment = toward YES) and |value| >=
news_min_sentiment; all thresholds are TrustConfig fields.

- VOLUME_SPIKE: z_v, the robust z of ln(1 + interval volume) against the trailing intervals,
  exceeds volume_spike_z (3.5), and the volume is at least volume_spike_min_ratio (3) times the
  trailing median: a spike is a multiple, not the wobble of a very steady market.
- WASH_TRADING: (a) volume without price impact: z_v >= volume_spike_z and the volume is >=
  wash_volume_ratio (5) times the trailing median while the probability barely moved (|p_0 -
  p_-1| <= wash_max_move, or a move no larger than usual: jump z <= wash_max_move_z); or (b)
  account round trips, where trades name the account (Manifold bets: `userId`, `outcome`, signed
  `amount`; redemptions ignored; a bet's price and volume signals are one trade): a trade in the
  opposite direction (YES vs NO, buy vs sell) to the same account's previous trade within
  wash_window is a round trip; at least wash_min_round_trips of them in the interval, carrying
  >= wash_min_share of its account-level amount. One flag; (b)'s evidence leads when both hold.
- INSIDER_TIMING: the event resolved YES or NO (outcome, or status RESOLVED_YES/NO); the
  interval overlaps [close - insider_window, close), close = the earlier of resolved_at and
  resolution_date; the interval's move toward the outcome is >= insider_min_move with jump z >=
  insider_jump_z; and no matching NEWS signal came between interval_start - explain_lookback and
  the move (the first price of the interval past half of it). Only known once the event
  resolves: re-run the intervals before close then.
- COORDINATED_ACTION: SOCIAL posts whose narratives are near-duplicates (Jaccard of word
  shingles >= narrative_similarity, joined transitively): >= coordination_min_signals of them
  within coordination_window from >= coordination_min_origins distinct origins (the source, or
  source/account when raw_data names the account), the window ending inside the interval. A
  cluster that repeats a reliable NEWS headline is people sharing news, not coordination.
- BOT_SENTIMENT: a burst, z_b = (A(c_0) - med A(c_k)) / max(1, 1.4826 MAD) >= burst_z with
  A(c) = 2 sqrt(c + 3/8) (Anscombe: Poisson counts at unit variance) and c_0 >=
  burst_min_signals; >= bot_min_share of the interval's SENTIMENT/SOCIAL weight from
  low-reliability (< low_reliability) or duplicate posts (not the first of their near-duplicate
  cluster); and no support for its direction (the sign of its weighted mean sentiment): no
  price move that way of >= support_min_move that is also unusual (jump z >= support_jump_z),
  and no matching NEWS of reliability >= low_reliability in [interval_start - explain_lookback,
  interval_end).
- NARRATIVE_PLANT: a NEWS signal in [interval_start - plant_lookback, interval_end) of
  reliability < low_reliability and |value| >= plant_min_sentiment; from the consensus just
  before it to the interval's end the probability moved >= plant_min_move its way, >=
  plant_jump_z hourly sigmas in logit (and had not yet by interval_start, so one plant is flagged
  once); no matching NEWS from another origin in [news - corroboration_window, interval_end).
- SOURCE_MANIPULATION: (a) an outlier: with >= 3 sources giving the event a probability
  (MARKET_PRICE, EXPERT or MANUAL), one that quoted in the interval stands >=
  source_outlier_gap from every other while the others agree within that gap, at each of its
  quotes for >= source_outlier_duration up to its last one (looking back at most
  source_outlier_lookback); or (b) a takeover: with >= 2 sources in the interval, one carries >=
  source_dominance_share of its weight x reliability, >= source_dominance_rise above its share of
  the trailing window, with >= source_flood_ratio times its mean weight per trailing interval.

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

from predict_pipeline.trust.config import PROBABILITY_CLIP, SENTIMENT_TYPES, nanoseconds
from predict_pipeline.trust.explain import explanations
from predict_pipeline.trust.measure import Measurements
from predict_pipeline.trust.trades import wash_summary


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


def detect_all(m: Measurements) -> list[Flag]:
    """Every detector's flags, in (event_id, flag_type) order."""
    flags = [flag for detector in DETECTORS.values() for flag in detector(m)]
    return sorted(flags, key=lambda f: (f.event_id, f.flag_type))


# ---- shared -------------------------------------------------------------------------------


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def _clock(ns: int) -> str:
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


def _flag(
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
        "window_start": _iso(m.start_ns),
        "window_end": _iso(m.end_ns),
        "baseline_start": _iso(m.window_start_ns),
        "baseline_end": _iso(m.start_ns),
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


def _min(span: timedelta) -> str:
    return f"{span / timedelta(minutes=1):g} min"


def _multiple(ratio: float, of: str, unbounded: str) -> str:
    """'4.2x <of>', or the `unbounded` wording when the base was zero."""
    return f"{ratio:.1f}x {of}" if math.isfinite(ratio) else unbounded


def _ratio(observed: float, baseline: float) -> float:
    return observed / baseline if baseline > 0 else math.inf


def _span(m: Measurements) -> str:
    return f"{_clock(m.start_ns)}–{_clock(m.end_ns)[-5:]} UTC"


def _ids(frame: pd.DataFrame, by: list[str] | None = None, ascending: Any = True) -> dict:
    """event_id -> signal ids of the frame, in (by, t, id) order."""
    order = [*(by or []), "t", "id"]
    asc = [*(ascending if isinstance(ascending, list) else [ascending] * len(by or [])), True, True]
    ordered = frame.sort_values(order, ascending=asc, kind="stable")
    return ordered.groupby("event_id", sort=False)["id"].agg(list).to_dict()


def _logit(p: Any) -> Any:
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


def _consensus(got: pd.DataFrame, index: pd.Index) -> pd.Series:
    """The MARKET_PRICE consensus of each query from prices_at rows."""
    got = got[got["is_market"]]
    weighted = (got["value"] * got["mw"]).groupby(got["query"]).sum()
    return (weighted / got.groupby("query")["mw"].sum()).reindex(index)


# ---- detectors ----------------------------------------------------------------------------


def volume_spike(m: Measurements) -> list[Flag]:
    cfg = m.config
    v = m.volume
    hits = v[
        (v["z"] > cfg.volume_spike_z)
        & (v["observed"] >= cfg.volume_spike_min_ratio * v["baseline"])
    ]
    if hits.empty:
        return []
    current = m.current()
    current = current[current["event_id"].isin(hits.index)]
    volume_ids = _ids(current[current["signal_type"] == "VOLUME"], ["value"], False)
    price_ids = _ids(current[current["signal_type"] == "MARKET_PRICE"])
    flags = []
    for event_id, row in hits.iterrows():
        multiple = _multiple(
            _ratio(row["observed"], row["baseline"]), "the median", "up from nothing"
        )
        flags.append(
            _flag(
                m,
                event_id,
                "VOLUME_SPIKE",
                strength=min(
                    row["z"] / cfg.volume_spike_z,
                    _ratio(row["observed"], row["baseline"]) / cfg.volume_spike_min_ratio,
                ),
                description=(
                    f"Volume {row['observed']:,.0f} in {_span(m)} is {row['z']:.1f} robust SDs "
                    f"above the trailing median of {row['baseline']:,.0f}, "
                    f"{multiple} "
                    f"(thresholds {cfg.volume_spike_z} SDs, {cfg.volume_spike_min_ratio}x)."
                ),
                statistic="robust_z_log_volume",
                baseline=row["baseline"],
                observed=row["observed"],
                threshold={"z": cfg.volume_spike_z, "ratio": cfg.volume_spike_min_ratio},
                related=volume_ids.get(event_id) or price_ids.get(event_id, []),
                z=row["z"],
                sigma_log=row["sigma"],
                baseline_intervals=row["n"],
                volume_basis=row["basis"],
            )
        )
    return flags


def wash_trading(m: Measurements) -> list[Flag]:
    cfg = m.config
    v, move = m.volume, m.move
    ratio = v["observed"] / v["baseline"].where(v["baseline"] > 0)
    quiet = (
        (v["z"] >= cfg.volume_spike_z)
        & (ratio >= cfg.wash_volume_ratio)
        & ((move["dp"].abs() <= cfg.wash_max_move) | (move["jump_z"] <= cfg.wash_max_move_z))
    )
    rounds = wash_summary(m)
    churn = (rounds["round_trips"] >= cfg.wash_min_round_trips) & (
        rounds["share"] >= cfg.wash_min_share
    )
    hit_quiet, hit_churn = set(quiet.index[quiet]), set(rounds.index[churn])
    if not hit_quiet and not hit_churn:
        return []
    current = m.current()
    volume_ids = _ids(
        current[(current["signal_type"] == "VOLUME") & current["event_id"].isin(hit_quiet)],
        ["value"],
        False,
    )
    trades = m.trades[m.trades["involved"] & m.trades["event_id"].isin(hit_churn)]
    accounts = trades.groupby("event_id")["account"].agg(lambda a: sorted(set(a))).to_dict()
    involved = m.trade_signals[
        m.trade_signals["involved"] & m.trade_signals["event_id"].isin(hit_churn)
    ]
    trade_ids = _ids(involved.rename(columns={"signal_id": "id"}))
    flags = []
    for event_id in sorted(hit_quiet | hit_churn):
        quiet_evidence = None
        if event_id in hit_quiet:
            row = v.loc[event_id]
            quiet_evidence = {
                "statistic": "volume_without_price_impact",
                "baseline": row["baseline"],
                "observed": row["observed"],
                "volume_ratio": ratio[event_id],
                "z": row["z"],
                "price_move": move.at[event_id, "dp"],
                "threshold": {
                    "z": cfg.volume_spike_z,
                    "volume_ratio": cfg.wash_volume_ratio,
                    "max_price_move": cfg.wash_max_move,
                },
            }
            quiet_strength = min(
                row["z"] / cfg.volume_spike_z, ratio[event_id] / cfg.wash_volume_ratio
            )
        if event_id in hit_churn:
            r = rounds.loc[event_id]
            strength = min(
                r["round_trips"] / cfg.wash_min_round_trips, r["share"] / cfg.wash_min_share
            )
            if quiet_evidence is not None:
                strength = max(strength, quiet_strength)
            flags.append(
                _flag(
                    m,
                    event_id,
                    "WASH_TRADING",
                    strength=strength,
                    description=(
                        f"{int(r['round_trips'])} round trips by {int(r['accounts'])} account(s) "
                        f"within {_min(cfg.wash_window)} in {_span(m)} carry {r['share']:.0%} "
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
                    volume_without_price_impact=quiet_evidence,
                )
            )
        else:
            row = v.loc[event_id]
            flags.append(
                _flag(
                    m,
                    event_id,
                    "WASH_TRADING",
                    strength=quiet_strength,
                    description=(
                        f"Volume {row['observed']:,.0f} in {_span(m)} is {ratio[event_id]:.1f}x "
                        f"the "
                        f"trailing median of {row['baseline']:,.0f} (z {row['z']:.1f}) while the "
                        f"probability moved only {move.at[event_id, 'dp']:+.3f} (at most "
                        f"{cfg.wash_max_move}, or no more than its usual hourly move)."
                    ),
                    statistic="volume_without_price_impact",
                    baseline=row["baseline"],
                    observed=row["observed"],
                    threshold=quiet_evidence["threshold"],
                    related=volume_ids.get(event_id, []),
                    volume_ratio=ratio[event_id],
                    z=row["z"],
                    price_move=move.at[event_id, "dp"],
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
    related = _ids(crossed)
    flags = []
    for event_id, row in cand.iterrows():
        if explained.at[event_id, "ids"]:
            continue
        side = "YES" if row["direction"] > 0 else "NO"
        hours = (close[event_id] - m.start_ns) / 3.6e12
        flags.append(
            _flag(
                m,
                event_id,
                "INSIDER_TIMING",
                strength=min(
                    row["toward"] / cfg.insider_min_move, row["jump_z"] / cfg.insider_jump_z
                ),
                description=(
                    f"The probability moved {row['p_prev']:.3f} -> {row['p_now']:.3f} toward the "
                    f"eventual {side} in {_span(m)}, {hours:.1f} h before close, a "
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
                close_at=_iso(int(close[event_id])),
                moved_at=_iso(int(moved_at[event_id])),
                news_searched_from=_iso(int(targets.at[event_id, "since"])),
            )
        )
    return flags


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
            _flag(
                m,
                event_id,
                "COORDINATED_ACTION",
                strength=min(
                    count / cfg.coordination_min_signals, origins / cfg.coordination_min_origins
                ),
                description=(
                    f"{count} near-identical SOCIAL posts from {origins} distinct origins within "
                    f"{(last - first) / 6e10:.1f} minutes ({_clock(first)}–{_clock(last)[-5:]} "
                    f"UTC; "
                    f"thresholds {cfg.coordination_min_signals} posts, "
                    f"{cfg.coordination_min_origins} origins, {_min(cfg.coordination_window)})."
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
                burst_start=_iso(first),
                burst_end=_iso(last),
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
    related = _ids(posts[botlike & posts["event_id"].isin(cand.index)])
    flags = []
    for event_id, row in cand.iterrows():
        way = "positive" if row["direction"] > 0 else "negative"
        flags.append(
            _flag(
                m,
                event_id,
                "BOT_SENTIMENT",
                strength=min(
                    row["z"] / cfg.burst_z,
                    row["count"] / cfg.burst_min_signals,
                    row["share"] / cfg.bot_min_share,
                ),
                description=(
                    f"{int(row['count'])} sentiment posts in {_span(m)} against a trailing "
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
        (sig["signal_type"] == "NEWS")
        & (sig["t"] >= m.start_ns - nanoseconds(cfg.plant_lookback))
        & (sig["reliability"] < cfg.low_reliability)
        & (sig["value"].abs() >= cfg.plant_min_sentiment)
    ]
    move = m.move
    news = news[news["event_id"].isin(move.index[move["n"] >= cfg.min_baseline_intervals])]
    if news.empty:
        return []
    news = news.set_index(pd.Index(news["id"].to_numpy(), name="news"))
    before = _consensus(prices_at(m, news[["event_id", "t"]], allow_exact=False), news.index)
    direction = np.sign(news["value"]).astype("int64")
    now = move["p_now"].reindex(news["event_id"]).to_numpy()
    at_start = move["p_prev"].reindex(news["event_id"]).to_numpy()
    sigma = move["sigma"].reindex(news["event_id"]).to_numpy()
    gain = (now - before) * direction
    z = np.abs(_logit(now) - _logit(before.to_numpy())) / sigma
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
    after = _ids(prices[prices["t"] >= prices["news_t"]])
    flags = []
    for _, row in cand.iterrows():
        flags.append(
            _flag(
                m,
                row["event_id"],
                "NARRATIVE_PLANT",
                strength=min(row["gain"] / cfg.plant_min_move, row["z"] / cfg.plant_jump_z),
                description=(
                    f"A NEWS signal from {row['origin']} (reliability {row['reliability']:.2f}, "
                    f"sentiment {row['value']:+.2f}) at {_clock(int(row['t']))} UTC was followed "
                    f"by a move {row['before']:.3f} -> {row['now']:.3f} its way by "
                    f"{_clock(m.end_ns)} UTC "
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
                news_at=_iso(int(row["t"])),
                news_origin=row["origin"],
                corroboration_searched_from=_iso(
                    int(row["t"] - nanoseconds(cfg.corroboration_window))
                ),
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
                _flag(
                    m,
                    event_id,
                    "SOURCE_MANIPULATION",
                    strength=strength,
                    description=(
                        f"{o['source']} priced the event at {o['price']:.3f}, at least "
                        f"{o['gap']:.3f} from every other source (which agree within "
                        f"{o['spread']:.3f}), for {o['minutes']:.0f} minutes up to "
                        f"{_clock(o['last'])} UTC (thresholds {cfg.source_outlier_gap}, "
                        f"{_min(cfg.source_outlier_duration)})."
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
                    outlier_since=_iso(o["since"]),
                    takeover=None
                    if takeover is None
                    else {k: v for k, v in takeover.items() if k != "ids"},
                )
            )
        else:
            t = takeover
            flood = _multiple(
                t["flood"], "its usual weight per interval", "where it had no weight before"
            )
            flood = f"with {flood}" if math.isfinite(t["flood"]) else flood
            flags.append(
                _flag(
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
                        f"sources in {_span(m)}, up from {t['trailing_share']:.0%} over the "
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
    ids = _ids(mine, ["w"], False)
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


DETECTORS = {
    "VOLUME_SPIKE": volume_spike,
    "WASH_TRADING": wash_trading,
    "INSIDER_TIMING": insider_timing,
    "COORDINATED_ACTION": coordinated_action,
    "BOT_SENTIMENT": bot_sentiment,
    "NARRATIVE_PLANT": narrative_plant,
    "SOURCE_MANIPULATION": source_manipulation,
}
