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
from predict_pipeline.config import (
    DATABASE_URL_VAR,
    HTTP_MODE_VAR,
    PROJECT_ROOT,
    REPLAY_DIR_VAR,
    Settings,
)
from predict_pipeline.db.connection import DatabaseUnavailable, connect, resolve_database
from predict_pipeline.db.migrations import MigrationError, applied, discover, pending, upgrade
from predict_pipeline.errors import CommandError
from predict_pipeline.plans import PlanLimitError, plan_limits


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
    from predict_pipeline.demo import REPLAY_DIR
    from predict_pipeline.runtime import bootstrap

    # As `run`: recorded payloads unless told otherwise, so the demo feeds the sensor polls
    # keep working offline instead of failing until they are auto-disabled.
    if not os.environ.get(HTTP_MODE_VAR):
        os.environ[HTTP_MODE_VAR] = "replay"
        os.environ.setdefault(REPLAY_DIR_VAR, str(REPLAY_DIR))
    target = resolve_database(Settings.from_env())
    with connect(target.app_url, role=None, autocommit=True) as conn:
        migrated = conn.execute("SELECT to_regclass('public.prediction_data_feeds')").fetchone()
        has_feeds = (
            migrated[0] is not None
            and conn.execute("SELECT EXISTS (SELECT 1 FROM prediction_data_feeds)").fetchone()[0]
        )
    if not has_feeds:
        # A fresh database: the UI opens on the demo's materialised graph, not an empty one.
        print("predict-pipeline dev: no feeds yet, running the main job first (make run)")
        from predict_pipeline.main_run import run_main

        if run_main() != 0:
            print("predict-pipeline dev: the main job failed; the UI shows which step and why")
    bootstrap()
    print(
        f"predict-pipeline dev: Dagster UI and daemon at http://{args.host}:{args.port} "
        f"(HTTP mode {os.environ[HTTP_MODE_VAR]}; Ctrl-C stops both)",
        flush=True,
    )
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    argv = ["dagster", "dev", "-w", workspace, "-h", args.host, "-p", str(args.port)]
    os.execv(dagster, argv)  # replaces this process: Ctrl-C goes straight to Dagster


def _backfill(args: argparse.Namespace) -> int:
    """The UI's refresh_feed_history_job, run here: recorded in the instance like any run."""
    from predict_pipeline.runtime import bootstrap

    bootstrap()
    import dagster as dg

    from predict_pipeline.definitions import defs
    from predict_pipeline.defs.history import FeedHistoryConfig

    job = defs.get_job_def("refresh_feed_history_job")
    config = FeedHistoryConfig(feed_id=args.feed_id, start=args.start, end=args.end)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config=dg.RunConfig(ops={"refresh_feed_history": config}),
            instance=instance,
            raise_on_error=False,
        )
    if not result.success:
        failures = [
            event.step_failure_data.error.message.strip()
            for event in result.all_events
            if event.is_step_failure and event.step_failure_data.error is not None
        ]
        reason = failures[0].splitlines()[-1] if failures else "see the run in the UI"
        raise CommandError(f"history refresh failed (run {result.run_id}): {reason}")
    totals = result.output_for_node("refresh_feed_history")
    print(
        f"refreshed {totals['windows']} hour windows: {totals['pages']} pages, "
        f"{totals['records']} records, {totals['written']} signals written, "
        f"{totals['rejected']} rejected (run {result.run_id})"
    )
    return 0


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

    backfill = commands.add_parser(
        "backfill",
        help="refresh one feed's history hour by hour (the UI's refresh_feed_history_job)",
    )
    backfill.add_argument("feed_id", help="the feed's id (predict-pipeline feeds list)")
    backfill.add_argument("--start", required=True, help="UTC, ISO 8601: 2025-04-01T06:00")
    backfill.add_argument("--end", required=True, help="UTC, exclusive, capped at this hour")
    backfill.set_defaults(func=_backfill)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon on this database")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with plan_limits():  # a plan limit the database refused, from any command
            return int(args.func(args) or 0)
    except (CommandError, DatabaseUnavailable, MigrationError, PlanLimitError) as exc:
        print(f"predict-pipeline: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
