"""A deterministic, seeded market simulator: a built-in source for a sandbox with no network.

The simulator is an adapter like the others, except that its "API" is a function: `respond`
generates the body of a planned request from (seed, feed config, window) instead of sending
it, so the fetch -> landing zone -> validation -> matching path runs unchanged, any window can
be backfilled, and a re-fetch of the same window is byte-identical. It is never used in place
of real data: the demo's real adapters read recorded real payloads.

The world (all times UTC, on a 5-minute grid anchored at 2024-01-01):

- **Events** form an endless stream: slot j opens at EPOCH + j x (1 day / events_per_day) and
  lives a seeded 24-60 hours (`min_lifetime_hours`..`max_lifetime_hours`), so a few hundred
  are open at any moment and several resolve every hour. Each has a category (round the
  configured list), a fictional title, a slug `sim<seed>-<j>` and a close time.
- **Outcome and price path**: the outcome is drawn at creation, YES with probability
  sigmoid(x0), x0 ~ N(0, 1.2) (so early prices are calibrated); the latent log-odds is a
  random walk (sd 0.12 per hour) with a linear drift from x0 to +-3.5 (the outcome) at
  close, and jumps of 0.4-0.8 logits 5 minutes after NEWS (about one per 10 hours; three in
  four point to the outcome). Every quantity of an event comes from its own generator seeded
  by (seed, j), so the path of hour h+1 continues hour h whatever windows are fetched.
- **Venues**: three simulated exchanges (`simulator-alpha`, `-beta`, `-gamma`, the signals'
  `source`) quote every 15 minutes (at :00, :05 and :10 past each quarter) with a persistent
  bias N(0, 0.03) and noise N(0, 0.02) in log-odds; market ids `SIM<seed>-<j>-A|B|C`.
- **Volume**: alpha reports its traded volume 4 times an hour; hourly volume is log-normal
  (median e^U(7.5, 9.5), log sd 0.25), doubled in a news hour.
- **Signals about the event** (id `SIM<seed>-<j>`): SENTIMENT (`simulator-sentiment`, at :07
  and :37, tanh(x/2) + noise), about one SOCIAL post an hour from one of three platforms
  (`simulator-microblog`, `-forum`, `-video`; 5,000 accounts named in raw_data, random
  narratives) and NEWS (`simulator-news`, with a headline) before each jump.
- **Injected anomalies**, each in about a quarter of events (`anomalies: false` turns them off),
  placed in a clock hour at least 8 hours after opening (the trust detectors' baseline)
  and 5 before close, and listed in the page body (`anomalies`) so they can be checked:
  `volume_burst` (12x the hour's volume, the price frozen from the hour before to its end:
  wash-trading-like volume without price impact, trips VOLUME_SPIKE and WASH_TRADING),
  `spike_revert` (gamma prices
  0.3 away from the others from :05 of the hour to :05 of the next, then reverts: a
  SOURCE_MANIPULATION outlier), `divergence` (beta drifts 0.3 away over an hour, stays 3
  hours, comes back: SOURCE_MANIPULATION and HIGH divergence) and `coordinated_posts` (six
  near-duplicate posts from six accounts on three platforms within 8 minutes:
  COORDINATED_ACTION).
- **Resolution**: at close every venue reports the market settled (status `settled`,
  `result` yes/no, the last price) the way Kalshi's settled markets do; stage 2 stores the
  settlements and `event_resolutions` resolves the event, so calibration has resolved events.

A poll (the current hour) generates what has happened up to the poll's time, on the same
grid, so later polls and the backfill of the window repeat the same values (deduplicated).
Events reach the pipeline like any market: the demo (`predict_pipeline.demo`) creates the
events of `catalogue()` and links their markets; a user's own feed can also review them with
`predict-pipeline signals review` and `signals resolve --new-event`.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from predict_pipeline.model import (
    FetchMode,
    FetchWindow,
    MarketFacts,
    NormalisedRecord,
    PageNavigation,
    PageRecords,
    PageRequest,
)
from predict_pipeline.sources._history import BodyReader, resolve_config

SOURCE = "simulator"
ENDPOINT = "simulated_markets"
URL = "simulator://markets"
# Nothing is sent anywhere: no rate limit to respect.
RATE_LIMIT_RPM = None
SUPPORTS_BACKFILL = True

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_STEP_S = 300
VENUES = ("alpha", "beta", "gamma")
VENUE_CODES = {"alpha": "A", "beta": "B", "gamma": "C"}
VENUE_OFFSET_STEPS = {"alpha": 0, "beta": 1, "gamma": 2}  # quotes at :00, :05, :10 + 15k
PLATFORMS = ("microblog", "forum", "video")
OUTLETS = ("wire-desk", "capital-times", "daily-ledger", "civic-report")
ANOMALY_KINDS = ("volume_burst", "spike_revert", "divergence", "coordinated_posts")
CATEGORIES = ("geopolitics", "technology", "finance", "sports", "entertainment", "marketing")

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Market simulator feed",
    "description": (
        "A deterministic sandbox: seeded events with price paths, volume, sentiment, posts, "
        "news, injected anomalies and settlements (no network)."
    ),
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "seed": {
            "description": "Seed of the simulated world: same seed, same markets.",
            "type": "integer",
            "minimum": 0,
            "maximum": 2**31 - 1,
        },
        "events_per_day": {
            "description": "New events opened per day (open events = this x mean lifetime).",
            "type": "integer",
            "minimum": 1,
            "maximum": 1440,
        },
        "min_lifetime_hours": {"type": "integer", "minimum": 1, "maximum": 720},
        "max_lifetime_hours": {"type": "integer", "minimum": 1, "maximum": 720},
        "categories": {
            "description": "Category slugs the events are spread over, in turn.",
            "type": "array",
            "items": {"enum": list(CATEGORIES)},
            "minItems": 1,
            "uniqueItems": True,
        },
        "anomalies": {"description": "Inject the anomalies.", "type": "boolean"},
    },
}
DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 7,
    "events_per_day": 120,
    "min_lifetime_hours": 24,
    "max_lifetime_hours": 60,
    "categories": ["geopolitics", "technology", "finance", "sports", "entertainment"],
    "anomalies": True,
}

_SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "tu", "vor", "el", "an", "dri", "po", "zel")
_WORDS = tuple(a + b for a in _SYLLABLES for b in _SYLLABLES)
_TEMPLATES = {
    "geopolitics": "Will {name} sign the {thing} accord before {close}?",
    "technology": "Will {name} ship its {thing} model before {close}?",
    "finance": "Will the {name} index close above {level} on {close}?",
    "sports": "Will {name} beat {thing} in the final on {close}?",
    "entertainment": "Will {name}'s {thing} top the charts by {close}?",
    "marketing": "Will the {name} {thing} campaign reach {level}k signups by {close}?",
}
ANOMALY_SHARE = 0.25
_DRIFT_TARGET = 3.5


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    settings = resolve_config(SOURCE, CONFIG_SCHEMA, DEFAULT_CONFIG, config)
    if settings["min_lifetime_hours"] > settings["max_lifetime_hours"]:
        raise ValueError(f"{SOURCE} config: min_lifetime_hours exceeds max_lifetime_hours")
    return settings


# ---- the world -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One simulated event: what the demo (or a user) creates a prediction_event from."""

    slot: int
    event_id: str  # SIM<seed>-<slot>: news, sentiment and posts
    slug: str
    title: str
    category: str
    open_time: datetime
    close_time: datetime
    outcome: str  # YES | NO (known from the start; reported only at close)
    initial_logit: float

    @property
    def market_ids(self) -> tuple[str, ...]:
        return tuple(f"{self.event_id}-{VENUE_CODES[v]}" for v in VENUES)

    @property
    def source_event_ids(self) -> tuple[str, ...]:
        return (self.event_id, *self.market_ids)


def _spacing_s(settings: dict[str, Any]) -> int:
    return 86_400 // settings["events_per_day"]


def _rng(settings: dict[str, Any], slot: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([settings["seed"], slot & 0xFFFFFFFF, stream])


def _key(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True)


# Consecutive windows and pages share most events: each event and its path are made once per
# process (a path is ~30 kB; the cache holds a few windows' worth).
@functools.lru_cache(maxsize=4096)
def _cached_event(key: str, slot: int) -> SimEvent:
    return _make_event(json.loads(key), slot)


@functools.lru_cache(maxsize=1024)
def _cached_path(key: str, slot: int) -> _Path:
    settings = json.loads(key)
    return _make_path(settings, _cached_event(key, slot))


def _event(settings: dict[str, Any], slot: int) -> SimEvent:
    return _cached_event(_key(settings), slot)


def _path(settings: dict[str, Any], event: SimEvent) -> _Path:
    return _cached_path(_key(settings), event.slot)


def _make_event(settings: dict[str, Any], slot: int) -> SimEvent:
    rng = _rng(settings, slot, 0)
    x0 = float(rng.normal(0, 1.2))
    spacing = _spacing_s(settings)
    opened = EPOCH + timedelta(seconds=slot * spacing)
    low, high = settings["min_lifetime_hours"] * 60, settings["max_lifetime_hours"] * 60
    closes = opened + timedelta(minutes=int(rng.integers(low, high + 1)))
    categories = settings["categories"]
    category = categories[slot % len(categories)]
    name = "".join(rng.choice(_WORDS, 2)).capitalize()
    thing = rng.choice(_WORDS).capitalize()
    level = int(rng.integers(100, 1000))
    title = _TEMPLATES[category].format(
        name=name, thing=thing, level=level, close=closes.strftime("%b %d %H:%M UTC")
    )
    outcome = "YES" if rng.random() < _sigmoid(x0) else "NO"
    seed = settings["seed"]
    return SimEvent(
        slot=slot,
        event_id=f"SIM{seed}-{slot:06d}",
        slug=f"sim{seed}-{slot}",
        title=f"{title} [SIM{seed}-{slot:06d}]",
        category=category,
        open_time=opened,
        close_time=closes,
        outcome=outcome,
        initial_logit=x0,
    )


def catalogue(config: dict[str, Any], start: datetime, end: datetime) -> list[SimEvent]:
    """The events open at some moment of [start, end), in slot order."""
    settings = _settings(config)
    spacing = _spacing_s(settings)
    longest = settings["max_lifetime_hours"] * 3600
    first = math.floor(((start - EPOCH).total_seconds() - longest) / spacing)
    last = math.ceil((end - EPOCH).total_seconds() / spacing)
    events = (_event(settings, slot) for slot in range(first, last + 1))
    return [e for e in events if e.open_time < end and e.close_time > start]


def injected_anomalies(
    config: dict[str, Any], start: datetime, end: datetime
) -> list[tuple[SimEvent, str, datetime]]:
    """(event, kind, clock hour) of every anomaly placed in [start, end): what to look for."""
    settings = _settings(config)
    found = []
    for event in catalogue(settings, start, end):
        for kind, hour in _path(settings, event).anomalies.items():
            moment = datetime.fromtimestamp(hour, UTC)
            if start <= moment < end:
                found.append((event, kind, moment))
    return found


@dataclass(frozen=True, slots=True)
class _Path:
    """An event's whole life on the 5-minute grid (index 0 = the step at or after opening)."""

    event: SimEvent
    t0: int  # epoch seconds of step 0
    x: np.ndarray  # latent log-odds per step
    volume: np.ndarray  # traded volume per hour of life (hour k = steps 12k..12k+11)
    news: list[tuple[int, int, str, float, str]]  # (step, second offset, outlet, value, text)
    posts: list[tuple[int, int, str, str, float, str]]  # (step, s, platform, account, v, text)
    sentiment_noise: np.ndarray
    volume_noise: np.ndarray
    bias: dict[str, float]
    quote_noise: dict[str, np.ndarray]
    anomalies: dict[str, int]  # kind -> clock-hour epoch seconds


def _make_path(settings: dict[str, Any], event: SimEvent) -> _Path:
    rng = _rng(settings, event.slot, 1)
    t0 = math.ceil((event.open_time - EPOCH).total_seconds() / _STEP_S) * _STEP_S
    t0 += int(EPOCH.timestamp())
    n = max(1, int((event.close_time.timestamp() - t0) // _STEP_S) + 1)
    hours = -(-n // 12)
    x0 = event.initial_logit
    target = _DRIFT_TARGET if event.outcome == "YES" else -_DRIFT_TARGET
    increments = rng.normal(0, 0.12 / math.sqrt(12), n) + (target - x0) / n
    increments[0] = 0.0
    # Anomalies: one clock hour each, at least 8 hours in and 5 hours before close.
    anomalies: dict[str, int] = {}
    first_hour = math.ceil((t0 + 8 * 3600) / 3600) * 3600
    last_hour = math.floor((event.close_time.timestamp() - 5 * 3600) / 3600) * 3600
    draws = rng.random(len(ANOMALY_KINDS))
    places = rng.random(len(ANOMALY_KINDS))
    if settings["anomalies"] and last_hour >= first_hour:
        for kind, draw, place in zip(ANOMALY_KINDS, draws, places, strict=True):
            if draw < ANOMALY_SHARE:
                span = (last_hour - first_hour) // 3600
                anomalies[kind] = first_hour + int(place * (span + 1)) * 3600
    times = t0 + _STEP_S * np.arange(n)
    frozen = np.zeros(n, dtype=bool)
    if "volume_burst" in anomalies:
        hour = anomalies["volume_burst"]
        # The price holds still from an hour before the burst: volume without price impact.
        frozen = (times >= hour - 3600) & (times < hour + 3600)
        increments[frozen] = 0.0
    # News: about one per 10 hours, never in a frozen stretch; the jump follows 5 min later.
    news = []
    n_news = int(rng.poisson(n / 120))
    for step in sorted(int(s) for s in rng.integers(1, max(2, n - 1), n_news)):
        toward = rng.random() < 0.75
        direction = (1 if event.outcome == "YES" else -1) * (1 if toward else -1)
        size = float(rng.uniform(0.4, 0.8))
        value = round(direction * float(rng.uniform(0.4, 0.9)), 3)
        outlet = str(rng.choice(OUTLETS))
        words = " ".join(rng.choice(_WORDS, 8))
        offset = int(rng.integers(30, 240))
        if step + 1 < n and not frozen[step] and not frozen[step + 1]:
            increments[step + 1] += direction * size
            news.append((step, offset, outlet, value, f"{outlet}: {words}"))
    x = x0 + np.cumsum(increments)
    volume = np.exp(rng.uniform(7.5, 9.5) + rng.normal(0, 0.25, hours))
    for step, *_ in news:
        volume[step // 12] *= 2.0
    # Posts: about one an hour, at random seconds.
    posts = []
    n_posts = int(rng.poisson(n / 12))
    for step in sorted(int(s) for s in rng.integers(0, n, n_posts)):
        platform = str(rng.choice(PLATFORMS))
        account = f"user{int(rng.integers(0, 5000)):04d}"
        noise = float(rng.normal(0, 0.2))
        words = " ".join(rng.choice(_WORDS, int(rng.integers(8, 17))))
        posts.append((step, int(rng.integers(0, 300)), platform, account, noise, words))
    return _Path(
        event=event,
        t0=t0,
        x=x,
        volume=volume,
        news=news,
        posts=posts,
        sentiment_noise=rng.normal(0, 0.15, n),
        volume_noise=rng.normal(0, 0.1, n),
        bias={v: float(rng.normal(0, 0.03)) for v in VENUES},
        quote_noise={v: rng.normal(0, 0.02, n) for v in VENUES},
        anomalies=anomalies,
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _venue_price(path: _Path, venue: str, step: int) -> float:
    t = path.t0 + step * _STEP_S
    p = _sigmoid(path.x[step] + path.bias[venue] + path.quote_noise[venue][step])
    anomalies = path.anomalies
    if venue == "gamma" and "spike_revert" in anomalies:
        hour = anomalies["spike_revert"]
        if hour + 300 <= t < hour + 3900:
            p = p + 0.3 if p < 0.5 else p - 0.3
    if venue == "beta" and "divergence" in anomalies:
        begin = anomalies["divergence"] - 3600  # ramps over the hour before, holds 3 hours
        if begin <= t < begin + 5 * 3600:
            ramp = min(1.0, (t - begin) / 3600, (begin + 5 * 3600 - t) / 3600)
            p = p + 0.3 * ramp if p < 0.5 else p - 0.3 * ramp
    return round(min(0.99, max(0.01, p)), 3)


def _event_body(path: _Path, start: int, end: int) -> dict[str, Any] | None:
    """The event's observations with start <= time < end (epoch seconds)."""
    event = path.event
    close = int(event.close_time.timestamp())
    end = min(end, close + 1)
    if end <= start or start > close:
        return None
    n = len(path.x)
    lo = max(0, -(-(start - path.t0) // _STEP_S))
    hi = min(n, -(-(end - path.t0) // _STEP_S))
    quotes: dict[str, list[list[float]]] = {v: [] for v in VENUES}
    volume: list[list[float]] = []
    sentiment: list[list[float]] = []
    for step in range(lo, hi):
        t = path.t0 + step * _STEP_S
        minute = (t // 60) % 60
        for venue in VENUES:
            if minute % 15 == 5 * VENUE_OFFSET_STEPS[venue]:
                quotes[venue].append([t, _venue_price(path, venue, step)])
        if minute % 15 == 0 and t + 120 < end:
            hour_of_life = step // 12
            amount = float(path.volume[hour_of_life]) / 4 * (1 + path.volume_noise[step])
            burst = path.anomalies.get("volume_burst")
            if burst is not None and burst <= t < burst + 3600:
                amount *= 12
            volume.append([t + 120, round(amount, 2)])
        if minute in (5, 35) and t + 120 < end:
            value = math.tanh(path.x[step] / 2) + path.sentiment_noise[step]
            sentiment.append([t + 120, round(max(-1.0, min(1.0, value)), 3)])
    posts = []
    for step, offset, platform, account, noise, words in path.posts:
        t = path.t0 + step * _STEP_S + offset
        if start <= t < end:
            value = round(max(-1.0, min(1.0, math.tanh(path.x[step] / 2) + noise)), 3)
            posts.append([t, platform, account, value, words])
    hour = path.anomalies.get("coordinated_posts")
    if hour is not None:
        side = 1 if path.x[min(n - 1, max(0, (hour - path.t0) // _STEP_S))] < 0 else -1
        line = f"everyone is saying {event.slug} is decided already get in now before it moves"
        for k, minute in enumerate((21, 22, 23, 26, 27, 28)):
            t = hour + minute * 60
            if start <= t < end:
                text = line if k % 2 == 0 else line.replace("get in now", "get in today")
                posts.append([t, PLATFORMS[k % 3], f"crew{k}", round(0.8 * side, 3), text])
    news = []
    for step, offset, outlet, value, headline in path.news:
        t = path.t0 + step * _STEP_S + offset
        if start <= t < end:
            news.append([t, outlet, value, headline])
    body: dict[str, Any] = {
        "id": event.event_id,
        "slug": event.slug,
        "title": event.title,
        "category": event.category,
        "open_time": int(event.open_time.timestamp()),
        "close_time": close,
        "quotes": quotes,
        "volume": volume,
        "sentiment": sentiment,
        "posts": sorted(posts),
        "news": news,
        "anomalies": {k: v for k, v in sorted(path.anomalies.items()) if start <= v < end},
        "status": "open",
        "result": None,
    }
    if start <= close < end:
        last = {v: _venue_price(path, v, min(n - 1, (close - path.t0) // _STEP_S)) for v in VENUES}
        body.update(status="settled", result=path.event.outcome.lower(), settlement=last)
    return body


# ---- the adapter ---------------------------------------------------------------------------


class SimulatorAdapter:
    source = SOURCE

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """One request per category for the window (a poll stops at the time it is made)."""
        if mode not in ("poll", "backfill"):
            raise ValueError(f"{SOURCE}: unknown fetch mode {mode!r}")
        settings = _settings(config)
        base = {
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "mode": mode,
            "config": settings,
        }
        return [
            PageRequest(ENDPOINT, URL, params={"category": c}, context={**base, "category": c})
            for c in settings["categories"]
        ]

    def respond(self, request: PageRequest, *, at: datetime) -> bytes:
        """The body the simulated exchange answers `request` with (at `at` for a poll)."""
        context = request.context
        settings = _settings(context["config"])
        start = datetime.fromisoformat(context["window_start"])
        end = datetime.fromisoformat(context["window_end"])
        as_of = None
        if context["mode"] == "poll":
            # What has happened by the poll, on the grid, so every poll repeats the same values.
            as_of = min(end, at.astimezone(UTC))
            end = as_of
        events = []
        for event in catalogue(settings, start, end):
            if event.category != context["category"]:
                continue
            body = _event_body(_path(settings, event), int(start.timestamp()), int(end.timestamp()))
            if body is not None:
                events.append(body)
        payload = {
            "source": SOURCE,
            "seed": settings["seed"],
            "category": context["category"],
            "window": [context["window_start"], context["window_end"]],
            "as_of": as_of.isoformat() if as_of else None,
            "events": events,
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageNavigation:
        """A simulated body is the whole window of its category: it leads nowhere."""
        return PageNavigation(ENDPOINT, items=len(_events(BodyReader(SOURCE, ENDPOINT), payload)))

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageRecords:
        """Records of one simulated body; values are observed at their own times."""
        reader = BodyReader(SOURCE, ENDPOINT)
        records: list[NormalisedRecord] = []
        for index, item in enumerate(_events(reader, payload)):
            records += _records(reader, reader.mapping(item, f"event {index}"))
        return PageRecords(ENDPOINT, records)


def _events(reader: BodyReader, payload: Any) -> list[Any]:
    body = reader.mapping(payload, "response body")
    if body.get("source") != SOURCE:
        raise reader.fail("not a simulator body (no 'source': 'simulator')")
    return reader.listing(body.get("events"), "events")


ADAPTER = SimulatorAdapter()


def _at(reader: BodyReader, value: Any, what: str) -> datetime:
    moment = reader.epoch_s(value, what)
    if moment is None:
        raise reader.fail(f"{what}: missing time")
    return moment


def _records(reader: BodyReader, item: dict[str, Any]) -> list[NormalisedRecord]:
    sid = reader.identifier(item, "id", "event")
    what = f"event {sid}"
    close = _at(reader, item.get("close_time"), f"{what} close_time")
    settled = item.get("status") == "settled"
    result = item.get("result")
    if settled and result not in ("yes", "no"):
        raise reader.fail(f"{what}: settled with result {result!r}")
    facts = MarketFacts(
        title=reader.text(item, "title", what),
        slug=reader.text(item, "slug", what),
        category_hints=(str(item.get("category")),),
        close_time=close,
        status="open",
        parent_id=sid,
        outcome="Yes",
    )
    url = f"{URL}/{sid}"
    records: list[NormalisedRecord] = []

    def add(source, source_event_id, kind, value, when, market=facts, narrative=None, raw=None):
        records.append(
            NormalisedRecord(
                source=source,
                source_event_id=source_event_id,
                signal_type=kind,
                value=value,
                fetched_at=when,
                source_url=url,
                narrative=narrative,
                raw_data=raw or {},
                market=market,
            )
        )

    quotes = reader.mapping(item.get("quotes"), f"{what} quotes")
    for venue in VENUES:
        market_id = f"{sid}-{VENUE_CODES[venue]}"
        for t, price in reader.listing(quotes.get(venue), f"{what} {venue} quotes"):
            value = reader.probability(price, f"{what} {venue} price")
            add(f"simulator-{venue}", market_id, "MARKET_PRICE", value, _at(reader, t, what))
    for t, amount in reader.listing(item.get("volume"), f"{what} volume"):
        value = reader.number(amount, f"{what} volume")
        add(
            "simulator-alpha",
            f"{sid}-A",
            "VOLUME",
            value,
            _at(reader, t, what),
            raw={"amount": value},
        )
    for t, value in reader.listing(item.get("sentiment"), f"{what} sentiment"):
        add(
            "simulator-sentiment",
            sid,
            "SENTIMENT",
            reader.number(value, what),
            _at(reader, t, what),
        )
    for t, platform, account, value, text in reader.listing(item.get("posts"), f"{what} posts"):
        add(
            f"simulator-{platform}",
            sid,
            "SOCIAL",
            reader.number(value, what),
            _at(reader, t, what),
            narrative=text,
            raw={"account": account, "platform": platform},
        )
    for t, outlet, value, headline in reader.listing(item.get("news"), f"{what} news"):
        add(
            "simulator-news",
            sid,
            "NEWS",
            reader.number(value, what),
            _at(reader, t, what),
            narrative=headline,
            raw={"outlet": outlet},
        )
    if settled:
        final = reader.mapping(item.get("settlement"), f"{what} settlement")
        resolution = "YES" if result == "yes" else "NO"
        market = MarketFacts(
            title=facts.title,
            slug=facts.slug,
            category_hints=facts.category_hints,
            close_time=close,
            status="resolved",
            resolution=resolution,
            resolution_time=close,
            parent_id=sid,
            outcome="Yes",
        )
        for venue in VENUES:
            value = reader.probability(final.get(venue), f"{what} {venue} settlement price")
            add(
                f"simulator-{venue}",
                f"{sid}-{VENUE_CODES[venue]}",
                "MARKET_PRICE",
                value,
                close,
                market=market,
                raw={"status": "settled", "result": result},
            )
    return records
