"""`predict-pipeline`: the command line of the data platform."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from predict_pipeline.cli_events import add_commands as add_event_commands
from predict_pipeline.cli_feeds import add_commands as add_feed_commands
from predict_pipeline.cli_retention import add_commands as add_retention_commands
from predict_pipeline.cli_signals import add_commands as add_signal_commands
from predict_pipeline.cli_trust import add_commands as add_trust_commands
from predict_pipeline.config import DATABASE_URL_VAR, PROJECT_ROOT, Settings
from predict_pipeline.db.connection import DatabaseUnavailable, connect, resolve_database
from predict_pipeline.db.migrations import MigrationError, applied, discover, pending, upgrade
from predict_pipeline.errors import CommandError


def _db_upgrade(args: argparse.Namespace) -> int:
    target = resolve_database(Settings.from_env())
    with connect(target.app_url, role=None, autocommit=True) as conn:
        done = upgrade(conn)
    if done:
        for migration in done:
            print(f"applied {migration.path.name}")
    else:
        print("database is up to date")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    target = resolve_database(Settings.from_env())
    migrations = discover()
    with connect(target.app_url, role=None, autocommit=True) as conn:
        done = applied(conn)
        todo = pending(conn, migrations)
    for row in done:
        print(f"applied  {row.version:04d}_{row.name}.sql  {row.applied_at:%Y-%m-%d %H:%M:%S%z}")
    for migration in todo:
        print(f"pending  {migration.path.name}")
    return 0


def _db_stop_embedded(args: argparse.Namespace) -> int:
    from predict_pipeline.db.embedded import stop_embedded_server

    stopped = stop_embedded_server(Settings.from_env().state_dir)
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def _run(args: argparse.Namespace) -> int:
    from predict_pipeline.main_run import run_main

    return run_main()


def _dev(args: argparse.Namespace) -> int:
    from predict_pipeline.runtime import bootstrap

    bootstrap()
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    argv = ["dagster", "dev", "-w", workspace, "-h", args.host, "-p", str(args.port)]
    os.execv(dagster, argv)  # replaces this process: Ctrl-C goes straight to Dagster


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predict-pipeline",
        description=f"predict_pipeline data platform (database: ${DATABASE_URL_VAR}, "
        "or the embedded server when unset)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="schema migrations").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply pending migrations").set_defaults(func=_db_upgrade)
    db.add_parser("status", help="list applied and pending migrations").set_defaults(
        func=_db_status
    )

    db.add_parser("stop-embedded", help="stop the embedded server (data is kept)").set_defaults(
        func=_db_stop_embedded
    )

    commands.add_parser("run", help="migrate and run the main job (make run)").set_defaults(
        func=_run
    )

    add_feed_commands(commands)
    add_signal_commands(commands)
    add_event_commands(commands)
    add_trust_commands(commands)
    add_retention_commands(commands)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon on this database")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, DatabaseUnavailable, MigrationError) as exc:
        print(f"predict-pipeline: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
