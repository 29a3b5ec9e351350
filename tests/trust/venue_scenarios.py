"""Seeded multi-venue markets for the trust stage: several venues of very different volume (the
largest 30-300x the smallest), a day of ordinary trading, then one scored hour of a kind:

- clean: more of the same (a reliable headline now and then, as any hour);
- news: a genuine repricing: 3-5 reliable outlets report, every venue reprices the same way
  (0.5-1.2 in logit) and every venue's volume rises 2.5-8x;
- spike: one venue's volume rises 6-12x, the others trade as usual;
- wash: one venue other than the largest trades 4-15x its volume at an unchanged price.

`market(seed, kind, event_id, start)` gives the signal rows (as prediction_signals takes them)
and what was injected; the same seed gives the same rows.
"""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

KINDS = ("clean", "news", "spike", "wash")
VENUES = ("polymarket", "kalshi", "manifold", "predictit")
HOURS = 24  # the trailing day before the scored hour
_QUOTE_MINUTES = (5, 20, 35, 50)
_VOLUME_MINUTES = (7, 22, 37, 52)
SIGNAL_COLUMNS = (
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


@dataclass(frozen=True, slots=True)
class VenueMarket:
    event_id: str
    kind: str
    rows: list[tuple[Any, ...]]  # SIGNAL_COLUMNS
    venues: tuple[str, ...]
    hourly_volume: tuple[float, ...]  # each venue's typical hourly volume
    target: str | None  # the venue spiked or washed
    multiple: float  # its volume multiple in the scored hour


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def market(seed: int, kind: str, event_id: str, start: datetime) -> VenueMarket:
    """The rows of one event: HOURS trailing hours before `start`, then [start, start + 1h)."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}, expected one of {KINDS}")
    rng = np.random.default_rng([seed, zlib.crc32(kind.encode())])
    n = int(rng.integers(3, len(VENUES) + 1))
    venues = tuple(VENUES[:n])
    # the largest venue first, each next 3-10x smaller
    level = rng.uniform(11.0, 12.5) - np.concatenate(
        [[0.0], np.cumsum(rng.uniform(np.log(3), np.log(10), n - 1))]
    )
    spread = rng.uniform(0.15, 0.35, n)  # each venue's hour-to-hour log-volume noise
    offset = rng.normal(0, 0.05, n)  # each venue's standing difference from the others
    latent = rng.uniform(-1.5, 1.5) + np.cumsum(rng.normal(0, 0.06, HOURS + 1))
    multiple = np.ones(n)
    target, jump = None, 0.0
    if kind == "news":
        multiple = rng.uniform(2.5, 8.0, n)
        jump = float(rng.choice([-1, 1]) * rng.uniform(0.5, 1.2))
    elif kind == "spike":
        target = int(rng.integers(0, n))
        multiple[target] = rng.uniform(6.0, 12.0)
    elif kind == "wash":
        target = int(rng.integers(1, n))
        multiple[target] = rng.uniform(4.0, 15.0)

    rows: list[tuple[Any, ...]] = []
    last_price = np.zeros(n)  # each venue's last quote before the scored hour

    def add(source, market_id, signal_type, value, at, reliability, narrative=None, raw=None):
        rows.append(
            (
                event_id,
                source,
                market_id,
                signal_type,
                value,
                1.0,
                reliability,
                at,
                narrative,
                json.dumps(raw or {}),
            )
        )

    for hour in range(-HOURS, 1):
        at = start + timedelta(hours=hour)
        x = latent[hour + HOURS]
        for v, venue in enumerate(venues):
            market_id = f"{venue}-{event_id[:8]}"
            hourly = float(np.exp(level[v] + rng.normal(0, spread[v]))) * (
                multiple[v] if hour == 0 else 1.0
            )
            for minute in _VOLUME_MINUTES:
                amount = hourly / 4 * float(np.exp(rng.normal(0, 0.1)))
                add(venue, market_id, "VOLUME", round(amount / 1000, 4), at + _min(minute), 0.9)
            for q, minute in enumerate(_QUOTE_MINUTES):
                if hour == 0 and kind == "wash" and v == target:
                    # washed volume trades at the price the venue last quoted
                    price = last_price[v]
                else:
                    moved = jump * min(1.0, (q + 1) / 2) if hour == 0 else 0.0
                    price = round(_sigmoid(x + offset[v] + moved + rng.normal(0, 0.01)), 4)
                add(venue, market_id, "MARKET_PRICE", price, at + _min(minute), 0.9)
                if hour == -1 and q == len(_QUOTE_MINUTES) - 1:
                    last_price[v] = price
        if rng.random() < 0.1 and hour < 0:  # an ordinary headline now and then
            add(
                "newswire",
                f"nw-{event_id[:8]}-{hour}",
                "NEWS",
                round(float(rng.normal(0, 0.2)), 4),
                at + _min(int(rng.integers(0, 60))),
                0.8,
                narrative=f"Routine update {hour} on the market",
            )
    if kind == "news":
        for k in range(int(rng.integers(3, 6))):
            add(
                f"outlet-{k}",
                f"story-{event_id[:8]}",
                "NEWS",
                round(float(np.sign(jump) * rng.uniform(0.4, 0.8)), 4),
                start + _min(int(rng.integers(-20, 10))),
                round(float(rng.uniform(0.7, 0.95)), 2),
                narrative=f"Outlet {k} reports the decisive development",
            )
    return VenueMarket(
        event_id=event_id,
        kind=kind,
        rows=rows,
        venues=venues,
        hourly_volume=tuple(float(np.exp(v)) for v in level),
        target=None if target is None else venues[target],
        multiple=float(multiple[target]) if target is not None else float(multiple.min()),
    )


def _min(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


def event_uuid(seed: int, kind: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"venue-scenario/{kind}/{seed}"))


def write_markets(conn: psycopg.Connection, markets: list[VenueMarket], start: datetime) -> None:
    """The markets' events (ACTIVE, closing in 30 days) and signals, into Postgres."""
    conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)",
        (start - timedelta(hours=HOURS + 1), start + timedelta(hours=1)),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prediction_events (id, title, slug, resolution_date)"
            " VALUES (%s, %s, %s, %s)",
            [
                (
                    m.event_id,
                    f"Venues {m.kind} {m.event_id[:8]}",
                    f"venues-{m.event_id}",
                    start + timedelta(days=30),
                )
                for m in markets
            ],
        )
        with cur.copy(
            "COPY prediction_signals (event_id, source, source_event_id, signal_type, value,"
            " weight, reliability, fetched_at, narrative, raw_data) FROM STDIN"
        ) as copy:
            for m in markets:
                for row in m.rows:
                    copy.write_row(row)
