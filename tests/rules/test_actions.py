"""Rule actions against real local servers: a scripted HTTP server and an aiosmtpd SMTP server."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jsonschema import Draft202012Validator

from predict_pipeline.rules import RuleError
from predict_pipeline.rules.action_schemas import (
    ACTION_SCHEMAS,
    CONNECTION_SCHEMAS,
    EXPLANATION_TRIGGER_TYPES,
    validate_actions,
)
from predict_pipeline.rules.channels import http_client_factory, smtp_factory, webhook_body
from predict_pipeline.rules.execute import (
    ActionResult,
    DatabaseAction,
    execution_status,
    run_actions,
)
from predict_pipeline.rules.templates import ActionContext, render_template, template_values
from predict_pipeline.rules.trigger_schemas import TRIGGER_TYPES, validate_rule
from predict_pipeline.rules.triggers import EventState, evaluate
from predict_pipeline.sources.push.signature import verify_signature
from tests.support.http_server import Reply

RULE_ID = "9a1c5e7b-3d2f-4b6a-8c0e-1f2a3b4c5d6e"
EVENT_ID = "0b7f4c1e-8a52-4d0e-9c1f-3f6c2a9e7d10"
CAMPAIGN_ID = "5d3e8f20-1b6a-4c7e-a4d2-9e0f1c2b3a45"
NOW = dt.datetime(2026, 3, 2, 14, 5, 30, tzinfo=dt.UTC)
WEBHOOK_SECRET = "whsec-4f9a1c0d7e2b8a6f"
SLACK_PATH = "/services/T0001/B0002/slack-token-xyz987"
SMTP_PASSWORD = "smtp-pass-Qm8#rT2v"
CONNECT_HEADER_TOKEN = "Bearer user-header-token-771"


def firing_context(title: str = "Fed cuts rates in March") -> ActionContext:
    trigger = validate_rule("PROBABILITY_CROSSES_ABOVE", {"threshold": 0.7})
    state = EventState(
        event_id=EVENT_ID,
        as_of=dt.datetime(2026, 3, 2, 14, 5, tzinfo=dt.UTC),
        title=title,
        previous_probability=0.65,
        current_probability=0.72,
    )
    firing = evaluate(trigger, state)
    assert firing is not None
    return ActionContext(rule_id=RULE_ID, rule_name="Fed above 70%", firing=firing)


def active(credentials: dict, **row) -> dict:
    return {"status": "ACTIVE", "expires_at": None, "credentials": credentials} | row


@pytest.fixture
def http(sleeps):
    """Fast, recorded backoff (`sleeps` and `server` come from tests/conftest.py); loopback
    allowed so the scripted server can be reached."""
    return http_client_factory(
        max_retries=2, allow_private_hosts=("127.0.0.1",), sleep=sleeps.append, rng=lambda: 0.5
    )


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every accepted message."""

    envelopes: list[Envelope] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.sessions.append(session)
        return "250 2.0.0 Message accepted for delivery"

    def message(self, index: int = 0) -> email.message.EmailMessage:
        # On the wire lines end in CRLF; read the message as a mailbox stores it, with LF.
        raw = self.envelopes[index].original_content.replace(b"\r\n", b"\n")
        return email.message_from_bytes(raw, policy=email.policy.default)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A plain SMTP server on 127.0.0.1 (no TLS, no AUTH)."""
    handler = Inbox()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="mx.test"
    )
    controller.start()
    yield handler, controller.port
    controller.stop()


@dataclass
class Certificate:
    cert_file: Path
    key_file: Path
    pem: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.pem)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, trusted only by the client context built on it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(folder / "cert.pem", folder / "key.pem", pem.decode("ascii"))


def only_our_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        b"alerts@predict.test",
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def email_connection(port: int, **credentials) -> dict:
    base = {
        "host": "127.0.0.1",
        "port": port,
        "tls_mode": "none",
        "from_address": "alerts@predict.test",
    }
    return active(base | credentials)


def run(actions, *, connections=None, http=None, smtp=None, database=None, context=None):
    def no_database(action: DatabaseAction) -> None:
        raise AssertionError(f"unexpected database action {action.type}")

    return run_actions(
        actions,
        context=context or firing_context(),
        connections=connections or {},
        http_client_factory=http or http_client_factory(),
        smtp_factory=smtp or smtp_factory(),
        database_executor=database or no_database,
        now=NOW,
    )


def serialised(results: list[ActionResult]) -> str:
    return json.dumps([result.as_json() for result in results])


# ---------------------------------------------------------------------------------------------
# Schemas and validation


def test_every_action_and_connection_schema_is_a_documented_2020_12_schema():
    for kind, schema in ACTION_SCHEMAS.items():
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False, kind
        assert schema["description"], kind
        for prop, spec in schema["properties"].items():
            assert spec.get("description"), f"{kind}.{prop} has no description"
    for schema in CONNECTION_SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


def test_validate_actions_fills_defaults():
    configs = validate_actions(
        [
            {"type": "webhook", "url": "https://hooks.example.com/predict"},
            {"type": "explain"},
        ]
    )
    assert configs == [
        {
            "type": "webhook",
            "url": "https://hooks.example.com/predict",
            "enabled": True,
            "headers": {},
            "timeout_seconds": 10,
        },
        {"type": "explain", "enabled": True, "lookback_hours": 24},
    ]


@pytest.mark.parametrize(
    ("actions", "reason"),
    [
        ({"type": "slack"}, "actions: must be a JSON array of action objects"),
        ('[{"type": "slack"', "actions: not valid JSON"),
        ([{"type": "sms"}], "actions[0].type: must be one of webhook, slack, email"),
        ([{"type": "webhook"}], "actions[0]: missing required field 'url'"),
        (
            [{"type": "webhook", "url": "ftp://files.example.com/x"}],
            "actions[0].url: must match the pattern ^https?://",
        ),
        (
            [
                {
                    "type": "webhook",
                    "url": "https://x.example.com",
                    "headers": {"x-predict-signature": "a"},
                }
            ],
            "actions[0].headers: x-predict-signature is set by the webhook action",
        ),
        (
            [{"type": "slack", "text": "{event_title} {password}"}],
            "actions[0].text: unknown placeholder {password}; known: as_of, campaign_id",
        ),
        (
            [{"type": "slack", "text": "{event_title.__class__}"}],
            "actions[0].text: unknown placeholder {event_title.__class__}",
        ),
        (
            [{"type": "email", "to": ["ops@example.com"], "subject": "{probability!r}"}],
            "actions[0].subject: placeholder {probability}: conversions such as !r",
        ),
        (
            [{"type": "email", "to": ["ops@example.com"], "body": "{probability:>999999}"}],
            "actions[0].body: placeholder {probability}: format spec '>999999' is not allowed",
        ),
        (
            [{"type": "email", "to": ["ops@example.com"], "body": "50% {"}],
            "actions[0].body: not a valid template",
        ),
        ([{"type": "email", "to": ["not an address"]}], "actions[0].to[0]: must match the pattern"),
        (
            [{"type": "explain", "lookback_hours": 0}],
            "actions[0].lookback_hours: must be at least 1",
        ),
    ],
)
def test_invalid_actions_give_a_rule_error(actions, reason):
    error = validate_actions(actions)
    assert isinstance(error, RuleError)
    assert error.reason.startswith(reason), error.reason


def test_an_invalid_header_value_is_not_echoed():
    actions = [
        {
            "type": "webhook",
            "url": "https://x.example.com",
            "headers": {"Authorization": "Bearer sk-live-123\r\nX-Evil: 1"},
        }
    ]
    error = validate_actions(actions)
    assert isinstance(error, RuleError)
    assert "sk-live-123" not in error.reason
    assert error.reason == "actions[0].headers.Authorization: must match the pattern ^[^\\r\\n]*$"


def test_templates_fill_values_and_never_reach_attributes():
    values = template_values(firing_context(), NOW)
    assert values["probability"] == 0.72
    text = render_template("{event_title}: {probability:.0%} (was {previous_probability})", values)
    assert text == "Fed cuts rates in March: 72% (was 0.65)"
    assert render_template("{ratio:.1f}x", values) == "n/ax"  # not a value of this trigger
    assert render_template("{event_title:.2f}", values) == "Fed cuts rates in March"
    assert render_template("{event_title.__class__}", values) == "n/a"


# ---------------------------------------------------------------------------------------------
# Webhook


def test_webhook_is_signed_over_the_exact_body_and_retried_after_a_503(server, http, sleeps):
    server.add("/hooks/predict", Reply(503, b"busy"), Reply(200, b"ok"))
    actions = [
        {
            "type": "webhook",
            "url": server.url("/hooks/predict"),
            "headers": {"Authorization": CONNECT_HEADER_TOKEN},
            "timeout_seconds": 2,
        }
    ]
    connections = {"webhook": active({"secret": WEBHOOK_SECRET})}
    results = run(actions, connections=connections, http=http)

    assert [r.as_json() | {"duration_ms": 0} for r in results] == [
        {
            "index": 0,
            "type": "webhook",
            "status": "SUCCESS",
            "http_status": 200,
            "smtp_reply": None,
            "duration_ms": 0,
            "attempts": 2,
            "error": None,
        }
    ]
    assert sleeps == [0.25]  # one backoff: rng 0.5 x base 0.5 s
    first, second = server.received
    assert first.body == second.body == webhook_body(firing_context(), NOW)
    headers = second.headers
    assert headers["x-predict-timestamp"] == str(int(NOW.timestamp()))
    assert headers["x-predict-delivery"] == first.headers["x-predict-delivery"]  # one delivery
    message = f"{headers['x-predict-timestamp']}.{headers['x-predict-delivery']}.".encode()
    expected = hmac.new(WEBHOOK_SECRET.encode(), message + second.body, hashlib.sha256)
    assert headers["x-predict-signature"] == f"sha256={expected.hexdigest()}"
    verified = verify_signature(second.body, headers, WEBHOOK_SECRET.encode(), now=NOW)
    assert verified.delivery_id == headers["x-predict-delivery"]  # our webhook feeds agree
    assert second.headers["authorization"] == CONNECT_HEADER_TOKEN
    assert second.headers["content-type"] == "application/json"
    payload = json.loads(second.body)
    assert payload["rule"] == {"id": RULE_ID, "name": "Fed above 70%"}
    assert payload["event"] == {"id": EVENT_ID, "title": "Fed cuts rates in March"}
    assert payload["fired_at"] == "2026-03-02T14:05:30+00:00"
    assert payload["state_key"] == "PROBABILITY_CROSSES_ABOVE:0.65->0.72@2026-03-02T14:05:00+00:00"
    assert payload["trigger"]["values"] == {
        "probability": 0.72,
        "previous_probability": 0.65,
        "threshold": 0.7,
    }
    assert CONNECT_HEADER_TOKEN not in serialised(results)


def test_webhook_gives_up_after_the_retries(server, http):
    server.add("/hooks/down", Reply(503), Reply(502), Reply(503))
    actions = [{"type": "webhook", "url": server.url("/hooks/down")}]
    [result] = run(actions, connections={"webhook": active({"secret": WEBHOOK_SECRET})}, http=http)
    assert (result.status, result.http_status, result.attempts) == ("FAILED", 503, 3)
    assert result.error == ("webhook POST failed after 3 attempt(s): HTTP 503 Service Unavailable")


def test_webhook_timeouts_are_retried(server, sleeps):
    server.add("/hooks/slow", Reply(200, delay=1.0), Reply(200, delay=1.0))
    http = http_client_factory(
        max_retries=1, allow_private_hosts=("127.0.0.1",), sleep=sleeps.append, rng=lambda: 0.5
    )
    actions = [{"type": "webhook", "url": server.url("/hooks/slow"), "timeout_seconds": 0.2}]
    [result] = run(actions, connections={"webhook": active({"secret": WEBHOOK_SECRET})}, http=http)
    assert (result.status, result.http_status, result.attempts) == ("FAILED", None, 2)
    assert result.error.startswith("webhook POST timed out after 2 attempt(s): ReadTimeout")
    assert server.hits("/hooks/slow") == 2


def test_webhook_to_a_private_address_is_refused_before_any_request(server):
    actions = [{"type": "webhook", "url": server.url("/hooks/internal")}]
    connections = {"webhook": active({"secret": WEBHOOK_SECRET})}
    [result] = run(actions, connections=connections, http=http_client_factory())
    assert (result.status, result.attempts) == ("FAILED", 0)
    assert result.error == (
        "webhook POST failed after 0 attempt(s): 127.0.0.1, a loopback address; "
        "not in allow_private_hosts"
    )
    assert server.hits("/hooks/internal") == 0


# ---------------------------------------------------------------------------------------------
# Slack


def test_slack_receives_the_rendered_text_with_slack_characters_escaped(server, http):
    server.add(SLACK_PATH, Reply(200, b"ok"))
    connections = {"slack": active({"webhook_url": server.url(SLACK_PATH)})}
    actions = [{"type": "slack", "text": "<!here> {event_title} is at {probability:.0%}"}]
    context = firing_context(title="Rates <!channel> & bonds")
    [result] = run(actions, connections=connections, http=http, context=context)
    assert (result.status, result.http_status, result.attempts) == ("SUCCESS", 200, 1)
    [received] = server.received
    assert received.method == "POST"
    assert json.loads(received.body) == {
        "text": "<!here> Rates &lt;!channel&gt; &amp; bonds is at 72%"
    }


def test_slack_default_text(server, http):
    server.add(SLACK_PATH, Reply(200, b"ok"))
    connections = {"slack": active({"webhook_url": server.url(SLACK_PATH)})}
    run([{"type": "slack"}], connections=connections, http=http)
    assert json.loads(server.received[0].body) == {
        "text": "Fed above 70%: Fed cuts rates in March: "
        "probability crossed above 0.7 (0.65 → 0.72)"
    }


def test_a_slack_failure_does_not_leak_the_webhook_url(server, http):
    server.add(SLACK_PATH, Reply(404, b"no_service"))
    connections = {"slack": active({"webhook_url": server.url(SLACK_PATH)})}
    [result] = run([{"type": "slack"}], connections=connections, http=http)
    assert (result.status, result.http_status) == ("FAILED", 404)
    assert result.error == "slack POST failed after 1 attempt(s): HTTP 404 Not Found"
    assert "slack-token-xyz987" not in serialised([result])


# ---------------------------------------------------------------------------------------------
# Email


def test_email_arrives_with_subject_body_and_recipients(inbox):
    handler, port = inbox
    actions = [
        {
            "type": "email",
            "to": ["ops@example.com", "cmo@example.com"],
            "subject": "{event_title}\r\nBcc: victim@example.com",
            "body": "Now {probability:.0%}, was {previous_probability:.0%}.\nRule: {rule_name}",
        }
    ]
    smtp = smtp_factory(allow_private_hosts=("127.0.0.1",))
    [result] = run(actions, connections={"email": email_connection(port)}, smtp=smtp)
    assert (result.status, result.attempts) == ("SUCCESS", 1)
    assert result.smtp_reply == "250 2.0.0 Message accepted for delivery"
    [envelope] = handler.envelopes
    assert envelope.mail_from == "alerts@predict.test"
    assert envelope.rcpt_tos == ["ops@example.com", "cmo@example.com"]
    message = handler.message()
    # The line break of the rendered subject is folded away: no header can be injected.
    assert message["Subject"] == "Fed cuts rates in March Bcc: victim@example.com"
    assert message["Bcc"] is None
    assert message["To"] == "ops@example.com, cmo@example.com"
    assert message["From"] == "alerts@predict.test"
    assert message["Date"] == "Mon, 02 Mar 2026 14:05:30 +0000"
    assert message.get_content() == "Now 72%, was 65%.\nRule: Fed above 70%\n"


def test_email_with_the_default_templates_and_non_ascii_text(inbox):
    handler, port = inbox
    smtp = smtp_factory(allow_private_hosts=("127.0.0.1",))
    context = firing_context(title="Élection présidentielle 2027")
    [result] = run(
        [{"type": "email", "to": ["ops@example.com"]}],
        connections={"email": email_connection(port)},
        smtp=smtp,
        context=context,
    )
    assert result.status == "SUCCESS"
    message = handler.message()
    assert message["Subject"] == "[predict] Fed above 70%: Élection présidentielle 2027"
    assert message.get_content() == (
        "probability crossed above 0.7 (0.65 → 0.72)\n\n"
        f"Event: Élection présidentielle 2027 ({EVENT_ID})\n"
        "Rule: Fed above 70%\n"
        "Trigger: PROBABILITY_CROSSES_ABOVE\n"
        "Observed at: 2026-03-02T14:05:00+00:00\n"
        "Fired at: 2026-03-02T14:05:30+00:00\n"
    )


def test_email_over_starttls_with_login(certificate):
    handler = Inbox()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="mx.test",
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=only_our_login,
        auth_required=True,
    )
    controller.start()
    try:
        connection = email_connection(
            controller.port,
            tls_mode="starttls",
            username="alerts@predict.test",
            password=SMTP_PASSWORD,
        )
        smtp = smtp_factory(
            ssl_context=certificate.client_context(), allow_private_hosts=("127.0.0.1",)
        )
        [result] = run(
            [{"type": "email", "to": ["ops@example.com"]}],
            connections={"email": connection},
            smtp=smtp,
        )
    finally:
        controller.stop()
    assert result.status == "SUCCESS", result.error
    [session] = handler.sessions
    assert session.authenticated is True
    assert session.ssl is not None  # the message travelled over TLS
    assert handler.message()["To"] == "ops@example.com"


def test_email_over_implicit_tls_with_a_wrong_password_fails_without_echoing_it(certificate):
    handler = Inbox()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="mx.test",
        ssl_context=certificate.server_context(),
        authenticator=only_our_login,
        auth_require_tls=False,  # the whole connection is TLS; aiosmtpd only counts STARTTLS
    )
    controller.start()
    try:
        wrong = "not-the-password-55"
        connection = email_connection(
            controller.port, tls_mode="tls", username="alerts@predict.test", password=wrong
        )
        smtp = smtp_factory(
            ssl_context=certificate.client_context(), allow_private_hosts=("127.0.0.1",)
        )
        [result] = run(
            [{"type": "email", "to": ["ops@example.com"]}],
            connections={"email": connection},
            smtp=smtp,
        )
    finally:
        controller.stop()
    assert (result.status, result.attempts) == ("FAILED", 1)
    assert result.smtp_reply == "535 5.7.8 Authentication credentials invalid"
    assert (
        result.error == "email: SMTP server refused: 535 5.7.8 Authentication credentials invalid"
    )
    assert wrong not in serialised([result])
    assert handler.envelopes == []


def test_email_to_a_private_host_is_refused_by_the_ssrf_guard(inbox):
    handler, port = inbox
    [result] = run(
        [{"type": "email", "to": ["ops@example.com"]}],
        connections={"email": email_connection(port)},
        smtp=smtp_factory(),
    )
    assert (result.status, result.attempts) == ("FAILED", 0)
    assert result.error == (
        "email: SMTP host refused: 127.0.0.1, a loopback address; not in allow_private_hosts"
    )
    assert handler.envelopes == []


def test_a_password_is_never_sent_without_tls(inbox):
    handler, port = inbox
    connection = email_connection(port, username="alerts@predict.test", password=SMTP_PASSWORD)
    [result] = run(
        [{"type": "email", "to": ["ops@example.com"]}],
        connections={"email": connection},
        smtp=smtp_factory(allow_private_hosts=("127.0.0.1",)),
    )
    assert result.status == "FAILED"
    assert result.error == (
        "email: the email connection would send its password unencrypted; "
        "set tls_mode to starttls or tls"
    )


# ---------------------------------------------------------------------------------------------
# Order, failures, connections


def test_a_raising_action_fails_alone_and_the_next_one_still_runs(server, http):
    server.add(SLACK_PATH, Reply(200, b"ok"))
    done: list[DatabaseAction] = []

    def database(action: DatabaseAction) -> None:
        if action.type == "campaign_pause":
            raise RuntimeError(f"campaign {action.campaign_id} is locked by another run")
        done.append(action)

    actions = [
        {"type": "campaign_pause", "campaign_id": CAMPAIGN_ID},
        {"type": "slack"},
        {"type": "explain"},
        {"type": "email", "to": ["ops@example.com"], "enabled": False},
    ]
    connections = {"slack": active({"webhook_url": server.url(SLACK_PATH)})}
    results = run(actions, connections=connections, http=http, database=database)

    assert [(r.index, r.type, r.status) for r in results] == [
        (0, "campaign_pause", "FAILED"),
        (1, "slack", "SUCCESS"),
        (2, "explain", "SUCCESS"),
        (3, "email", "SKIPPED"),
    ]
    assert results[0].error == (
        f"campaign_pause: RuntimeError: campaign {CAMPAIGN_ID} is locked by another run"
    )
    assert server.hits(SLACK_PATH) == 1
    [explain] = done
    assert explain.config == {"type": "explain", "enabled": True, "lookback_hours": 24}
    assert explain.context.firing.event_id == EVENT_ID
    assert execution_status(results) == "PARTIAL_FAILURE"
    json.loads(serialised(results))


def test_a_database_action_gets_its_rendered_reason():
    seen: list[DatabaseAction] = []
    actions = [{"type": "campaign_pause", "campaign_id": CAMPAIGN_ID}]
    [result] = run(actions, database=seen.append)
    assert (result.status, result.attempts) == ("SUCCESS", 1)
    [action] = seen
    assert (action.index, action.type, action.campaign_id) == (0, "campaign_pause", CAMPAIGN_ID)
    assert action.config["reason"] == ("Fed above 70%: probability crossed above 0.7 (0.65 → 0.72)")


def test_an_smtp_server_that_is_down_fails_and_the_webhook_after_it_runs(server, http):
    server.add("/hooks/after", Reply(200))
    actions = [
        {"type": "email", "to": ["ops@example.com"], "timeout_seconds": 2},
        {"type": "webhook", "url": server.url("/hooks/after")},
    ]
    connections = {
        "email": email_connection(free_port()),  # nothing listens there
        "webhook": active({"secret": WEBHOOK_SECRET}),
    }
    smtp = smtp_factory(allow_private_hosts=("127.0.0.1",))
    results = run(actions, connections=connections, http=http, smtp=smtp)
    assert [r.status for r in results] == ["FAILED", "SUCCESS"]
    assert results[0].error.startswith(
        "email: cannot connect to the SMTP server: ConnectionRefusedError"
    )
    assert execution_status(results) == "PARTIAL_FAILURE"


def test_unusable_connections_fail_their_action_with_a_clear_message(server, http):
    server.add(SLACK_PATH, Reply(200, b"ok"))
    server.add("/hooks/predict", Reply(200))
    actions = [
        {"type": "slack"},
        {"type": "webhook", "url": server.url("/hooks/predict")},
        {"type": "email", "to": ["ops@example.com"]},
        {"type": "webhook", "url": server.url("/hooks/predict")},
    ]
    expired = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    connections = {
        "slack": active({"webhook_url": server.url(SLACK_PATH)}, status="REVOKED"),
        "webhook": active({"secret": WEBHOOK_SECRET}, expires_at=expired),
        "email": active({"host": "smtp.example.com", "port": 99999, "password": SMTP_PASSWORD}),
    }
    results = run(actions, connections=connections, http=http)
    assert [(r.status, r.attempts, r.error) for r in results] == [
        ("FAILED", 0, "slack: the slack connection is REVOKED; reconnect it"),
        (
            "FAILED",
            0,
            "webhook: the webhook connection expired at 2026-03-01T12:00:00+00:00; reconnect it",
        ),
        (
            "FAILED",
            0,
            "email: the email connection is unusable: credentials: "
            "missing required field 'tls_mode', 'from_address'",
        ),
        (
            "FAILED",
            0,
            "webhook: the webhook connection expired at 2026-03-01T12:00:00+00:00; reconnect it",
        ),
    ]
    assert server.received == []
    assert execution_status(results) == "FAILED"
    text = serialised(results)
    for secret in (WEBHOOK_SECRET, SMTP_PASSWORD, "slack-token-xyz987"):
        assert secret not in text


def test_a_missing_connection_and_an_invalid_item_fail_alone(server, http):
    server.add("/hooks/ok", Reply(200))
    actions = [
        {"type": "slack"},
        {"type": "webhook"},
        {"type": "fax", "number": "+351 21 000 0000"},
        {"type": "webhook", "url": server.url("/hooks/ok")},
    ]
    connections = {"webhook": active({"secret": WEBHOOK_SECRET})}
    results = run(actions, connections=connections, http=http)
    assert [(r.type, r.status, r.error) for r in results] == [
        ("slack", "FAILED", "slack: no slack connection; add one in the settings"),
        ("webhook", "FAILED", "invalid action: actions[1]: missing required field 'url'"),
        (
            "unknown",
            "FAILED",
            "invalid action: actions[2].type: must be one of webhook, slack, email, "
            "campaign_pause, campaign_repredict, explain",
        ),
        ("webhook", "SUCCESS", None),
    ]


def test_actions_that_are_not_a_list_give_one_failed_result():
    [result] = run('{"type": "slack"}')
    assert result.as_json() == {
        "index": 0,
        "type": "unknown",
        "status": "FAILED",
        "http_status": None,
        "smtp_reply": None,
        "duration_ms": 0,
        "attempts": 0,
        "error": "actions: must be a JSON array",
    }


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "COMPLETED"),
        (["SUCCESS", "SUCCESS"], "COMPLETED"),
        (["SUCCESS", "SKIPPED"], "COMPLETED"),
        (["SKIPPED"], "COMPLETED"),
        (["FAILED", "SKIPPED"], "FAILED"),
        (["FAILED", "FAILED"], "FAILED"),
        (["SUCCESS", "FAILED"], "PARTIAL_FAILURE"),
    ],
)
def test_execution_status(statuses, expected):
    results = [ActionResult(i, "slack", status, 5, 1) for i, status in enumerate(statuses)]
    assert execution_status(results) == expected


def test_every_trigger_type_maps_to_an_explanation_trigger_type_the_table_accepts():
    # prediction_explanations.trigger_type CHECK constraint (sql/0002_tables.sql)
    accepted = {"PROBABILITY_SHIFT", "SENTIMENT_SHIFT", "ANOMALY", "DIVERGENCE", "RESOLUTION"}
    assert set(EXPLANATION_TRIGGER_TYPES) == set(TRIGGER_TYPES)
    assert set(EXPLANATION_TRIGGER_TYPES.values()) <= accepted
