"""Rule trigger types: the reference evaluation of one trigger on one event's state (their
`trigger_params` schemas and validation are in `trigger_schemas`).

`evaluate` is the reference semantics; the rule sensor's SQL mirrors these conditions for speed.
Arithmetic is exact decimal, as Postgres `numeric` does it (0.3 - 0.1 >= 0.2 holds), and a
missing (None) input never fires: without a previous value no crossing can be seen.

=========================== =====================================================================
PROBABILITY_CROSSES_ABOVE   previous_probability < threshold <= current_probability
PROBABILITY_CROSSES_BELOW   previous_probability > threshold >= current_probability
PROBABILITY_SHIFT           change = current_probability - probabilities_ago[window_minutes];
                            up: change >= min_change, down: -change >= min_change,
                            any: |change| >= min_change
SENTIMENT_SHIFT             change = sentiment_score - previous_sentiment; directions as above
TRUST_BELOW                 previous_trust_score >= threshold > trust_score (now strictly below)
DIVERGENCE_AT_LEAST         rank(previous_divergence) < rank(level) <= rank(divergence),
                            with NONE < LOW < MEDIUM < HIGH < EXTREME
EDGE_AT_LEAST               some market of the latest interval's market_edges (of `source`, when
                            given) has edge = price - pooled probability with up: edge >= min_edge,
                            down: -edge >= min_edge, any: |edge| >= min_edge
FLAG_RAISED                 some new flag has flag_type in flag_types and
                            rank(severity) >= rank(min_severity), INFO < WARNING < ALERT < CRITICAL
VOLUME_SPIKE                median = median_volumes[window_hours] > 0 and
                            volume >= min_ratio * median
EVENT_RESOLVED              resolution in outcomes
CAMPAIGN_THRESHOLD          with t = the campaign link's probability_threshold (none: never fires):
                            "down" crossing: previous_probability > t >= current_probability,
                            "up" crossing: previous_probability < t <= current_probability.
                            depends_on watches down, contraindicates up, monitors both;
                            a `direction` param (down | up | any) overrides the relationship.
=========================== =====================================================================

Crossing triggers fire once per crossing: a value that rests beyond the threshold does not fire
again; it must come back and cross again. Shift and spike triggers compare levels, so every new
observation that still shows the move fires (the rule's cooldown spaces them out).

`Firing.state_key` names the observation that fired, not the rule's params: the sensor derives
its run key from rule id + event id + state_key, so a repeated tick over the same state never
fires twice. Observation-based keys use `EventState.as_of`, the time of the event's current
state; flag keys use the flag ids; resolution keys use the outcome. An edge key names the
markets that showed the edge and the interval they were read at (their snapshot_at, not
`as_of`: an event updated for another reason with the same interval's edges does not fire
again).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from predict_pipeline.rules.trigger_schemas import (
    DIVERGENCE_LEVELS,
    SEVERITIES,
    ValidatedTrigger,
)

Number = Decimal | float | int

# ---------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True, slots=True)
class NewFlag:
    """A trust flag raised since the last evaluation."""

    flag_id: str
    flag_type: str
    severity: str


@dataclass(frozen=True, slots=True)
class MarketEdge:
    """One market's edge at the event's latest snapshot interval (prediction_market_edges)."""

    source: str
    source_event_id: str
    price: Number
    pooled_probability: Number
    edge: Number  # price - pooled_probability
    snapshot_at: datetime


@dataclass(frozen=True, slots=True)
class CampaignLink:
    """The event's link to the campaign the rule watches (prediction_campaign_events)."""

    campaign_id: str
    relationship: str  # one of RELATIONSHIPS
    probability_threshold: Number | None


@dataclass(frozen=True, slots=True)
class EventState:
    """What the rule sensor's SQL returns for one changed event.

    `as_of` is the time of the current state (the snapshot that set current_probability).
    `probabilities_ago` maps a window in minutes to the probability at or before
    `as_of - window`, for each window_minutes the rules in scope ask for; `median_volumes` maps
    a window in hours to the median interval volume over the trailing window before the latest
    interval, whose volume is `volume`. `new_flags` are the flags raised since the last
    evaluation, `resolution` the outcome when the event is resolved, `campaign_link` the link
    to the rule's campaign (CAMPAIGN_THRESHOLD rules are scoped to one campaign);
    `market_edges` are the markets' edges at the newest interval that has any (all share its
    snapshot_at).
    """

    event_id: str
    as_of: datetime
    title: str = ""
    current_probability: Number | None = None
    previous_probability: Number | None = None
    probabilities_ago: Mapping[int, Number | None] = field(default_factory=dict)
    sentiment_score: Number | None = None
    previous_sentiment: Number | None = None
    trust_score: Number | None = None
    previous_trust_score: Number | None = None
    divergence: str | None = None
    previous_divergence: str | None = None
    volume: Number | None = None
    median_volumes: Mapping[int, Number | None] = field(default_factory=dict)
    new_flags: tuple[NewFlag, ...] = ()
    resolution: str | None = None
    campaign_link: CampaignLink | None = None
    market_edges: tuple[MarketEdge, ...] = ()

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None or self.as_of.utcoffset() is None:
            raise ValueError(f"EventState {self.event_id}: as_of must be tz-aware, got naive")


@dataclass(frozen=True, slots=True)
class Firing:
    """A trigger that fired: the JSON stored as trigger_snapshot and the run-key suffix."""

    trigger_type: str
    event_id: str
    state_key: str
    trigger_snapshot: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    """The firing of `trigger` on `state`, or None when it does not fire."""
    return _EVALUATORS[trigger.trigger_type](trigger, state)


def _crosses_above(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    before, now = _dec(state.previous_probability), _dec(state.current_probability)
    threshold = _param(trigger.params, "threshold")
    if before is None or now is None or not before < threshold <= now:
        return None
    return _probability_crossing(trigger, state, before, now, threshold, "above")


def _crosses_below(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    before, now = _dec(state.previous_probability), _dec(state.current_probability)
    threshold = _param(trigger.params, "threshold")
    if before is None or now is None or not before > threshold >= now:
        return None
    return _probability_crossing(trigger, state, before, now, threshold, "below")


def _probability_crossing(
    trigger: ValidatedTrigger,
    state: EventState,
    before: Decimal,
    now: Decimal,
    threshold: Decimal,
    side: str,
) -> Firing:
    values = {
        "probability": float(now),
        "previous_probability": float(before),
        "threshold": float(threshold),
    }
    summary = f"probability crossed {side} {_txt(threshold)} ({_txt(before)} → {_txt(now)})"
    return _firing(trigger, state, values, summary, f"{_txt(before)}->{_txt(now)}")


def _probability_shift(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    window = int(trigger.params["window_minutes"])
    before = _dec(state.probabilities_ago.get(window))
    now = _dec(state.current_probability)
    if before is None or now is None:
        return None
    change = _shift(now - before, trigger.params)
    if change is None:
        return None
    values = {
        "probability": float(now),
        "probability_before": float(before),
        "change": float(change),
        "window_minutes": window,
    }
    summary = f"probability moved {_signed(change)} in {window} min ({_txt(before)} → {_txt(now)})"
    return _firing(trigger, state, values, summary, f"{_txt(before)}->{_txt(now)}")


def _sentiment_shift(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    before, now = _dec(state.previous_sentiment), _dec(state.sentiment_score)
    if before is None or now is None:
        return None
    change = _shift(now - before, trigger.params)
    if change is None:
        return None
    values = {"sentiment": float(now), "previous_sentiment": float(before), "change": float(change)}
    summary = f"sentiment moved {_signed(change)} ({_txt(before)} → {_txt(now)})"
    return _firing(trigger, state, values, summary, f"{_txt(before)}->{_txt(now)}")


def _trust_below(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    before, now = _dec(state.previous_trust_score), _dec(state.trust_score)
    threshold = _param(trigger.params, "threshold")
    if before is None or now is None or not before >= threshold > now:
        return None
    values = {
        "trust_score": float(now),
        "previous_trust_score": float(before),
        "threshold": float(threshold),
    }
    summary = f"trust score fell below {_txt(threshold)} ({_txt(before)} → {_txt(now)})"
    return _firing(trigger, state, values, summary, f"{_txt(before)}->{_txt(now)}")


def _divergence_at_least(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    before, now = state.previous_divergence, state.divergence
    if before not in DIVERGENCE_LEVELS or now not in DIVERGENCE_LEVELS:
        return None
    rank = DIVERGENCE_LEVELS.index
    level = trigger.params["level"]
    if not rank(before) < rank(level) <= rank(now):
        return None
    values = {"divergence": now, "previous_divergence": before, "level": level}
    summary = f"divergence reached {level} ({before} → {now})"
    return _firing(trigger, state, values, summary, f"{before}->{now}")


def _edge_at_least(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    min_edge = _param(trigger.params, "min_edge")
    direction, source = trigger.params["direction"], trigger.params.get("source")
    wanted = {"min_change": min_edge, "direction": direction}
    showing = sorted(
        (
            (edge, market)
            for market in state.market_edges
            if (source is None or market.source == source)
            and (edge := _dec(market.edge)) is not None
            and _shift(edge, wanted) is not None
        ),
        key=lambda pair: (-abs(pair[0]), pair[1].source, pair[1].source_event_id),
    )
    if not showing:
        return None
    edge, widest = showing[0]
    price, pooled = _dec(widest.price), _dec(widest.pooled_probability)
    values = {
        "source": widest.source,
        "source_event_id": widest.source_event_id,
        "price": float(widest.price),
        "pooled_probability": float(widest.pooled_probability),
        "edge": float(edge),
        "markets": len(showing),
        "snapshot_at": _iso(widest.snapshot_at),
    }
    more = f" (and {len(showing) - 1} more)" if len(showing) > 1 else ""
    summary = (
        f"{widest.source} market {widest.source_event_id} prices {_txt(price or Decimal(0))}, "
        f"{_signed(edge)} from the pooled {_txt(pooled or Decimal(0))}{more}"
    )
    markets = ",".join(
        f"{m.source}/{m.source_event_id}={_txt(e)}"
        for e, m in sorted(showing, key=lambda pair: (pair[1].source, pair[1].source_event_id))
    )
    return _firing(
        trigger, state, values, summary, f"{markets}@{_iso(widest.snapshot_at)}", at=False
    )


def _flag_raised(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    floor = SEVERITIES.index(trigger.params["min_severity"])
    wanted = set(trigger.params["flag_types"])
    matching = sorted(
        (
            flag
            for flag in state.new_flags
            if flag.flag_type in wanted
            and flag.severity in SEVERITIES
            and SEVERITIES.index(flag.severity) >= floor
        ),
        key=lambda flag: flag.flag_id,
    )
    if not matching:
        return None
    flags = [{"id": f.flag_id, "type": f.flag_type, "severity": f.severity} for f in matching]
    flag_summary = ", ".join(f"{f.flag_type} ({f.severity})" for f in matching)
    values = {"flags": flags, "flag_summary": flag_summary}
    key = "flags=" + ",".join(f.flag_id for f in matching)
    return _firing(trigger, state, values, f"trust flag raised: {flag_summary}", key, at=False)


def _volume_spike(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    window = int(trigger.params["window_hours"])
    volume, median = _dec(state.volume), _dec(state.median_volumes.get(window))
    min_ratio = _param(trigger.params, "min_ratio")
    # A zero median has no ratio: an event without trading history cannot spike.
    if volume is None or median is None or median <= 0 or volume < min_ratio * median:
        return None
    ratio = volume / median
    values = {
        "volume": float(volume),
        "median_volume": float(median),
        "ratio": float(ratio),
        "window_hours": window,
    }
    summary = f"volume {_txt(volume)} is {float(ratio):.2f}x the {window} h median {_txt(median)}"
    return _firing(trigger, state, values, summary, f"volume={_txt(volume)}")


def _event_resolved(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    outcome = state.resolution
    if outcome is None or outcome not in trigger.params["outcomes"]:
        return None
    values = {"resolution": outcome}
    return _firing(trigger, state, values, f"event resolved {outcome}", outcome, at=False)


# Which crossings each relationship watches when the rule names no direction.
_RELATIONSHIP_DIRECTION = {"depends_on": "down", "contraindicates": "up", "monitors": "any"}


def _campaign_threshold(trigger: ValidatedTrigger, state: EventState) -> Firing | None:
    link = state.campaign_link
    if link is None:
        return None
    threshold = _dec(link.probability_threshold)
    before, now = _dec(state.previous_probability), _dec(state.current_probability)
    direction = trigger.params.get("direction") or _RELATIONSHIP_DIRECTION.get(link.relationship)
    if threshold is None or before is None or now is None or direction is None:
        return None
    if direction in ("up", "any") and before < threshold <= now:
        crossed = "up"
    elif direction in ("down", "any") and before > threshold >= now:
        crossed = "down"
    else:
        return None
    values = {
        "probability": float(now),
        "previous_probability": float(before),
        "threshold": float(threshold),
        "campaign_id": link.campaign_id,
        "relationship": link.relationship,
        "crossed": crossed,
    }
    side = "above" if crossed == "up" else "below"
    summary = (
        f"probability crossed {side} the campaign threshold {_txt(threshold)} "
        f"({_txt(before)} → {_txt(now)}; {link.relationship})"
    )
    key = f"campaign={link.campaign_id}:{_txt(before)}->{_txt(now)}"
    return _firing(trigger, state, values, summary, key)


_EVALUATORS: dict[str, Callable[[ValidatedTrigger, EventState], Firing | None]] = {
    "PROBABILITY_CROSSES_ABOVE": _crosses_above,
    "PROBABILITY_CROSSES_BELOW": _crosses_below,
    "PROBABILITY_SHIFT": _probability_shift,
    "SENTIMENT_SHIFT": _sentiment_shift,
    "TRUST_BELOW": _trust_below,
    "DIVERGENCE_AT_LEAST": _divergence_at_least,
    "EDGE_AT_LEAST": _edge_at_least,
    "FLAG_RAISED": _flag_raised,
    "VOLUME_SPIKE": _volume_spike,
    "EVENT_RESOLVED": _event_resolved,
    "CAMPAIGN_THRESHOLD": _campaign_threshold,
}


# ---------------------------------------------------------------------------------------------
# Helpers


def _shift(change: Decimal, params: Mapping[str, Any]) -> Decimal | None:
    """`change` when it is big enough in the wanted direction, else None."""
    min_change = _param(params, "min_change")
    direction = params["direction"]
    up = direction in ("up", "any") and change >= min_change
    down = direction in ("down", "any") and -change >= min_change
    return change if up or down else None


def _firing(
    trigger: ValidatedTrigger,
    state: EventState,
    values: dict[str, Any],
    summary: str,
    observation: str,
    *,
    at: bool = True,
) -> Firing:
    as_of = _iso(state.as_of)
    snapshot = {
        "trigger_type": trigger.trigger_type,
        "event_id": state.event_id,
        "event_title": state.title,
        "as_of": as_of,
        "params": dict(trigger.params),
        "values": values,
        "summary": summary,
    }
    # Crossings and levels are told apart by the time of the state that showed them.
    state_key = f"{trigger.trigger_type}:{observation}" + (f"@{as_of}" if at else "")
    return Firing(trigger.trigger_type, state.event_id, state_key, snapshot)


def _dec(value: Number | None) -> Decimal | None:
    """The exact decimal a value stands for: a float is read by its shortest repr, so 0.1 is
    0.1 (as in the numeric column it came from), not the binary fraction nearest to it."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number here")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        result = Decimal(repr(value))
    else:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {result}")
    return result


def _param(params: Mapping[str, Any], name: str) -> Decimal:
    """A numeric trigger parameter as a decimal; the schema requires it, so null is a bug."""
    value = _dec(params[name])
    if value is None:
        raise ValueError(f"trigger parameter {name!r} is null; the schema requires a number")
    return value


def _txt(value: Decimal) -> str:
    """A decimal without trailing zeros or exponent: Decimal('0.7200') gives '0.72'."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + _txt(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
