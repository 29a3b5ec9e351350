"""What the configuration commands (rules, connections, events, calibration, users) share: who
acts (`--as USER`), output as text or `--json`, and `--help` that ends with an example.

`--as USER` runs the command's reads and writes as the application role `predict_app` with
`app.user_id` set to that user, so the spec's RLS decides what they see and may change, exactly
as for the product's own API; nothing here restates those policies. Without `--as` (where a
command allows it) the command reads as the pipeline role: the operator's view of every tenant.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from predict_pipeline.errors import CommandError


def command(
    parent: argparse._SubParsersAction, name: str, summary: str, example: str
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with a worked example, and which can answer in JSON."""
    parser = parent.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def acting_user_option(parser: argparse.ArgumentParser, *, required: bool, what: str) -> None:
    parser.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        required=required,
        help=f"act as this user (id or e-mail): {what}",
    )


def json_argument(text: str) -> Any:
    """argparse type for JSON text: a usage error naming the position, never the value."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None


def when_argument(text: str) -> datetime:
    """argparse type for a UTC time given as ISO 8601 with an offset (or Z)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time: {text} (e.g. 2026-03-01T12:00Z)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"give the offset too: {text} (e.g. 2026-03-01T12:00Z)")
    return moment


def find_acting_user(conn: psycopg.Connection, who: str) -> uuid.UUID:
    from predict_pipeline.tenancy import find_user

    try:
        return find_user(conn, who)
    except LookupError as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def acting_as(app_url: str, who: str) -> Iterator[tuple[psycopg.Connection, uuid.UUID]]:
    """A connection as predict_app acting as the user `who` names (under the spec's RLS)."""
    from predict_pipeline.db.connection import APP_ROLE, connect

    with connect(app_url, autocommit=True) as lookup:
        user_id = find_acting_user(lookup, who)
    with connect(app_url, role=APP_ROLE, autocommit=True) as conn:
        conn.execute("SELECT set_config('app.user_id', %s, false)", (str(user_id),))
        yield conn, user_id


@contextmanager
def reader(app_url: str, who: str | None) -> Iterator[tuple[psycopg.Connection, uuid.UUID | None]]:
    """As `acting_as` when `who` is given, else the pipeline role's view of every tenant."""
    from predict_pipeline.db.connection import connect

    if who:
        with acting_as(app_url, who) as acting:
            yield acting
        return
    with connect(app_url, autocommit=True) as conn:
        yield conn, None


def plain(value: Any) -> Any:
    """A value as JSON: times ISO 8601, decimals as numbers, ids as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def emit(args: argparse.Namespace, payload: Any, text: Callable[[], Sequence[str]]) -> int:
    """Print `payload` as one JSON document with --json, else the lines `text` makes."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(plain(payload), ensure_ascii=False) + "\n")
    else:
        for line in text():
            print(line)
    return 0


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> list[str]:
    """Rows as aligned text columns under their headers."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines
