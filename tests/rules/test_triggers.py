"""Trigger params validation and the reference evaluation of every trigger type."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from predict_pipeline.rules import RuleError
from predict_pipeline.rules.trigger_schemas import (
    TRIGGER_SCHEMAS,
    TRIGGER_TYPES,
    TRIGGER_VALUE_NAMES,
    ValidatedTrigger,
    validate_rule,
)
from predict_pipeline.rules.triggers import (
    CampaignLink,
    EventState,
    MarketEdge,
    NewFlag,
    evaluate,
)

EVENT_ID = "0b7f4c1e-8a52-4d0e-9c1f-3f6c2a9e7d10"
CAMPAIGN_ID = "5d3e8f20-1b6a-4c7e-a4d2-9e0f1c2b3a45"
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def trigger(trigger_type: str, **params) -> ValidatedTrigger:
    validated = validate_rule(trigger_type, params)
    assert isinstance(validated, ValidatedTrigger), validated
    return validated


def state(minute: int = 0, **fields) -> EventState:
    return EventState(
        event_id=EVENT_ID, as_of=T0 + timedelta(minutes=minute), title="Fed cuts in March", **fields
    )


# ---------------------------------------------------------------------------------------------
# Schemas and validation


def test_every_trigger_type_has_a_closed_documented_2020_12_schema():
    assert set(TRIGGER_SCHEMAS) == set(TRIGGER_VALUE_NAMES)
    for name, schema in TRIGGER_SCHEMAS.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert schema["additionalProperties"] is False, name
        assert schema["description"], name
        for prop, spec in schema["properties"].items():
            assert spec.get("description"), f"{name}.{prop} has no description"


@pytest.mark.parametrize(
    ("trigger_type", "params", "expected"),
    [
        ("PROBABILITY_CROSSES_ABOVE", {"threshold": 0.7}, {"threshold": 0.7}),
        (
            "PROBABILITY_SHIFT",
            {"min_change": 0.1, "window_minutes": 60},
            {"min_change": 0.1, "window_minutes": 60, "direction": "any"},
        ),
        (
            "FLAG_RAISED",
            {"flag_types": ["WASH_TRADING"]},
            {"flag_types": ["WASH_TRADING"], "min_severity": "INFO"},
        ),
        ("EVENT_RESOLVED", {}, {"outcomes": ["YES", "NO", "AMBIGUOUS", "CANCELLED"]}),
        ("CAMPAIGN_THRESHOLD", {}, {}),
        ("DIVERGENCE_AT_LEAST", '{"level": "HIGH"}', {"level": "HIGH"}),
        ("EDGE_AT_LEAST", {"min_edge": 0.1}, {"min_edge": 0.1, "direction": "any"}),
        (
            "EDGE_AT_LEAST",
            {"min_edge": 1, "direction": "down", "source": "kalshi"},
            {"min_edge": 1, "direction": "down", "source": "kalshi"},
        ),
    ],
)
def test_valid_params_get_their_defaults(trigger_type, params, expected):
    validated = validate_rule(trigger_type, params)
    assert validated == ValidatedTrigger(trigger_type, expected)


@pytest.mark.parametrize(
    ("trigger_type", "params", "reason"),
    [
        (
            "PROBABILITY_CROSSES_ABOVE",
            {"threshold": 1.5},
            "PROBABILITY_CROSSES_ABOVE trigger_params.threshold: must be at most 1",
        ),
        (
            "PROBABILITY_CROSSES_BELOW",
            {},
            "PROBABILITY_CROSSES_BELOW trigger_params: missing required field 'threshold'",
        ),
        (
            "TRUST_BELOW",
            {"threshold": 0.5, "thresold": 0.4},
            "TRUST_BELOW trigger_params: unknown field 'thresold' (allowed: threshold)",
        ),
        (
            "PROBABILITY_SHIFT",
            {"min_change": 0, "window_minutes": 60},
            "PROBABILITY_SHIFT trigger_params.min_change: must be greater than 0",
        ),
        (
            "PROBABILITY_SHIFT",
            {"min_change": 0.1, "window_minutes": 0},
            "PROBABILITY_SHIFT trigger_params.window_minutes: must be at least 1",
        ),
        (
            "SENTIMENT_SHIFT",
            {"min_change": 0.2, "direction": "sideways"},
            "SENTIMENT_SHIFT trigger_params.direction: must be one of up, down, any",
        ),
        (
            "DIVERGENCE_AT_LEAST",
            {"level": "NONE"},
            "DIVERGENCE_AT_LEAST trigger_params.level: must be one of LOW, MEDIUM, HIGH, EXTREME",
        ),
        (
            "FLAG_RAISED",
            {"flag_types": ["PUMP_AND_DUMP"]},
            "FLAG_RAISED trigger_params.flag_types[0]: must be one of INSIDER_TIMING, "
            "VOLUME_SPIKE, COORDINATED_ACTION, BOT_SENTIMENT, WASH_TRADING, NARRATIVE_PLANT, "
            "SOURCE_MANIPULATION, OTHER",
        ),
        (
            "VOLUME_SPIKE",
            {"min_ratio": 0.5, "window_hours": 24},
            "VOLUME_SPIKE trigger_params.min_ratio: must be at least 1",
        ),
        (
            "EVENT_RESOLVED",
            {"outcomes": []},
            "EVENT_RESOLVED trigger_params.outcomes: must have at least 1 item(s)",
        ),
        (
            "EDGE_AT_LEAST",
            {"min_edge": 0},
            "EDGE_AT_LEAST trigger_params.min_edge: must be greater than 0",
        ),
        (
            "EDGE_AT_LEAST",
            {"min_edge": 1.5},
            "EDGE_AT_LEAST trigger_params.min_edge: must be at most 1",
        ),
        (
            "EDGE_AT_LEAST",
            {"direction": "up"},
            "EDGE_AT_LEAST trigger_params: missing required field 'min_edge'",
        ),
        (
            "EDGE_AT_LEAST",
            {"min_edge": 0.1, "source": ""},
            "EDGE_AT_LEAST trigger_params.source: must be at least 1 character(s) long",
        ),
        (
            "EDGE_AT_LEAST",
            {"min_edge": 0.1, "side": "up"},
            "EDGE_AT_LEAST trigger_params: unknown field 'side' (allowed: direction, min_edge,"
            " source)",
        ),
        (
            "PROBABILITY_CROSSES_ABOVE",
            ["threshold", 0.7],
            "PROBABILITY_CROSSES_ABOVE trigger_params: must be of type object",
        ),
        (
            "PROBABILITY_CROSSES_ABOVE",
            '{"threshold": 0.7',
            "trigger_params: not valid JSON (JSONDecodeError at position 17)",
        ),
        (
            "PROBABILITY_JUMPS",
            {"threshold": 0.7},
            "trigger_type: unknown trigger type 'PROBABILITY_JUMPS'; expected one of "
            + ", ".join(TRIGGER_TYPES),
        ),
    ],
)
def test_invalid_params_give_a_rule_error_with_the_reason(trigger_type, params, reason):
    assert validate_rule(trigger_type, params) == RuleError(reason)


def test_a_rule_error_names_the_rule_not_the_value():
    error = validate_rule("TRUST_BELOW", {"threshold": "hunter2-api-token"})
    assert error == RuleError("TRUST_BELOW trigger_params.threshold: must be of type number")
    assert "hunter2" not in str(error)


def test_a_boolean_is_not_a_threshold():
    error = validate_rule("PROBABILITY_CROSSES_ABOVE", {"threshold": True})
    assert isinstance(error, RuleError)
    assert error.reason.endswith("threshold: must be of type number")


# ---------------------------------------------------------------------------------------------
# Crossings


def test_crossing_above_fires_once_then_again_only_after_going_back_below():
    rule = trigger("PROBABILITY_CROSSES_ABOVE", threshold=0.7)
    path = [0.60, 0.65, 0.72, 0.80, 0.75, 0.68, 0.71, 0.74]
    firings = {}
    for minute, (before, now) in enumerate(zip(path, path[1:], strict=False), start=1):
        firing = evaluate(rule, state(minute, previous_probability=before, current_probability=now))
        if firing is not None:
            firings[minute] = firing
    assert list(firings) == [2, 6]  # 0.65 -> 0.72 and 0.68 -> 0.71; resting above never fires
    assert firings[2].state_key == (
        "PROBABILITY_CROSSES_ABOVE:0.65->0.72@2026-03-02T14:02:00+00:00"
    )
    assert firings[6].state_key == (
        "PROBABILITY_CROSSES_ABOVE:0.68->0.71@2026-03-02T14:06:00+00:00"
    )
    assert firings[2].trigger_snapshot == {
        "trigger_type": "PROBABILITY_CROSSES_ABOVE",
        "event_id": EVENT_ID,
        "event_title": "Fed cuts in March",
        "as_of": "2026-03-02T14:02:00+00:00",
        "params": {"threshold": 0.7},
        "values": {"probability": 0.72, "previous_probability": 0.65, "threshold": 0.7},
        "summary": "probability crossed above 0.7 (0.65 → 0.72)",
    }
    json.dumps(firings[2].trigger_snapshot)  # stored as JSONB


def test_the_same_state_gives_the_same_state_key():
    rule = trigger("PROBABILITY_CROSSES_BELOW", threshold=0.4)
    tick = state(5, previous_probability=Decimal("0.4500"), current_probability=Decimal("0.3900"))
    first, second = evaluate(rule, tick), evaluate(rule, tick)
    assert first is not None
    assert first == second
    assert first.state_key == "PROBABILITY_CROSSES_BELOW:0.45->0.39@2026-03-02T14:05:00+00:00"


@pytest.mark.parametrize(
    ("before", "now", "fires"),
    [
        (0.69, 0.70, True),  # reaching the threshold is crossing it
        (0.70, 0.75, False),  # it was not below before
        (0.70, 0.70, False),
        (None, 0.90, False),  # nothing to cross from
        (0.60, None, False),
    ],
)
def test_crossing_above_boundaries(before, now, fires):
    rule = trigger("PROBABILITY_CROSSES_ABOVE", threshold=0.7)
    firing = evaluate(rule, state(previous_probability=before, current_probability=now))
    assert (firing is not None) is fires


@pytest.mark.parametrize(
    ("before", "now", "fires"),
    [(0.31, 0.30, True), (0.30, 0.20, False), (0.35, 0.31, False), (0.25, 0.20, False)],
)
def test_crossing_below_boundaries(before, now, fires):
    rule = trigger("PROBABILITY_CROSSES_BELOW", threshold=0.3)
    firing = evaluate(rule, state(previous_probability=before, current_probability=now))
    assert (firing is not None) is fires


@pytest.mark.parametrize(
    ("before", "now", "fires"),
    [(0.62, 0.48, True), (0.50, 0.49, True), (0.55, 0.50, False), (0.48, 0.45, False)],
)
def test_trust_below_fires_when_trust_drops_strictly_below(before, now, fires):
    rule = trigger("TRUST_BELOW", threshold=0.5)
    firing = evaluate(rule, state(previous_trust_score=before, trust_score=now))
    assert (firing is not None) is fires
    if fires:
        assert firing.trigger_snapshot["values"] == {
            "trust_score": now,
            "previous_trust_score": before,
            "threshold": 0.5,
        }


@pytest.mark.parametrize(
    ("before", "now", "fires"),
    [
        ("LOW", "HIGH", True),
        ("NONE", "MEDIUM", True),
        ("MEDIUM", "HIGH", False),  # already at the level
        ("HIGH", "MEDIUM", False),  # a drop
        (None, "EXTREME", False),
    ],
)
def test_divergence_fires_when_the_level_is_reached_from_below(before, now, fires):
    rule = trigger("DIVERGENCE_AT_LEAST", level="MEDIUM")
    firing = evaluate(rule, state(previous_divergence=before, divergence=now))
    assert (firing is not None) is fires
    if fires:
        assert firing.state_key == f"DIVERGENCE_AT_LEAST:{before}->{now}@2026-03-02T14:00:00+00:00"


INTERVAL = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def edge(source: str, market: str, price: str, pooled: str = "0.5") -> MarketEdge:
    p, q = Decimal(price), Decimal(pooled)
    return MarketEdge(source, market, p, q, p - q, INTERVAL)


@pytest.mark.parametrize(
    ("params", "edges", "fired_markets"),
    [
        # Exactly min_edge fires, both ways with "any" (the default).
        ({"min_edge": 0.1}, [edge("kalshi", "k", "0.6")], "kalshi/k=0.1"),
        ({"min_edge": 0.1}, [edge("kalshi", "k", "0.4")], "kalshi/k=-0.1"),
        ({"min_edge": 0.1}, [edge("kalshi", "k", "0.5999")], None),
        # Directions: up wants the market above the pool, down below it.
        ({"min_edge": 0.1, "direction": "up"}, [edge("kalshi", "k", "0.3")], None),
        ({"min_edge": 0.1, "direction": "down"}, [edge("kalshi", "k", "0.3")], "kalshi/k=-0.2"),
        ({"min_edge": 0.1, "direction": "down"}, [edge("kalshi", "k", "0.7")], None),
        # Every market showing it is named, the widest first in the values.
        (
            {"min_edge": 0.1},
            [edge("polymarket", "b", "0.65"), edge("kalshi", "k", "0.2"), edge("x", "y", "0.5")],
            "kalshi/k=-0.3,polymarket/b=0.15",
        ),
        # A source filter leaves the other sources' markets out.
        (
            {"min_edge": 0.1, "source": "polymarket"},
            [edge("kalshi", "k", "0.9"), edge("polymarket", "b", "0.55")],
            None,
        ),
        (
            {"min_edge": 0.05, "source": "polymarket"},
            [edge("kalshi", "k", "0.9"), edge("polymarket", "b", "0.55")],
            "polymarket/b=0.05",
        ),
        ({"min_edge": 0.1}, [], None),  # no market edges: nothing to compare
        # Exact decimals: 0.3 - 0.1 reaches 0.2, as Postgres numeric says.
        ({"min_edge": 0.2}, [edge("kalshi", "k", "0.3", "0.1")], "kalshi/k=0.2"),
    ],
)
def test_edge_fires_when_a_market_is_min_edge_from_the_pool(params, edges, fired_markets):
    firing = evaluate(trigger("EDGE_AT_LEAST", **params), state(market_edges=tuple(edges)))
    if fired_markets is None:
        assert firing is None
        return
    assert firing is not None
    assert firing.state_key == f"EDGE_AT_LEAST:{fired_markets}@2026-03-02T13:00:00+00:00"
    widest = max(
        (e for e in edges if f"{e.source}/{e.source_event_id}=" in fired_markets),
        key=lambda e: abs(e.edge),
    )
    values = firing.trigger_snapshot["values"]
    assert values["edge"] == float(widest.edge)
    assert values["source_event_id"] == widest.source_event_id
    assert values["markets"] == fired_markets.count("=")


def test_edge_key_is_the_interval_not_the_event_update():
    """The same interval's edges seen again after an unrelated update of the event: one key."""
    rule = trigger("EDGE_AT_LEAST", min_edge=0.1)
    edges = (edge("kalshi", "k", "0.8"),)
    first = evaluate(rule, state(0, market_edges=edges))
    later = evaluate(rule, state(30, market_edges=edges))
    assert first is not None and later is not None
    assert first.state_key == later.state_key
    moved = (MarketEdge("kalshi", "k", Decimal("0.8"), Decimal("0.5"), Decimal("0.3"), T0),)
    assert evaluate(rule, state(30, market_edges=moved)).state_key != first.state_key


# ---------------------------------------------------------------------------------------------
# Shifts and spikes


def test_probability_shift_compares_with_the_window_and_uses_exact_decimals():
    rule = trigger("PROBABILITY_SHIFT", min_change=0.2, window_minutes=60, direction="up")
    # In binary floats 0.3 - 0.1 is 0.19999999999999998; Postgres numeric says 0.2.
    firing = evaluate(rule, state(current_probability=0.3, probabilities_ago={60: 0.1}))
    assert firing is not None
    assert firing.trigger_snapshot["values"] == {
        "probability": 0.3,
        "probability_before": 0.1,
        "change": 0.2,
        "window_minutes": 60,
    }
    assert firing.trigger_snapshot["summary"] == "probability moved +0.2 in 60 min (0.1 → 0.3)"


@pytest.mark.parametrize(
    ("direction", "before", "now", "fires"),
    [
        ("up", 0.50, 0.62, True),
        ("up", 0.62, 0.50, False),
        ("down", 0.62, 0.50, True),
        ("down", 0.50, 0.62, False),
        ("any", 0.62, 0.50, True),
        ("any", 0.50, 0.59, False),
    ],
)
def test_probability_shift_directions(direction, before, now, fires):
    rule = trigger("PROBABILITY_SHIFT", min_change=0.1, window_minutes=30, direction=direction)
    firing = evaluate(rule, state(current_probability=now, probabilities_ago={30: before}))
    assert (firing is not None) is fires


def test_probability_shift_without_the_window_value_does_not_fire():
    rule = trigger("PROBABILITY_SHIFT", min_change=0.1, window_minutes=30)
    assert evaluate(rule, state(current_probability=0.9, probabilities_ago={60: 0.1})) is None


def test_sentiment_shift():
    rule = trigger("SENTIMENT_SHIFT", min_change=0.35, direction="up")
    firing = evaluate(rule, state(previous_sentiment=-0.2, sentiment_score=0.15))
    assert firing is not None
    assert firing.trigger_snapshot["values"] == {
        "sentiment": 0.15,
        "previous_sentiment": -0.2,
        "change": 0.35,
    }
    down = trigger("SENTIMENT_SHIFT", min_change=0.35, direction="down")
    assert evaluate(down, state(previous_sentiment=-0.2, sentiment_score=0.15)) is None


@pytest.mark.parametrize(
    ("volume", "median", "fires"),
    [(3000, 1000, True), (2999, 1000, False), (500, 0, False), (None, 1000, False)],
)
def test_volume_spike(volume, median, fires):
    rule = trigger("VOLUME_SPIKE", min_ratio=3, window_hours=24)
    firing = evaluate(rule, state(volume=volume, median_volumes={24: median}))
    assert (firing is not None) is fires
    if fires:
        assert firing.trigger_snapshot["values"] == {
            "volume": 3000.0,
            "median_volume": 1000.0,
            "ratio": 3.0,
            "window_hours": 24,
        }
        assert firing.state_key == "VOLUME_SPIKE:volume=3000@2026-03-02T14:00:00+00:00"


# ---------------------------------------------------------------------------------------------
# Flags, resolution, campaigns


def test_flag_raised_keeps_the_matching_flags_sorted_by_id():
    rule = trigger("FLAG_RAISED", flag_types=["WASH_TRADING", "VOLUME_SPIKE"], min_severity="ALERT")
    flags = (
        NewFlag("f-3", "VOLUME_SPIKE", "CRITICAL"),
        NewFlag("f-1", "WASH_TRADING", "ALERT"),
        NewFlag("f-2", "WASH_TRADING", "WARNING"),  # below min_severity
        NewFlag("f-0", "BOT_SENTIMENT", "CRITICAL"),  # not a wanted type
    )
    firing = evaluate(rule, state(new_flags=flags))
    assert firing is not None
    assert firing.trigger_snapshot["values"] == {
        "flags": [
            {"id": "f-1", "type": "WASH_TRADING", "severity": "ALERT"},
            {"id": "f-3", "type": "VOLUME_SPIKE", "severity": "CRITICAL"},
        ],
        "flag_summary": "WASH_TRADING (ALERT), VOLUME_SPIKE (CRITICAL)",
    }
    assert firing.state_key == "FLAG_RAISED:flags=f-1,f-3"
    assert evaluate(rule, state(new_flags=flags[2:])) is None


def test_event_resolved():
    any_outcome = trigger("EVENT_RESOLVED")
    firing = evaluate(any_outcome, state(resolution="YES"))
    assert firing is not None
    assert firing.state_key == "EVENT_RESOLVED:YES"
    assert firing.trigger_snapshot["summary"] == "event resolved YES"
    only_no = trigger("EVENT_RESOLVED", outcomes=["NO"])
    assert evaluate(only_no, state(resolution="YES")) is None
    assert evaluate(only_no, state(resolution=None)) is None


@pytest.mark.parametrize(
    ("relationship", "direction", "before", "now", "crossed"),
    [
        ("depends_on", None, 0.55, 0.45, "down"),
        ("depends_on", None, 0.45, 0.55, None),
        ("contraindicates", None, 0.45, 0.55, "up"),
        ("contraindicates", None, 0.55, 0.45, None),
        ("monitors", None, 0.45, 0.55, "up"),
        ("monitors", None, 0.55, 0.45, "down"),
        ("depends_on", "up", 0.45, 0.50, "up"),  # the param overrides the relationship
        ("monitors", None, 0.55, 0.60, None),
    ],
)
def test_campaign_threshold_direction_follows_the_relationship(
    relationship, direction, before, now, crossed
):
    params = {} if direction is None else {"direction": direction}
    rule = trigger("CAMPAIGN_THRESHOLD", **params)
    link = CampaignLink(CAMPAIGN_ID, relationship, Decimal("0.5000"))
    firing = evaluate(
        rule, state(previous_probability=before, current_probability=now, campaign_link=link)
    )
    if crossed is None:
        assert firing is None
        return
    assert firing is not None
    assert firing.trigger_snapshot["values"]["crossed"] == crossed
    assert firing.trigger_snapshot["values"]["campaign_id"] == CAMPAIGN_ID
    assert firing.state_key.startswith(f"CAMPAIGN_THRESHOLD:campaign={CAMPAIGN_ID}:")


def test_campaign_link_without_a_threshold_never_fires():
    rule = trigger("CAMPAIGN_THRESHOLD")
    link = CampaignLink(CAMPAIGN_ID, "monitors", None)
    tick = state(previous_probability=0.1, current_probability=0.9, campaign_link=link)
    assert evaluate(rule, tick) is None
    assert evaluate(rule, state(previous_probability=0.1, current_probability=0.9)) is None


def test_snapshot_values_are_the_documented_names_for_every_type():
    cases = {
        "PROBABILITY_CROSSES_ABOVE": (
            {"threshold": 0.5},
            {"previous_probability": 0.4, "current_probability": 0.6},
        ),
        "PROBABILITY_CROSSES_BELOW": (
            {"threshold": 0.5},
            {"previous_probability": 0.6, "current_probability": 0.4},
        ),
        "PROBABILITY_SHIFT": (
            {"min_change": 0.1, "window_minutes": 15},
            {"current_probability": 0.6, "probabilities_ago": {15: 0.4}},
        ),
        "SENTIMENT_SHIFT": ({"min_change": 0.1}, {"previous_sentiment": 0, "sentiment_score": 0.5}),
        "TRUST_BELOW": ({"threshold": 0.5}, {"previous_trust_score": 0.6, "trust_score": 0.4}),
        "DIVERGENCE_AT_LEAST": (
            {"level": "HIGH"},
            {"previous_divergence": "LOW", "divergence": "EXTREME"},
        ),
        "FLAG_RAISED": ({"flag_types": ["OTHER"]}, {"new_flags": (NewFlag("x", "OTHER", "INFO"),)}),
        "VOLUME_SPIKE": (
            {"min_ratio": 2, "window_hours": 6},
            {"volume": 10, "median_volumes": {6: 4}},
        ),
        "EVENT_RESOLVED": ({}, {"resolution": "CANCELLED"}),
        "EDGE_AT_LEAST": ({"min_edge": 0.1}, {"market_edges": (edge("kalshi", "k", "0.7"),)}),
        "CAMPAIGN_THRESHOLD": (
            {},
            {
                "previous_probability": 0.4,
                "current_probability": 0.6,
                "campaign_link": CampaignLink(CAMPAIGN_ID, "monitors", 0.5),
            },
        ),
    }
    assert set(cases) == set(TRIGGER_TYPES)
    for trigger_type, (params, fields) in cases.items():
        firing = evaluate(trigger(trigger_type, **params), state(**fields))
        assert firing is not None, trigger_type
        assert tuple(firing.trigger_snapshot["values"]) == TRIGGER_VALUE_NAMES[trigger_type]
        json.dumps(firing.trigger_snapshot)


def test_event_state_needs_an_aware_time():
    with pytest.raises(ValueError, match="as_of must be tz-aware"):
        EventState(event_id=EVENT_ID, as_of=datetime(2026, 3, 2, 14, 0))
