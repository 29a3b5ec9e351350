"""Rule trigger types: the JSON Schema of each type's `trigger_params` and their validation.

What each type means, and its reference evaluation on one event's state, is in `triggers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from predict_pipeline.model import RESOLUTIONS
from predict_pipeline.rules import (
    JSON_SCHEMA_DIALECT,
    RuleError,
    parse_json,
    schema_fault,
    with_defaults,
)

DIVERGENCE_LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH", "EXTREME")
# The flag types prediction_trust_flags.flag_type accepts.
FLAG_TYPES = (
    "INSIDER_TIMING",
    "VOLUME_SPIKE",
    "COORDINATED_ACTION",
    "BOT_SENTIMENT",
    "WASH_TRADING",
    "NARRATIVE_PLANT",
    "SOURCE_MANIPULATION",
    "OTHER",
)
SEVERITIES = ("INFO", "WARNING", "ALERT", "CRITICAL")
RELATIONSHIPS = ("monitors", "depends_on", "contraindicates")
DIRECTIONS = ("up", "down", "any")

# ---------------------------------------------------------------------------------------------
# Params schemas


def _params_schema(title: str, description: str, properties: dict[str, Any], required=()):
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _threshold(what: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": 1, "description": what}


def _direction(default: str) -> dict[str, Any]:
    return {
        "enum": list(DIRECTIONS),
        "default": default,
        "description": "up: only increases count; down: only decreases; any: either.",
    }


_CROSSING_PROBABILITY = "The probability (0 to 1) the event's current probability must cross."

TRIGGER_SCHEMAS: dict[str, dict[str, Any]] = {
    "PROBABILITY_CROSSES_ABOVE": _params_schema(
        "Probability crosses above",
        "Fires when the probability moves from below the threshold to at or above it "
        "(previous < threshold <= current). Resting above does not fire again.",
        {"threshold": _threshold(_CROSSING_PROBABILITY)},
        required=["threshold"],
    ),
    "PROBABILITY_CROSSES_BELOW": _params_schema(
        "Probability crosses below",
        "Fires when the probability moves from above the threshold to at or below it "
        "(previous > threshold >= current). Resting below does not fire again.",
        {"threshold": _threshold(_CROSSING_PROBABILITY)},
        required=["threshold"],
    ),
    "PROBABILITY_SHIFT": _params_schema(
        "Probability shift",
        "Fires when the probability has moved by at least min_change since window_minutes ago.",
        {
            "min_change": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "description": "Smallest move, in probability points (0.1 = 10 points).",
            },
            "window_minutes": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10080,
                "description": "How far back the probability is compared (at most a week).",
            },
            "direction": _direction("any"),
        },
        required=["min_change", "window_minutes"],
    ),
    "SENTIMENT_SHIFT": _params_schema(
        "Sentiment shift",
        "Fires when the sentiment score (-1 to 1) moved by at least min_change in its last update.",
        {
            "min_change": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 2,
                "description": "Smallest move of the sentiment score (its range is -1 to 1).",
            },
            "direction": _direction("any"),
        },
        required=["min_change"],
    ),
    "TRUST_BELOW": _params_schema(
        "Trust drops below",
        "Fires when the trust score goes from at or above the threshold to strictly below it "
        "(previous >= threshold > current). Staying below does not fire again.",
        {"threshold": _threshold("The trust score (0 to 1) to drop below.")},
        required=["threshold"],
    ),
    "DIVERGENCE_AT_LEAST": _params_schema(
        "Divergence reaches a level",
        "Fires when the divergence between sources reaches the level from below. NONE is not "
        "a level to reach: nothing lies below it.",
        {
            "level": {
                "enum": list(DIVERGENCE_LEVELS[1:]),
                "description": "LOW < MEDIUM < HIGH < EXTREME.",
            }
        },
        required=["level"],
    ),
    "EDGE_AT_LEAST": _params_schema(
        "Market edge reaches a size",
        "Fires when some market of the event, at the latest snapshot interval, prices the event "
        "at least min_edge away from the pooled probability (edge = market price - pooled "
        "probability, prediction_market_edges). Each interval that shows it fires once.",
        {
            "min_edge": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "description": "Smallest gap between a market's price and the pooled "
                "probability, both on 0 to 1 (0.1 is ten points).",
            },
            "direction": {
                "enum": list(DIRECTIONS),
                "default": "any",
                "description": "up: the market above the pool (edge >= min_edge), down: below "
                "it (edge <= -min_edge), any: either.",
            },
            "source": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "description": "Only this source's markets (e.g. polymarket); all when absent.",
            },
        },
        required=["min_edge"],
    ),
    "FLAG_RAISED": _params_schema(
        "Trust flag raised",
        "Fires when a new trust flag of one of the types, at min_severity or worse, is raised.",
        {
            "flag_types": {
                "type": "array",
                "items": {"enum": list(FLAG_TYPES)},
                "minItems": 1,
                "uniqueItems": True,
                "description": "The flag types that count.",
            },
            "min_severity": {
                "enum": list(SEVERITIES),
                "default": "INFO",
                "description": "INFO < WARNING < ALERT < CRITICAL.",
            },
        },
        required=["flag_types"],
    ),
    "VOLUME_SPIKE": _params_schema(
        "Volume spike",
        "Fires when the latest interval's volume is at least min_ratio times the median "
        "interval volume of the trailing window_hours.",
        {
            "min_ratio": {
                "type": "number",
                "minimum": 1,
                "description": "Volume over trailing median, e.g. 3 for three times the usual.",
            },
            "window_hours": {
                "type": "integer",
                "minimum": 1,
                "maximum": 720,
                "description": "Length of the trailing window the median is taken over.",
            },
        },
        required=["min_ratio", "window_hours"],
    ),
    "EVENT_RESOLVED": _params_schema(
        "Event resolved",
        "Fires when the event resolves with one of the outcomes.",
        {
            "outcomes": {
                "type": "array",
                "items": {"enum": list(RESOLUTIONS)},
                "minItems": 1,
                "uniqueItems": True,
                "default": list(RESOLUTIONS),
                "description": "The outcomes that count; all four when absent.",
            }
        },
    ),
    "CAMPAIGN_THRESHOLD": _params_schema(
        "Campaign threshold crossed",
        "Fires when the probability crosses the campaign link's probability_threshold. The "
        "link's relationship picks the direction: depends_on fires on a crossing below (the "
        "outcome the campaign needs got less likely), contraindicates on a crossing above (the "
        "outcome that hurts it got more likely), monitors on both. A link without a threshold "
        "never fires.",
        {
            "direction": {
                "enum": list(DIRECTIONS),
                "description": "Overrides the relationship: up = crossing above, "
                "down = crossing below, any = both.",
            }
        },
    ),
}
TRIGGER_TYPES = tuple(TRIGGER_SCHEMAS)
_VALIDATORS = {name: Draft202012Validator(schema) for name, schema in TRIGGER_SCHEMAS.items()}

# The names in Firing.trigger_snapshot["values"] per type (message templates may use them).
TRIGGER_VALUE_NAMES: dict[str, tuple[str, ...]] = {
    "PROBABILITY_CROSSES_ABOVE": ("probability", "previous_probability", "threshold"),
    "PROBABILITY_CROSSES_BELOW": ("probability", "previous_probability", "threshold"),
    "PROBABILITY_SHIFT": ("probability", "probability_before", "change", "window_minutes"),
    "SENTIMENT_SHIFT": ("sentiment", "previous_sentiment", "change"),
    "TRUST_BELOW": ("trust_score", "previous_trust_score", "threshold"),
    "DIVERGENCE_AT_LEAST": ("divergence", "previous_divergence", "level"),
    "EDGE_AT_LEAST": (
        "source",
        "source_event_id",
        "price",
        "pooled_probability",
        "edge",
        "markets",
        "snapshot_at",
    ),
    "FLAG_RAISED": ("flags", "flag_summary"),
    "VOLUME_SPIKE": ("volume", "median_volume", "ratio", "window_hours"),
    "EVENT_RESOLVED": ("resolution",),
    "CAMPAIGN_THRESHOLD": (
        "probability",
        "previous_probability",
        "threshold",
        "campaign_id",
        "relationship",
        "crossed",
    ),
}


@dataclass(frozen=True, slots=True)
class ValidatedTrigger:
    """A trigger whose params passed its schema; `params` has the schema defaults filled in."""

    trigger_type: str
    params: Mapping[str, Any]


def validate_rule(trigger_type: Any, trigger_params: Any) -> ValidatedTrigger | RuleError:
    """Check a rule's trigger type and params (a dict or JSON text); never raises for user data."""
    if not isinstance(trigger_type, str) or trigger_type not in TRIGGER_SCHEMAS:
        return RuleError(
            f"trigger_type: unknown trigger type {str(trigger_type)[:60]!r}; "
            f"expected one of {', '.join(TRIGGER_TYPES)}"
        )
    params = parse_json(trigger_params, "trigger_params")
    if isinstance(params, RuleError):
        return params
    fault = schema_fault(_VALIDATORS[trigger_type], params, "trigger_params")
    if fault is not None:
        return RuleError(f"{trigger_type} {fault.reason}")
    return ValidatedTrigger(trigger_type, with_defaults(TRIGGER_SCHEMAS[trigger_type], params))
