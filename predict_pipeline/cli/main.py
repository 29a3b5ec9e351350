"""`predict-pipeline`: the command line of the data platform."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from predict_pipeline.cli.calibration import add_commands as add_calibration_commands
from predict_pipeline.cli.campaigns import add_commands as add_campaign_commands
from predict_pipeline.cli.connections import add_commands as add_connection_commands
from predict_pipeline.cli.events import add_commands as add_event_commands
from predict_pipeline.cli.feeds import add_commands as add_feed_commands
from predict_pipeline.cli.retention import add_commands as add_retention_commands
from predict_pipeline.cli.rules import add_commands as add_rule_commands
from predict_pipeline.cli.signals import add_commands as add_signal_commands
from predict_pipeline.cli.trust import add_commands as add_trust_commands
from predict_pipeline.cli.users import add_commands as add_user_commands
from predict_pipeline.config import (
    DATABASE_URL_VAR,
    HTTP_MODE_VAR,
    PROJECT_ROOT,
    REPLAY_DIR_VAR,
    STATE_DIR_VAR,
    Settings,
    default_state_dir,
)
from predict_pipeline.db.connection import DatabaseUnavailable, connect, resolve_database
from predict_pipeline.db.migrations import MigrationError, applied, discover, pending, upgrade
from predict_pipeline.db.rows import one_row
from predict_pipeline.errors import CommandError
from predict_pipeline.plans import PlanLimitError, plan_limits
from predict_pipeline.secrets import SecretKeyError


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
    from predict_pipeline.demo.run import run_main

    return run_main()


def _dev(args: argparse.Namespace) -> int:
    from predict_pipeline.cli.dev import require_free_port, serve
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.demo.seed import REPLAY_DIR

    require_free_port(args.host, args.port)  # before a first main job, not after it

    # As `run`: recorded payloads unless told otherwise, so the demo feeds the sensor polls
    # keep working offline instead of failing until they are auto-disabled.
    if not os.environ.get(HTTP_MODE_VAR):
        os.environ[HTTP_MODE_VAR] = "replay"
        os.environ.setdefault(REPLAY_DIR_VAR, str(REPLAY_DIR))
    settings = Settings.from_env()
    target = bootstrap(settings, require_key=True)
    with connect(target.app_url, role=None, autocommit=True) as conn:
        [has_feeds] = one_row(conn.execute("SELECT EXISTS (SELECT 1 FROM prediction_data_feeds)"))
    if not has_feeds:
        # A fresh database: the UI opens on the demo's materialised graph, not an empty one.
        print("predict-pipeline dev: no feeds yet, running the main job first (make run)")
        from predict_pipeline.demo.run import run_main

        if run_main() != 0:
            print("predict-pipeline dev: the main job failed; the UI shows which step and why")
    # Supervised children, not `dagster dev`: its services outlived Ctrl-C (devserver.py).
    return serve(
        args.host,
        args.port,
        workspace=PROJECT_ROOT / "workspace.yaml",
        log_dir=settings.state_dir / "dev",
        http_mode=os.environ[HTTP_MODE_VAR],
        embedded_database=target.embedded,
    )


def _backfill(args: argparse.Namespace) -> int:
    """The UI's refresh_feed_history_job, run here: recorded in the instance like any run."""
    from predict_pipeline.db.bootstrap import bootstrap

    target = bootstrap(require_key=True)
    from predict_pipeline.defs.history import FeedHistoryConfig, HistoryRequestError, check_request

    # The request is checked before a run exists: a mistake is one line and records nothing.
    with connect(target.app_url, autocommit=True) as conn:
        try:
            check_request(conn, args.feed_id, args.start, args.end, now=datetime.now(UTC))
        except HistoryRequestError as exc:
            raise CommandError(f"backfill refused: {exc}") from None
    import dagster as dg

    from predict_pipeline.definitions import defs

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


class _OneLineParser(argparse.ArgumentParser):
    """A usage mistake is one line naming the command and what to do, then exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
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
    add_campaign_commands(commands)
    add_rule_commands(commands)
    add_connection_commands(commands)
    add_calibration_commands(commands)
    add_user_commands(commands)

    backfill = commands.add_parser(
        "backfill",
        help="refresh one feed's history hour by hour (the UI's refresh_feed_history_job)",
    )
    backfill.add_argument("feed_id", help="the feed's id (predict-pipeline feeds list)")
    backfill.add_argument("--start", required=True, help="UTC, ISO 8601: 2025-04-01T06:00")
    backfill.add_argument("--end", required=True, help="UTC, exclusive, capped at this hour")
    backfill.set_defaults(func=_backfill)

    dev = commands.add_parser(
        "dev", help="start the Dagster UI and daemon on this database (Ctrl-C stops both)"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000, help="the UI's port (default 3000)")
    dev.set_defaults(func=_dev)
    return parser


# What a user can set right: said in one line, exit 2, and nothing was recorded.
USER_ERRORS = (CommandError, DatabaseUnavailable, MigrationError, PlanLimitError, SecretKeyError)


def main(argv: Sequence[str] | None = None) -> int:
    # Dagster's beta and preview notices concern our definitions, not the user's command.
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    args = build_parser().parse_args(argv)
    try:
        with plan_limits():  # a plan limit the database refused, from any command
            return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"predict-pipeline: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 141
    except KeyboardInterrupt:
        print("predict-pipeline: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A fault of ours, not the user's: one line here, the traceback kept for the report.
        log = _crash_log(exc)
        print(
            f"predict-pipeline: internal error: {type(exc).__name__}: {_one_line(exc)}"
            f" (traceback in {log})",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _crash_log(exc: BaseException) -> Path:
    path = Path(os.environ.get(STATE_DIR_VAR) or default_state_dir()) / "logs"
    try:
        path.mkdir(parents=True, exist_ok=True)
        log = path / "cli-errors.log"
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {datetime.now(UTC).isoformat()} {' '.join(sys.argv)}\n")
            handle.write("".join(traceback.format_exception(exc)))
        return log
    except OSError:
        return Path("<not written: the state directory is not writable>")
