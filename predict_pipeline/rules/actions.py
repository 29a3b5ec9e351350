"""The actions a fired rule runs, in order: webhook, Slack, email, and three database actions.

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
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import Any, Literal
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator

from predict_pipeline.feeds.push.signature import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_delivery,
)
from predict_pipeline.feeds.records import PageRequest
from predict_pipeline.http import (
    CONNECT_TIMEOUT_S,
    FetchError,
    FetchStats,
    FetchTimeoutError,
    HttpClient,
    Resolver,
    check_url_allowed,
    resolve_host,
)
from predict_pipeline.rules import (
    JSON_SCHEMA_DIALECT,
    RuleError,
    parse_json,
    schema_fault,
    with_defaults,
)
from predict_pipeline.rules.triggers import TRIGGER_VALUE_NAMES, Firing
from predict_pipeline.secrets import MASK, is_secret_name

ActionStatus = Literal["SUCCESS", "FAILED", "SKIPPED"]
ExecutionStatus = Literal["COMPLETED", "PARTIAL_FAILURE", "FAILED"]

DATABASE_ACTION_TYPES = ("campaign_pause", "campaign_repredict", "explain")
MAX_ACTIONS = 20
SLACK_TIMEOUT_S = 10.0
ERROR_MAX_CHARS = 500
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
    "TRUST_BELOW": "ANOMALY",
    "FLAG_RAISED": "ANOMALY",
    "VOLUME_SPIKE": "ANOMALY",
    "EVENT_RESOLVED": "RESOLUTION",
}

# ---------------------------------------------------------------------------------------------
# Templates

_COMMON_FIELDS = (
    "rule_id",
    "rule_name",
    "event_id",
    "event_title",
    "trigger_type",
    "summary",
    "state_key",
    "as_of",
    "fired_at",
)
TEMPLATE_FIELDS = frozenset(_COMMON_FIELDS) | {
    name for names in TRIGGER_VALUE_NAMES.values() for name in names if name != "flags"
}
# fill/align, sign, zero, width, grouping, precision, type; widths stay below 100 characters.
_FORMAT_SPEC = re.compile(r"([^{}]?[<>^=])?[+\- ]?0?\d{0,2}[,_]?(\.\d{1,2})?[bdeEfFgGnosxX%]?")


class _TemplateFormatter(string.Formatter):
    def __init__(self, escape: Callable[[str], str] | None = None):
        self._escape = escape

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        return kwargs.get(field_name), field_name  # plain names only (checked by template_fault)

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            text = "n/a"
        else:
            try:
                text = format(value, format_spec)
            except (TypeError, ValueError):
                text = str(value)  # a number spec on text: show the text
        return self._escape(text) if self._escape else text


def template_fault(template: str) -> str | None:
    """Why a message template is refused, or None when it is fine."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            return f"unknown placeholder {{{name[:40]}}}; known: {known}"
        if conversion is not None:
            return f"placeholder {{{name}}}: conversions such as !{conversion} are not allowed"
        if spec and not _FORMAT_SPEC.fullmatch(spec):
            return f"placeholder {{{name}}}: format spec {spec[:20]!r} is not allowed"
    return None


def render_template(
    template: str, values: Mapping[str, Any], *, escape: Callable[[str], str] | None = None
) -> str:
    """`template` with its placeholders filled from `values`; `escape` applies to each value."""
    return _TemplateFormatter(escape).vformat(template, (), values)


def slack_escape(text: str) -> str:
    """Slack's three control characters, so an event title cannot mention @channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------------------------
# Schemas

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
_CONNECTION_VALIDATORS = {
    platform: Draft202012Validator(schema) for platform, schema in CONNECTION_SCHEMAS.items()
}
# Credential fields whose names do not say they are secret but are.
_SECRET_CREDENTIALS = frozenset({"webhook_url"})

# ---------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What every action of one execution knows: the rule and the firing."""

    rule_id: str
    rule_name: str
    firing: Firing


@dataclass(frozen=True, slots=True)
class ActionResult:
    """One action's outcome, as stored in prediction_rule_executions.action_results."""

    index: int
    type: str
    status: ActionStatus
    duration_ms: int
    attempts: int
    http_status: int | None = None
    smtp_reply: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "status": self.status,
            "http_status": self.http_status,
            "smtp_reply": self.smtp_reply,
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DatabaseAction:
    """A campaign_pause, campaign_repredict or explain action for the caller to run.

    `config` is validated with defaults filled in and `reason` already rendered; `campaign_id`
    is the config's, else the firing's campaign link's, else None (use the rule's scope).
    """

    index: int
    type: str
    config: Mapping[str, Any]
    context: ActionContext
    campaign_id: str | None


HttpClientFactory = Callable[[float], HttpClient]
SmtpFactory = Callable[[str, int, str, float], smtplib.SMTP]
DatabaseExecutor = Callable[[DatabaseAction], None]


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: ActionStatus
    attempts: int
    http_status: int | None = None
    smtp_reply: str | None = None
    error: str | None = None


class _ActionFailed(Exception):
    """An action that failed for a reason we can state (no request, or no usable reply)."""

    def __init__(self, message: str, *, attempts: int = 0, smtp_reply: str | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.smtp_reply = smtp_reply


class SmtpHostRefused(ValueError):
    """The SMTP host resolves to an address the SSRF guard refuses."""


# ---------------------------------------------------------------------------------------------
# Validation


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


# ---------------------------------------------------------------------------------------------
# Running


def run_actions(
    actions: Any,
    *,
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    http_client_factory: HttpClientFactory,
    smtp_factory: SmtpFactory,
    database_executor: DatabaseExecutor,
    now: datetime,
    clock: Callable[[], float] = time.monotonic,
) -> list[ActionResult]:
    """Run a rule's actions in order; one result per item. A failing or raising action never
    stops the next one. `now` is the firing time (expiry checks, `fired_at`)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a tz-aware datetime, got a naive one")
    items = parse_json(actions, "actions")
    if not isinstance(items, list):
        reason = items.reason if isinstance(items, RuleError) else "actions: must be a JSON array"
        return [ActionResult(0, "unknown", "FAILED", 0, 0, error=reason)]
    credentials_secrets = _connection_secrets(connections)
    results = []
    for index, item in enumerate(items):
        started = clock()
        kind = item.get("type") if isinstance(item, Mapping) else None
        kind = kind if isinstance(kind, str) and kind in ACTION_SCHEMAS else "unknown"
        try:
            outcome = _run_one(
                index,
                item,
                context=context,
                connections=connections,
                http_client_factory=http_client_factory,
                smtp_factory=smtp_factory,
                database_executor=database_executor,
                now=now,
            )
        except _ActionFailed as exc:
            outcome = _Outcome("FAILED", exc.attempts, smtp_reply=exc.smtp_reply, error=str(exc))
        except Exception as exc:  # an action that raises fails alone; the next one still runs
            outcome = _Outcome("FAILED", 1, error=f"{kind}: {type(exc).__name__}: {exc}")
        secrets = credentials_secrets | _header_values(item)
        results.append(
            ActionResult(
                index=index,
                type=kind,
                status=outcome.status,
                duration_ms=round((clock() - started) * 1000),
                attempts=outcome.attempts,
                http_status=outcome.http_status,
                smtp_reply=_masked(outcome.smtp_reply, secrets),
                error=_masked(outcome.error, secrets),
            )
        )
    return results


def execution_status(results: Iterable[ActionResult]) -> ExecutionStatus:
    """COMPLETED when no action failed, FAILED when every action that ran (was not SKIPPED)
    failed, PARTIAL_FAILURE otherwise."""
    ran = [result for result in results if result.status != "SKIPPED"]
    failed = sum(1 for result in ran if result.status == "FAILED")
    if failed == 0:
        return "COMPLETED"
    return "FAILED" if failed == len(ran) else "PARTIAL_FAILURE"


def template_values(context: ActionContext, now: datetime) -> dict[str, Any]:
    """The values message templates may use, for one firing: every TEMPLATE_FIELDS name."""
    snapshot = context.firing.trigger_snapshot
    values: dict[str, Any] = dict.fromkeys(TEMPLATE_FIELDS)
    for name, value in snapshot.get("values", {}).items():
        if name in TEMPLATE_FIELDS and isinstance(value, str | int | float):
            values[name] = value
    values.update(
        rule_id=context.rule_id,
        rule_name=context.rule_name,
        event_id=context.firing.event_id,
        event_title=snapshot.get("event_title") or context.firing.event_id,
        trigger_type=context.firing.trigger_type,
        summary=snapshot.get("summary"),
        state_key=context.firing.state_key,
        as_of=snapshot.get("as_of"),
        fired_at=now.astimezone(UTC).isoformat(),
    )
    return values


def webhook_body(context: ActionContext, now: datetime) -> bytes:
    """The exact bytes a webhook action POSTs (and signs): compact JSON, keys sorted."""
    firing = context.firing
    payload = {
        "rule": {"id": context.rule_id, "name": context.rule_name},
        "event": {"id": firing.event_id, "title": firing.trigger_snapshot.get("event_title")},
        "trigger": firing.trigger_snapshot,
        "state_key": firing.state_key,
        "fired_at": now.astimezone(UTC).isoformat(),
    }
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.encode("utf-8")


def http_client_factory(**client_options: Any) -> HttpClientFactory:
    """HttpClients for webhook and Slack actions: `timeout_seconds` is the read timeout of each
    attempt (connecting gets at most CONNECT_TIMEOUT_S); `client_options` go to HttpClient."""

    def make(timeout_seconds: float) -> HttpClient:
        connect = min(timeout_seconds, CONNECT_TIMEOUT_S)
        return HttpClient(timeout=(connect, timeout_seconds), **client_options)

    return make


def smtp_factory(
    *,
    ssl_context: ssl.SSLContext | None = None,
    allow_private_hosts: Iterable[str] = (),
    resolver: Resolver = resolve_host,
) -> SmtpFactory:
    """Connects `smtplib` clients, TLS set up per tls_mode, after the SSRF guard checked the host.

    The default TLS context verifies the server certificate and host name.
    """
    allowed = tuple(allow_private_hosts)

    def connect(host: str, port: int, tls_mode: str, timeout: float) -> smtplib.SMTP:
        _check_smtp_host(host, allowed, resolver)
        context = ssl_context or ssl.create_default_context()
        if tls_mode == "tls":
            return smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        client = smtplib.SMTP(host, port, timeout=timeout)
        if tls_mode == "starttls":
            try:
                client.ehlo()
                client.starttls(context=context)
                client.ehlo()
            except BaseException:
                client.close()
                raise
        return client

    return connect


def _run_one(
    index: int,
    item: Any,
    *,
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    http_client_factory: HttpClientFactory,
    smtp_factory: SmtpFactory,
    database_executor: DatabaseExecutor,
    now: datetime,
) -> _Outcome:
    config = validate_action(item, index)
    if isinstance(config, RuleError):
        raise _ActionFailed(f"invalid action: {config.reason}")
    if not config["enabled"]:
        return _Outcome("SKIPPED", 0)
    kind = config["type"]
    if kind == "webhook":
        return _webhook(config, context, connections, http_client_factory, now)
    if kind == "slack":
        return _slack(config, context, connections, http_client_factory, now)
    if kind == "email":
        return _email(config, context, connections, smtp_factory, now)
    database_executor(_database_action(index, config, context, now))
    return _Outcome("SUCCESS", 1)


def _webhook(
    config: Mapping[str, Any],
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    make_client: HttpClientFactory,
    now: datetime,
) -> _Outcome:
    credentials = _usable_credentials(connections, "webhook", now)
    body = webhook_body(context, now)
    # One delivery id for every attempt of this action, so a receiver lands it once.
    signed = sign_delivery(credentials["secret"], body, sent_at=now, delivery_id=uuid.uuid4().hex)
    headers = {**config["headers"], "Content-Type": "application/json", **signed}
    return _post(make_client, config["url"], headers, body, config["timeout_seconds"], "webhook")


def _slack(
    config: Mapping[str, Any],
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    make_client: HttpClientFactory,
    now: datetime,
) -> _Outcome:
    credentials = _usable_credentials(connections, "slack", now)
    text = render_template(config["text"], template_values(context, now), escape=slack_escape)
    body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    return _post(make_client, credentials["webhook_url"], headers, body, SLACK_TIMEOUT_S, "slack")


def _post(
    make_client: HttpClientFactory,
    url: str,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    kind: str,
) -> _Outcome:
    request = PageRequest(
        endpoint=f"rule_action:{kind}", url=url, method="POST", headers=headers, body=body
    )
    with make_client(timeout) as client:
        try:
            response = client.send(request, trusted=False, stats=FetchStats())
        except FetchError as exc:
            # The reason, not str(exc): that carries the URL, and a Slack URL is a credential.
            what = "timed out" if isinstance(exc, FetchTimeoutError) else "failed"
            return _Outcome(
                "FAILED",
                exc.attempts,
                http_status=exc.status_code,
                error=f"{kind} POST {what} after {exc.attempts} attempt(s): {exc.reason}",
            )
    return _Outcome("SUCCESS", response.attempts, http_status=response.status_code)


def _email(
    config: Mapping[str, Any],
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    connect: SmtpFactory,
    now: datetime,
) -> _Outcome:
    credentials = _usable_credentials(connections, "email", now)
    values = template_values(context, now)
    # A header cannot hold a line break; a multi-line subject becomes one line.
    subject = " ".join(render_template(config["subject"], values).split())
    message = EmailMessage()
    message["From"] = credentials["from_address"]
    message["To"] = ", ".join(config["to"])
    message["Subject"] = subject
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = make_msgid(domain=credentials["from_address"].rpartition("@")[2])
    body = render_template(config["body"], values)
    # Quoted-printable keeps non-ASCII text 7-bit clean for servers without 8BITMIME.
    message.set_content(body, cte=None if body.isascii() else "quoted-printable")
    try:
        client = connect(
            credentials["host"],
            credentials["port"],
            credentials["tls_mode"],
            config["timeout_seconds"],
        )
    except SmtpHostRefused as exc:
        raise _ActionFailed(f"email: SMTP host refused: {exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        failure = f"email: cannot connect to the SMTP server: {_smtp_text(exc)}"
        raise _ActionFailed(failure, attempts=1) from None
    try:
        if "username" in credentials:
            client.login(credentials["username"], credentials["password"])
        reply = _deliver(client, credentials["from_address"], config["to"], message)
    except smtplib.SMTPResponseException as exc:
        reply = f"{exc.smtp_code} {_decoded(exc.smtp_error)}"
        failure = f"email: SMTP server refused: {reply}"
        raise _ActionFailed(failure, attempts=1, smtp_reply=reply) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise _ActionFailed(f"email: SMTP failed: {_smtp_text(exc)}", attempts=1) from None
    finally:
        _quit(client)
    return _Outcome("SUCCESS", 1, smtp_reply=reply)


def _deliver(
    client: smtplib.SMTP, sender: str, recipients: list[str], message: EmailMessage
) -> str:
    """MAIL, RCPT and DATA by hand (what sendmail does) to keep the server's final reply."""
    client.ehlo_or_helo_if_needed()
    code, reply = client.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused = {}
    for recipient in recipients:
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = f"{code} {_decoded(reply)}"
    if refused:
        client.rset()
        listed = "; ".join(f"{address}: {reply}" for address, reply in refused.items())
        # Nothing is sent unless every recipient is accepted, so a retry cannot send twice.
        raise _ActionFailed(
            f"email: {len(refused)} of {len(recipients)} recipient(s) refused, nothing sent: "
            f"{listed}",
            attempts=1,
            smtp_reply=next(iter(refused.values())),
        )
    code, reply = client.data(message.as_bytes(policy=SMTP_POLICY))
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return f"{code} {_decoded(reply)}"


def _database_action(
    index: int, config: dict[str, Any], context: ActionContext, now: datetime
) -> DatabaseAction:
    config = dict(config)
    if "reason" in config:
        config["reason"] = render_template(config["reason"], template_values(context, now))
    values = context.firing.trigger_snapshot.get("values", {})
    campaign_id = config.get("campaign_id") or values.get("campaign_id")
    return DatabaseAction(index, config["type"], config, context, campaign_id)


def _usable_credentials(
    connections: Mapping[str, Mapping[str, Any]], platform: str, now: datetime
) -> Mapping[str, Any]:
    """The platform connection's credentials, or _ActionFailed saying why they cannot be used."""
    connection = connections.get(platform)
    if connection is None:
        raise _ActionFailed(f"{platform}: no {platform} connection; add one in the settings")
    status = connection.get("status") or "ACTIVE"
    if status != "ACTIVE":
        raise _ActionFailed(f"{platform}: the {platform} connection is {status}; reconnect it")
    expires_at = _moment(connection.get("expires_at"))
    if expires_at is not None and expires_at <= now:
        raise _ActionFailed(
            f"{platform}: the {platform} connection expired at "
            f"{expires_at.astimezone(UTC).isoformat()}; reconnect it"
        )
    credentials = connection.get("credentials")
    fault = schema_fault(_CONNECTION_VALIDATORS[platform], credentials, "credentials")
    if fault is not None:
        raise _ActionFailed(f"{platform}: the {platform} connection is unusable: {fault.reason}")
    assert isinstance(credentials, Mapping)  # the schema says it is an object
    if platform == "email" and "username" in credentials and credentials["tls_mode"] == "none":
        raise _ActionFailed(
            "email: the email connection would send its password unencrypted; "
            "set tls_mode to starttls or tls"
        )
    return credentials


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise _ActionFailed("connection expires_at is not an ISO-8601 time") from None
    if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
        moment = moment.replace(tzinfo=UTC)  # timestamptz values are UTC
    return moment


def _check_smtp_host(host: str, allowed: tuple[str, ...], resolver: Resolver) -> None:
    # The HTTP SSRF guard on a stand-in URL: the same address rules for the SMTP host.
    # Residual risk as for HTTP: smtplib resolves the name again when it connects.
    literal = f"[{host}]" if ":" in host and not host.startswith("[") else host
    try:
        check_url_allowed(f"http://{literal}/", allowed, resolver=resolver)
    except FetchError as exc:
        raise SmtpHostRefused(exc.reason) from None


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _connection_secrets(connections: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    found: set[str] = set()
    for connection in connections.values():
        credentials = connection.get("credentials")
        if not isinstance(credentials, Mapping):
            continue
        for name, value in credentials.items():
            if not isinstance(value, str) or not value:
                continue
            if name in _SECRET_CREDENTIALS or is_secret_name(name):
                found.add(value)
                if name == "webhook_url":  # parts of the URL leak the token too
                    parts = urlsplit(value)
                    found.update(part for part in (parts.path, parts.query) if len(part) > 8)
    return frozenset(found)


def _header_values(item: Any) -> frozenset[str]:
    headers = item.get("headers") if isinstance(item, Mapping) else None
    if not isinstance(headers, Mapping):
        return frozenset()
    return frozenset(value for value in headers.values() if isinstance(value, str) and value)


def _masked(text: str | None, secrets: frozenset[str]) -> str | None:
    if text is None:
        return None
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: a URL before its path
        text = text.replace(secret, MASK)
    return text[:ERROR_MAX_CHARS]


def _decoded(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _smtp_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
