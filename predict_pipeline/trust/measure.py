"""Trust measurements: the series and statistics of one interval that every component and
detector shares.

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
  without a value is missing, not zero. This event-level sum feeds the components only: summed
  over venues, a 9x spike on a venue trading a tenth of the event shows as under 2x.
- venue volume, per market (event, source, source_event_id) with VOLUME flow signals: v_k its
  flows summed (x 1000), with its own robust z and trailing median (the ratio observed /
  median), its own price move (its MARKET_PRICE quotes: |p_0 - p_-1| and the jump z of its
  logit moves; the event's move when it quotes no price), and peer_ratio = the pooled ratio of
  the event's other markets (their summed volume over their summed medians; missing without
  any): a rise every venue shares has a high peer_ratio. An event none of whose venues has
  min_baseline_intervals trailing values of its own (e.g. volume only in snapshots) has one row
  of its event-level volume (source missing) as well. VOLUME_SPIKE and WASH_TRADING read these.
- sentiment count c_k: the bucket's SENTIMENT and SOCIAL signals (0 when there are none).

Robust statistics use the trailing buckets: med = their median, sigma = max(1.4826 MAD, floor).
A statistic needs at least `min_baseline_intervals` trailing values; without them it is missing
and the component it feeds counts as 1 (no evidence of inconsistency).

The components built from them are in `score`, the flags in `detectors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.model import PROBABILITY_TYPES, SIGNAL_TYPES
from predict_pipeline.trust.config import (
    EVENT_INPUT_COLUMNS,
    MAD_SCALE,
    NARRATIVE_TYPES,
    PROBABILITY_CLIP,
    SENTIMENT_TYPES,
    SIGNAL_INPUT_COLUMNS,
    SNAPSHOT_INPUT_COLUMNS,
    TrustConfig,
    TrustInputError,
    nanoseconds,
)
from predict_pipeline.trust.text import narrative_clusters
from predict_pipeline.trust.trades import account_of, account_trades, wash_summary

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
    current_signals: pd.DataFrame  # the rows of `signals` in the interval (bucket 0)
    events: pd.DataFrame  # index event_id: close_ns (int, or -1), outcome_direction (+1/-1/0)
    prices: pd.DataFrame  # probability rows: market code, is_market, market weight mw
    probability: pd.DataFrame  # event x bucket
    source_probability: pd.DataFrame  # (event_id, source) x bucket, ffilled
    source_weight: pd.Series  # (event_id, source)
    volume: pd.DataFrame  # event: observed, baseline, z, sigma, n, basis
    venue_volume: pd.DataFrame  # one row per market (see the module doc)
    move: pd.DataFrame  # event: p_prev, p_now, dp, d_logit, jump_z, sigma, n
    burst: pd.DataFrame  # event: count, baseline, z
    narratives: pd.DataFrame  # narrative signals near the interval with cluster and cluster_size
    trades: pd.DataFrame  # account-level trades near the interval with round_trip flags
    trade_signals: pd.DataFrame  # event_id, trade_key, signal_id, t, involved
    wash: pd.DataFrame  # wash_summary(trades): per event round trips and their share

    @property
    def window_start_ns(self) -> int:
        return self.start_ns - len(self.buckets[:-1]) * self.length_ns

    def current(self) -> pd.DataFrame:
        """The interval's own signals."""
        return self.current_signals


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

    current_events = set(sig["event_id"].to_numpy()[sig["bucket"].to_numpy() == 0])
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
    sig = _ordered(sig, event_ids)
    snap = snap.assign(ev=event_ids.get_indexer(snap["event_id"]))
    snap = snap[snap["ev"] >= 0]
    snap = snap.iloc[
        np.lexsort((snap["t"].to_numpy(), snap["bucket"].to_numpy(), snap["ev"].to_numpy()))
    ]
    snap_last = snap.drop_duplicates(["ev", "bucket"], keep="last")

    prices = _prices(sig)
    source_probability, source_weight, consensus, market_grid = _price_matrices(
        prices, event_ids, buckets
    )
    snap_prob = _grid(snap_last, "probability", event_ids, buckets)
    probability = pd.DataFrame(
        np.where(np.isnan(consensus), snap_prob, consensus), index=event_ids, columns=buckets
    ).ffill(axis=1)
    # A lifetime total (Kalshi, Manifold market listings) is a level, not a flow: not summed.
    flow_rows = is_type(sig, "VOLUME") & ~sig["lifetime"].to_numpy()
    flows = _columns(sig, flow_rows, ["ev", "src", "market_id_code", "bucket", "value", *VENUE_KEY])
    volume = _volume(flows, snap_last, event_ids, buckets, config)
    move = _move(probability, config)
    venue_volume = _venue_volume(
        flows, prices, market_grid, volume, move, event_ids, buckets, config
    )
    burst = _burst(sig, event_ids, buckets, config)
    narratives = narrative_clusters(sig, start_ns, end_ns, config)
    trades, trade_signals = account_trades(sig, start_ns, config)
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
        current_signals=sig[sig["bucket"].to_numpy() == 0],
        events=info.reindex(event_ids),
        prices=prices,
        probability=probability,
        source_probability=source_probability,
        source_weight=source_weight,
        volume=volume,
        venue_volume=venue_volume,
        move=move,
        burst=burst,
        narratives=narratives,
        trades=trades,
        trade_signals=trade_signals,
        wash=wash_summary(trades),
    )


# Columns `prepare_signals` adds; a frame that has them all is read as prepared.
PREPARED_COLUMNS = (
    "t",
    "w",
    "account",
    "lifetime",
    "id_rank",
    "kind",
    "source_code",
    "market_id_code",
    "event_code",
)
_KIND = {name: code for code, name in enumerate(SIGNAL_TYPES)}


def is_type(frame: pd.DataFrame, *types: str) -> np.ndarray:
    """Rows of the given signal types, read from the integer `kind` (no string comparisons)."""
    kind = frame["kind"].to_numpy()
    if len(types) == 1:
        return kind == _KIND[types[0]]
    return np.isin(kind, [_KIND[t] for t in types])


def prepare_signals(signals: pd.DataFrame) -> pd.DataFrame:
    """The signals frame validated and read once, for all the intervals scored from it.

    Adds t (fetched_at in ns), w (weight x reliability), account (raw_data's account of the
    narrative types' rows), lifetime (a VOLUME row carrying a lifetime total), id_rank (the
    id's place in id order), kind (the signal type's place in SIGNAL_TYPES) and source_code /
    market_id_code / event_code (integer codes of source, source_event_id and event_id).
    `compute_trust` takes a prepared frame, or any slice of one, as it is: a ranged run pays
    for this once, not once per interval.
    """
    _require(signals, "signals", SIGNAL_INPUT_COLUMNS)
    t = _utc_ns(signals, "signals", "fetched_at", nullable=False)
    return _prepared(signals[list(SIGNAL_INPUT_COLUMNS)].copy(), t)


def _prepared(frame: pd.DataFrame, t: np.ndarray) -> pd.DataFrame:
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
    frame["w"] = frame["weight"] * frame["reliability"]
    kind = frame["signal_type"].to_numpy()
    raw = frame["raw_data"].to_numpy()
    narrative = np.isin(kind, NARRATIVE_TYPES)
    account = np.full(len(frame), None, dtype=object)
    account[narrative] = [account_of(r) for r in raw[narrative]]
    frame["account"] = account
    # A lifetime total (Kalshi, Manifold market listings) is a level, not a flow: not summed.
    volume = kind == "VOLUME"
    lifetime = np.zeros(len(frame), dtype=bool)
    lifetime[volume] = [
        isinstance(r, dict) and str(r.get("volume_scope", "")).startswith("lifetime")
        for r in raw[volume]
    ]
    frame["lifetime"] = lifetime
    rank = np.empty(len(frame), dtype="int64")
    rank[np.argsort(frame["id"].to_numpy().astype("U"), kind="stable")] = np.arange(len(frame))
    frame["id_rank"] = rank
    # integer codes, so each interval compares and groups numbers, not strings
    frame["kind"] = pd.Categorical(kind, categories=SIGNAL_TYPES).codes
    for column, code in (
        ("source", "source_code"),
        ("source_event_id", "market_id_code"),
        ("event_id", "event_code"),
        ("signal_type", None),
    ):
        codes, uniques = pd.factorize(frame[column])
        # one string object per distinct value (equal values, shared): copying and hashing
        # the column then touches a few thousand objects, not one per row
        frame[column] = np.asarray(uniques, dtype=object)[codes]
        if code is not None:
            frame[code] = codes.astype("int64")
    return frame


def _window_signals(
    signals: pd.DataFrame,
    window_ns: int,
    end_ns: int,
    start_ns: int,
    length: int,
    origin_lookback: timedelta,
) -> pd.DataFrame:
    if isinstance(signals, pd.DataFrame) and set(PREPARED_COLUMNS) <= set(signals.columns):
        t = signals["t"].to_numpy()
        keep = (t >= window_ns) & (t < end_ns)
        frame = signals[keep] if not keep.all() else signals
        columns = [*SIGNAL_INPUT_COLUMNS, *PREPARED_COLUMNS]
        # a shallow copy: only whole columns are added or replaced below, the caller's
        # frame is left as it was without copying every row of the window
        frame = frame.copy(deep=False) if list(frame.columns) == columns else frame[columns]
    else:
        _require(signals, "signals", SIGNAL_INPUT_COLUMNS)
        t = _utc_ns(signals, "signals", "fetched_at", nullable=False)
        keep = (t >= window_ns) & (t < end_ns)
        frame = _prepared(signals.loc[keep, list(SIGNAL_INPUT_COLUMNS)].copy(), t[keep])
    t = frame["t"].to_numpy()
    frame["bucket"] = np.floor_divide(t - start_ns, length).astype("int64")
    origin = frame["source"].to_numpy(dtype=object).copy()
    # Origins are read for NEWS (plants, corroboration) and for posts near the interval.
    posts = is_type(frame, "NEWS") | (
        is_type(frame, *NARRATIVE_TYPES) & (t >= start_ns - nanoseconds(origin_lookback))
    )
    if posts.any():
        accounts = frame["account"].to_numpy()[posts]
        origin[posts] = [
            s if a is None else f"{s}/{a}" for s, a in zip(origin[posts], accounts, strict=True)
        ]
    frame["origin"] = origin
    del frame["account"]  # our own frame (a copy above), so no copy of the window here
    return frame


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
    """The rows of `event_ids` in (event_id, t, id) order, whatever order they came in;
    `ev` = event position, `src` = source code in order of first appearance."""
    ev = _positions(sig["event_code"].to_numpy(), sig["event_id"].to_numpy(), event_ids)
    rank, t = sig["id_rank"].to_numpy(), sig["t"].to_numpy()
    kept = ev >= 0
    if not kept.all():
        ev, rank, t = ev[kept], rank[kept], t[kept]
    # A window read in this order (TrustWindow) is kept as it is: no sort, no copy of its rows.
    step_ev, step_t = np.diff(ev), np.diff(t)
    ordered = bool(
        np.all(
            (step_ev > 0)
            | ((step_ev == 0) & ((step_t > 0) | ((step_t == 0) & (np.diff(rank) > 0))))
        )
    )
    if ordered:
        out = sig[kept] if not kept.all() else sig.copy(deep=False)
        out.index = pd.RangeIndex(len(out))
    else:
        order = np.lexsort((rank, t, ev))
        positions = np.nonzero(kept)[0][order]
        out = sig.take(positions)
        out.index = pd.RangeIndex(len(out))
        ev = ev[order]
    del out["id_rank"]
    out["ev"] = ev
    out["src"] = pd.factorize(out["source_code"].to_numpy())[0]
    return out


def _positions(codes: np.ndarray, ids: np.ndarray, index: pd.Index) -> np.ndarray:
    """index.get_indexer(ids), looked up once per run of equal ids (`codes`: the ids' integer
    codes; a window in event order has one run per event: a thousand look-ups, not 200,000)."""
    if len(ids) == 0:
        return np.empty(0, dtype="intp")
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    return np.repeat(index.get_indexer(ids[starts]), np.diff(np.append(starts, len(ids))))


def _columns(frame: pd.DataFrame, rows: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """frame.loc[rows, columns] as a new frame built from the columns' arrays (no copy of the
    frame's other columns, no index alignment)."""
    at = np.flatnonzero(rows)
    return pd.DataFrame({c: frame[c].to_numpy()[at] for c in columns}, copy=False)


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
    rows = is_type(sig, *PROBABILITY_TYPES) & sig["value"].notna().to_numpy()
    prices = _columns(
        sig,
        rows,
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
    )
    prices["is_market"] = is_type(sig, "MARKET_PRICE")[rows]
    # (source, source_event_id) as one integer; codes by first appearance, as for strings
    pair = sig["source_code"].to_numpy()[rows] << 32 | sig["market_id_code"].to_numpy()[rows]
    prices["market"] = pd.factorize(prices["ev"].to_numpy().astype("int64") << 32 | pair)[0]
    market = prices["market"].to_numpy()
    totals = np.bincount(market, weights=prices["w"].to_numpy())
    # Tiny floor: markets of zero weight still count when no market has any weight.
    prices["mw"] = (totals / np.bincount(market))[market] + 1e-9
    return prices


def _price_matrices(
    prices: pd.DataFrame, event_ids: pd.Index, buckets: list[int]
) -> tuple[pd.DataFrame, pd.Series, np.ndarray, pd.DataFrame]:
    """Per (event, source): last probability per bucket carried forward, and its weight (all
    probability types); per event: the consensus of the MARKET_PRICE markets."""
    nb = len(buckets)
    markets = prices.drop_duplicates("market").sort_values("market")
    n_markets = len(markets)
    by_market = pd.DataFrame(
        {
            "ev": prices["market"].to_numpy(),
            "bucket": prices["bucket"].to_numpy(),
            "value": prices["value"].to_numpy(),
        }
    )
    grid = _grid(by_market, "value", pd.RangeIndex(n_markets), buckets)
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
    # each MARKET_PRICE market's own series, keyed as the venue volumes are
    own = markets["is_market"].to_numpy()
    market_grid = pd.DataFrame(
        grid[own],
        columns=buckets,
        index=pd.MultiIndex.from_arrays(
            [
                event_ids[ev_m[own]],
                markets["source"].to_numpy()[own],
                markets["source_event_id"].to_numpy()[own],
            ],
            names=["event_id", "source", "source_event_id"],
        ),
    )
    return source, source_weight, consensus, market_grid


def _row_medians(values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Each row's median of its n non-NaN values (NaN where n = 0): the middle value, or the
    mean of the two middle ones, of the row sorted with its NaNs last."""
    ordered = np.sort(values, axis=1)
    low = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, np.minimum(n // 2, values.shape[1] - 1)[:, None], axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, (low + high[:, 0]) / 2, np.nan)


def _robust(trail: pd.DataFrame, floor: float) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Median, floored MAD sigma and count of each row's non-missing trailing values."""
    values = trail.to_numpy(dtype="float64")
    n = (~np.isnan(values)).sum(axis=1)
    med = np.full(len(values), np.nan)
    mad = np.full(len(values), np.nan)
    some = n > 0  # rows without a value keep NaN (nanmedian would warn on them)
    if some.any() and not np.any(np.signbit(values) & (values == 0)):
        # as nanmedian gives them (a sort per row, not a masked median of each row)
        med = _row_medians(values, n)
        mad = _row_medians(np.abs(values - med[:, None]), n)
    elif some.any():  # which of -0.0 and 0.0 nanmedian returns is its own: it decides
        med[some] = np.nanmedian(values[some], axis=1)
        mad[some] = np.nanmedian(np.abs(values[some] - med[some, None]), axis=1)
    index = trail.index
    return (
        pd.Series(med, index=index),
        pd.Series(np.maximum(MAD_SCALE * mad, floor), index=index),
        pd.Series(n, index=index),
    )


def _volume(
    flows: pd.DataFrame,
    snap_last: pd.DataFrame,
    event_ids: pd.Index,
    buckets: list[int],
    config: TrustConfig,
) -> pd.DataFrame:
    """flows: the window's VOLUME flow rows (ev, bucket, value)."""
    snap_vol = _grid(snap_last, "volume", event_ids, buckets)
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


VENUE_KEY = ["event_id", "source", "source_event_id"]


def _venue_volume(
    flows: pd.DataFrame,
    prices: pd.DataFrame,
    market_grid: pd.DataFrame,
    volume: pd.DataFrame,
    move: pd.DataFrame,
    event_ids: pd.Index,
    buckets: list[int],
    config: TrustConfig,
) -> pd.DataFrame:
    # one integer key per market: event position, source code, market id code
    market_code = pd.factorize(flows["market_id_code"].to_numpy())[0].astype("int64")
    key = flows["ev"].to_numpy().astype("int64") << 40 | flows["src"].to_numpy() << 24 | market_code
    _, first, codes = np.unique(key, return_index=True, return_inverse=True)
    index = pd.MultiIndex.from_arrays(
        [flows[c].to_numpy()[first] for c in VENUE_KEY], names=VENUE_KEY
    )
    by_venue = pd.DataFrame(
        {"ev": codes, "bucket": flows["bucket"].to_numpy(), "value": flows["value"].to_numpy()}
    )
    grid = _grid(by_venue, "value", index, buckets, "sum") * 1000.0
    series = pd.DataFrame(grid, index=index, columns=buckets)
    logv = np.log1p(series.clip(lower=0))
    med, sigma, n = _robust(logv[buckets[:-1]], config.volume_min_log_scale)
    venues = pd.DataFrame(
        {
            "observed": series[0],
            "baseline": np.expm1(med),
            "z": ((logv[0] - med) / sigma).where(n >= config.min_baseline_intervals),
            "sigma": sigma,
            "n": n,
        },
        index=index,
    )
    # each venue's own price move; the event's where the venue quotes no price
    own = market_grid.reindex(index)
    logits = _logit(own).diff(axis=1)
    own_med, own_sigma, own_n = _robust(logits[buckets[1:-1]], config.price_min_logit_scale)
    event_move = move.reindex(index.get_level_values("event_id"))
    quoted = own[0].notna().to_numpy()
    venues["dp"] = np.where(quoted, own[0] - own[-1], event_move["dp"].to_numpy())
    own_z = ((logits[0] - own_med).abs() / own_sigma).where(own_n >= config.min_baseline_intervals)
    venues["jump_z"] = np.where(quoted, own_z, event_move["jump_z"].to_numpy())
    venues["price_basis"] = np.where(quoted, "venue", "event")
    # the pooled ratio of the event's other venues: a rise they share is not this venue's own
    usable = venues["observed"].notna() & (venues["baseline"] > 0) & venues["z"].notna()
    obs = venues["observed"].where(usable, 0.0)
    base = venues["baseline"].where(usable, 0.0)
    by_event = index.get_level_values("event_id")
    other_obs = obs.groupby(by_event).transform("sum") - obs
    other_base = base.groupby(by_event).transform("sum") - base
    venues["peer_ratio"] = (other_obs / other_base.where(other_base > 0)).to_numpy()
    rising = (usable & (obs >= config.volume_shared_ratio * base)).astype("float64")
    others = usable.astype("float64").groupby(by_event).transform("sum") - usable
    venues["peers_rising"] = (
        (rising.groupby(by_event).transform("sum") - rising) / others.where(others > 0)
    ).to_numpy()
    venues["basis"] = "volume_signals"
    venues = venues.reset_index()
    # an event none of whose venues has a baseline of its own keeps its event-level volume
    rest = volume[~volume.index.isin(venues.loc[venues["z"].notna(), "event_id"])]
    rest = rest.assign(
        source=None,
        source_event_id=None,
        dp=move["dp"].reindex(rest.index),
        jump_z=move["jump_z"].reindex(rest.index),
        price_basis="event",
        peer_ratio=np.nan,
        peers_rising=np.nan,
    ).reset_index()
    out = pd.concat([venues, rest[venues.columns]], ignore_index=True) if len(rest) else venues
    ratio = out["observed"] / out["baseline"].where(out["baseline"] > 0)
    out["ratio"] = ratio.where(out["baseline"] > 0, np.where(out["observed"] > 0, np.inf, np.nan))
    return out.sort_values(VENUE_KEY, kind="stable", na_position="first", ignore_index=True)


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
    rows = is_type(sig, *SENTIMENT_TYPES)
    posts = pd.DataFrame(
        {"ev": sig["ev"].to_numpy()[rows], "bucket": sig["bucket"].to_numpy()[rows], "one": 1.0}
    )
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
