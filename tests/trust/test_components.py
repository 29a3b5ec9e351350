"""Stage 4 components: each formula on hand-built inputs, penalties, risk, determinism, errors."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from predict_pipeline.trust import (
    SCORE_COLUMNS,
    TrustConfig,
    TrustInputError,
    compute_trust,
)
from predict_pipeline.trust.config import (
    COMPONENTS,
    FLAG_COMPONENTS,
    FLAG_PENALTY,
    FLAG_TYPES,
    OVERALL_WEIGHTS,
)
from predict_pipeline.trust.measure import prepare_signals
from predict_pipeline.trust.score import score
from tests.support.trust_scenarios import (
    WORDS,
    clean_markets,
    inject_narrative_plant,
    inject_wash_trading,
    input_frames,
    signal_row,
)

START = datetime(2026, 3, 2, 12, tzinfo=UTC)  # the interval scored: 12:00-13:00
HOUR = timedelta(hours=1)
EVENT = "5f0c2f4e-9a51-4c1e-8d7a-3f2b6e1d0a01"


def signal(kind: str, value: float | None, at: datetime, **fields: Any) -> dict[str, Any]:
    return signal_row(kind, value, at, event_id=fields.pop("event", EVENT), **fields)


def trust(rows, snapshots=None, events=None, config=None):
    signals, snaps, event_frame = input_frames(rows, snapshots, events)
    return compute_trust(
        signals, snaps, event_frame, interval_start=START, interval_end=START + HOUR, config=config
    )


def row_of(result, event: str = EVENT) -> pd.Series:
    return result.scores.set_index("event_id").loc[event]


def sentence(k: int) -> str:
    """A distinct 8-word sentence per k (no shared word pairs between different k)."""
    return " ".join(WORDS[(31 * k + 7 * j) % len(WORDS)] for j in range(8))


# ---- source_diversity -------------------------------------------------------------------------


def test_one_source_has_zero_diversity():
    rows = [
        signal("MARKET_PRICE", 0.4 + 0.01 * k, START + timedelta(minutes=5 * k)) for k in range(3)
    ]
    assert row_of(trust(rows))["source_diversity"] == 0.0


def test_four_equal_sources_have_diversity_one():
    rows = [
        signal("SENTIMENT", 0.1, START + timedelta(minutes=10), source=s)
        for s in ("polymarket", "kalshi", "custom_api", "webhook")
    ]
    assert abs(row_of(trust(rows))["source_diversity"] - 1.0) <= 1e-12


def test_diversity_weighs_weight_times_reliability():
    # polymarket: 2 x 1.5 = 3.0 of weight; kalshi: 1 x 1.0 = 1.0 -> shares 3/4 and 1/4
    rows = [
        signal("SENTIMENT", 0.1, START + timedelta(minutes=10), weight=2.0, reliability=1.5 / 2),
        signal("SENTIMENT", 0.1, START + timedelta(minutes=10), weight=2.0, reliability=1.5 / 2),
        signal("SENTIMENT", 0.1, START + timedelta(minutes=20), source="kalshi"),
    ]
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    assert row_of(trust(rows))["source_diversity"] == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.8112781244591328)


# ---- volume_consistency -----------------------------------------------------------------------


def _volume_snapshots(current: int) -> list[dict[str, Any]]:
    # trailing ln(1 + v): 12 x ln 1000 and 12 x ln 2000 -> median ln(1000 sqrt 2), MAD ln(2)/2
    trailing = [999 if k % 2 else 1999 for k in range(24)]
    return [
        {
            "event_id": EVENT,
            "snapshot_at": START + k * HOUR,
            "probability": 0.5,
            "sentiment_score": 0.0,
            "volume": v,
            "signal_count": 0,
        }
        for k, v in zip(range(-24, 1), [*trailing, current], strict=True)
    ]


def test_volume_consistency_is_the_documented_decay_of_the_robust_z():
    result = trust([], _volume_snapshots(3999))
    z = math.log(4000 / (1000 * math.sqrt(2))) / (1.4826 * math.log(2) / 2)
    assert z == pytest.approx(2.0234, abs=1e-4)
    row = row_of(result)
    assert row["volume_consistency"] == pytest.approx(1 / (1 + (z / 3.5) ** 2), abs=1e-12)
    assert result.flags == []
    # a snapshot-only active event: no signals, so diversity 0; its flat snapshot probability
    # makes the extra volume "volume without price impact": f_impact = 1 - 0.5 (z / 3.5)^2
    assert row["source_diversity"] == 0.0
    assert row["market_integrity"] == pytest.approx(1 - 0.5 * (z / 3.5) ** 2, abs=1e-12)
    assert row["overall_score"] == pytest.approx(
        0.25 * row["market_integrity"] + 0.20 + 0.20 * row["volume_consistency"] + 0.20,
        abs=1e-12,
    )


def test_snapshots_stamped_at_the_interval_end_are_read_with_snapshot_stamp_end():
    snaps = [{**s, "snapshot_at": s["snapshot_at"] + HOUR} for s in _volume_snapshots(3999)]
    as_start = trust([], snaps)
    as_end = trust([], snaps, config=TrustConfig(snapshot_stamp="end"))
    # read as start-stamped, every snapshot lands one interval late: the "current" one is the
    # last trailing 999, against 12 x 1999 and 11 x 999 (median ln 2000, MAD 0 -> floor 0.1)
    z_late = math.log(1000 / 2000) / 0.1
    assert row_of(as_start)["volume_consistency"] == pytest.approx(
        1 / (1 + (z_late / 3.5) ** 2), abs=1e-12
    )
    assert row_of(as_end)["volume_consistency"] == pytest.approx(
        row_of(trust([], _volume_snapshots(3999)))["volume_consistency"], abs=1e-12
    )


# ---- temporal_consistency ---------------------------------------------------------------------


def _drifting_prices(jump: float) -> list[dict[str, Any]]:
    """Hourly prices whose logit rises 0.05 an hour, then `jump` more in the scored interval."""
    xs = [0.05 * k for k in range(25)]
    xs[-1] += jump
    return [
        signal("MARKET_PRICE", 1 / (1 + math.exp(-x)), START + (k - 24) * HOUR + 30 * MINUTE)
        for k, x in enumerate(xs)
    ]


MINUTE = timedelta(minutes=1)


def test_temporal_consistency_penalises_an_unexplained_jump():
    # moves: 23 of 0.05 then 0.65 -> median 0.05, MAD 0 -> sigma = floor 0.1, z = 6
    row = row_of(trust(_drifting_prices(0.6)))
    assert row["temporal_consistency"] == pytest.approx(1 / (1 + (6.0 / 3.5) ** 2), abs=1e-9)


def test_a_jump_explained_by_reliable_news_is_not_penalised():
    news = signal(
        "NEWS",
        0.7,
        START + 10 * MINUTE,
        source="custom_api",
        reliability=0.9,
        narrative="Regulator approves the merger",
        raw={"author": "wire-desk"},
    )
    result = trust([*_drifting_prices(0.6), news])
    # explained by reliability 0.9: z counts 1 - 0.9 of itself
    assert row_of(result)["temporal_consistency"] == pytest.approx(
        1 / (1 + (0.6 / 3.5) ** 2), abs=1e-9
    )
    assert result.flags == []


def test_news_against_the_move_explains_nothing():
    news = signal(
        "NEWS",
        -0.7,
        START + 10 * MINUTE,
        source="custom_api",
        reliability=0.9,
        narrative="Regulator blocks the merger",
    )
    row = row_of(trust([*_drifting_prices(0.6), news]))
    assert row["temporal_consistency"] == pytest.approx(1 / (1 + (6.0 / 3.5) ** 2), abs=1e-9)


# ---- sentiment_authenticity -------------------------------------------------------------------


def _steady_posts() -> list[dict[str, Any]]:
    """Four distinct posts in each trailing hour: the burst statistic of 4 posts is then 0."""
    return [
        signal(
            "SOCIAL",
            0.1,
            START + (h - 24) * HOUR + (5 + 10 * j) * MINUTE,
            source="webhook",
            narrative=sentence(4 * h + j),
            raw={"author": f"u{4 * h + j}"},
        )
        for h in range(24)
        for j in range(4)
    ]


def test_duplicate_narratives_count_once_in_sentiment_authenticity():
    copy = "the committee has already decided and the vote is only a formality"
    posts = [
        signal(
            "SOCIAL",
            0.6,
            START + (10 + k) * MINUTE,
            source=s,
            narrative=copy,
            raw={"author": f"a{k}"},
        )
        for k, s in enumerate(("webhook", "upload", "custom_api"))
    ]
    posts.append(
        signal(
            "SOCIAL",
            0.2,
            START + 40 * MINUTE,
            source="webhook",
            reliability=0.5,
            narrative=sentence(999),
            raw={"author": "b"},
        )
    )
    result = trust([*_steady_posts(), *posts])
    # (3 x 1 x 1/3 + 1 x 0.5) / 4 of weight
    assert row_of(result)["sentiment_authenticity"] == pytest.approx(0.375, abs=1e-12)
    assert result.flags == []


# ---- market_integrity -------------------------------------------------------------------------


def test_markets_that_disagree_lower_market_integrity():
    rows = [
        signal("MARKET_PRICE", 0.5, START + 10 * MINUTE, source="polymarket"),
        signal("MARKET_PRICE", 0.7, START + 20 * MINUTE, source="kalshi"),
    ]
    row = row_of(trust(rows))
    # consensus 0.6, D = 0.1 = disagreement_scale -> f_agree = 1/2; no volume, no trades
    assert row["market_integrity"] == pytest.approx(0.5, abs=1e-9)
    assert row["source_diversity"] == pytest.approx(1.0, abs=1e-12)


# ---- penalties, overall, risk -----------------------------------------------------------------


def test_each_flag_lowers_exactly_its_components_by_its_severity_penalty():
    events = [f"e{k}" for k in range(len(FLAG_TYPES))]
    raw = pd.DataFrame(0.8, index=pd.Index(events, name="event_id"), columns=list(COMPONENTS))
    flags = pd.DataFrame(
        {"event_id": events, "flag_type": list(FLAG_TYPES), "severity": ["WARNING"] * len(events)}
    )
    scores = score(raw, flags).set_index("event_id")
    for event, flag_type in zip(events, FLAG_TYPES, strict=True):
        for component in COMPONENTS:
            expected = (
                0.8 * (1 - FLAG_PENALTY["WARNING"])
                if component in FLAG_COMPONENTS[flag_type]
                else 0.8
            )
            assert scores.at[event, component] == pytest.approx(expected, abs=1e-12), (
                flag_type,
                component,
            )
        assert scores.at[event, "flag_count"] == 1
        assert scores.at[event, "flagged_activity"]
        assert scores.at[event, "manipulation_risk"] == "MEDIUM"
    assert scores.at["e0", "overall_score"] == pytest.approx(0.8 - 0.20 * 0.8 * 0.25, abs=1e-12)


def test_manipulation_risk_grades_flags_and_score():
    raw = pd.DataFrame(
        {c: [0.9, 0.9, 0.9, 0.9, 0.5, 0.2] for c in COMPONENTS},
        index=pd.Index(["calm", "alert", "critical", "two", "middling", "bad"], name="event_id"),
    )
    flags = pd.DataFrame(
        {
            "event_id": ["alert", "critical", "two", "two"],
            "flag_type": ["VOLUME_SPIKE", "WASH_TRADING", "VOLUME_SPIKE", "BOT_SENTIMENT"],
            "severity": ["ALERT", "CRITICAL", "WARNING", "WARNING"],
        }
    )
    risk = score(raw, flags).set_index("event_id")["manipulation_risk"].to_dict()
    assert risk == {
        "calm": "LOW",
        "alert": "HIGH",
        "critical": "CRITICAL",
        "two": "HIGH",
        "middling": "MEDIUM",
        "bad": "CRITICAL",
    }
    assert sum(OVERALL_WEIGHTS.values()) == pytest.approx(1.0, abs=1e-15)


# ---- determinism, re-runs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    markets, injection = inject_narrative_plant(clean_markets(12, 36, seed=5), seed=2)
    markets, _ = inject_wash_trading(markets, seed=4, hour=30)
    return markets, injection


def _run(signals, snapshots, events, injection):
    return compute_trust(
        signals,
        snapshots,
        events,
        interval_start=injection.interval_start,
        interval_end=injection.interval_end,
    )


def test_same_input_gives_identical_scores_flags_and_dedup_keys(planted):
    markets, injection = planted
    first = _run(markets.signals, markets.snapshots, markets.events, injection)
    again = _run(markets.signals, markets.snapshots, markets.events, injection)
    assert {f.flag_type for f in first.flags} >= {"NARRATIVE_PLANT", "WASH_TRADING"}
    pd.testing.assert_frame_equal(first.scores, again.scores)
    assert first.flags == again.flags
    assert [f.dedup_key for f in first.flags] == [
        f"{f.event_id}|{f.flag_type}|{injection.interval_start.isoformat()}" for f in first.flags
    ]


def test_row_order_and_later_data_do_not_change_an_interval(planted):
    markets, injection = planted
    first = _run(markets.signals, markets.snapshots, markets.events, injection)
    shuffled = markets.signals.sample(frac=1.0, random_state=7).reset_index(drop=True)
    until_end = shuffled[shuffled["fetched_at"] < injection.interval_end]
    again = _run(
        shuffled,
        markets.snapshots.sample(frac=1.0, random_state=3),
        markets.events.iloc[::-1],
        injection,
    )
    cut = _run(until_end, markets.snapshots, markets.events, injection)
    pd.testing.assert_frame_equal(first.scores, again.scores)
    pd.testing.assert_frame_equal(first.scores, cut.scores)
    assert first.flags == again.flags == cut.flags


def test_inputs_are_not_modified(planted):
    markets, injection = planted
    before = markets.signals.copy(deep=True)
    _run(markets.signals, markets.snapshots, markets.events, injection)
    pd.testing.assert_frame_equal(markets.signals, before)


def test_a_prepared_frame_in_any_order_scores_as_the_raw_one_and_is_left_as_it_was(planted):
    # A ranged run reads its window once, prepared and in (event_id, t, id) order, and measure
    # keeps that order without sorting; any other order of a prepared frame is sorted first.
    markets, injection = planted
    raw = _run(markets.signals, markets.snapshots, markets.events, injection)
    prepared = prepare_signals(markets.signals)
    by_event = prepared.iloc[
        np.lexsort(
            (
                prepared["id_rank"].to_numpy(),
                prepared["t"].to_numpy(),
                pd.factorize(prepared["event_id"], sort=True)[0],
            )
        )
    ].reset_index(drop=True)
    shuffled = prepared.sample(frac=1.0, random_state=11).reset_index(drop=True)
    for frame in (by_event, shuffled):
        before = frame.copy(deep=True)
        for _ in range(2):
            result = _run(frame, markets.snapshots, markets.events, injection)
            pd.testing.assert_frame_equal(result.scores, raw.scores, check_exact=True)
            assert result.flags == raw.flags
        pd.testing.assert_frame_equal(frame, before)


# ---- shape and bad input ----------------------------------------------------------------------


def test_scores_have_the_documented_columns_and_ranges(planted):
    markets, injection = planted
    scores = _run(markets.signals, markets.snapshots, markets.events, injection).scores
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == 12 and scores["event_id"].is_monotonic_increasing
    assert (
        (
            (scores[list(COMPONENTS) + ["overall_score"]] >= 0)
            & (scores[list(COMPONENTS) + ["overall_score"]] <= 1)
        )
        .all()
        .all()
    )
    assert set(scores["manipulation_risk"]) <= {"LOW", "MEDIUM", "HIGH", "CRITICAL"}


def test_no_signals_and_no_snapshots_score_nothing():
    result = trust([])
    assert list(result.scores.columns) == SCORE_COLUMNS
    assert result.scores.empty and result.flags == []


def test_naive_timestamps_are_refused_with_the_frame_and_column():
    signals, snaps, events = input_frames([signal("MARKET_PRICE", 0.5, START + MINUTE)])
    signals["fetched_at"] = signals["fetched_at"].dt.tz_localize(None)
    with pytest.raises(TrustInputError, match=r"signals: column 'fetched_at' must hold tz-aware"):
        compute_trust(signals, snaps, events, interval_start=START, interval_end=START + HOUR)
    with pytest.raises(TrustInputError, match=r"interval: interval_start must be a tz-aware"):
        compute_trust(
            signals,
            snaps,
            events,
            interval_start=START.replace(tzinfo=None),
            interval_end=START + HOUR,
        )


def test_missing_columns_unknown_types_and_unknown_events_are_refused():
    signals, snaps, events = input_frames([signal("MARKET_PRICE", 0.5, START + MINUTE)])
    window = {"interval_start": START, "interval_end": START + HOUR}
    with pytest.raises(TrustInputError, match=r"signals: missing columns \['reliability'\]"):
        compute_trust(signals.drop(columns="reliability"), snaps, events, **window)
    with pytest.raises(TrustInputError, match=r"unknown signal_type values \['PRICE'\]"):
        compute_trust(signals.assign(signal_type="PRICE"), snaps, events, **window)
    with pytest.raises(TrustInputError, match=r"events: 1 event ids .* missing, e\.g\. '5f0c"):
        compute_trust(signals, snaps, events.iloc[0:0], **window)
    with pytest.raises(TrustInputError, match=r"interval_end .* is not after"):
        compute_trust(signals, snaps, events, interval_start=START, interval_end=START)


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match=r"snapshot_stamp must be 'start' or 'end'"):
        TrustConfig(snapshot_stamp="middle")
    with pytest.raises(ValueError, match=r"trailing_window must be a positive duration"):
        TrustConfig(trailing_window=timedelta(0))
    with pytest.raises(ValueError, match=r"low_reliability must be at most 1"):
        TrustConfig(low_reliability=1.5)


# ---- performance ------------------------------------------------------------------------------


def test_ten_thousand_events_with_a_day_of_trailing_signals_in_one_pass():
    base = clean_markets(50, 25, seed=21)
    begin = base.start + timedelta(hours=24)
    rng = np.random.default_rng(0)
    parts, snaps, events = [], [], []
    for copy in range(200):  # 200 renamed copies, ~7 % of each kept: ~500k signals
        keep = base.signals[rng.random(len(base.signals)) < 0.07]
        parts.append(
            keep.assign(event_id=keep["event_id"] + f"-{copy}", id=keep["id"] + f"-{copy}")
        )
        snaps.append(base.snapshots.assign(event_id=base.snapshots["event_id"] + f"-{copy}"))
        events.append(base.events.assign(event_id=base.events["event_id"] + f"-{copy}"))
    signals = pd.concat(parts, ignore_index=True)
    started = time.perf_counter()
    result = compute_trust(
        signals,
        pd.concat(snaps, ignore_index=True),
        pd.concat(events, ignore_index=True),
        interval_start=begin,
        interval_end=begin + HOUR,
    )
    elapsed = time.perf_counter() - started
    print(
        f"\ncompute_trust: {len(signals):,} signals, {len(result.scores):,} events, "
        f"{len(result.flags)} flags in {elapsed:.2f} s"
    )
    assert len(signals) > 450_000
    # scored: the events with signals in the hour, and the active ones (all have a snapshot)
    events = pd.concat(events, ignore_index=True)
    in_hour = signals.loc[signals["fetched_at"] >= begin, "event_id"]
    active = events.loc[events["status"] == "ACTIVE", "event_id"]
    assert set(result.scores["event_id"]) == set(in_hour) | set(active)
    assert len(result.scores) > 9_500
    assert result.scores[list(COMPONENTS)].notna().all().all()
