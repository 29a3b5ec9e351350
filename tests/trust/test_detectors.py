"""Stage 4 detectors: false alarms on clean markets, each injected manipulation, and each
detector's definition on hand-built markets (boundaries and the cases it must leave alone)."""

from __future__ import annotations

import json
import math
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from predict_pipeline.trust import compute_trust
from predict_pipeline.trust import text as text_module
from predict_pipeline.trust.config import FLAG_COMPONENTS
from predict_pipeline.trust.text import normalise_text, shingles, similarity_groups
from tests.support.trust_scenarios import (
    INJECTORS,
    WORDS,
    clean_markets,
    inject_source_takeover,
    input_frames,
    measure_false_alarms,
    signal_row,
)

START = datetime(2026, 3, 2, 12, tzinfo=UTC)  # the interval scored: 12:00-13:00
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
EVENT = "5f0c2f4e-9a51-4c1e-8d7a-3f2b6e1d0a01"


def signal(kind: str, value: float | None, at: datetime, **fields: Any) -> dict[str, Any]:
    return signal_row(kind, value, at, event_id=fields.pop("event", EVENT), **fields)


def trust(rows, snapshots=None, events=None, start: datetime = START):
    signals, snaps, event_frame = input_frames(rows, snapshots, events)
    return compute_trust(
        signals, snaps, event_frame, interval_start=start, interval_end=start + HOUR
    ), signals


def flags_of(result, flag_type: str) -> list:
    return [f for f in result.flags if f.flag_type == flag_type]


def ids_of(signals, rows: list[dict[str, Any]], all_rows: list[dict[str, Any]]) -> list[str]:
    """The ids input_frames gave to `rows` (picked by identity among `all_rows`)."""
    positions = [next(i for i, r in enumerate(all_rows) if r is row) for row in rows]
    return list(signals["id"].iloc[positions])


def sentence(k: int) -> str:
    return " ".join(WORDS[(31 * k + 7 * j) % len(WORDS)] for j in range(8))


def drifting_prices(
    jump: float, *, at_minute: int = 30, source: str = "polymarket", event: str = EVENT
) -> list[dict[str, Any]]:
    """One price per hour at minute 30 whose logit rises 0.05 an hour (so the move sigma is its
    floor, 0.1), and in the scored hour `jump` more, quoted at `at_minute`."""
    rows = [
        signal(
            "MARKET_PRICE",
            1 / (1 + math.exp(-0.05 * k)),
            START + (k - 24) * HOUR + 30 * MINUTE,
            source=source,
            event=event,
        )
        for k in range(24)
    ]
    rows.append(
        signal(
            "MARKET_PRICE",
            1 / (1 + math.exp(-(0.05 * 24 + jump))),
            START + at_minute * MINUTE,
            source=source,
            event=event,
        )
    )
    return rows


def steady_posts(per_hour: int = 4) -> list[dict[str, Any]]:
    """Distinct SOCIAL posts every trailing hour and in the scored one."""
    return [
        signal(
            "SOCIAL",
            0.1,
            START + (h - 24) * HOUR + (3 + 11 * j) * MINUTE,
            source="webhook",
            weight=1.0,
            reliability=0.8,
            narrative=sentence(per_hour * h + j),
            raw={"author": f"user{per_hour * h + j}"},
        )
        for h in range(25)
        for j in range(per_hour)
    ]


def resolved(outcome: str, close: datetime) -> list[dict[str, Any]]:
    return [
        {
            "event_id": EVENT,
            "status": f"RESOLVED_{outcome}",
            "resolution_date": close,
            "resolved_at": close,
            "outcome": outcome,
        }
    ]


# ---- clean markets ----------------------------------------------------------------------------


def test_clean_markets_raise_almost_no_flags():
    alarms = measure_false_alarms(range(4), n_markets=50, hours=24)
    print(
        f"\nfalse alarms: {alarms.flags} flags over {alarms.event_intervals} event-intervals "
        f"= {alarms.rate:.3%} {alarms.by_type}"
    )
    assert alarms.event_intervals == 4 * 50 * 24
    assert alarms.rate <= 0.005  # documented bound: at most 0.5 % flags per event-interval
    quiet = (
        "INSIDER_TIMING",
        "COORDINATED_ACTION",
        "BOT_SENTIMENT",
        "NARRATIVE_PLANT",
        "SOURCE_MANIPULATION",
    )
    assert {t: alarms.by_type[t] for t in quiet} == dict.fromkeys(quiet, 0)


# ---- injected manipulations -------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean():
    return clean_markets(20, 48, seed=11)


CASES = [*INJECTORS.items(), ("SOURCE_MANIPULATION", inject_source_takeover)]


@pytest.mark.parametrize(
    ("flag_type", "inject"), CASES, ids=[*INJECTORS, "SOURCE_MANIPULATION-takeover"]
)
def test_an_injected_manipulation_raises_its_flag_and_lowers_its_component(
    clean, flag_type, inject
):
    markets, injection = inject(clean, seed=3)
    window = {"interval_start": injection.interval_start, "interval_end": injection.interval_end}
    dirty = compute_trust(markets.signals, markets.snapshots, markets.events, **window)
    before = compute_trust(clean.signals, clean.snapshots, clean.events, **window)
    assert injection.flag_type == flag_type

    raised = [
        f for f in dirty.flags if (f.event_id, f.flag_type) == (injection.event_id, flag_type)
    ]
    assert len(raised) == 1
    flag = raised[0]
    assert (injection.event_id, flag_type) not in {(f.event_id, f.flag_type) for f in before.flags}
    evidence = flag.evidence
    assert evidence["window_start"] == injection.interval_start.isoformat()
    assert evidence["window_end"] == injection.interval_end.isoformat()
    assert {"baseline", "observed", "threshold", "statistic"} <= evidence.keys()
    assert json.loads(json.dumps(evidence)) == evidence
    assert flag.related_signals
    assert set(flag.related_signals) <= set(markets.signals["id"])
    assert set(flag.related_signals) & set(injection.signal_ids)
    assert flag.dedup_key == (
        f"{injection.event_id}|{flag_type}|{injection.interval_start.isoformat()}"
    )
    assert flag.severity in ("WARNING", "ALERT", "CRITICAL")
    assert re.search(r"\d\.\d", flag.description) and flag.description.endswith(".")

    after = dirty.scores.set_index("event_id").loc[injection.event_id]
    was = before.scores.set_index("event_id").loc[injection.event_id]
    for component in FLAG_COMPONENTS[flag_type]:
        assert after[component] < was[component], component
    assert after["flagged_activity"] and after["flag_count"] >= 1
    assert after["manipulation_risk"] != "LOW"
    # the other events are untouched
    others = {(f.event_id, f.flag_type) for f in dirty.flags if f.event_id != injection.event_id}
    assert others == {
        (f.event_id, f.flag_type) for f in before.flags if f.event_id != injection.event_id
    }


def test_rerunning_an_injected_interval_gives_the_same_flags(clean):
    markets, injection = INJECTORS["COORDINATED_ACTION"](clean, seed=3)
    window = {"interval_start": injection.interval_start, "interval_end": injection.interval_end}
    first = compute_trust(markets.signals, markets.snapshots, markets.events, **window)
    again = compute_trust(markets.signals, markets.snapshots, markets.events, **window)
    assert first.flags == again.flags
    assert [f.dedup_key for f in first.flags] == [f.dedup_key for f in again.flags]


# ---- VOLUME_SPIKE -----------------------------------------------------------------------------


def volume_snapshots(trailing: list[int], current: int, probability: float = 0.5):
    return [
        {
            "event_id": EVENT,
            "snapshot_at": START + k * HOUR,
            "probability": probability,
            "sentiment_score": 0.0,
            "volume": v,
            "signal_count": 0,
        }
        for k, v in zip(range(-24, 1), [*trailing, current], strict=True)
    ]


def test_volume_spike_is_a_robust_z_above_threshold_and_a_multiple_of_the_median():
    alternating = [999 if k % 2 else 1999 for k in range(24)]  # median ln(1000 sqrt 2)
    sigma = 1.4826 * math.log(2) / 2
    current = round(1000 * math.sqrt(2) * math.exp(3.6 * sigma)) - 1
    rows = [signal("VOLUME", current / 2000, START + m * MINUTE, source="kalshi") for m in (10, 40)]
    result, signals = trust(rows, volume_snapshots(alternating, current))
    (flag,) = flags_of(result, "VOLUME_SPIKE")
    assert flag.evidence["z"] == pytest.approx(3.6, abs=1e-3)
    assert flag.evidence["baseline"] == pytest.approx(1000 * math.sqrt(2) - 1, abs=1e-6)
    assert flag.evidence["observed"] == current
    assert flag.evidence["volume_basis"] == "snapshots"
    assert flag.evidence["threshold"] == {
        "z": 3.5,
        "ratio": 3.0,
        "shared_ratio": 1.5,
        "shared_share": 0.5,
        "news_reports": 2,
        "repricing_jump_z": 3.0,
    }
    assert flag.evidence["venue"] is None  # no venue has a baseline: the event's volume
    assert flag.severity == "WARNING"
    assert sorted(flag.related_signals) == sorted(signals["id"])

    below, _ = trust(
        rows, volume_snapshots(alternating, round(1000 * math.sqrt(2) * math.exp(3.4 * sigma)))
    )
    assert flags_of(below, "VOLUME_SPIKE") == []


def test_a_steady_market_needs_a_real_multiple_before_a_spike():
    steady = [999] * 24  # MAD 0: sigma is the 0.1 floor, so 2.2x is already z = 7.9
    small, _ = trust([], volume_snapshots(steady, 2199))
    triple, _ = trust([], volume_snapshots(steady, 3000))
    huge, _ = trust([], volume_snapshots(steady, 100_000))
    assert flags_of(small, "VOLUME_SPIKE") == []
    assert flags_of(triple, "VOLUME_SPIKE")[0].severity == "WARNING"
    assert flags_of(huge, "VOLUME_SPIKE")[0].severity == "CRITICAL"


def test_volume_out_of_a_silent_baseline_is_a_spike():
    result, _ = trust([], volume_snapshots([0] * 24, 5000))
    (flag,) = flags_of(result, "VOLUME_SPIKE")
    assert flag.evidence["z"] == pytest.approx(math.log(5001) / 0.1, abs=1e-6)
    assert flag.evidence["baseline"] == 0.0
    assert flag.severity == "CRITICAL"
    assert flag.description.endswith("median of 0, up from nothing (thresholds 3.5 SDs, 3.0x).")


def test_without_snapshots_volume_flows_are_summed_and_lifetime_totals_left_out():
    rows = []
    for k in range(25):
        flow = 20.0 if k == 24 else (1.0 if k % 2 else 2.0)
        at = START + (k - 24) * HOUR + 20 * MINUTE
        rows.append(signal("VOLUME", flow / 2, at, source="kalshi"))
        rows.append(signal("VOLUME", flow / 2, at + 5 * MINUTE, source="kalshi"))
        rows.append(
            signal(
                "VOLUME", 900.0 + k, at, source="kalshi", raw={"volume_scope": "lifetime_contracts"}
            )
        )
    result, signals = trust(rows)
    (flag,) = flags_of(result, "VOLUME_SPIKE")
    assert flag.evidence["volume_basis"] == "volume_signals"
    assert flag.evidence["observed"] == pytest.approx(20_000.0, abs=1e-6)
    assert flag.evidence["baseline"] == pytest.approx(math.sqrt(1001 * 2001) - 1, abs=1e-6)


# ---- WASH_TRADING -----------------------------------------------------------------------------


def bet(
    account: str, outcome: str, amount: float, minute: float, key: str, redemption: bool = False
) -> list[dict[str, Any]]:
    raw = {
        "id": key,
        "userId": account,
        "contractId": "m1",
        "outcome": outcome,
        "amount": amount,
        "probBefore": 0.5,
        "probAfter": 0.5,
        "isRedemption": redemption,
    }
    at = START + minute * MINUTE
    return [
        signal("MARKET_PRICE", 0.5, at, source="manifold", reliability=0.8, raw=raw),
        signal("VOLUME", abs(amount) / 1000, at, source="manifold", reliability=0.8, raw=raw),
    ]


def test_one_account_trading_both_sides_is_wash_trading():
    washing = [
        row
        for k, side in enumerate(("YES", "NO", "YES", "NO"))
        for row in bet("acct-w", side, 100.0, 10 + 5 * k, f"w{k}")
    ]
    rows = [
        *washing,
        *bet("acct-x", "YES", 100.0, 30, "x0"),
        *bet("acct-w", "NO", 55.0, 27, "r0", redemption=True),
    ]
    result, signals = trust(rows)
    (flag,) = flags_of(result, "WASH_TRADING")
    assert flag.evidence["statistic"] == "account_round_trips"
    assert flag.evidence["observed"] == {
        "round_trips": 3,
        "share": 0.8,
        "wash_amount": 400.0,
        "amount": 500.0,
        "accounts": 1,
    }
    assert flag.evidence["accounts"] == ["acct-w"]
    assert sorted(flag.related_signals) == sorted(ids_of(signals, washing, rows))
    assert flag.severity == "WARNING"


def test_opposite_trades_far_apart_are_not_round_trips():
    rows = [
        row
        for k, side in enumerate(("YES", "NO", "YES", "NO"))
        for row in bet("acct-w", side, 100.0, -120 + 40 * k, f"w{k}")
    ]
    result, _ = trust(rows)
    assert flags_of(result, "WASH_TRADING") == []


def test_heavy_volume_that_leaves_the_price_flat_is_wash_trading():
    alternating = [999 if k % 2 else 1999 for k in range(24)]
    current = round(1000 * math.sqrt(2) * 7) - 1  # 7x the median, z = ln 7 / 0.514 = 3.79
    result, _ = trust([], volume_snapshots(alternating, current, probability=0.42))
    (flag,) = flags_of(result, "WASH_TRADING")
    assert flag.evidence["statistic"] == "volume_without_price_impact"
    assert flag.evidence["volume_ratio"] == pytest.approx(
        current / (1000 * math.sqrt(2) - 1), abs=1e-6
    )
    assert flag.evidence["price_move"] == 0.0
    assert flags_of(result, "VOLUME_SPIKE")


# ---- INSIDER_TIMING ---------------------------------------------------------------------------


def test_a_jump_toward_the_outcome_before_close_is_insider_timing():
    rows = drifting_prices(0.85)
    result, signals = trust(rows, events=resolved("YES", START + 3 * HOUR))
    (flag,) = flags_of(result, "INSIDER_TIMING")
    # logit 1.15 -> 2.05: a move of 0.9 against hourly moves of 0.05 (sigma floor 0.1): z 8.5
    p_before, p_after = 1 / (1 + math.exp(-1.15)), 1 / (1 + math.exp(-2.05))
    assert flag.evidence["observed"]["p_before"] == pytest.approx(p_before, abs=1e-6)
    assert flag.evidence["observed"]["p_after"] == pytest.approx(p_after, abs=1e-6)
    assert flag.evidence["observed"]["z"] == pytest.approx(8.5, abs=1e-6)
    assert flag.evidence["outcome"] == "YES"
    assert flag.evidence["close_at"] == (START + 3 * HOUR).isoformat()
    assert flag.related_signals == [signals["id"].iloc[-1]]
    assert flag.severity == "WARNING"  # strength min(0.126 / 0.10, 8.5 / 3.0) < 2


@pytest.mark.parametrize(
    ("case", "events", "extra"),
    [
        ("unresolved", None, []),
        ("moved away from the outcome", resolved("NO", START + 3 * HOUR), []),
        ("too long before close", resolved("YES", START + 20 * HOUR), []),
        (
            "news came first",
            resolved("YES", START + 3 * HOUR),
            [
                signal(
                    "NEWS",
                    0.6,
                    START + 20 * MINUTE,
                    source="custom_api",
                    reliability=0.9,
                    narrative="The committee has approved it",
                )
            ],
        ),
    ],
)
def test_moves_that_are_not_insider_timing(case, events, extra):
    result, _ = trust([*drifting_prices(0.85), *extra], events=events)
    assert flags_of(result, "INSIDER_TIMING") == [], case


def test_news_after_the_move_does_not_excuse_it():
    late = signal(
        "NEWS",
        0.6,
        START + 40 * MINUTE,
        source="custom_api",
        reliability=0.9,
        narrative="The committee has approved it",
    )
    result, _ = trust([*drifting_prices(0.85), late], events=resolved("YES", START + 3 * HOUR))
    assert len(flags_of(result, "INSIDER_TIMING")) == 1


# ---- COORDINATED_ACTION -----------------------------------------------------------------------

PUSH = "insiders confirm the deal is signed so the vote is a formality buy yes now"


def pushed(
    count: int, sources: tuple[str, ...], minutes_apart: float = 1.5, first: float = 20
) -> list[dict[str, Any]]:
    return [
        signal(
            "SOCIAL",
            0.8,
            START + (first + minutes_apart * k) * MINUTE,
            source=sources[k % len(sources)],
            reliability=0.7,
            narrative=f"{PUSH.upper()}!!! #{WORDS[k]} https://t.co/{k}",
        )
        for k in range(count)
    ]


def test_near_identical_posts_from_distinct_sources_within_minutes_are_coordinated():
    posts = pushed(5, ("webhook", "upload", "custom_api"))
    rows = [*steady_posts(), *posts]
    result, signals = trust(rows)
    (flag,) = flags_of(result, "COORDINATED_ACTION")
    assert flag.evidence["observed"] == {"signals": 5, "origins": 3}
    assert flag.evidence["origins"] == ["custom_api", "upload", "webhook"]
    assert flag.evidence["burst_start"] == (START + 20 * MINUTE).isoformat()
    assert flag.evidence["burst_end"] == (START + 26 * MINUTE).isoformat()
    assert flag.related_signals == ids_of(signals, posts, rows)
    assert flag.evidence["narrative_example"].startswith("insiders confirm the deal")


@pytest.mark.parametrize(
    ("case", "posts"),
    [
        ("four posts", pushed(4, ("webhook", "upload", "custom_api"))),
        ("two origins", pushed(5, ("webhook", "upload"))),
        ("spread over 20 minutes", pushed(5, ("webhook", "upload", "custom_api"), 5)),
    ],
)
def test_posts_that_are_not_coordinated(case, posts):
    result, _ = trust([*steady_posts(), *posts])
    assert flags_of(result, "COORDINATED_ACTION") == [], case


def test_sharing_a_reliable_headline_is_not_coordination():
    headline = signal(
        "NEWS",
        0.6,
        START + 15 * MINUTE,
        source="custom_api",
        reliability=0.9,
        narrative=PUSH,
        raw={"author": "wire-desk"},
    )
    result, _ = trust([*steady_posts(), headline, *pushed(6, ("webhook", "upload", "custom_api"))])
    assert flags_of(result, "COORDINATED_ACTION") == []


def test_accounts_in_raw_data_are_distinct_origins():
    posts = [
        {**p, "raw_data": {"author": f"amp{k}"}} for k, p in enumerate(pushed(5, ("webhook",)))
    ]
    result, _ = trust([*steady_posts(), *posts])
    (flag,) = flags_of(result, "COORDINATED_ACTION")
    assert flag.evidence["origins"] == [f"webhook/amp{k}" for k in range(5)]


# ---- BOT_SENTIMENT ----------------------------------------------------------------------------


def bot_posts(count: int = 20, reliability: float = 0.2) -> list[dict[str, Any]]:
    return [
        signal(
            "SOCIAL",
            0.9,
            START + (2 + 2.5 * k) * MINUTE,
            source="webhook",
            reliability=reliability,
            narrative=f"moon soon {WORDS[k % 3]} yes yes",
            raw={"author": "botfarm"},
        )
        for k in range(count)
    ]


def test_a_burst_of_unreliable_posts_with_nothing_behind_it_is_bot_sentiment():
    bots = bot_posts()
    rows = [*steady_posts(), *drifting_prices(0.0), *bots]
    result, signals = trust(rows)
    (flag,) = flags_of(result, "BOT_SENTIMENT")
    # 24 posts against 4 an hour: z = 2 sqrt(24.375) - 2 sqrt(4.375), MAD 0 -> sigma 1
    assert flag.evidence["observed"]["z"] == pytest.approx(
        2 * math.sqrt(24.375) - 2 * math.sqrt(4.375), abs=1e-6
    )
    assert flag.evidence["observed"]["signals"] == 24
    assert flag.evidence["observed"]["bot_share"] == pytest.approx(20 / 24, abs=1e-6)
    assert flag.evidence["baseline"] == 4.0
    assert flag.evidence["direction"] == "positive"
    assert sorted(flag.related_signals) == sorted(ids_of(signals, bots, rows))


@pytest.mark.parametrize(
    ("case", "extra"),
    [
        (
            "reliable news behind it",
            [
                signal(
                    "NEWS",
                    0.7,
                    START + MINUTE,
                    source="custom_api",
                    reliability=0.9,
                    narrative="Approval confirmed",
                )
            ],
        ),
        ("the price jumped its way", drifting_prices(0.8)[-1:]),
        (
            "reliable distinct posters",
            [
                {**p, "reliability": 0.9, "narrative": sentence(500 + k)}
                for k, p in enumerate(bot_posts())
            ],
        ),
    ],
)
def test_bursts_that_are_not_bot_sentiment(case, extra):
    base = [*steady_posts(), *drifting_prices(0.0)[:-1]]
    bots = [] if case == "reliable distinct posters" else bot_posts()
    result, _ = trust([*base, *bots, *extra])
    assert flags_of(result, "BOT_SENTIMENT") == [], case


# ---- NARRATIVE_PLANT --------------------------------------------------------------------------


def tip(
    value: float = 0.8, minute: float = 5, reliability: float = 0.3, author: str = "anon-tipster"
) -> dict[str, Any]:
    return signal(
        "NEWS",
        value,
        START + minute * MINUTE,
        source="custom_api",
        reliability=reliability,
        narrative="Exclusive: it is already decided",
        raw={"author": author},
    )


def test_an_uncorroborated_fringe_story_followed_by_a_move_is_a_narrative_plant():
    story = tip()
    rows = [*drifting_prices(0.8), story]
    result, signals = trust(rows)
    (flag,) = flags_of(result, "NARRATIVE_PLANT")
    assert flag.related_signals == ids_of(signals, [story, rows[-2]], rows)
    assert flag.evidence["news_signal"] == flag.related_signals[0]
    assert flag.evidence["news_origin"] == "custom_api/anon-tipster"
    # from logit 1.15 (the last price before the story) to 2.0, in hourly sigmas (floor 0.1)
    assert flag.evidence["observed"]["move"] == pytest.approx(
        1 / (1 + math.exp(-2.0)) - 1 / (1 + math.exp(-1.15)), abs=1e-6
    )
    assert flag.evidence["observed"]["z"] == pytest.approx(8.5, abs=1e-6)
    assert flag.severity == "WARNING"  # strength min(0.121 / 0.08, 8.5 / 3) < 2


@pytest.mark.parametrize(
    ("case", "rows"),
    [
        ("another outlet corroborates", [tip(), tip(0.5, 15, 0.6, "wire-desk")]),
        ("a reliable outlet", [tip(reliability=0.6)]),
        ("the move went the other way", [tip(-0.8)]),
        ("the move came before the story", [tip(minute=40)]),
    ],
)
def test_stories_that_are_not_plants(case, rows):
    result, _ = trust([*drifting_prices(0.8), *rows])
    assert flags_of(result, "NARRATIVE_PLANT") == [], case


def test_a_plant_is_flagged_in_the_interval_its_move_completes_only():
    rows = [*drifting_prices(0.8, at_minute=-15), tip(minute=-30)]
    earlier, _ = trust(rows, start=START - HOUR)
    later, _ = trust(rows)
    assert len(flags_of(earlier, "NARRATIVE_PLANT")) == 1
    assert flags_of(later, "NARRATIVE_PLANT") == []


# ---- SOURCE_MANIPULATION ----------------------------------------------------------------------


def three_sources(
    outlier_from: int, gap: float = 0.24, others: tuple[float, float] = (0.50, 0.51)
) -> list[dict[str, Any]]:
    rows = []
    for minute in range(-120, 60, 10):
        at = START + minute * MINUTE
        rows.append(signal("MARKET_PRICE", others[0], at, source="polymarket"))
        rows.append(signal("MARKET_PRICE", others[1], at + MINUTE, source="kalshi"))
        off = gap if minute >= outlier_from else 0.0
        rows.append(signal("MARKET_PRICE", 0.51 + off, at + 2 * MINUTE, source="predictit"))
    return rows


def test_one_source_far_from_all_others_for_long_is_source_manipulation():
    rows = three_sources(-20)
    result, signals = trust(rows)
    (flag,) = flags_of(result, "SOURCE_MANIPULATION")
    assert flag.evidence["observed"]["source"] == "predictit"
    assert flag.evidence["observed"]["gap"] == pytest.approx(0.24, abs=1e-9)
    assert flag.evidence["observed"]["minutes"] == pytest.approx(70.0)
    assert flag.evidence["outlier_since"] == (START - 18 * MINUTE).isoformat()
    run = [r for r in rows if r["source"] == "predictit" and r["fetched_at"] >= START - 20 * MINUTE]
    assert sorted(flag.related_signals) == sorted(ids_of(signals, run, rows))


@pytest.mark.parametrize(
    ("case", "rows"),
    [
        ("only 20 minutes", three_sources(30)),
        ("the others disagree too", three_sources(-20, others=(0.40, 0.60))),
        ("a small gap", three_sources(-20, gap=0.10)),
    ],
)
def test_sources_that_are_not_manipulated(case, rows):
    result, _ = trust(rows)
    assert flags_of(result, "SOURCE_MANIPULATION") == [], case


def flood(hours: range, per_hour: int) -> list[dict[str, Any]]:
    return [
        signal(
            "SENTIMENT",
            0.2,
            START + h * HOUR + (1 + 59 * j / per_hour) * MINUTE,
            source="upload",
            weight=5.0,
            reliability=0.9,
        )
        for h in hours
        for j in range(per_hour)
    ]


def background() -> list[dict[str, Any]]:
    return [
        signal("MARKET_PRICE", 0.5, START + h * HOUR + m * MINUTE, source=s)
        for h in range(-24, 1)
        for m in (10, 40)
        for s in ("polymarket", "kalshi")
    ]


def test_a_source_that_suddenly_carries_the_weight_is_source_manipulation():
    takeover = flood(range(0, 1), 30)
    rows = [*background(), *takeover]
    result, signals = trust(rows)
    (flag,) = flags_of(result, "SOURCE_MANIPULATION")
    # upload: 30 x 4.5 = 135 of 139 weight now, none before
    assert flag.evidence["source"] == "upload"
    assert flag.evidence["observed"] == pytest.approx(135 / 139, abs=1e-6)
    assert flag.evidence["baseline"] == 0.0
    assert flag.evidence["flood"] is None  # no trailing weight at all: an unbounded multiple
    assert "over the trailing window, where it had no weight before (thresholds" in (
        flag.description
    )
    assert sorted(flag.related_signals) == sorted(ids_of(signals, takeover, rows))


def test_a_takeover_is_measured_against_the_sources_usual_weight():
    rows = [*background(), *flood(range(-24, 0), 1), *flood(range(0, 1), 30)]
    result, _ = trust(rows)
    (flag,) = flags_of(result, "SOURCE_MANIPULATION")
    assert flag.evidence["flood"] == pytest.approx(30.0, abs=1e-9)
    assert flag.evidence["baseline"] == pytest.approx(4.5 / 8.5, abs=1e-6)
    assert flag.evidence["observed"] == pytest.approx(135 / 139, abs=1e-6)


def test_a_source_that_always_dominated_is_not_a_takeover():
    result, _ = trust([*background(), *flood(range(-24, 1), 30)])
    assert flags_of(result, "SOURCE_MANIPULATION") == []


# ---- narrative similarity ---------------------------------------------------------------------


def test_text_is_normalised_before_comparison():
    assert normalise_text("BREAKING: Buy YES now!!! https://t.co/x1 🚀 #Win") == (
        "breaking buy yes now win"
    )
    assert shingles("a b c d", 2) == frozenset({"a b", "b c", "c d"})
    assert shingles("solo", 2) == frozenset({"solo"})


def test_similarity_groups_join_texts_at_the_jaccard_threshold_transitively():
    texts = ["a b c d e", "a b c d f", "x y z w", "a b c d f g"]
    # J(0, 1) = |{ab, bc, cd}| / |{ab, bc, cd, de, df}| = 3/5; J(1, 3) = 4/5; J(0, 3) = 3/6
    assert list(similarity_groups(texts, 0.6, 2)) == [0, 0, 2, 0]
    assert list(similarity_groups(texts, 0.61, 2)) == [0, 1, 2, 1]
    assert list(similarity_groups(["", ""], 0.6, 2)) == [0, 1]
    assert np.array_equal(similarity_groups(["p q"] * 3, 0.9, 2), [0, 0, 0])


def test_few_texts_compared_pair_by_pair_group_as_the_matrix_form(monkeypatch):
    rng = random.Random(7)
    words = ["a", "b", "c", "d", "e", "f", "g", "h"]
    cases = []
    for _ in range(2000):
        texts = [
            " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
            for _ in range(rng.randint(2, 16))
        ]
        cases.append((texts, rng.choice([0.3, 0.5, 0.6, 0.8])))
    pairwise = [similarity_groups(texts, threshold, 2) for texts, threshold in cases]
    monkeypatch.setattr(text_module, "_SMALL_GROUP", 0)  # every group through the matrix
    for (texts, threshold), labels in zip(cases, pairwise, strict=True):
        assert np.array_equal(labels, similarity_groups(texts, threshold, 2)), texts
