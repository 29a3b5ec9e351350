"""Seeded synthetic markets for stage 4: clean markets, and one injected manipulation per flag.

A clean market (one event) over `hours` hourly intervals from `start`:
- a latent probability: a random walk in logit space (minute steps, sd 0.08 per hour), from
  N(0, 1); reliable NEWS (about one a day, reliability 0.75-0.95, sentiment +-0.4-0.9) is
  followed 2-10 minutes later by a logit jump of 0.4-0.8 its way; unreliable NEWS (about one
  every two days, reliability 0.25-0.45) moves nothing;
- 2-4 market sources among polymarket, kalshi, manifold and predictit, each with a persistent
  logit bias N(0, 0.03) and quote noise N(0, 0.02). Manifold prices through bets (5 an hour,
  400 accounts, M$ amounts log-normal around 20): each bet is a MARKET_PRICE (probAfter) and a
  VOLUME (amount / 1000) signal sharing Manifold's raw bet; the others quote 4 times an hour;
- traded volume: log-normal per hour (median e^N(8, 1), log sd 0.35, doubled in a news hour),
  reported by the first non-Manifold source as 4 VOLUME signals (thousands);
- SENTIMENT (custom_api, 3 an hour, reliability 0.75) and SOCIAL posts (custom_api, webhook or
  upload, 4 an hour, reliability 0.35-0.9, from 5,000 authors, random 8-16-word narratives),
  valued tanh(logit / 2) plus noise; an EXPERT forecast (metaculus) every 3 h for half the
  markets;
- 20 % resolve at the horizon (outcome drawn from the final probability); the rest stay ACTIVE
  with a scheduled close 30 days later;
- snapshots per event and hour, stamped at the hour's start: probability = mean over markets of
  their last price (carried forward), volume = the hour's VOLUME signals x 1000, mean sentiment,
  signal count.

Each injector copies a clean market set, plants one manipulation (described on the function) in
one event and hour, rebuilds the snapshots, and returns the expected (event, flag type,
interval) with the ids of the signals it planted or altered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.trust import FLAG_TYPES, TrustConfig, compute_trust
from predict_pipeline.trust.config import SIGNAL_INPUT_COLUMNS

START = datetime(2026, 3, 2, tzinfo=UTC)
MARKET_SOURCES = ("polymarket", "kalshi", "manifold", "predictit")
POST_SOURCES = ("custom_api", "webhook", "upload")
RELIABLE_OUTLETS = ("wire-desk", "capital-times", "daily-ledger", "civic-report")
FRINGE_OUTLETS = ("rumour-mill", "hot-takes-blog", "anon-leaks")
_SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "tu", "vor", "el", "an", "dri", "po", "zel")
WORDS = tuple(a + b + c for a in _SYLLABLES[:8] for b in _SYLLABLES for c in _SYLLABLES[4:9])
_MINUTE_NS = 60 * 10**9


@dataclass(frozen=True)
class SyntheticMarkets:
    signals: pd.DataFrame
    snapshots: pd.DataFrame
    events: pd.DataFrame
    start: datetime
    hours: int

    def interval(self, hour: int) -> tuple[datetime, datetime]:
        begin = self.start + timedelta(hours=hour)
        return begin, begin + timedelta(hours=1)


@dataclass(frozen=True)
class Injection:
    event_id: str
    flag_type: str
    interval_start: datetime
    interval_end: datetime
    signal_ids: tuple[str, ...]  # the planted or altered signals that evidence the flag


class _Rows:
    """Column lists of signal rows, built market by market."""

    def __init__(self, rng: np.random.Generator, event_id: str, start_ns: int):
        self.rng = rng
        self.event_id = event_id
        self.start_ns = start_ns
        self.columns: dict[str, list[Any]] = {
            k: []
            for k in (
                "id",
                "event_id",
                "source",
                "source_event_id",
                "signal_type",
                "value",
                "weight",
                "reliability",
                "t",
                "narrative",
                "raw_data",
            )
        }

    def add(
        self,
        source: str,
        source_event_id: str,
        signal_type: str,
        minutes: Any,
        values: Any,
        *,
        weight: float,
        reliability: Any,
        narratives: Any = None,
        raws: Any = None,
    ) -> list[str]:
        minutes = np.atleast_1d(np.asarray(minutes, dtype=float))
        n = len(minutes)
        ids = _uuids(self.rng, n)
        c = self.columns
        c["id"] += ids
        c["event_id"] += [self.event_id] * n
        c["source"] += [source] * n
        c["source_event_id"] += [source_event_id] * n
        c["signal_type"] += [signal_type] * n
        c["value"] += list(np.broadcast_to(np.asarray(values, dtype=float), (n,)))
        c["weight"] += [weight] * n
        c["reliability"] += list(np.broadcast_to(np.asarray(reliability, dtype=float), (n,)))
        c["t"] += list(self.start_ns + np.round(minutes * _MINUTE_NS).astype("int64"))
        c["narrative"] += list(narratives) if narratives is not None else [None] * n
        c["raw_data"] += list(raws) if raws is not None else [{} for _ in range(n)]
        return ids


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    """n random version-4 UUIDs as text (vectorised: a clean set holds ~100k signals)."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    out = []
    for row in raw:
        h = row.tobytes().hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: Any) -> Any:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _poisson_times(rng: np.random.Generator, per_hour: float, hours: int) -> np.ndarray:
    count = rng.poisson(per_hour * hours)
    return np.sort(rng.uniform(0, hours * 60, count))


def _sentences(rng: np.random.Generator, n: int, low: int = 8, high: int = 16) -> list[str]:
    """n random sentences of low..high words."""
    lengths = rng.integers(low, high + 1, n)
    words = np.asarray(WORDS)[rng.integers(0, len(WORDS), int(lengths.sum()))]
    cuts = np.cumsum(lengths)[:-1]
    return [" ".join(chunk) for chunk in np.split(words, cuts)] if n else []


def clean_markets(
    n_markets: int = 50, hours: int = 72, seed: int = 0, start: datetime = START
) -> SyntheticMarkets:
    """`n_markets` clean markets over `hours` hours (see the module docstring)."""
    rng = np.random.default_rng(seed)
    start_ns = pd.Timestamp(start).value
    authors = [f"user{n:05d}" for n in range(5000)]
    bettors = [rng.bytes(14).hex() for _ in range(400)]
    frames, events = [], []
    for _ in range(n_markets):
        event_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        rows = _Rows(rng, event_id, start_ns)
        final = _clean_market(rng, rows, hours, authors, bettors)
        frames.append(pd.DataFrame(rows.columns))
        resolved = rng.random() < 0.2
        close = start + timedelta(hours=hours)
        outcome = ("YES" if rng.random() < final else "NO") if resolved else None
        events.append(
            {
                "event_id": event_id,
                "status": f"RESOLVED_{outcome}" if resolved else "ACTIVE",
                "resolution_date": close if resolved else close + timedelta(days=30),
                "resolved_at": close if resolved else pd.NaT,
                "outcome": outcome,
            }
        )
    signals = _finish(pd.concat(frames, ignore_index=True))
    event_frame = _events_frame(events)
    return SyntheticMarkets(
        signals, build_snapshots(signals, start, hours), event_frame, start, hours
    )


def _clean_market(
    rng: np.random.Generator, rows: _Rows, hours: int, authors: list[str], bettors: list[str]
) -> float:
    minutes = hours * 60
    x = rng.normal(0, 1) + np.cumsum(rng.normal(0, 0.08 / np.sqrt(60), minutes))
    news_hours = set()
    for at in _poisson_times(rng, 1 / 24, hours):
        direction = rng.choice([-1, 1])
        jump_at = int(min(at + rng.uniform(2, 10), minutes - 1))
        x[jump_at:] += direction * rng.uniform(0.4, 0.8)
        news_hours.add(int(at // 60))
        rows.add(
            "custom_api",
            f"news-{rows.event_id[:8]}",
            "NEWS",
            at,
            direction * rng.uniform(0.4, 0.9),
            weight=1.0,
            reliability=rng.uniform(0.75, 0.95),
            narratives=_sentences(rng, 1, 6, 12),
            raws=[{"author": str(rng.choice(RELIABLE_OUTLETS))}],
        )
    for at in _poisson_times(rng, 1 / 48, hours):
        rows.add(
            "custom_api",
            f"news-{rows.event_id[:8]}",
            "NEWS",
            at,
            rng.choice([-1, 1]) * rng.uniform(0.3, 0.8),
            weight=1.0,
            reliability=rng.uniform(0.25, 0.45),
            narratives=_sentences(rng, 1, 6, 12),
            raws=[{"author": str(rng.choice(FRINGE_OUTLETS))}],
        )

    def latent(at: np.ndarray) -> np.ndarray:
        return x[np.minimum(at.astype(int), minutes - 1)]

    sources = list(rng.choice(MARKET_SOURCES, rng.integers(2, 5), replace=False))
    for source in sources:
        market_id = f"{source}-{rows.event_id[:8]}"
        bias = rng.normal(0, 0.03)
        if source == "manifold":
            _manifold_bets(rng, rows, market_id, latent, bias, hours, bettors)
            continue
        at = _poisson_times(rng, 4, hours)
        rows.add(
            source,
            market_id,
            "MARKET_PRICE",
            at,
            _sigmoid(latent(at) + bias + rng.normal(0, 0.02, len(at))),
            weight=1.0,
            reliability=rng.uniform(0.8, 0.95),
        )
    volume_source = next(s for s in sources if s != "manifold")
    level = rng.normal(8, 1)
    for hour in range(hours):
        total = np.exp(level + rng.normal(0, 0.35)) * (2 if hour in news_hours else 1)
        rows.add(
            volume_source,
            f"{volume_source}-{rows.event_id[:8]}",
            "VOLUME",
            hour * 60 + np.sort(rng.uniform(0, 60, 4)),
            total * rng.dirichlet(np.ones(4)) / 1000.0,
            weight=1.0,
            reliability=0.9,
        )

    at = _poisson_times(rng, 3, hours)
    rows.add(
        "custom_api",
        f"sentiment-{rows.event_id[:8]}",
        "SENTIMENT",
        at,
        np.clip(np.tanh(latent(at) / 2) + rng.normal(0, 0.25, len(at)), -1, 1),
        weight=1.0,
        reliability=0.75,
    )
    at = _poisson_times(rng, 4, hours)
    rows.add(
        str(rng.choice(POST_SOURCES)),
        f"social-{rows.event_id[:8]}",
        "SOCIAL",
        at,
        np.clip(np.tanh(latent(at) / 2) + rng.normal(0, 0.4, len(at)), -1, 1),
        weight=0.5,
        reliability=rng.uniform(0.35, 0.9, len(at)),
        narratives=_sentences(rng, len(at)),
        raws=[{"author": str(a)} for a in rng.choice(authors, len(at))],
    )
    if rng.random() < 0.5:
        at = np.arange(30, hours * 60, 180, dtype=float)
        rows.add(
            "metaculus",
            f"metaculus-{rows.event_id[:8]}",
            "EXPERT",
            at,
            _sigmoid(latent(at) + rng.normal(0, 0.1, len(at))),
            weight=1.0,
            reliability=0.85,
        )
    return float(_sigmoid(x[-1]))


def _manifold_bets(
    rng: np.random.Generator,
    rows: _Rows,
    market_id: str,
    latent: Callable,
    bias: float,
    hours: int,
    bettors: list[str],
) -> None:
    at = _poisson_times(rng, 5, hours)
    after = _sigmoid(latent(at) + bias + rng.normal(0, 0.02, len(at)))
    before = np.concatenate([[after[0]], after[:-1]])
    amounts = rng.lognormal(3, 1, len(at))
    who = rng.integers(0, len(bettors), len(at))
    keys = rng.bytes(10 * len(at)).hex()
    bets = []
    for k, (when, b, a, amount) in enumerate(zip(at, before, after, amounts, strict=True)):
        outcome = "YES" if a >= b else "NO"
        price = a if outcome == "YES" else 1 - a
        bets.append(
            {
                "id": keys[20 * k : 20 * k + 20],
                "userId": bettors[who[k]],
                "contractId": market_id,
                "outcome": outcome,
                "amount": float(amount),
                "shares": float(amount / max(price, 0.01)),
                "probBefore": float(b),
                "probAfter": float(a),
                "isRedemption": False,
                "createdTime": int((rows.start_ns + when * _MINUTE_NS) // 10**6),
            }
        )
    rows.add(
        "manifold", market_id, "MARKET_PRICE", at, after, weight=1.0, reliability=0.8, raws=bets
    )
    rows.add(
        "manifold",
        market_id,
        "VOLUME",
        at,
        amounts / 1000.0,
        weight=1.0,
        reliability=0.8,
        raws=bets,
    )


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    if "t" in frame.columns:
        frame["fetched_at"] = pd.to_datetime(frame.pop("t"), unit="ns", utc=True)
    frame = frame.sort_values(["fetched_at", "id"], kind="stable").reset_index(drop=True)
    return frame[list(SIGNAL_INPUT_COLUMNS)]


def _events_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        events, columns=["event_id", "status", "resolution_date", "resolved_at", "outcome"]
    )
    for column in ("resolution_date", "resolved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def build_snapshots(signals: pd.DataFrame, start: datetime, hours: int) -> pd.DataFrame:
    """One snapshot per event and hour, stamped at the hour's start (see module docstring)."""
    hour = ((signals["fetched_at"] - pd.Timestamp(start)) // pd.Timedelta(hours=1)).astype(int)
    frame = signals.assign(hour=hour)
    frame = frame[(frame["hour"] >= 0) & (frame["hour"] < hours)]
    prices = frame[frame["signal_type"] == "MARKET_PRICE"]
    last = prices.groupby(["event_id", "source", "source_event_id", "hour"])["value"].last()
    per_market = last.unstack("hour").reindex(columns=range(hours)).ffill(axis=1)
    probability = per_market.groupby(level=0).mean().stack().rename("probability")
    flows = frame[frame["signal_type"] == "VOLUME"]
    volume = (flows.groupby(["event_id", "hour"])["value"].sum() * 1000).round().rename("volume")
    mood = frame[frame["signal_type"].isin(("SENTIMENT", "SOCIAL"))]
    sentiment = mood.groupby(["event_id", "hour"])["value"].mean().rename("sentiment_score")
    count = frame.groupby(["event_id", "hour"]).size().rename("signal_count")
    table = pd.concat([probability, sentiment, volume, count], axis=1).reset_index()
    table = table.rename(columns={"level_0": "event_id", "level_1": "hour"})
    table["volume"] = table["volume"].fillna(0).astype("int64")
    table["signal_count"] = table["signal_count"].fillna(0).astype("int64")
    table["snapshot_at"] = pd.Timestamp(start) + pd.to_timedelta(table["hour"], unit="h")
    table = table.sort_values(["event_id", "snapshot_at"]).reset_index(drop=True)
    return table[
        ["event_id", "snapshot_at", "probability", "sentiment_score", "volume", "signal_count"]
    ]


# ---- hand-built inputs ----------------------------------------------------------------------

SIGNAL_COLUMNS = [
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
]
SNAPSHOT_COLUMNS = [
    "event_id",
    "snapshot_at",
    "probability",
    "sentiment_score",
    "volume",
    "signal_count",
]
EVENT_COLUMNS = ["event_id", "status", "resolution_date", "resolved_at", "outcome"]


def signal_row(
    kind: str,
    value: float | None,
    at: datetime,
    *,
    event_id: str,
    source: str = "polymarket",
    weight: float = 1.0,
    reliability: float = 1.0,
    narrative: str | None = None,
    raw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One signal as the lead loads it (the id is given by `input_frames`)."""
    return {
        "event_id": event_id,
        "source": source,
        "source_event_id": f"{source}-{event_id[:8]}",
        "signal_type": kind,
        "value": value,
        "weight": weight,
        "reliability": reliability,
        "fetched_at": at,
        "narrative": narrative,
        "raw_data": raw or {},
    }


def input_frames(
    rows: list[dict[str, Any]],
    snapshots: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """compute_trust's three frames from hand-built rows; row i gets a fixed UUID.

    Without `events`, every event named by a row is ACTIVE with a close 30 days after its
    latest row.
    """
    signals = pd.DataFrame(
        [
            {"id": str(uuid.UUID(int=(0x5EED << 96) | i, version=4)), **row}
            for i, row in enumerate(rows)
        ],
        columns=SIGNAL_COLUMNS,
    )
    signals["fetched_at"] = pd.to_datetime(signals["fetched_at"], utc=True)
    snaps = pd.DataFrame(snapshots or [], columns=SNAPSHOT_COLUMNS)
    snaps["snapshot_at"] = pd.to_datetime(snaps["snapshot_at"], utc=True)
    if events is None:
        latest = pd.concat([signals["fetched_at"], snaps["snapshot_at"]]).max()
        ids = sorted(set(signals["event_id"]) | set(snaps["event_id"]))
        events = [
            {
                "event_id": e,
                "status": "ACTIVE",
                "resolution_date": latest + pd.Timedelta(days=30),
                "resolved_at": pd.NaT,
                "outcome": None,
            }
            for e in ids
        ]
    frame = pd.DataFrame(events, columns=EVENT_COLUMNS)
    for column in ("resolution_date", "resolved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return signals, snaps, frame


# ---- injectors ----------------------------------------------------------------------------


def _with(
    markets: SyntheticMarkets, signals: pd.DataFrame, events: pd.DataFrame | None = None
) -> SyntheticMarkets:
    signals = _finish(signals)
    return replace(
        markets,
        signals=signals,
        snapshots=build_snapshots(signals, markets.start, markets.hours),
        events=markets.events if events is None else events,
    )


def _added(
    markets: SyntheticMarkets, rng: np.random.Generator, event_id: str
) -> tuple[_Rows, pd.DataFrame]:
    rows = _Rows(rng, event_id, pd.Timestamp(markets.start).value)
    return rows, markets.signals.copy()


def _merge(signals: pd.DataFrame, rows: _Rows) -> pd.DataFrame:
    return pd.concat([signals, _finish(pd.DataFrame(rows.columns))], ignore_index=True)


def _minutes(markets: SyntheticMarkets, signals: pd.DataFrame) -> pd.Series:
    return (signals["fetched_at"] - pd.Timestamp(markets.start)) / pd.Timedelta(minutes=1)


def _events_with(
    markets: SyntheticMarkets, condition: Callable[[pd.DataFrame], bool], active: bool = True
) -> list[str]:
    ids = markets.events.loc[~active | (markets.events["status"] == "ACTIVE"), "event_id"]
    by_event = dict(iter(markets.signals.groupby("event_id")))
    return [e for e in ids if condition(by_event[e])]


def _pick(rng: np.random.Generator, candidates: list[str], what: str) -> str:
    if not candidates:
        raise ValueError(f"no synthetic market qualifies for {what}")
    return str(candidates[rng.integers(len(candidates))])


def _quiet(markets: SyntheticMarkets, event_id: str, hour: int, before: int) -> bool:
    """No NEWS or EXPERT signal of the event from `before` hours ahead of `hour` to its end."""
    s = markets.signals
    m = _minutes(markets, s)
    explaining = s["signal_type"].isin(("NEWS", "EXPERT")) & (s["event_id"] == event_id)
    return not (explaining & (m >= (hour - before) * 60) & (m < (hour + 1) * 60)).any()


def _hour_default(markets: SyntheticMarkets, hour: int | None) -> int:
    return markets.hours - 6 if hour is None else hour


def _expect(
    markets: SyntheticMarkets, event_id: str, flag_type: str, hour: int, ids: list[str]
) -> Injection:
    begin, end = markets.interval(hour)
    return Injection(event_id, flag_type, begin, end, tuple(ids))


def inject_volume_spike(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """Four extra VOLUME reports in the hour totalling 15x the event's median hourly volume."""
    rng = np.random.default_rng(seed)
    hour = _hour_default(markets, hour)
    event_id = _pick(rng, list(markets.events["event_id"]), "a volume spike")
    snaps = markets.snapshots[markets.snapshots["event_id"] == event_id]
    typical = float(snaps["volume"].iloc[max(0, hour - 24) : hour].median())
    flows = markets.signals[
        (markets.signals["event_id"] == event_id)
        & (markets.signals["signal_type"] == "VOLUME")
        & (markets.signals["source"] != "manifold")
    ]
    source, market_id = flows["source"].iat[0], flows["source_event_id"].iat[0]
    rows, signals = _added(markets, rng, event_id)
    ids = rows.add(
        source,
        market_id,
        "VOLUME",
        hour * 60 + np.array([12.0, 19, 26, 33]),
        15 * typical / 4 / 1000.0,
        weight=1.0,
        reliability=0.9,
    )
    return _with(markets, _merge(signals, rows)), _expect(
        markets, event_id, "VOLUME_SPIKE", hour, ids
    )


def inject_wash_trading(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """Two Manifold accounts alternate YES and NO bets of M$400 every 4 minutes (12 bets) at
    the market's price, which each bet moves by 0.001 at most."""
    rng = np.random.default_rng(seed)
    hour = _hour_default(markets, hour)
    event_id = _pick(
        rng,
        _events_with(markets, lambda s: (s["source"] == "manifold").any()),
        "wash trading (a Manifold market)",
    )
    snaps = markets.snapshots[markets.snapshots["event_id"] == event_id]
    price = float(snaps["probability"].iloc[hour - 1])
    rows, signals = _added(markets, rng, event_id)
    market_id = signals.loc[
        (signals["event_id"] == event_id) & (signals["source"] == "manifold"), "source_event_id"
    ].iat[0]
    ids = []
    for k in range(12):
        when = hour * 60 + 6 + 4 * k
        account = ("washer-a", "washer-b")[k % 2]
        outcome = "YES" if (k // 2) % 2 == 0 else "NO"
        after = price + (0.001 if outcome == "YES" else -0.001)
        bet = {
            "id": f"wash{k:02d}",
            "userId": account,
            "contractId": market_id,
            "outcome": outcome,
            "amount": 400.0,
            "shares": 400.0 / price,
            "probBefore": price,
            "probAfter": after,
            "isRedemption": False,
        }
        ids += rows.add(
            "manifold",
            market_id,
            "MARKET_PRICE",
            when,
            after,
            weight=1.0,
            reliability=0.8,
            raws=[bet],
        )
        ids += rows.add(
            "manifold", market_id, "VOLUME", when, 0.4, weight=1.0, reliability=0.8, raws=[bet]
        )
    return _with(markets, _merge(signals, rows)), _expect(
        markets, event_id, "WASH_TRADING", hour, ids
    )


def inject_insider_timing(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """An ACTIVE event resolves at the horizon; in the last hour (default), from minute 10 on,
    every market prices 1.5 logits toward the outcome, and no NEWS or EXPERT signal is left in
    the 3 hours before."""
    rng = np.random.default_rng(seed)
    hour = markets.hours - 1 if hour is None else hour
    event_id = _pick(rng, _events_with(markets, lambda s: True), "insider timing")
    close = markets.start + timedelta(hours=markets.hours)
    snaps = markets.snapshots[markets.snapshots["event_id"] == event_id]
    outcome = "YES" if float(snaps["probability"].iloc[hour - 1]) < 0.6 else "NO"
    signals = markets.signals.copy()
    minutes = _minutes(markets, signals)
    mine = signals["event_id"] == event_id
    explaining = (
        mine & signals["signal_type"].isin(("NEWS", "EXPERT")) & (minutes >= (hour - 3) * 60)
    )
    signals = signals[~explaining]
    minutes = minutes[~explaining]
    moved = (
        (signals["event_id"] == event_id)
        & (signals["signal_type"] == "MARKET_PRICE")
        & (minutes >= hour * 60 + 10)
    )
    shift = 1.5 if outcome == "YES" else -1.5
    signals.loc[moved, "value"] = _sigmoid(_logit(signals.loc[moved, "value"]) + shift)
    events = markets.events.copy()
    row = events["event_id"] == event_id
    events.loc[row, "status"] = f"RESOLVED_{outcome}"
    events.loc[row, "outcome"] = outcome
    events.loc[row, "resolution_date"] = close
    events.loc[row, "resolved_at"] = close
    in_hour = moved & (minutes < (hour + 1) * 60)
    return _with(markets, signals, events), _expect(
        markets, event_id, "INSIDER_TIMING", hour, list(signals.loc[in_hour, "id"])
    )


COORDINATED_TEXT = (
    "insiders confirm the deal is already signed and the vote is a formality "
    "so buy yes now before everyone else notices"
)


def inject_coordinated_action(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """Eight SOCIAL posts of one narrative (each with its own trailing tag) from eight accounts
    over three sources, within six minutes from minute 20 of the hour."""
    rng = np.random.default_rng(seed)
    hour = _hour_default(markets, hour)
    event_id = _pick(rng, list(markets.events["event_id"]), "coordinated action")
    rows, signals = _added(markets, rng, event_id)
    ids = []
    for k in range(8):
        ids += rows.add(
            POST_SOURCES[k % 3],
            f"social-{event_id[:8]}",
            "SOCIAL",
            hour * 60 + 20 + 0.75 * k,
            0.8,
            weight=0.5,
            reliability=0.7,
            narratives=[f"{COORDINATED_TEXT.upper()}!! #{WORDS[k]}"],
            raws=[{"author": f"amplifier{k}"}],
        )
    return _with(markets, _merge(signals, rows)), _expect(
        markets, event_id, "COORDINATED_ACTION", hour, ids
    )


def inject_bot_sentiment(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """40 SOCIAL posts through the hour from two low-reliability accounts (0.2), four phrases
    repeated, all leaning against the hour's price move, with no NEWS or EXPERT nearby."""
    rng = np.random.default_rng(seed)
    hour = _hour_default(markets, hour)
    event_id = _pick(
        rng,
        [e for e in markets.events["event_id"] if _quiet(markets, e, hour, 2)],
        "bot sentiment (no news nearby)",
    )
    snaps = markets.snapshots[markets.snapshots["event_id"] == event_id]
    drift = float(snaps["probability"].iloc[hour] - snaps["probability"].iloc[hour - 1])
    direction = -1.0 if drift > 0 else 1.0
    phrases = _sentences(rng, 4, 10, 12)
    rows, signals = _added(markets, rng, event_id)
    ids = rows.add(
        "webhook",
        f"social-{event_id[:8]}",
        "SOCIAL",
        hour * 60 + np.linspace(1, 58, 40),
        direction * 0.9,
        weight=0.5,
        reliability=0.2,
        narratives=[phrases[k % 4] for k in range(40)],
        raws=[{"author": f"botfarm{k % 2}"} for k in range(40)],
    )
    return _with(markets, _merge(signals, rows)), _expect(
        markets, event_id, "BOT_SENTIMENT", hour, ids
    )


def inject_narrative_plant(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """A NEWS signal from a fringe outlet (reliability 0.3, sentiment 0.8) at minute 5 of the
    hour; from minute 15 on every market prices 1 logit its way. No NEWS or EXPERT is near."""
    rng = np.random.default_rng(seed)
    hour = _hour_default(markets, hour)
    event_id = _pick(
        rng,
        [e for e in _events_with(markets, lambda s: True) if _quiet(markets, e, hour, 3)],
        "a narrative plant (no news nearby)",
    )
    snaps = markets.snapshots[markets.snapshots["event_id"] == event_id]
    direction = 1.0 if float(snaps["probability"].iloc[hour - 1]) < 0.6 else -1.0
    rows, signals = _added(markets, rng, event_id)
    ids = rows.add(
        "custom_api",
        f"news-{event_id[:8]}",
        "NEWS",
        hour * 60 + 5,
        0.8 * direction,
        weight=1.0,
        reliability=0.3,
        narratives=["Exclusive: unnamed sources claim the outcome is already decided"],
        raws=[{"author": "anon-tipster"}],
    )
    minutes = _minutes(markets, signals)
    moved = (
        (signals["event_id"] == event_id)
        & (signals["signal_type"] == "MARKET_PRICE")
        & (minutes >= hour * 60 + 15)
    )
    signals.loc[moved, "value"] = _sigmoid(_logit(signals.loc[moved, "value"]) + direction)
    in_hour = moved & (minutes < (hour + 1) * 60)
    return _with(markets, _merge(signals, rows)), _expect(
        markets, event_id, "NARRATIVE_PLANT", hour, ids + list(signals.loc[in_hour, "id"])
    )


def inject_source_manipulation(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """In an event priced by three or more markets, one source prices 0.3 away from its own
    quote (toward 0.5's far side) from two hours before the hour to the horizon."""
    rng = np.random.default_rng(seed)
    hour = _hour_default(markets, hour)
    event_id = _pick(
        rng,
        _events_with(
            markets,
            lambda s: s.loc[s["signal_type"] == "MARKET_PRICE", "source"].nunique() >= 3,
            active=False,
        ),
        "source manipulation (three market sources)",
    )
    signals = markets.signals.copy()
    mine = (signals["event_id"] == event_id) & (signals["signal_type"] == "MARKET_PRICE")
    source = sorted(signals.loc[mine, "source"].unique())[-1]
    minutes = _minutes(markets, signals)
    moved = mine & (signals["source"] == source) & (minutes >= (hour - 2) * 60)
    values = signals.loc[moved, "value"]
    signals.loc[moved, "value"] = np.where(values < 0.5, values + 0.3, values - 0.3)
    in_hour = moved & (minutes >= hour * 60) & (minutes < (hour + 1) * 60)
    return _with(markets, signals), _expect(
        markets, event_id, "SOURCE_MANIPULATION", hour, list(signals.loc[in_hour, "id"])
    )


def inject_source_takeover(
    markets: SyntheticMarkets, *, seed: int = 0, hour: int | None = None
) -> tuple[SyntheticMarkets, Injection]:
    """SOURCE_MANIPULATION's second form: `upload` floods the hour with 60 SENTIMENT rows of
    weight 5 and reliability 0.9 near the event's usual sentiment."""
    rng = np.random.default_rng(seed)
    hour = _hour_default(markets, hour)
    event_id = _pick(rng, list(markets.events["event_id"]), "a source takeover")
    snaps = markets.snapshots[markets.snapshots["event_id"] == event_id]
    mood = float(snaps["sentiment_score"].iloc[max(0, hour - 24) : hour].mean())
    rows, signals = _added(markets, rng, event_id)
    ids = rows.add(
        "upload",
        f"upload-{event_id[:8]}",
        "SENTIMENT",
        hour * 60 + np.linspace(0.5, 59.5, 60),
        np.clip(mood + rng.normal(0, 0.05, 60), -1, 1),
        weight=5.0,
        reliability=0.9,
    )
    return _with(markets, _merge(signals, rows)), _expect(
        markets, event_id, "SOURCE_MANIPULATION", hour, ids
    )


INJECTORS: dict[str, Callable[..., tuple[SyntheticMarkets, Injection]]] = {
    "VOLUME_SPIKE": inject_volume_spike,
    "WASH_TRADING": inject_wash_trading,
    "INSIDER_TIMING": inject_insider_timing,
    "COORDINATED_ACTION": inject_coordinated_action,
    "BOT_SENTIMENT": inject_bot_sentiment,
    "NARRATIVE_PLANT": inject_narrative_plant,
    "SOURCE_MANIPULATION": inject_source_manipulation,
}


@dataclass(frozen=True)
class FalseAlarms:
    event_intervals: int  # scored (event, interval) pairs
    flags: int
    by_type: dict[str, int]

    @property
    def rate(self) -> float:
        """Flags per event-interval."""
        return self.flags / self.event_intervals if self.event_intervals else 0.0


def measure_false_alarms(
    seeds: range | list[int],
    *,
    n_markets: int = 50,
    hours: int = 48,
    warmup: int = 24,
    config: TrustConfig | None = None,
) -> FalseAlarms:
    """Score every hour after `warmup` of clean markets, one set per seed; count the flags."""
    scored = 0
    by_type: dict[str, int] = dict.fromkeys(FLAG_TYPES, 0)
    for seed in seeds:
        markets = clean_markets(n_markets, warmup + hours, seed=seed)
        stamps = markets.signals["fetched_at"]
        lookback = (config or TrustConfig()).trailing_window
        for hour in range(warmup, warmup + hours):
            begin, end = markets.interval(hour)
            # compute_trust reads only [begin - trailing window, end): slicing first is cheaper
            window = (stamps >= begin - lookback) & (stamps < end)
            result = compute_trust(
                markets.signals[window],
                markets.snapshots,
                markets.events,
                interval_start=begin,
                interval_end=end,
                config=config,
            )
            scored += len(result.scores)
            for flag in result.flags:
                by_type[flag.flag_type] += 1
    return FalseAlarms(scored, sum(by_type.values()), by_type)
