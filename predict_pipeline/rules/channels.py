"""Delivery channels of rule actions: a signed webhook POST, a Slack incoming webhook, an email.

- webhook: POST a JSON body (see `webhook_body`) to the user's URL, signed with the `webhook`
  connection's secret: `X-Predict-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body
  bytes, the same scheme our own webhook feeds verify. Retries with backoff on 5xx, 429 and
  timeouts come from the HttpClient; the URL passes the SSRF guard (never trusted).
- slack: POST {"text": ...} to the incoming-webhook URL of the `slack` connection.
- email: one message over SMTP to the `to` addresses, through the `email` connection's server.
  Not retried: a reply lost after DATA would send the message twice.

Each takes an action's validated config (`action_schemas`) and returns an `Outcome`, or raises
`ActionFailed` with a reason that never quotes a credential.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import Any, Literal

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
from predict_pipeline.model import PageRequest
from predict_pipeline.rules import schema_fault
from predict_pipeline.rules.action_schemas import CONNECTION_VALIDATORS
from predict_pipeline.rules.templates import (
    ActionContext,
    render_template,
    slack_escape,
    template_values,
)
from predict_pipeline.sources.push.signature import sign_delivery

ActionStatus = Literal["SUCCESS", "FAILED", "SKIPPED"]

SLACK_TIMEOUT_S = 10.0

HttpClientFactory = Callable[[float], HttpClient]
SmtpFactory = Callable[[str, int, str, float], smtplib.SMTP]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: ActionStatus
    attempts: int
    http_status: int | None = None
    smtp_reply: str | None = None
    error: str | None = None


class ActionFailed(Exception):
    """An action that failed for a reason we can state (no request, or no usable reply)."""

    def __init__(self, message: str, *, attempts: int = 0, smtp_reply: str | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.smtp_reply = smtp_reply


class SmtpHostRefused(ValueError):
    """The SMTP host resolves to an address the SSRF guard refuses."""


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


def deliver_webhook(
    config: Mapping[str, Any],
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    make_client: HttpClientFactory,
    now: datetime,
) -> Outcome:
    credentials = usable_credentials(connections, "webhook", now)
    body = webhook_body(context, now)
    # One delivery id for every attempt of this action, so a receiver lands it once.
    signed = sign_delivery(credentials["secret"], body, sent_at=now, delivery_id=uuid.uuid4().hex)
    headers = {**config["headers"], "Content-Type": "application/json", **signed}
    return _post(make_client, config["url"], headers, body, config["timeout_seconds"], "webhook")


def deliver_slack(
    config: Mapping[str, Any],
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    make_client: HttpClientFactory,
    now: datetime,
) -> Outcome:
    credentials = usable_credentials(connections, "slack", now)
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
) -> Outcome:
    request = PageRequest(
        endpoint=f"rule_action:{kind}", url=url, method="POST", headers=headers, body=body
    )
    with make_client(timeout) as client:
        try:
            response = client.send(request, trusted=False, stats=FetchStats())
        except FetchError as exc:
            # The reason, not str(exc): that carries the URL, and a Slack URL is a credential.
            what = "timed out" if isinstance(exc, FetchTimeoutError) else "failed"
            return Outcome(
                "FAILED",
                exc.attempts,
                http_status=exc.status_code,
                error=f"{kind} POST {what} after {exc.attempts} attempt(s): {exc.reason}",
            )
    return Outcome("SUCCESS", response.attempts, http_status=response.status_code)


def deliver_email(
    config: Mapping[str, Any],
    context: ActionContext,
    connections: Mapping[str, Mapping[str, Any]],
    connect: SmtpFactory,
    now: datetime,
) -> Outcome:
    credentials = usable_credentials(connections, "email", now)
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
        raise ActionFailed(f"email: SMTP host refused: {exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        failure = f"email: cannot connect to the SMTP server: {_smtp_text(exc)}"
        raise ActionFailed(failure, attempts=1) from None
    try:
        if "username" in credentials:
            client.login(credentials["username"], credentials["password"])
        reply = _deliver(client, credentials["from_address"], config["to"], message)
    except smtplib.SMTPResponseException as exc:
        reply = f"{exc.smtp_code} {_decoded(exc.smtp_error)}"
        failure = f"email: SMTP server refused: {reply}"
        raise ActionFailed(failure, attempts=1, smtp_reply=reply) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ActionFailed(f"email: SMTP failed: {_smtp_text(exc)}", attempts=1) from None
    finally:
        _quit(client)
    return Outcome("SUCCESS", 1, smtp_reply=reply)


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
        raise ActionFailed(
            f"email: {len(refused)} of {len(recipients)} recipient(s) refused, nothing sent: "
            f"{listed}",
            attempts=1,
            smtp_reply=next(iter(refused.values())),
        )
    code, reply = client.data(message.as_bytes(policy=SMTP_POLICY))
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return f"{code} {_decoded(reply)}"


def usable_credentials(
    connections: Mapping[str, Mapping[str, Any]], platform: str, now: datetime
) -> Mapping[str, Any]:
    """The platform connection's credentials, or ActionFailed saying why they cannot be used."""
    connection = connections.get(platform)
    if connection is None:
        raise ActionFailed(f"{platform}: no {platform} connection; add one in the settings")
    status = connection.get("status") or "ACTIVE"
    if status != "ACTIVE":
        raise ActionFailed(f"{platform}: the {platform} connection is {status}; reconnect it")
    expires_at = _moment(connection.get("expires_at"))
    if expires_at is not None and expires_at <= now:
        raise ActionFailed(
            f"{platform}: the {platform} connection expired at "
            f"{expires_at.astimezone(UTC).isoformat()}; reconnect it"
        )
    credentials = connection.get("credentials")
    fault = schema_fault(CONNECTION_VALIDATORS[platform], credentials, "credentials")
    if fault is not None:
        raise ActionFailed(f"{platform}: the {platform} connection is unusable: {fault.reason}")
    assert isinstance(credentials, Mapping)  # the schema says it is an object
    if platform == "email" and "username" in credentials and credentials["tls_mode"] == "none":
        raise ActionFailed(
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
            raise ActionFailed("connection expires_at is not an ISO-8601 time") from None
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


def _decoded(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _smtp_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
