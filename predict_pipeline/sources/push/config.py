"""What a push feed (webhook or upload) is configured with: its JSON Schema, its defaults and
the check of a stored config. custom_api shares the rules that read values (`RULE_PROPERTIES`)
and the check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema

from predict_pipeline.model import SIGNAL_TYPES
from predict_pipeline.sources.push.signature import SIGNATURE_HEADER

RATE_LIMIT_RPM = None  # nothing is fetched: users push to us
SUPPORTS_BACKFILL = False  # history arrives as an upload, not as a fetch

FIELD_NAMES = (
    "source_event_id",
    "signal_type",
    "value",
    "fetched_at",
    "title",
    "narrative",
    "source_url",
    "weight",
    "close_time",
    "category",
    "status",
    "resolution",
    "resolution_probability",
)
REQUIRED_CSV_COLUMNS = ("source_event_id", "value")
_MAY_HOLD_CREDENTIALS = frozenset({"url", "params", "headers", "body"})


# Properties custom_api shares: how a user's values are read into a record.
RULE_PROPERTIES: dict[str, Any] = {
    "signal_type": {
        "description": "Signal type of records that do not name their own.",
        "enum": list(SIGNAL_TYPES),
    },
    "value_scale": {
        "description": "Factor applied to every value (0.01 turns cents into dollars).",
        "type": "number",
        "exclusiveMinimum": 0,
    },
    "timestamp_format": {
        "description": "How timestamps are written: ISO-8601 text, epoch seconds or epoch ms.",
        "enum": ["iso", "epoch_s", "epoch_ms"],
    },
    "timezone": {
        "description": "IANA zone for ISO timestamps without an offset; without it they are "
        "refused.",
        "type": "string",
        "minLength": 1,
    },
    "missing_values": {
        "description": "Text values that mean 'no value' (e.g. \"NA\"), besides empty and null.",
        "type": "array",
        "items": {"type": "string"},
    },
}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Webhook / upload feed",
    "description": "How pushed records (webhook bodies, CSV/JSON uploads) are read.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "columns": {
            "description": "Renames: accepted field name -> the column or key used in the data.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {
                    "description": f"Column or key that holds {name}.",
                    "type": "string",
                    "minLength": 1,
                }
                for name in FIELD_NAMES
            },
        },
        **RULE_PROPERTIES,
        "signature_header": {
            "description": "Webhook header carrying 'sha256=<hex>': the HMAC-SHA256 of "
            "'<X-Predict-Timestamp>.<X-Predict-Delivery>.<body>'.",
            "type": "string",
            "pattern": "^[A-Za-z0-9-]+$",
        },
    },
}

DEFAULT_CONFIG: dict[str, Any] = {
    "columns": {},
    "signal_type": "MARKET_PRICE",
    "value_scale": 1,
    "timestamp_format": "iso",
    "missing_values": [],
    "signature_header": SIGNATURE_HEADER,
}


def validated_config(
    config: Mapping[str, Any] | None,
    *,
    schema: dict[str, Any],
    defaults: Mapping[str, Any],
    source: str,
) -> dict[str, Any]:
    """The feed config over the defaults, checked against the schema; ValueError names the fault."""
    merged = {**defaults, **(config or {})}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(merged)
    )
    if error is not None:
        error = _branch_error(error)
        # URLs, params, headers and bodies may carry credentials: name the rule, not the value.
        sensitive = bool(error.absolute_path) and error.absolute_path[0] in _MAY_HOLD_CREDENTIALS
        message = f"fails the {error.validator!r} rule" if sensitive else error.message
        raise ValueError(f"{source} config: {error.json_path}: {message}")
    if "timezone" in merged:
        try:
            ZoneInfo(merged["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"{source} config: $.timezone: unknown time zone {merged['timezone']!r}"
            ) from exc
    return merged


def _branch_error(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a oneOf of tagged variants (pagination modes), the fault inside the variant the
    config chose, or the tag's own fault, instead of "not valid under any of the schemas"."""
    if error.validator != "oneOf" or not error.context:
        return error
    by_branch: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    chosen = [errs for errs in by_branch.values() if all(e.validator != "const" for e in errs)]
    if chosen:
        return _branch_error(jsonschema.exceptions.best_match(chosen[0]))
    tags = [e for e in error.context if e.validator == "const"]
    allowed = ", ".join(repr(e.validator_value) for e in tags)
    tags[0].message = f"expected one of {allowed}"
    return tags[0]
