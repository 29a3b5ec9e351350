"""`predict-pipeline connections add|list|revoke`: the action connections (webhook signing
secret, Slack incoming-webhook URL, SMTP server) a user's rules deliver through.

Credentials come from a JSON file or stdin, never from the command line (shell history and
`ps` would keep them). They are checked against CONNECTION_SCHEMAS (whose messages never repeat
a value), encrypted with AES-256-GCM bound to the row (`aad = prediction_action_connections:
<id>`, as the actions job decrypts them) and never printed, logged or audited. A connection is
private to its user (the spec's RLS; every command runs `--as` that user). Revoking one wipes
its ciphertext and marks it REVOKED, so its actions fail with that reason; adding the platform
again replaces a revoked, expired or failed connection in place.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.cli.acting import (
    acting_as,
    acting_user_option,
    command,
    emit,
    table,
    when_argument,
)
from predict_pipeline.errors import CommandError

PLATFORMS = ("webhook", "slack", "email")
_LISTED = ("id", "platform", "status", "scopes", "expires_at", "last_used_at", "created_at")


class ConnectionsCommandError(CommandError):
    pass


def _credentials(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectionsCommandError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConnectionsCommandError(f"{path}: credentials are UTF-8 JSON") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text itself is a secret.
        raise ConnectionsCommandError(
            f"{path}: not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None
    if not isinstance(value, dict):
        raise ConnectionsCommandError(f"{path}: credentials are a JSON object")
    return value


def _checked(platform: str, credentials: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    from predict_pipeline.rules import schema_fault
    from predict_pipeline.rules.action_schemas import CONNECTION_SCHEMAS

    fault = schema_fault(
        Draft202012Validator(CONNECTION_SCHEMAS[platform]), credentials, "credentials"
    )
    if fault is not None:
        raise ConnectionsCommandError(f"invalid {platform} credentials: {fault.reason}")
    if platform == "email" and "username" in credentials and credentials["tls_mode"] == "none":
        raise ConnectionsCommandError(
            "invalid email credentials: a password would travel unencrypted; "
            "set tls_mode to starttls or tls"
        )


def _add(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.secrets import load_key_from_env

    credentials = _credentials(args.credentials_file)
    _checked(args.platform, credentials)
    target = bootstrap(require_key=True)  # the key this database's secrets use, or nothing
    key = load_key_from_env()
    with acting_as(target.app_url, args.as_user) as (conn, user_id):
        try:
            connection_id, existing = _store(conn, user_id, args, credentials, key)
        except psycopg.errors.UniqueViolation:
            # Another `connections add` of the same platform committed first.
            raise ConnectionsCommandError(
                f"{args.as_user} has a {args.platform} connection already: list them "
                "(predict-pipeline connections list)"
            ) from None
    return emit(
        args,
        {"connection_id": connection_id, "platform": args.platform, "status": "ACTIVE"},
        lambda: [
            f"{args.platform} connection {connection_id} "
            f"{'replaced' if existing else 'added'} (credentials encrypted)"
        ],
    )


def _store(conn, user_id, args, credentials, key) -> tuple[uuid.UUID, bool]:
    """Insert the connection, or replace the user's unusable one of that platform, encrypted
    and audited in one transaction; returns (its id, whether one was replaced)."""
    from predict_pipeline.audit import record_audits
    from predict_pipeline.rules.execute import connection_aad
    from predict_pipeline.secrets import encrypt_json

    with conn.transaction():
        existing = conn.execute(
            "SELECT id, status FROM prediction_action_connections"
            " WHERE user_id = %s AND platform = %s FOR UPDATE",
            (user_id, args.platform),
        ).fetchone()
        if existing is not None and existing[1] == "ACTIVE":
            raise ConnectionsCommandError(
                f"{args.as_user} has an active {args.platform} connection ({existing[0]}): "
                "revoke it first (predict-pipeline connections revoke)"
            )
        connection_id = existing[0] if existing else uuid.uuid4()
        envelope = encrypt_json(credentials, key=key, aad=connection_aad(connection_id))
        conn.execute(
            """INSERT INTO prediction_action_connections
                 (id, user_id, platform, credentials, scopes, status, expires_at)
               VALUES (%s, %s, %s, %s, %s, 'ACTIVE', %s)
               ON CONFLICT (id) DO UPDATE SET credentials = EXCLUDED.credentials,
                 scopes = EXCLUDED.scopes, status = 'ACTIVE', expires_at = EXCLUDED.expires_at,
                 error_message = NULL, updated_at = now()""",
            (
                connection_id,
                user_id,
                args.platform,
                Jsonb(envelope),
                args.scope or None,
                args.expires_at,
            ),
        )
        record_audits(
            conn,
            action="connection.replaced" if existing else "connection.created",
            resource_type="prediction_action_connections",
            actor_type="user",
            actor_id=user_id,
            # Which fields were set, never their values.
            entries=[(connection_id, {"platform": args.platform, "fields": sorted(credentials)})],
        )
    return connection_id, existing is not None


def _list(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap

    target = bootstrap()
    with acting_as(target.app_url, args.as_user) as (conn, _):
        # The columns named one by one: `credentials` is never read here.
        rows = conn.execute(
            "SELECT id, platform, status, scopes, expires_at, last_used_at, created_at"
            " FROM prediction_action_connections ORDER BY platform, id"
        ).fetchall()
    connections = [dict(zip(_LISTED, row, strict=True)) for row in rows]
    return emit(
        args,
        {"connections": connections},
        lambda: (
            table(
                [
                    (
                        c["id"],
                        c["platform"],
                        c["status"],
                        f"{c['expires_at']:%Y-%m-%d %H:%M}" if c["expires_at"] else "never",
                        f"{c['last_used_at']:%Y-%m-%d %H:%M}" if c["last_used_at"] else "never",
                    )
                    for c in connections
                ],
                ("connection id", "platform", "status", "expires", "last used"),
            )
            if connections
            else [f"no connection of {args.as_user}"]
        ),
    )


def _revoke(args: argparse.Namespace) -> int:
    from predict_pipeline.audit import record_audits
    from predict_pipeline.db.bootstrap import bootstrap

    try:
        connection_id: uuid.UUID | None = uuid.UUID(args.connection)
    except ValueError:
        connection_id = None
        if args.connection not in PLATFORMS:
            raise ConnectionsCommandError(
                f"not a connection id or platform: {args.connection} ({', '.join(PLATFORMS)})"
            ) from None
    target = bootstrap()
    with acting_as(target.app_url, args.as_user) as (conn, user_id), conn.transaction():
        # Under RLS: another user's connection is not there to find.
        row = conn.execute(
            "SELECT id, platform, status FROM prediction_action_connections"
            " WHERE (id = %s OR (%s::uuid IS NULL AND platform = %s)) FOR UPDATE",
            (connection_id, connection_id, args.connection),
        ).fetchone()
        if row is None:
            raise ConnectionsCommandError(f"no connection {args.connection} of {args.as_user}")
        found_id, platform, status = row
        if status == "REVOKED":
            return emit(
                args,
                {"connection_id": found_id, "status": "REVOKED", "changed": False},
                lambda: [f"{platform} connection {found_id} is already revoked"],
            )
        # The ciphertext goes too: a revoked secret is not kept to leak later.
        conn.execute(
            "UPDATE prediction_action_connections SET status = 'REVOKED',"
            " credentials = '{}'::jsonb, updated_at = now() WHERE id = %s",
            (found_id,),
        )
        record_audits(
            conn,
            action="connection.revoked",
            resource_type="prediction_action_connections",
            actor_type="user",
            actor_id=user_id,
            entries=[
                (found_id, {"platform": platform, "status": {"from": status, "to": "REVOKED"}})
            ],
        )
    return emit(
        args,
        {"connection_id": found_id, "status": "REVOKED", "changed": True},
        lambda: [f"{platform} connection {found_id} revoked (its credentials are erased)"],
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    connections = commands.add_parser(
        "connections", help="where rule actions deliver: webhook, Slack, email (encrypted)"
    ).add_subparsers(dest="connections_command", required=True)
    me = "you@example.com"

    add = command(
        connections,
        "add",
        "add a connection; its credentials are read from a JSON file (or - for stdin) and "
        "stored encrypted",
        f"predict-pipeline connections add slack --credentials-file slack.json --as {me}  "
        '# slack.json: {"webhook_url": "https://hooks.slack.com/services/..."}',
    )
    add.add_argument("platform", choices=PLATFORMS)
    add.add_argument(
        "--credentials-file",
        required=True,
        metavar="FILE",
        help="JSON credentials (webhook: secret; slack: webhook_url; email: host, port, "
        "tls_mode, from_address, username, password); - reads stdin",
    )
    acting_user_option(add, required=True, what="the connection's owner")
    add.add_argument("--scope", action="append", metavar="SCOPE", help="a granted scope")
    add.add_argument("--expires-at", type=when_argument, help="when the credentials expire")
    add.set_defaults(func=_add)

    listing = command(
        connections,
        "list",
        "your connections: platform, status, expiry (never the credentials)",
        f"predict-pipeline connections list --as {me}",
    )
    acting_user_option(listing, required=True, what="their connections only")
    listing.set_defaults(func=_list)

    revoke = command(
        connections,
        "revoke",
        "revoke a connection (by id or platform): its credentials are erased",
        f"predict-pipeline connections revoke slack --as {me}",
    )
    revoke.add_argument("connection", help="the connection's id, or its platform")
    acting_user_option(revoke, required=True, what="the connection's owner")
    revoke.set_defaults(func=_revoke)
