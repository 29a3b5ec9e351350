"""Trust components: the measurements of one interval that every detector shares, and the scores.

Time axis. The interval is [interval_start, interval_end), of length L; the trailing window is
[interval_start - trailing_window, interval_start). A signal or snapshot at time t falls in bucket
k = floor((t - interval_start) / L), k = -n .. 0 with n = ceil(trailing_window / L); bucket 0 is
the interval being scored. Snapshots are read as stamped at their interval's start
(`snapshot_stamp="start"`, bucket of [start, end)) or end (`"end"`, bucket of (start, end]).
Signals at or after interval_end are ignored, so re-running a past interval gives the same result.

Series per event and bucket:
- probability p_k: the weighted mean, over the event's markets (source, source_event_id), of each
  market's last MARKET_PRICE value at or before the bucket's end; a market weighs the mean
  weight x reliability of its price signals. Where no market has priced the event yet, the
  bucket's snapshot probability.
- source probability p_s: per source, the mean over its markets of their last probability
  (MARKET_PRICE, EXPERT or MANUAL) at or before the bucket's end.
- volume v_k, on one basis per event, never mixed: the snapshot volume (source units: the volume
  traded in that interval) when the event has a snapshot for the interval being scored;
  otherwise its VOLUME signals summed (x 1000, since signals carry thousands), leaving out
  lifetime totals (raw_data volume_scope "lifetime_..."), which are levels, not flows. A bucket
  without a value is missing, not zero.
- sentiment count c_k: the bucket's SENTIMENT and SOCIAL signals (0 when there are none).

Robust statistics use the trailing buckets: med = their median, sigma = max(1.4826 MAD, floor).
A statistic needs at least `min_baseline_intervals` trailing values; without them it is missing
and the component it feeds counts as 1 (no evidence of inconsistency).

Components, each in [0, 1]:
- source_diversity = H / ln k, H = -sum_s q_s ln q_s, where q_s is source s's share of the total
  weight x reliability of the interval's signals and k the number of distinct sources present;
  0 when k <= 1 (one source: nothing to diversify; k equal sources: exactly 1).
- volume_consistency = 1 / (1 + (z_v / volume_spike_z)^2), z_v = (ln(1 + v_0) - med) / sigma over
  ln(1 + v_k), floor volume_min_log_scale. Volumes are log-normal, so the MAD is calibrated on
  the log scale.
- temporal_consistency = 1 / (1 + (z_j (1 - e) / jump_z)^2), z_j = |d_0 - med| / sigma over the
  logit moves d_k = logit p_k - logit p_{k-1} (floor price_min_logit_scale), e = the highest
  reliability among the NEWS signals whose sentiment sign matches the move and the EXPERT
  forecasts beyond half the move on its side, in [interval_start - explain_lookback,
  interval_end): a jump a reliable signal explains is not penalised.
- market_integrity = f_agree x f_impact x f_accounts, with
  f_agree = 1 / (1 + (D / disagreement_scale)^2), D = the weighted mean |p_s - p_0| over the
  event's sources at the interval's end (1 with fewer than two sources);
  f_impact = 1 - 0.5 s^2 q, s = clip(z_v / volume_spike_z, 0, 1), q = clip(1 - |p_0 - p_-1| /
  (5 wash_max_move), 0, 1): volume that arrives without moving the price;
  f_accounts = 1 - the share of the interval's account-level trade amount (trades whose raw_data
  names the account, e.g. Manifold bets) that round-trips (see WASH_TRADING).
- sentiment_authenticity = A x f_burst over the interval's SENTIMENT, SOCIAL and NEWS signals:
  A = sum(weight x reliability / m) / sum(weight), m = the number of the interval's signals in
  the signal's near-duplicate narrative cluster (k copies count once); f_burst = 1 / (1 +
  (max(z_b, 0) / burst_z)^2), z_b the burst statistic of BOT_SENTIMENT. 1 with no such signals.

A raised flag multiplies each component it maps to (FLAG_COMPONENTS) by 1 - FLAG_PENALTY of its
severity: VOLUME_SPIKE -> volume_consistency; WASH_TRADING -> market_integrity; INSIDER_TIMING and
NARRATIVE_PLANT -> temporal_consistency; COORDINATED_ACTION and BOT_SENTIMENT ->
sentiment_authenticity; SOURCE_MANIPULATION -> source_diversity and market_integrity.

overall_score = 0.25 market_integrity + 0.20 sentiment_authenticity + 0.15 source_diversity
+ 0.20 volume_consistency + 0.20 temporal_consistency.
manipulation_risk = CRITICAL with a CRITICAL flag or overall_score < 0.25; else HIGH with an ALERT
flag, flags of two or more types, or overall_score < 0.45; else MEDIUM with any flag or
overall_score < 0.65; else LOW.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.feeds.records import SIGNAL_TYPES

FLAG_TYPES = (
    "VOLUME_SPIKE",
    "WASH_TRADING",
    "INSIDER_TIMING",
    "COORDINATED_ACTION",
    "BOT_SENTIMENT",
    "NARRATIVE_PLANT",
    "SOURCE_MANIPULATION",
)
SEVERITIES = ("INFO", "WARNING", "ALERT", "CRITICAL")
RISK_LEVELS = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
COMPONENTS = (
    "market_integrity",
    "sentiment_authenticity",
    "source_diversity",
    "volume_consistency",
    "temporal_consistency",
)
OVERALL_WEIGHTS = {
    "market_integrity": 0.25,
    "sentiment_authenticity": 0.20,
    "source_diversity": 0.15,
    "volume_consistency": 0.20,
    "temporal_consistency": 0.20,
}
FLAG_PENALTY = {"INFO": 0.10, "WARNING": 0.25, "ALERT": 0.50, "CRITICAL": 0.75}
FLAG_COMPONENTS = {
    "VOLUME_SPIKE": ("volume_consistency",),
    "WASH_TRADING": ("market_integrity",),
    "INSIDER_TIMING": ("temporal_consistency",),
    "NARRATIVE_PLANT": ("temporal_consistency",),
    "COORDINATED_ACTION": ("sentiment_authenticity",),
    "BOT_SENTIMENT": ("sentiment_authenticity",),
    "SOURCE_MANIPULATION": ("source_diversity", "market_integrity"),
}
SCORE_COLUMNS = [
    "event_id",
    *COMPONENTS,
    "overall_score",
    "manipulation_risk",
    "flagged_activity",
    "flag_count",
]

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of a normal standard deviation
SENTIMENT_TYPES = ("SENTIMENT", "SOCIAL")
PROBABILITY_TYPES = ("MARKET_PRICE", "EXPERT", "MANUAL")
NARRATIVE_TYPES = ("SENTIMENT", "SOCIAL", "NEWS")
# raw_data keys that name the account behind a post or trade, most specific first.
ACCOUNT_KEYS = ("userId", "user_id", "author_id", "author", "username", "handle", "account")
SIGNAL_INPUT_COLUMNS = (
    "id",
    "event_id",
    "source",
    "source_event_id",
    "signal_type",
    "value",
    "weight",
    "reliability",
    "fetched_at",
    "narrative",
    "raw_data",
)
SNAPSHOT_INPUT_COLUMNS = (
    "event_id",
    "snapshot_at",
    "probability",
    "sentiment_score",
    "volume",
    "signal_count",
)
EVENT_INPUT_COLUMNS = ("event_id", "status", "resolution_date", "resolved_at", "outcome")
PROBABILITY_CLIP = 0.005  # logit of 0 or 1 is infinite; a settled market still moves this far
_URL = re.compile(r"https?://\S+|www\.\S+")
_NON_WORD = re.compile(r"[\W_]+")  # letters and digits of any script survive


class TrustInputError(ValueError):
    """An input frame stage 4 cannot read; names the frame, the column and the fault."""

    def __init__(self, frame: str, reason: str):
        self.frame = frame
        self.reason = reason
        super().__init__(f"trust input {frame}: {reason}")


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """Every window and threshold of stage 4; the defaults are the documented ones."""

    trailing_window: timedelta = timedelta(hours=24)  # the baseline before the interval
    snapshot_stamp: str = "start"  # snapshots stamped at their interval's "start" or "end"
    min_baseline_intervals: int = 6  # trailing values a robust statistic needs
    low_reliability: float = 0.5  # a source below this reliability is low-reliability
    news_min_sentiment: float = 0.1  # |NEWS value| from which a headline states a direction
    explain_lookback: timedelta = timedelta(hours=2)  # NEWS/EXPERT this recent explains a move
    max_related_signals: int = 50  # ids kept per flag (the evidence counts them all)
    # VOLUME_SPIKE and volume_consistency
    volume_spike_z: float = 3.5
    volume_min_log_scale: float = 0.1  # sigma floor of ln(1 + volume): a 10 % wobble
    volume_spike_min_ratio: float = 3.0  # a spike is also a multiple of the trailing median
    # temporal_consistency and price jumps
    jump_z: float = 3.5
    price_min_logit_scale: float = 0.1  # sigma floor of hourly logit moves
    # WASH_TRADING and market_integrity
    wash_volume_ratio: float = 5.0  # interval volume / trailing median: "far above"
    wash_max_move: float = 0.01  # |p_0 - p_-1| that counts as "barely moved"
    wash_max_move_z: float = 1.0  # ... as does a move no larger than the market's usual one
    wash_window: timedelta = timedelta(minutes=30)  # an account's opposite trade this soon
    wash_min_round_trips: int = 3
    wash_min_share: float = 0.3  # of the interval's account-level trade amount
    disagreement_scale: float = 0.1  # D at which f_agree is 1/2
    # INSIDER_TIMING
    insider_window: timedelta = timedelta(hours=12)  # before resolution or scheduled close
    insider_min_move: float = 0.10  # probability points toward the outcome
    insider_jump_z: float = 3.0
    # COORDINATED_ACTION (and the near-duplicate clusters sentiment_authenticity uses)
    narrative_similarity: float = 0.6  # Jaccard of word shingles
    narrative_shingle: int = 2  # words per shingle
    coordination_window: timedelta = timedelta(minutes=10)
    coordination_min_signals: int = 5
    coordination_min_origins: int = 3
    # BOT_SENTIMENT
    burst_z: float = 3.5
    burst_min_signals: int = 8
    bot_min_share: float = 0.6  # of the burst's weight from low-reliability or duplicate posts
    support_min_move: float = 0.02  # a price move this large its way supports a burst ...
    support_jump_z: float = 2.0  # ... when it is also unusual (jump z) for the market
    # NARRATIVE_PLANT
    plant_lookback: timedelta = timedelta(hours=1)  # news this far before the interval qualifies
    plant_min_sentiment: float = 0.3
    plant_min_move: float = 0.08
    plant_jump_z: float = 3.0
    corroboration_window: timedelta = timedelta(hours=2)  # before the news, up to interval end
    # SOURCE_MANIPULATION
    source_outlier_gap: float = 0.15  # from every other source, which agree within this
    source_outlier_duration: timedelta = timedelta(minutes=30)
    source_outlier_lookback: timedelta = timedelta(hours=6)
    source_dominance_share: float = 0.75
    source_dominance_rise: float = 0.25  # over the source's trailing-window share
    source_flood_ratio: float = 3.0  # its interval weight / its mean weight per trailing interval

    def __post_init__(self) -> None:
        if self.snapshot_stamp not in ("start", "end"):
            raise ValueError(
                f"TrustConfig.snapshot_stamp must be 'start' or 'end', got {self.snapshot_stamp!r}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, timedelta) and value <= timedelta(0):
                raise ValueError(f"TrustConfig.{f.name} must be a positive duration, got {value}")
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"TrustConfig.{f.name} must be positive, got {value!r}")
        for name in (
            "low_reliability",
            "narrative_similarity",
            "bot_min_share",
            "wash_min_share",
            "source_dominance_share",
        ):
            if getattr(self, name) > 1:
                raise ValueError(f"TrustConfig.{name} must be at most 1, got {getattr(self, name)}")


# ---- inputs -------------------------------------------------------------------------------


def _utc_ns(frame: pd.DataFrame, name: str, column: str, *, nullable: bool) -> np.ndarray:
    """A timestamp column as int64 ns since the epoch (NaT -> min int64); naive times refused."""
    values = frame[column]
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        present = values.dropna()
        naive = [v for v in present if not (isinstance(v, datetime) and v.tzinfo is not None)]
        if naive:
            raise TrustInputError(
                name, f"column {column!r} must hold tz-aware UTC timestamps, got {naive[0]!r}"
            )
        values = pd.to_datetime(values, utc=True)
    ns = pd.DatetimeIndex(values).as_unit("ns").asi8  # UTC instants; NaT -> min int64
    missing = ns == np.iinfo("int64").min
    if not nullable and missing.any():
        raise TrustInputError(
            name, f"column {column!r} has {int(missing.sum())} missing timestamps"
        )
    return ns


def nanoseconds(span: timedelta) -> int:
    return span // timedelta(microseconds=1) * 1000


def _require(frame: Any, name: str, columns: tuple[str, ...]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TrustInputError(name, f"expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TrustInputError(name, f"missing columns {missing}")


def _numeric(frame: pd.DataFrame, name: str, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
    bad = np.isnan(values) & frame[column].notna().to_numpy()
    if bad.any():
        raise TrustInputError(
            name, f"column {column!r} has non-numeric values, e.g. {frame[column][bad].iloc[0]!r}"
        )
    return values


def _stamp(moment: datetime, what: str) -> int:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise TrustInputError("interval", f"{what} must be a tz-aware datetime, got {moment!r}")
    return pd.Timestamp(moment).tz_convert("UTC").value


# ---- measurements -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurements:
    """Everything the detectors and components read about one interval, for the scored events.

    `signals` holds the scored events' signals of the whole window (trailing + interval), sorted
    by (event_id, t, id), with columns id, event_id, source, source_event_id, signal_type, value,
    weight, reliability, narrative, raw_data, t (ns since epoch), bucket, w (weight x
    reliability), origin (source, or source/account when raw_data names the account).
    """

    config: TrustConfig
    interval_start: datetime
    interval_end: datetime
    start_ns: int
    end_ns: int
    length_ns: int
    buckets: list[int]  # -n .. 0
    event_ids: pd.Index  # the scored events, sorted
    signals: pd.DataFrame
    events: pd.DataFrame  # index event_id: close_ns (int, or -1), outcome_direction (+1/-1/0)
    prices: pd.DataFrame  # probability rows: market code, is_market, market weight mw
    probability: pd.DataFrame  # event x bucket
    source_probability: pd.DataFrame  # (event_id, source) x bucket, ffilled
    source_weight: pd.Series  # (event_id, source)
    volume: pd.DataFrame  # event: observed, baseline, z, sigma, n, basis
    move: pd.DataFrame  # event: p_prev, p_now, dp, d_logit, jump_z, sigma, n
    burst: pd.DataFrame  # event: count, baseline, z
    narratives: pd.DataFrame  # narrative signals near the interval with cluster and cluster_size
    trades: pd.DataFrame  # account-level trades near the interval with round_trip flags
    trade_signals: pd.DataFrame  # event_id, trade_key, signal_id, t, involved

    @property
    def window_start_ns(self) -> int:
        return self.start_ns - len(self.buckets[:-1]) * self.length_ns

    def current(self) -> pd.DataFrame:
        """The interval's own signals."""
        return self.signals[self.signals["bucket"] == 0]


def measure(
    signals: pd.DataFrame,
    snapshots: pd.DataFrame,
    events: pd.DataFrame,
    *,
    interval_start: datetime,
    interval_end: datetime,
    config: TrustConfig,
) -> Measurements:
    """Read the three frames of one interval into the shared measurements (inputs untouched)."""
    start_ns = _stamp(interval_start, "interval_start")
    end_ns = _stamp(interval_end, "interval_end")
    if end_ns <= start_ns:
        raise TrustInputError(
            "interval", f"interval_end {interval_end} is not after interval_start {interval_start}"
        )
    length = end_ns - start_ns
    n_trail = -(-nanoseconds(config.trailing_window) // length)
    buckets = list(range(-n_trail, 1))
    window_ns = start_ns - n_trail * length

    sig = _window_signals(signals, window_ns, end_ns, start_ns, length, config.coordination_window)
    snap = _window_snapshots(snapshots, window_ns, end_ns, start_ns, length, config)
    info = _event_info(events)

    current_events = set(sig.loc[sig["bucket"] == 0, "event_id"])
    active = set(info.index[info["active"]])
    snap_now = set(snap.loc[snap["bucket"] == 0, "event_id"]) & active
    event_ids = pd.Index(sorted(current_events | snap_now), name="event_id")
    unknown = event_ids.difference(info.index)
    if len(unknown):
        raise TrustInputError(
            "events",
            f"{len(unknown)} event ids with signals or snapshots in "
            f"the interval are missing, e.g. {unknown[0]!r}",
        )
    sig = _ordered(sig[sig["event_id"].isin(event_ids)], event_ids)
    snap = snap.assign(ev=event_ids.get_indexer(snap["event_id"]))
    snap = snap[snap["ev"] >= 0]
    snap = snap.iloc[
        np.lexsort((snap["t"].to_numpy(), snap["bucket"].to_numpy(), snap["ev"].to_numpy()))
    ]
    snap_last = snap.drop_duplicates(["ev", "bucket"], keep="last")

    prices = _prices(sig)
    source_probability, source_weight, consensus = _price_matrices(prices, event_ids, buckets)
    snap_prob = _grid(snap_last, "probability", event_ids, buckets)
    probability = pd.DataFrame(
        np.where(np.isnan(consensus), snap_prob, consensus), index=event_ids, columns=buckets
    ).ffill(axis=1)
    volume = _volume(sig, snap_last, event_ids, buckets, config)
    move = _move(probability, config)
    burst = _burst(sig, event_ids, buckets, config)
    narratives = _narratives(sig, start_ns, end_ns, config)
    trades, trade_signals = _trades(sig, start_ns, config)
    return Measurements(
        config=config,
        interval_start=pd.Timestamp(start_ns, tz="UTC").to_pydatetime(),
        interval_end=pd.Timestamp(end_ns, tz="UTC").to_pydatetime(),
        start_ns=start_ns,
        end_ns=end_ns,
        length_ns=length,
        buckets=buckets,
        event_ids=event_ids,
        signals=sig,
        events=info.reindex(event_ids),
        prices=prices,
        probability=probability,
        source_probability=source_probability,
        source_weight=source_weight,
        volume=volume,
        move=move,
        burst=burst,
        narratives=narratives,
        trades=trades,
        trade_signals=trade_signals,
    )


def _window_signals(
    signals: pd.DataFrame,
    window_ns: int,
    end_ns: int,
    start_ns: int,
    length: int,
    origin_lookback: timedelta,
) -> pd.DataFrame:
    _require(signals, "signals", SIGNAL_INPUT_COLUMNS)
    t = _utc_ns(signals, "signals", "fetched_at", nullable=False)
    keep = (t >= window_ns) & (t < end_ns)
    frame = signals.loc[keep, list(SIGNAL_INPUT_COLUMNS)].copy()
    t = t[keep]
    unknown = sorted(set(frame["signal_type"]) - set(SIGNAL_TYPES))
    if unknown:
        raise TrustInputError("signals", f"unknown signal_type values {unknown}")
    for column in ("value", "weight", "reliability"):
        frame[column] = _numeric(frame, "signals", column)
    # the types validation requires a value for (NEWS, SOCIAL and MANUAL may come without)
    valued = frame["signal_type"].isin(("MARKET_PRICE", "EXPERT", "SENTIMENT", "VOLUME"))
    if frame.loc[valued, "value"].isna().any():
        missing = frame.loc[valued & frame["value"].isna(), "id"].iloc[0]
        raise TrustInputError("signals", f"signal {missing!r} has no value")
    if frame[["weight", "reliability"]].isna().any().any():
        raise TrustInputError("signals", "weight and reliability must be present on every row")
    if frame["id"].duplicated().any():
        raise TrustInputError(
            "signals", f"duplicate id {frame['id'][frame['id'].duplicated()].iloc[0]!r}"
        )
    for column in ("id", "event_id", "source", "source_event_id"):
        if pd.api.types.infer_dtype(frame[column], skipna=False) != "string":
            frame[column] = frame[column].astype(str)
    frame["t"] = t
    frame["bucket"] = np.floor_divide(t - start_ns, length).astype("int64")
    frame["w"] = frame["weight"] * frame["reliability"]
    frame["origin"] = frame["source"]
    kind = frame["signal_type"].to_numpy()
    # Origins are read for NEWS (plants, corroboration) and for posts near the interval.
    posts = (kind == "NEWS") | (
        np.isin(kind, NARRATIVE_TYPES) & (t >= start_ns - nanoseconds(origin_lookback))
    )
    if posts.any():
        accounts = [_account(raw) for raw in frame["raw_data"].to_numpy()[posts]]
        origin = frame["origin"].to_numpy(dtype=object)
        origin[posts] = [
            s if a is None else f"{s}/{a}" for s, a in zip(origin[posts], accounts, strict=True)
        ]
        frame["origin"] = origin
    return frame


def _account(raw: Any) -> str | None:
    if isinstance(raw, dict):
        for key in ACCOUNT_KEYS:
            value = raw.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    return None


def _window_snapshots(
    snapshots: pd.DataFrame,
    window_ns: int,
    end_ns: int,
    start_ns: int,
    length: int,
    config: TrustConfig,
) -> pd.DataFrame:
    _require(snapshots, "snapshots", SNAPSHOT_INPUT_COLUMNS)
    t = _utc_ns(snapshots, "snapshots", "snapshot_at", nullable=False)
    if config.snapshot_stamp == "start":
        bucket = np.floor_divide(t - start_ns, length)
    else:  # stamped at the end: (start, end] belongs to the interval
        bucket = -np.floor_divide(start_ns - t, length) - 1
    keep = (bucket >= np.floor_divide(window_ns - start_ns, length)) & (bucket <= 0)
    frame = pd.DataFrame(
        {
            "event_id": snapshots["event_id"].astype(str).to_numpy()[keep],
            "t": t[keep],
            "bucket": bucket[keep].astype("int64"),
            "probability": _numeric(snapshots, "snapshots", "probability")[keep],
            "volume": _numeric(snapshots, "snapshots", "volume")[keep],
        }
    )
    return frame


def _event_info(events: pd.DataFrame) -> pd.DataFrame:
    _require(events, "events", EVENT_INPUT_COLUMNS)
    ids = events["event_id"].astype(str)
    if ids.duplicated().any():
        raise TrustInputError("events", f"duplicate event_id {ids[ids.duplicated()].iloc[0]!r}")
    nat = np.iinfo("int64").min
    close = _utc_ns(events, "events", "resolution_date", nullable=True)
    resolved = _utc_ns(events, "events", "resolved_at", nullable=True)
    both = np.where(
        close == nat, resolved, np.where(resolved == nat, close, np.minimum(close, resolved))
    )
    status = events["status"].astype(str).str.upper()
    outcome = events["outcome"].where(events["outcome"].notna(), "").astype(str).str.upper()
    # an event without an outcome column value may still say it in its status (RESOLVED_YES)
    outcome = outcome.where(outcome != "", status.str.removeprefix("RESOLVED_")).to_numpy()
    status = status.to_numpy()
    direction = np.select([outcome == "YES", outcome == "NO"], [1, -1], 0)
    return pd.DataFrame(
        {
            "close_ns": np.where(both == nat, -1, both),
            "outcome_direction": direction,
            "active": status == "ACTIVE",
        },
        index=pd.Index(ids.to_numpy(), name="event_id"),
    )


def _ordered(sig: pd.DataFrame, event_ids: pd.Index) -> pd.DataFrame:
    """Rows in (event_id, t, id) order, whatever order they came in; `ev` = event position."""
    ev = event_ids.get_indexer(sig["event_id"])
    order = np.lexsort((sig["id"].to_numpy().astype("U"), sig["t"].to_numpy(), ev))
    out = sig.iloc[order].reset_index(drop=True)
    out["ev"] = ev[order]
    out["src"] = pd.factorize(out["source"])[0]
    return out


def _grid(
    rows: pd.DataFrame, column: str, event_ids: pd.Index, buckets: list[int], how: str = "last"
) -> np.ndarray:
    """An event x bucket array of a column: the last row's value ("last", rows in time
    order) or the sum ("sum"); NaN where no row falls."""
    nb = len(buckets)
    key = rows["ev"].to_numpy() * nb + rows["bucket"].to_numpy() - buckets[0]
    values = rows[column].to_numpy(dtype="float64")
    flat = np.full(len(event_ids) * nb, np.nan)
    if how == "last":
        last = np.unique(key[::-1], return_index=True)  # the last row of each key
        flat[last[0]] = values[::-1][last[1]]
    else:
        counts = np.bincount(key, minlength=flat.size)
        sums = np.bincount(key, weights=values, minlength=flat.size)
        flat = np.where(counts > 0, sums, np.nan)
    return flat.reshape(len(event_ids), nb)


def _prices(sig: pd.DataFrame) -> pd.DataFrame:
    """Probability rows (time order) with a market code and the market's weight `mw`.

    A market is one (source, source_event_id) of one event; its weight is the mean weight x
    reliability of its probability signals. `is_market` marks MARKET_PRICE rows (the others
    are EXPERT and MANUAL forecasts).
    """
    prices = sig.loc[
        sig["signal_type"].isin(PROBABILITY_TYPES) & sig["value"].notna(),
        [
            "id",
            "event_id",
            "ev",
            "source",
            "source_event_id",
            "signal_type",
            "value",
            "w",
            "t",
            "bucket",
        ],
    ].reset_index(drop=True)
    prices["is_market"] = prices["signal_type"] == "MARKET_PRICE"
    pair = pd.factorize(
        pd.factorize(prices["source"])[0].astype("int64") << 32
        | pd.factorize(prices["source_event_id"])[0].astype("int64")
    )[0]
    prices["market"] = pd.factorize(prices["ev"].to_numpy().astype("int64") << 32 | pair)[0]
    market = prices["market"].to_numpy()
    totals = np.bincount(market, weights=prices["w"].to_numpy())
    # Tiny floor: markets of zero weight still count when no market has any weight.
    prices["mw"] = (totals / np.bincount(market))[market] + 1e-9
    return prices


def _price_matrices(
    prices: pd.DataFrame, event_ids: pd.Index, buckets: list[int]
) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Per (event, source): last probability per bucket carried forward, and its weight (all
    probability types); per event: the consensus of the MARKET_PRICE markets."""
    nb = len(buckets)
    markets = prices.drop_duplicates("market").sort_values("market")
    n_markets = len(markets)
    grid = _grid(prices.assign(ev=prices["market"]), "value", pd.RangeIndex(n_markets), buckets)
    grid = pd.DataFrame(grid).ffill(axis=1).to_numpy()
    ev_m = markets["ev"].to_numpy()
    mw = markets["mw"].to_numpy()
    seen = ~np.isnan(grid) & markets["is_market"].to_numpy()[:, None]
    num = np.zeros((len(event_ids), nb))
    den = np.zeros((len(event_ids), nb))
    np.add.at(num, ev_m, np.where(seen, grid, 0.0) * mw[:, None])
    np.add.at(den, ev_m, seen * mw[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        consensus = np.where(den > 0, num / den, np.nan)
    per_source = pd.DataFrame(grid, columns=buckets)
    index = pd.MultiIndex.from_arrays(
        [event_ids[ev_m], markets["source"].to_numpy()], names=["event_id", "source"]
    )
    per_source.index = index
    source = per_source.groupby(level=[0, 1], sort=True).mean()
    source_weight = pd.Series(mw, index=index).groupby(level=[0, 1], sort=True).sum()
    return source, source_weight, consensus


def _robust(trail: pd.DataFrame, floor: float) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Median, floored MAD sigma and count of each row's non-missing trailing values."""
    values = trail.to_numpy(dtype="float64")
    n = (~np.isnan(values)).sum(axis=1)
    med = np.full(len(values), np.nan)
    mad = np.full(len(values), np.nan)
    some = n > 0  # rows without a value keep NaN (nanmedian would warn on them)
    if some.any():
        med[some] = np.nanmedian(values[some], axis=1)
        mad[some] = np.nanmedian(np.abs(values[some] - med[some, None]), axis=1)
    index = trail.index
    return (
        pd.Series(med, index=index),
        pd.Series(np.maximum(MAD_SCALE * mad, floor), index=index),
        pd.Series(n, index=index),
    )


def _volume(
    sig: pd.DataFrame,
    snap_last: pd.DataFrame,
    event_ids: pd.Index,
    buckets: list[int],
    config: TrustConfig,
) -> pd.DataFrame:
    snap_vol = _grid(snap_last, "volume", event_ids, buckets)
    flows = sig[sig["signal_type"] == "VOLUME"]
    # A lifetime total (Kalshi, Manifold market listings) is a level, not a flow: not summed.
    lifetime = [
        isinstance(raw, dict) and str(raw.get("volume_scope", "")).startswith("lifetime")
        for raw in flows["raw_data"].to_numpy()
    ]
    flows = flows[~np.asarray(lifetime, dtype=bool)]
    sig_vol = _grid(flows, "value", event_ids, buckets, "sum") * 1000.0
    # One basis per event, never mixed: its snapshots if it has one for the interval.
    from_snap = ~np.isnan(snap_vol[:, -1])
    grid = np.where(from_snap[:, None], snap_vol, sig_vol)
    series = pd.DataFrame(grid, index=event_ids, columns=buckets)
    logv = np.log1p(series.clip(lower=0))
    med, sigma, n = _robust(logv[buckets[:-1]], config.volume_min_log_scale)
    z = ((logv[0] - med) / sigma).where(n >= config.min_baseline_intervals)
    return pd.DataFrame(
        {
            "observed": series[0],
            "baseline": np.expm1(med),
            "z": z,
            "sigma": sigma,
            "n": n,
            "basis": np.where(from_snap, "snapshots", "volume_signals"),
        },
        index=event_ids,
    )


def _logit(p: pd.DataFrame | pd.Series) -> Any:
    p = p.clip(PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return np.log(p / (1 - p))


def _move(probability: pd.DataFrame, config: TrustConfig) -> pd.DataFrame:
    moves = _logit(probability).diff(axis=1)
    med, sigma, n = _robust(moves[probability.columns[1:-1]], config.price_min_logit_scale)
    d = moves[0]
    z = ((d - med).abs() / sigma).where(n >= config.min_baseline_intervals)
    return pd.DataFrame(
        {
            "p_prev": probability[-1],
            "p_now": probability[0],
            "dp": probability[0] - probability[-1],
            "d_logit": d,
            "jump_z": z,
            "median": med,
            "sigma": sigma,
            "n": n,
        },
        index=probability.index,
    )


def _anscombe(count: pd.DataFrame | pd.Series) -> Any:
    """Poisson counts to a scale of unit variance."""
    return 2.0 * np.sqrt(count + 0.375)


def _burst(
    sig: pd.DataFrame, event_ids: pd.Index, buckets: list[int], config: TrustConfig
) -> pd.DataFrame:
    posts = sig[sig["signal_type"].isin(SENTIMENT_TYPES)].assign(one=1.0)
    counts = pd.DataFrame(
        np.nan_to_num(_grid(posts, "one", event_ids, buckets, "sum")),
        index=event_ids,
        columns=buckets,
    )
    a = _anscombe(counts)
    med, sigma, n = _robust(a[buckets[:-1]], 1.0)
    return pd.DataFrame(
        {
            "count": counts[0].astype("int64"),
            "baseline": counts[buckets[:-1]].median(axis=1),
            "z": (a[0] - med) / sigma,
        },
        index=event_ids,
    )


# ---- narratives ---------------------------------------------------------------------------


def normalise_text(text: str) -> str:
    """Case-folded, links dropped, punctuation and emoji folded to single spaces."""
    return _NON_WORD.sub(" ", _URL.sub(" ", text.casefold())).strip()


def shingles(text: str, size: int) -> frozenset[str]:
    """The word `size`-grams of a normalised text (the words themselves when shorter)."""
    words = text.split()
    if len(words) < size:
        return frozenset(words)
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def similarity_groups(texts: list[str], threshold: float, size: int) -> np.ndarray:
    """Connected components of the texts whose shingle Jaccard is >= threshold (labels)."""
    sets = [shingles(t, size) for t in texts]
    vocab = {s: i for i, s in enumerate(sorted(set().union(*sets)))}
    m = len(texts)
    if not vocab:
        return np.arange(m)
    rows = np.repeat(np.arange(m), [len(s) for s in sets])
    cols = np.fromiter((vocab[x] for s in sets for x in sorted(s)), dtype=np.int64, count=len(rows))
    member = np.zeros((m, len(vocab)), dtype=np.float32)
    member[rows, cols] = 1.0
    size_of = member.sum(axis=1)
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for lo in range(0, m, 1024):  # bounded memory for very large groups
        inter = member[lo : lo + 1024] @ member.T
        union = size_of[lo : lo + 1024, None] + size_of[None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            similar = (inter / union) >= threshold
        i, j = np.nonzero(similar)
        left.append(i + lo)
        right.append(j)
    return _components(m, np.concatenate(left), np.concatenate(right))


def _components(m: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Label of each node = the smallest node of its connected component."""
    labels = np.arange(m)
    while True:
        new = labels.copy()
        np.minimum.at(new, i, labels[j])
        np.minimum.at(new, j, labels[i])
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def _narratives(sig: pd.DataFrame, start_ns: int, end_ns: int, config: TrustConfig) -> pd.DataFrame:
    """Narrative signals of [start - coordination window, end), clustered per event.

    `cluster` is the id of the cluster's earliest signal; `cluster_size` counts the cluster's
    signals inside the interval; `first` marks each cluster's earliest signal.
    """
    since = start_ns - nanoseconds(config.coordination_window)
    rows = sig[
        sig["signal_type"].isin(NARRATIVE_TYPES).to_numpy()
        & (sig["t"].to_numpy() >= since)
        & sig["narrative"].notna().to_numpy()
    ]
    rows = rows[rows["narrative"].astype(str).str.strip() != ""]
    columns = [
        "id",
        "event_id",
        "signal_type",
        "source",
        "origin",
        "value",
        "weight",
        "reliability",
        "t",
        "bucket",
    ]
    rows = rows[columns].copy()
    rows["text"] = [normalise_text(str(n)) for n in sig.loc[rows.index, "narrative"]]
    rows = rows[rows["text"] != ""]  # links or emoji only: nothing to compare
    text_id = rows.groupby(["event_id", "text"], sort=False).ngroup().to_numpy()
    rows["text_id"] = text_id
    label_of = np.arange(int(text_id.max()) + 1 if len(text_id) else 0)
    uniq = rows.drop_duplicates("text_id")[["event_id", "text", "text_id"]]
    many = uniq.groupby("event_id")["text_id"].transform("size") > 1
    for _, group in uniq[many].groupby("event_id", sort=False):
        ids = group["text_id"].to_numpy()
        comp = similarity_groups(
            list(group["text"]), config.narrative_similarity, config.narrative_shingle
        )
        label_of[ids] = ids[comp]
    label = label_of[text_id]
    rows["group"] = label
    # rows are in (event_id, t, id) order, so the first row of a group is its earliest signal
    rows["cluster"] = rows.groupby("group")["id"].transform("first")
    rows["first"] = ~rows["group"].duplicated()
    in_interval = rows["bucket"] == 0
    rows["cluster_size"] = in_interval.groupby(rows["group"]).transform("sum").astype("int64")
    return rows.drop(columns=["group", "text_id"])


# ---- account-level trades -----------------------------------------------------------------


TRADE_COLUMNS = [
    "event_id",
    "trade_key",
    "t",
    "account",
    "direction",
    "amount",
    "in_interval",
    "round_trip",
    "involved",
]


def _trades(
    sig: pd.DataFrame, start_ns: int, config: TrustConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trades whose raw_data names the account (Manifold bets): one row per trade, and the ids.

    direction = +1 for a trade that pushes the YES price up (buying YES, selling NO), -1
    otherwise; `round_trip` marks a trade in the interval whose account traded the opposite
    direction within `wash_window` before it, `involved` both trades of such a pair. A trade
    reported as several signals (a bet's price and its volume) is one trade; the second frame
    maps every such signal (event_id, trade_key, signal_id) with its trade's `involved`.
    """
    wash_ns = nanoseconds(config.wash_window)
    near = sig[sig["t"].to_numpy() >= start_ns - wash_ns]
    parsed = [
        _trade(raw) if isinstance(raw, dict) and "outcome" in raw else None
        for raw in near["raw_data"].to_numpy()
    ]
    keep = np.fromiter((p is not None for p in parsed), dtype=bool, count=len(parsed))
    rows = pd.DataFrame.from_records(
        [p for p in parsed if p is not None],
        columns=["trade_key", "account", "direction", "amount"],
    )
    rows.insert(0, "event_id", near["event_id"].to_numpy()[keep])
    rows["signal_id"] = near["id"].to_numpy()[keep]
    rows["t"] = near["t"].to_numpy()[keep].astype("int64")
    trades = rows.drop_duplicates(["event_id", "trade_key"]).sort_values(
        ["event_id", "account", "t", "trade_key"], kind="stable"
    )
    same = trades["event_id"].eq(trades["event_id"].shift()) & trades["account"].eq(
        trades["account"].shift()
    )
    flip = (
        same
        & trades["direction"].ne(trades["direction"].shift())
        & (trades["t"] - trades["t"].shift() <= wash_ns)
    )
    trades["in_interval"] = trades["t"] >= start_ns
    trades["round_trip"] = flip & trades["in_interval"]
    trades["involved"] = trades["round_trip"] | trades["round_trip"].shift(-1, fill_value=False)
    trades = trades.sort_values(["event_id", "t", "trade_key"], kind="stable")
    ids = rows[["event_id", "trade_key", "signal_id", "t"]].merge(
        trades[["event_id", "trade_key", "involved"]], on=["event_id", "trade_key"]
    )
    return trades[TRADE_COLUMNS].reset_index(drop=True), ids


def _trade(raw: dict) -> tuple[str, str, int, float] | None:
    """(trade key, account, direction, |amount|) of a raw trade, None if it is not one."""
    if raw.get("isRedemption") is True:
        return None
    account = _account(raw)
    outcome = str(raw.get("outcome", "")).upper()
    amount = raw.get("amount")
    if account is None or outcome not in ("YES", "NO") or not isinstance(amount, int | float):
        return None
    if isinstance(amount, bool) or not math.isfinite(amount) or amount == 0:
        return None
    key = raw.get("id")
    key = str(key) if isinstance(key, str | int) else f"{account}:{raw.get('createdTime')}:{amount}"
    direction = (1 if amount > 0 else -1) * (1 if outcome == "YES" else -1)
    return key, account, direction, abs(float(amount))


def wash_summary(m: Measurements) -> pd.DataFrame:
    """Per event: interval trade amount, round trips, round-tripping amount, share, accounts."""
    trades = m.trades[m.trades["in_interval"]]
    if trades.empty:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64")
                for c in ("amount", "round_trips", "wash_amount", "share", "accounts")
            },
            index=pd.Index([], name="event_id", dtype=object),
        )
    involved = trades["amount"].where(trades["involved"], 0.0)
    summary = pd.DataFrame(
        {
            "amount": trades.groupby("event_id")["amount"].sum(),
            "round_trips": trades.groupby("event_id")["round_trip"].sum().astype("int64"),
            "wash_amount": involved.groupby(trades["event_id"]).sum(),
            "accounts": trades[trades["involved"]].groupby("event_id")["account"].nunique(),
        }
    )
    summary["accounts"] = summary["accounts"].fillna(0).astype("int64")
    summary["share"] = summary["wash_amount"] / summary["amount"]
    return summary


# ---- explanations -------------------------------------------------------------------------


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
    pool = sig[
        sig["signal_type"].isin(types).to_numpy()
        & sig["value"].notna().to_numpy()
        & (sig["t"].to_numpy() >= (targets["since"].min() if len(targets) else 0))
        & sig["event_id"].isin(targets["event_id"]).to_numpy()
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
    ids = found.groupby("_target")["id"].agg(list).to_dict()
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


# ---- components ---------------------------------------------------------------------------


def source_diversity(current: pd.DataFrame, event_ids: pd.Index) -> pd.Series:
    """Normalised Shannon entropy of each event's weight x reliability per source."""
    per_source = current.groupby(["event_id", "source"])["w"].sum()
    total = per_source.groupby(level=0).transform("sum")
    share = (per_source / total.where(total > 0)).fillna(0.0)
    terms = -(share * np.log(share.where(share > 0, 1.0)))
    entropy = terms.groupby(level=0).sum()
    k = per_source.groupby(level=0).size()
    diversity = (entropy / np.log(k.where(k > 1))).where(total.groupby(level=0).first() > 0)
    return diversity.reindex(event_ids).fillna(0.0).clip(0.0, 1.0)


def _decay(z: pd.Series, scale: float) -> pd.Series:
    return (1.0 / (1.0 + (z / scale) ** 2)).fillna(1.0)


def raw_components(m: Measurements) -> pd.DataFrame:
    """The five components before flag penalties, one row per scored event."""
    cfg = m.config
    current = m.current()
    ids = m.event_ids

    volume = _decay(m.volume["z"], cfg.volume_spike_z)

    explained = interval_explanations(m)["reliability"].reindex(ids).fillna(0.0)
    temporal = _decay(m.move["jump_z"] * (1.0 - explained), cfg.jump_z)

    now = m.source_probability[0].dropna()
    weight = m.source_weight.reindex(now.index)
    p0 = m.probability[0].reindex(now.index.get_level_values(0)).to_numpy()
    deviation = (now - p0).abs() * weight
    disagreement = deviation.groupby(level=0).sum() / weight.groupby(level=0).sum()
    sources = now.groupby(level=0).size()
    agree = _decay(disagreement.where(sources > 1), cfg.disagreement_scale).reindex(ids)
    s = (m.volume["z"] / cfg.volume_spike_z).clip(0.0, 1.0).fillna(0.0)
    q = (1.0 - m.move["dp"].abs() / (5 * cfg.wash_max_move)).clip(0.0, 1.0).fillna(0.0)
    impact = 1.0 - 0.5 * s**2 * q
    accounts = 1.0 - wash_summary(m)["share"].reindex(ids).fillna(0.0)
    integrity = agree.fillna(1.0) * impact * accounts

    posts = current[current["signal_type"].isin(NARRATIVE_TYPES)]
    cluster = m.narratives.set_index("id")["cluster_size"]
    copies = cluster.reindex(posts["id"]).fillna(1.0).clip(lower=1.0).to_numpy()
    authentic = (posts["w"] / copies).groupby(posts["event_id"]).sum()
    total = posts.groupby("event_id")["weight"].sum()
    base = (authentic / total.where(total > 0)).reindex(ids).fillna(1.0)
    burst = _decay(m.burst["z"].clip(lower=0.0), cfg.burst_z)
    sentiment = base * burst

    return pd.DataFrame(
        {
            "market_integrity": integrity,
            "sentiment_authenticity": sentiment,
            "source_diversity": source_diversity(current, ids),
            "volume_consistency": volume,
            "temporal_consistency": temporal,
        },
        index=ids,
    ).clip(0.0, 1.0)


def score(raw: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """Apply the flags' penalties, combine the components, grade the manipulation risk.

    flags: one row per raised flag with event_id, flag_type and severity.
    """
    scores = raw.copy()
    if not flags.empty:
        for flag_type, components in FLAG_COMPONENTS.items():
            of_type = flags[flags["flag_type"] == flag_type]
            factor = (
                (1.0 - of_type["severity"].map(FLAG_PENALTY)).groupby(of_type["event_id"]).prod()
            )
            factor = factor.reindex(scores.index).fillna(1.0)
            for component in components:
                scores[component] = scores[component] * factor
    overall = sum(scores[c] * w for c, w in OVERALL_WEIGHTS.items())
    count = flags.groupby("event_id").size().reindex(scores.index).fillna(0).astype("int64")
    types = flags.groupby("event_id")["flag_type"].nunique().reindex(scores.index).fillna(0)
    rank = flags["severity"].map({s: i for i, s in enumerate(SEVERITIES)}).astype("float64")
    severity = rank.groupby(flags["event_id"]).max().reindex(scores.index).fillna(-1.0)
    critical = (severity >= SEVERITIES.index("CRITICAL")) | (overall < 0.25)
    high = (severity >= SEVERITIES.index("ALERT")) | (types >= 2) | (overall < 0.45)
    medium = (count > 0) | (overall < 0.65)
    scores["overall_score"] = overall.clip(0.0, 1.0)
    scores["manipulation_risk"] = np.select(
        [critical, high, medium], ["CRITICAL", "HIGH", "MEDIUM"], "LOW"
    )
    scores["flagged_activity"] = count > 0
    scores["flag_count"] = count
    return scores.reset_index(names="event_id")[SCORE_COLUMNS]
