"""Rules: triggers on event state and the actions they fire.

`trigger_schemas` validates a rule's trigger and `triggers` evaluates it on one event's state;
`engine` runs the sensor's tick (its SQL in `tick_sql`) and `throttle` decides whether a firing
may run now. `action_schemas` validates a rule's actions, `templates` renders their messages,
`channels` delivers webhooks, Slack messages and email, and `execute` runs a firing's actions in
order. This module holds what they share: `RuleError` and the JSON Schema check that produces
it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, slots=True)
class RuleError:
    """Why a rule's stored JSON cannot be used; `reason` names the field and the fault.

    Returned, not raised: user data never raises. The reason never repeats a field's value, so
    it is safe to record even when the value was a credential.
    """

    reason: str

    def __str__(self) -> str:
        return self.reason


def parse_json(value: Any, where: str) -> Any | RuleError:
    """`value` itself, or decoded when it arrives as JSON text; RuleError when that text is bad."""
    if not isinstance(value, str | bytes | bytearray):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        return RuleError(f"{where}: not valid JSON ({type(exc).__name__} at position {exc.pos})")
    except UnicodeDecodeError as exc:
        # Bad bytes carry no JSON position; UnicodeDecodeError names the offending byte offset.
        return RuleError(f"{where}: not valid JSON ({type(exc).__name__} at position {exc.start})")


def schema_fault(validator: Draft202012Validator, instance: Any, where: str) -> RuleError | None:
    """The most relevant schema violation of `instance` as a RuleError, or None when it is valid.

    `where` prefixes the path ("trigger_params" gives "trigger_params.threshold: ...").
    """
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    path = where + error.json_path[1:]
    return RuleError(f"{path}: {_describe(error)}")


def with_defaults(schema: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with every absent top-level property that has a schema `default` filled in."""
    filled = dict(params)
    for name, spec in schema.get("properties", {}).items():
        if name not in filled and "default" in spec:
            filled[name] = spec["default"]
    return filled


def _describe(error: ValidationError) -> str:
    """The rule a value broke, from the schema side only: jsonschema's own messages quote the
    offending value, which may be a credential (a header, a password)."""
    rule, limit = error.validator, error.validator_value
    if rule == "required":
        missing = [name for name in limit if name not in error.instance]
        return f"missing required field {', '.join(repr(name) for name in missing)}"
    if rule == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(name) for name in error.instance if name not in allowed)
        known = ", ".join(sorted(allowed)) or "none"
        return f"unknown field {', '.join(repr(n) for n in extra)} (allowed: {known})"
    if rule == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        return f"must be of type {' or '.join(kinds)}"
    templates = {
        "minimum": "must be at least {}",
        "maximum": "must be at most {}",
        "exclusiveMinimum": "must be greater than {}",
        "exclusiveMaximum": "must be less than {}",
        "const": "must be {!r}",
        "minItems": "must have at least {} item(s)",
        "maxItems": "must have at most {} item(s)",
        "minLength": "must be at least {} character(s) long",
        "maxLength": "must be at most {} character(s) long",
        "pattern": "must match the pattern {}",
        "minProperties": "must have at least {} field(s)",
        "maxProperties": "must have at most {} field(s)",
    }
    if rule in templates:
        return templates[rule].format(limit)
    if rule == "enum":
        return f"must be one of {', '.join(str(item) for item in limit)}"
    if rule == "uniqueItems":
        return "must not repeat an item"
    if rule == "dependentRequired":
        return error.message  # names fields only: "'b' is a dependency of 'a'"
    return f"fails the {rule!r} rule"
