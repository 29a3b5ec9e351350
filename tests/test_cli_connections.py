"""`connections add|list|revoke` on a real database: credentials land encrypted (the plaintext
is nowhere in the row, the audit log or the output), decrypt as the actions job reads them,
are never listed, and stay private to their user."""

from __future__ import annotations

import json
import uuid

import pytest

from predict_pipeline.db.connection import connect
from predict_pipeline.rules.execute import connection_aad, user_connections
from predict_pipeline.secrets import decode_key, decrypt_json
from tests.support.cli import add_user, cli_environment, count, refused, run, run_json

ALICE, BOB = "alice@example.com", "bob@example.com"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/s3cr3t-slack-token-4242"
SMTP_PASSWORD = "smtp-password-never-shown"


@pytest.fixture
def world(db_url, tmp_path, capsys):
    with cli_environment(db_url, str(tmp_path / "state")) as key:
        alice, bob = add_user(capsys, ALICE), add_user(capsys, BOB)
        slack = tmp_path / "slack.json"
        slack.write_text(json.dumps({"webhook_url": SLACK_URL}))
        email = tmp_path / "email.json"
        email.write_text(
            json.dumps(
                {
                    "host": "smtp.example.com",
                    "port": 587,
                    "tls_mode": "starttls",
                    "from_address": "alerts@example.com",
                    "username": "alerts",
                    "password": SMTP_PASSWORD,
                }
            )
        )
        with connect(db_url, role=None, autocommit=True) as admin:
            yield {
                "key": key,
                "alice": alice,
                "bob": bob,
                "slack": str(slack),
                "email": str(email),
                "dir": tmp_path,
                "admin": admin,
                "db_url": db_url,
            }


def _everything_stored(admin) -> str:
    """Every connection and audit row as text: where a leaked secret would show."""
    rows = admin.execute(
        "SELECT to_jsonb(c)::text FROM prediction_action_connections c"
        " UNION ALL SELECT to_jsonb(a)::text FROM prediction_audit_log a"
    ).fetchall()
    return "\n".join(text for (text,) in rows)


def test_add_stores_ciphertext_that_the_actions_job_decrypts(world, capsys):
    code, out, err = run(
        capsys, "connections", "add", "slack", "--credentials-file", world["slack"], "--as", ALICE
    )
    assert code == 0, err
    connection_id = uuid.UUID(out.split()[2])
    assert out == f"slack connection {connection_id} added (credentials encrypted)\n"
    admin = world["admin"]
    user_id, platform, status, envelope = admin.execute(
        "SELECT user_id, platform, status, credentials FROM prediction_action_connections"
        " WHERE id = %s",
        (connection_id,),
    ).fetchone()
    assert (user_id, platform, status) == (world["alice"], "slack", "ACTIVE")
    assert set(envelope) == {"v", "alg", "kid", "nonce", "ct"}
    assert "s3cr3t" not in json.dumps(envelope) and "hooks.slack.com" not in json.dumps(envelope)
    assert "s3cr3t" not in _everything_stored(admin)
    key = decode_key(world["key"])
    assert decrypt_json(envelope, key=key, aad=connection_aad(connection_id)) == {
        "webhook_url": SLACK_URL
    }
    with connect(world["db_url"]) as conn:
        assert user_connections(conn, world["alice"], key)["slack"]["credentials"] == {
            "webhook_url": SLACK_URL
        }
    [(action, details)] = admin.execute(
        "SELECT action, details FROM prediction_audit_log WHERE resource_id = %s",
        (connection_id,),
    ).fetchall()
    assert (action, details) == (
        "connection.created",
        {"platform": "slack", "fields": ["webhook_url"]},
    )


def test_list_never_shows_a_secret(world, capsys):
    for platform in ("slack", "email"):
        run_json(
            capsys, "connections", "add", platform, "--credentials-file", world[platform],
            "--as", ALICE,
        )  # fmt: skip
    listed = run_json(capsys, "connections", "list", "--as", ALICE)["connections"]
    assert [(c["platform"], c["status"]) for c in listed] == [
        ("email", "ACTIVE"),
        ("slack", "ACTIVE"),
    ]
    assert set(listed[0]) == {
        "id", "platform", "status", "scopes", "expires_at", "last_used_at", "created_at",
    }  # fmt: skip
    code, text, _ = run(capsys, "connections", "list", "--as", ALICE)
    for shown in (json.dumps(listed), text):
        for secret in (SLACK_URL, "s3cr3t", SMTP_PASSWORD, "alerts@example.com", '"ct"'):
            assert secret not in shown
    assert SMTP_PASSWORD not in _everything_stored(world["admin"])


@pytest.mark.parametrize(
    ("platform", "content", "line"),
    [
        ("slack", '{"url": "https://x"}', "invalid slack credentials: credentials: missing "
         "required field 'webhook_url'"),
        ("slack", '{"webhook_url": "not a url"}', "invalid slack credentials: "
         "credentials.webhook_url: must match the pattern ^https?://[^\\s]+$"),
        ("webhook", '{"secret": "short-secret"}', "invalid webhook credentials: "
         "credentials.secret: must be at least 16 character(s) long"),
        ("email", '{"host": "smtp.example.com", "port": 25, "tls_mode": "none", "from_address":'
         ' "a@example.com", "username": "u", "password": "hunter2-password"}',
         "invalid email credentials: a password would travel unencrypted; set tls_mode to "
         "starttls or tls"),
        ("slack", '{"webhook_url": "https://hooks.example/secret-tail"', None),
        ("slack", '["https://hooks.example/secret-tail"]', None),
    ],
)  # fmt: skip
def test_add_refuses_bad_credentials_without_repeating_them(world, capsys, platform, content, line):
    path = world["dir"] / "bad.json"
    path.write_text(content)
    said = refused(
        capsys, "connections", "add", platform, "--credentials-file", str(path), "--as", ALICE
    )
    if line:
        assert said == f"predict-pipeline: error: {line}"
    for secret in ("hunter2", "secret-tail", "short-secret"):
        assert secret not in said
    assert count(world["admin"], "SELECT count(*) FROM prediction_action_connections") == 0


def test_another_user_can_neither_see_nor_revoke_a_connection(world, capsys):
    created = run_json(
        capsys, "connections", "add", "slack", "--credentials-file", world["slack"], "--as", ALICE
    )
    connection_id = created["connection_id"]
    assert run_json(capsys, "connections", "list", "--as", BOB)["connections"] == []
    for target in (connection_id, "slack"):
        line = refused(capsys, "connections", "revoke", target, "--as", BOB)
        assert line == f"predict-pipeline: error: no connection {target} of {BOB}"
    assert world["admin"].execute(
        "SELECT status FROM prediction_action_connections WHERE id = %s", (connection_id,)
    ).fetchone() == ("ACTIVE",)


def test_revoke_erases_the_secret_and_the_actions_see_it_revoked(world, capsys):
    created = run_json(
        capsys, "connections", "add", "slack", "--credentials-file", world["slack"], "--as", ALICE
    )
    connection_id = uuid.UUID(created["connection_id"])
    line = refused(
        capsys, "connections", "add", "slack", "--credentials-file", world["slack"], "--as", ALICE
    )
    assert line == (
        f"predict-pipeline: error: {ALICE} has an active slack connection ({connection_id}): "
        "revoke it first (predict-pipeline connections revoke)"
    )
    revoked = run_json(capsys, "connections", "revoke", "slack", "--as", ALICE)
    assert revoked == {"connection_id": str(connection_id), "status": "REVOKED", "changed": True}
    admin = world["admin"]
    assert admin.execute(
        "SELECT status, credentials FROM prediction_action_connections WHERE id = %s",
        (connection_id,),
    ).fetchone() == ("REVOKED", {})
    with connect(world["db_url"]) as conn:
        slack = user_connections(conn, world["alice"], decode_key(world["key"]))["slack"]
    assert (slack["status"], slack["credentials"]) == ("REVOKED", {})
    assert (
        run_json(capsys, "connections", "revoke", str(connection_id), "--as", ALICE)["changed"]
        is False
    )
    # Adding the platform again replaces the revoked row in place, with a fresh envelope.
    again = run_json(
        capsys, "connections", "add", "slack", "--credentials-file", world["slack"], "--as", ALICE
    )
    assert again["connection_id"] == str(connection_id)
    actions = admin.execute(
        "SELECT action FROM prediction_audit_log WHERE resource_id = %s ORDER BY created_at, id",
        (connection_id,),
    ).fetchall()
    assert [a for (a,) in actions] == [
        "connection.created",
        "connection.revoked",
        "connection.replaced",
    ]


def test_credentials_can_come_from_stdin(world, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"secret": "x" * 32})))
    created = run_json(
        capsys, "connections", "add", "webhook", "--credentials-file", "-", "--as", ALICE
    )
    envelope = (
        world["admin"]
        .execute(
            "SELECT credentials FROM prediction_action_connections WHERE id = %s",
            (created["connection_id"],),
        )
        .fetchone()[0]
    )
    assert decrypt_json(
        envelope,
        key=decode_key(world["key"]),
        aad=connection_aad(created["connection_id"]),
    ) == {"secret": "x" * 32}


def test_help_of_every_connections_command_ends_with_an_example(capsys):
    for name in ("add", "list", "revoke"):
        code, out, _ = run(capsys, "connections", name, "--help")
        assert code == 0
        assert (
            out.split("example:\n", 1)[1].strip().startswith(f"predict-pipeline connections {name}")
        )
