"""The actions a fired rule runs, in order: webhook, Slack, email, and three database actions;
here their configs (ACTION_SCHEMAS) and connection credentials (CONNECTION_SCHEMAS).

A rule's `actions` column is an ordered JSON array; each item is an object whose `type` picks
its schema in ACTION_SCHEMAS. Every item may carry `"enabled": false` to be SKIPPED.

- webhook: POST a JSON body (see `webhook_body`) to the user's URL, signed with the `webhook`
  connection's secret: `X-Predict-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body
  bytes, the same scheme our own webhook feeds verify. Retries with backoff on 5xx, 429 and
  timeouts come from the HttpClient; the URL passes the SSRF guard (never trusted).
- slack: POST {"text": ...} to the incoming-webhook URL of the `slack` connection.
- email: one message over SMTP to the `to` addresses, through the `email` connection's server.
  Not retried: a reply lost after DATA would send the message twice.
- campaign_pause, campaign_repredict, explain: handed, as a `DatabaseAction`, to the
  `database_executor` the caller passes; returning means SUCCESS, raising means FAILED.

`connections` maps a platform ("webhook", "slack", "email"; one connection per user and
platform) to the rule owner's connection row as the caller decrypted it:
`{"status": ..., "expires_at": datetime | ISO text | None, "credentials": {...}}` with
credentials as in CONNECTION_SCHEMAS. A connection that is not ACTIVE, or whose expires_at has
passed, fails the action that needs it with a message saying so.

Slack text, email subject/body and a pause reason are templates: `{name}` placeholders from
TEMPLATE_FIELDS with an optional simple format spec (`{probability:.0%}`); no attribute or index
access, no conversions, no nested fields. A value the firing lacks renders as "n/a".

No result ever carries a credential: errors are built from reasons, and every credential and
webhook header value is masked out of them as a last guard.

The delivery of webhook, Slack and email actions is in `channels`; running a rule's actions in
order, and one execution's end state, in `execute`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from predict_pipeline.rules import (
    JSON_SCHEMA_DIALECT,
    RuleError,
    parse_json,
    schema_fault,
    with_defaults,
)
from predict_pipeline.rules.templates import template_fault
from predict_pipeline.sources.push.signature import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)

MAX_ACTIONS = 20
# Headers the webhook action sets itself; a user header must not replace them.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding"}
    | {name.lower() for name in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER)}
)
# The rule trigger a prediction_explanations.trigger_type stands for, for the explain action.
EXPLANATION_TRIGGER_TYPES = {
    "PROBABILITY_CROSSES_ABOVE": "PROBABILITY_SHIFT",
    "PROBABILITY_CROSSES_BELOW": "PROBABILITY_SHIFT",
    "PROBABILITY_SHIFT": "PROBABILITY_SHIFT",
    "CAMPAIGN_THRESHOLD": "PROBABILITY_SHIFT",
    "SENTIMENT_SHIFT": "SENTIMENT_SHIFT",
    "DIVERGENCE_AT_LEAST": "DIVERGENCE",
    "EDGE_AT_LEAST": "DIVERGENCE",
    "TRUST_BELOW": "ANOMALY",
    "FLAG_RAISED": "ANOMALY",
    "VOLUME_SPIKE": "ANOMALY",
    "EVENT_RESOLVED": "RESOLUTION",
}

_EMAIL_ADDRESS = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_HTTP_URL = r"^https?://[^\s]+$"
_TEMPLATE_NOTE = " A template: {placeholders} from TEMPLATE_FIELDS, e.g. {event_title}."

DEFAULT_SLACK_TEXT = "{rule_name}: {event_title}: {summary}"
DEFAULT_EMAIL_SUBJECT = "[predict] {rule_name}: {event_title}"
DEFAULT_EMAIL_BODY = (
    "{summary}\n\nEvent: {event_title} ({event_id})\nRule: {rule_name}\n"
    "Trigger: {trigger_type}\nObserved at: {as_of}\nFired at: {fired_at}\n"
)
DEFAULT_PAUSE_REASON = "{rule_name}: {summary}"


def _action_schema(kind: str, description: str, properties: dict[str, Any], required=()):
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{kind} action",
        "description": description,
        "type": "object",
        "properties": {
            "type": {"const": kind, "description": "The action type."},
            "enabled": {
                "type": "boolean",
                "default": True,
                "description": "false keeps the action in the rule but SKIPPED.",
            },
            **properties,
        },
        "required": ["type", *required],
        "additionalProperties": False,
    }


def _template(default: str, max_length: int, what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "default": default,
        "description": what + _TEMPLATE_NOTE,
    }


def _timeout(default: float, maximum: float) -> dict[str, Any]:
    return {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": maximum,
        "default": default,
        "description": "Seconds to wait for the server on each attempt.",
    }


_CAMPAIGN_ID = {
    "type": "string",
    "pattern": _UUID,
    "description": "The campaign to act on; when absent, the campaign of the firing's "
    "campaign link, else the rule's scope campaign.",
}

ACTION_SCHEMAS: dict[str, dict[str, Any]] = {
    "webhook": _action_schema(
        "webhook",
        "POST the firing as JSON to a URL, signed with the webhook connection's secret "
        f"({SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of '<{TIMESTAMP_HEADER}>."
        f"<{DELIVERY_HEADER}>.<body>'>, as webhook feeds verify it).",
        {
            "url": {
                "type": "string",
                "pattern": _HTTP_URL,
                "maxLength": 2048,
                "description": "http(s) URL on a public address (SSRF guard).",
            },
            "headers": {
                "type": "object",
                "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"},
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 4096,
                    "pattern": "^[^\\r\\n]*$",
                },
                "maxProperties": 20,
                "default": {},
                "description": "Extra request headers; Content-Type, Content-Length, Host, "
                f"Transfer-Encoding, {SIGNATURE_HEADER}, {TIMESTAMP_HEADER} and "
                f"{DELIVERY_HEADER} are set by us.",
            },
            "timeout_seconds": _timeout(10, 30),
        },
        required=["url"],
    ),
    "slack": _action_schema(
        "slack",
        "Post a message through the slack connection's incoming webhook.",
        {"text": _template(DEFAULT_SLACK_TEXT, 4000, "The message text.")},
    ),
    "email": _action_schema(
        "email",
        "Send a plain-text email through the email connection's SMTP server.",
        {
            "to": {
                "type": "array",
                "items": {"type": "string", "pattern": _EMAIL_ADDRESS, "maxLength": 254},
                "minItems": 1,
                "maxItems": 50,
                "uniqueItems": True,
                "description": "Recipient addresses (ASCII).",
            },
            "subject": _template(DEFAULT_EMAIL_SUBJECT, 200, "The subject (one line)."),
            "body": _template(DEFAULT_EMAIL_BODY, 20000, "The plain-text body."),
            "timeout_seconds": _timeout(30, 120),
        },
        required=["to"],
    ),
    "campaign_pause": _action_schema(
        "campaign_pause",
        "Pause a campaign (run by the pipeline against the database).",
        {
            "campaign_id": _CAMPAIGN_ID,
            "reason": _template(DEFAULT_PAUSE_REASON, 1000, "Why, as recorded on the campaign."),
        },
    ),
    "campaign_repredict": _action_schema(
        "campaign_repredict",
        "Recompute a campaign's success prediction (run by the pipeline against the database).",
        {"campaign_id": _CAMPAIGN_ID},
    ),
    "explain": _action_schema(
        "explain",
        "Write a prediction_explanations row for the event (run by the pipeline); its "
        "trigger_type comes from EXPLANATION_TRIGGER_TYPES.",
        {
            "lookback_hours": {
                "type": "integer",
                "minimum": 1,
                "maximum": 168,
                "default": 24,
                "description": "How many hours of the event's signals the explanation weighs.",
            }
        },
    ),
}
ACTION_TYPES = tuple(ACTION_SCHEMAS)
_ACTION_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in ACTION_SCHEMAS.items()}
_TEMPLATE_KEYS = {"slack": ("text",), "email": ("subject", "body"), "campaign_pause": ("reason",)}


def _connection_schema(platform: str, properties: dict[str, Any], required: list[str], **extra):
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{platform} connection credentials",
        "description": f"prediction_action_connections.credentials (decrypted) for {platform}.",
        "type": "object",
        "properties": properties,
        "required": required,
        # Open on purpose: a connection may keep what its platform returned next to our fields.
        "additionalProperties": True,
        **extra,
    }


CONNECTION_SCHEMAS: dict[str, dict[str, Any]] = {
    "webhook": _connection_schema(
        "webhook",
        {"secret": {"type": "string", "minLength": 16, "description": "HMAC signing secret."}},
        ["secret"],
    ),
    "slack": _connection_schema(
        "slack",
        {
            "webhook_url": {
                "type": "string",
                "pattern": _HTTP_URL,
                "maxLength": 2048,
                "description": "The incoming-webhook URL (itself a secret).",
            }
        },
        ["webhook_url"],
    ),
    "email": _connection_schema(
        "email",
        {
            "host": {"type": "string", "pattern": r"^[A-Za-z0-9.:\[\]-]{1,253}$"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "tls_mode": {
                "enum": ["none", "starttls", "tls"],
                "description": "none: plain; starttls: upgrade after connecting (port 587); "
                "tls: TLS from the start (port 465).",
            },
            "username": {"type": "string", "minLength": 1},
            "password": {"type": "string", "minLength": 1},
            "from_address": {"type": "string", "pattern": _EMAIL_ADDRESS},
        },
        ["host", "port", "tls_mode", "from_address"],
        dependentRequired={"username": ["password"], "password": ["username"]},
    ),
}
CONNECTION_VALIDATORS = {
    platform: Draft202012Validator(schema) for platform, schema in CONNECTION_SCHEMAS.items()
}
# Credential fields whose names do not say they are secret but are.
SECRET_CREDENTIALS = frozenset({"webhook_url"})


def validate_action(item: Any, index: int) -> dict[str, Any] | RuleError:
    """One action config with its defaults filled in, or a RuleError naming the fault."""
    where = f"actions[{index}]"
    if not isinstance(item, Mapping):
        return RuleError(f"{where}: must be of type object")
    kind = item.get("type")
    if not isinstance(kind, str) or kind not in ACTION_SCHEMAS:
        return RuleError(f"{where}.type: must be one of {', '.join(ACTION_TYPES)}")
    fault = schema_fault(_ACTION_VALIDATORS[kind], item, where)
    if fault is not None:
        return fault
    config = with_defaults(ACTION_SCHEMAS[kind], item)
    for key in _TEMPLATE_KEYS.get(kind, ()):
        problem = template_fault(config[key])
        if problem is not None:
            return RuleError(f"{where}.{key}: {problem}")
    reserved = sorted(
        name for name in config.get("headers", {}) if name.lower() in RESERVED_HEADERS
    )
    if reserved:
        return RuleError(f"{where}.headers: {', '.join(reserved)} is set by the webhook action")
    return config


def validate_actions(actions: Any) -> list[dict[str, Any]] | RuleError:
    """A rule's `actions` array (a list or JSON text), each item validated; for saving a rule."""
    items = parse_json(actions, "actions")
    if isinstance(items, RuleError):
        return items
    if not isinstance(items, list):
        return RuleError("actions: must be a JSON array of action objects")
    if len(items) > MAX_ACTIONS:
        return RuleError(f"actions: at most {MAX_ACTIONS} actions per rule, got {len(items)}")
    configs = []
    for index, item in enumerate(items):
        config = validate_action(item, index)
        if isinstance(config, RuleError):
            return config
        configs.append(config)
    return configs
