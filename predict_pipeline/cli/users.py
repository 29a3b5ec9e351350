"""`predict-pipeline users add`: a row of the auth stub (auth.users) for a self-hosted install,
where no authentication service syncs users in. Audited as the service's act."""

from __future__ import annotations

import argparse
import re
import uuid

import psycopg

from predict_pipeline.cli.acting import command, emit
from predict_pipeline.errors import CommandError, uuid_argument

# One @, something on both sides, a dot in the domain: a typo, not RFC 5322, is what is refused.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UsersCommandError(CommandError):
    pass


def _email(text: str) -> str:
    if not _EMAIL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not an e-mail address: {text}")
    return text


def _add(args: argparse.Namespace) -> int:
    from predict_pipeline.audit import record_audits
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect

    target = bootstrap()
    user_id = args.id or uuid.uuid4()
    with connect(target.app_url, autocommit=True) as conn:
        try:
            with conn.transaction():
                taken = conn.execute(
                    "SELECT id FROM auth.users WHERE lower(email) = lower(%s) OR id = %s",
                    (args.email, user_id),
                ).fetchone()
                if taken is not None:
                    raise UsersCommandError(
                        f"a user with that e-mail or id exists already ({taken[0]})"
                    )
                conn.execute(
                    "INSERT INTO auth.users (id, email, name, is_active) VALUES (%s, %s, %s, true)",
                    (user_id, args.email, args.name),
                )
                record_audits(
                    conn,
                    action="user.created",
                    resource_type="auth.users",
                    entries=[(user_id, {"email": args.email, "via": "cli"})],
                )
        except psycopg.errors.UniqueViolation:
            # Added by someone else between the check and the insert.
            raise UsersCommandError("a user with that e-mail or id exists already") from None
    return emit(
        args,
        {"user_id": user_id, "email": args.email, "name": args.name},
        lambda: [f"user {user_id} added ({args.email})"],
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    users = commands.add_parser(
        "users", help="the auth stub's users, for a self-hosted install"
    ).add_subparsers(dest="users_command", required=True)
    add = command(
        users,
        "add",
        "add a user to auth.users (what an auth service would sync in)",
        "predict-pipeline users add you@example.com --name 'Your Name'",
    )
    add.add_argument("email", type=_email)
    add.add_argument("--name")
    add.add_argument("--id", type=uuid_argument, help="keep the id your auth service uses")
    add.set_defaults(func=_add)
