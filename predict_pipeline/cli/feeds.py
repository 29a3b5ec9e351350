"""`predict-pipeline feeds ...` and `webhooks serve`: debugging payloads, pushing files."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from predict_pipeline.config import Settings
from predict_pipeline.errors import CommandError, uuid_argument
from predict_pipeline.model import NormalisedRecord, PayloadError, RecordReject
from predict_pipeline.sources.push.decode import UploadError
from predict_pipeline.sources.push.delivery import parse_upload
from predict_pipeline.sources.registry import SOURCES, source_definition


class FeedCommandError(CommandError):
    pass


def record_json(record: NormalisedRecord) -> dict[str, Any]:
    """A record as JSON: timestamps ISO-8601 with offset, market facts nested."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(record))


def parse_file(
    source: str, path: Path, fetched_at: datetime
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    """Records of one recorded response (endpoint recognised from content) or upload file, and
    the items rejected alone."""
    try:
        definition = source_definition(source)
    except KeyError as exc:
        raise FeedCommandError(str(exc.args[0])) from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FeedCommandError(f"cannot read {path}: {exc.strerror}") from None
    if source in ("upload", "webhook"):
        try:
            return parse_upload(data, path.name, feed_config={}, received_at=fetched_at)
        except UploadError as exc:
            raise FeedCommandError(str(exc)) from None
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedCommandError(f"{source} {path.name}: not JSON: {exc}") from None
    adapter = definition.adapter
    assert adapter is not None
    try:
        parsed = adapter.read_records(payload, fetched_at=fetched_at)
    except PayloadError as exc:
        raise FeedCommandError(str(exc)) from None
    return parsed.records, parsed.rejects


def _parse(args: argparse.Namespace) -> int:
    try:
        fetched_at = (
            datetime.fromisoformat(args.fetched_at) if args.fetched_at else datetime.now(UTC)
        )
    except ValueError:
        raise FeedCommandError(
            f"--fetched-at {args.fetched_at!r} is not ISO-8601, e.g. 2026-11-22T15:00:00+00:00"
        ) from None
    if fetched_at.tzinfo is None:
        raise FeedCommandError("--fetched-at needs an offset, e.g. 2026-11-22T15:00:00+00:00")
    records, rejects = parse_file(args.source, Path(args.file), fetched_at)
    for record in records:
        sys.stdout.write(json.dumps(record_json(record), ensure_ascii=False) + "\n")
    for reject in rejects:
        sys.stderr.write(f"rejected item {reject.item_index} ({reject.reason}): {reject.detail}\n")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.ingestion.landing import LandingZone
    from predict_pipeline.ingestion.pushed import LandingFailed, PushRefused, land_upload
    from predict_pipeline.ingestion.store import load_feed

    target = bootstrap()
    path = Path(args.file)
    try:
        feed_id = uuid.UUID(args.feed_id)
        data = path.read_bytes()
    except ValueError:
        raise FeedCommandError(f"not a feed id: {args.feed_id}") from None
    except OSError as exc:
        raise FeedCommandError(f"cannot read {path}: {exc.strerror}") from None
    with connect(target.app_url, autocommit=True) as conn:
        feed = load_feed(conn, feed_id)
        if feed is None:
            raise FeedCommandError(f"no feed {feed_id}")
        try:
            report = land_upload(
                conn, LandingZone(Settings.from_env().landing_zone), feed, data, path.name
            )
        except LandingFailed as exc:
            raise FeedCommandError(f"upload failed: {exc}") from None
        except PushRefused as exc:
            raise FeedCommandError(f"upload refused, nothing landed: {exc}") from None
    rejected = ""
    if report.rejected:
        first = report.rejected[0]
        rejected = f", rejected {len(report.rejected)} (first: {first.reason}, {first.detail})"
    print(
        f"landed {report.records} records from {path.name}{rejected} "
        f"(feed run {report.feed_run_id})"
    )
    return 0


def _add(args: argparse.Namespace) -> int:
    """Create a feed: config validated against its source's schema, credentials encrypted."""
    import jsonschema

    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.ingestion.runner import credentials_aad
    from predict_pipeline.ingestion.store import FeedStateError, create_feed
    from predict_pipeline.plans import PlanLimitError
    from predict_pipeline.secrets import encrypt_json, load_key_from_env

    try:
        config = json.loads(args.config)
        credentials = (
            json.loads(Path(args.credentials_file).read_text()) if (args.credentials_file) else None
        )
    except (json.JSONDecodeError, OSError) as exc:
        raise FeedCommandError(f"cannot read the config or credentials: {exc}") from None
    if not isinstance(config, dict) or "credentials" in config:
        raise FeedCommandError(
            "--config must be a JSON object without credentials (use --credentials-file)"
        )
    target = bootstrap(require_key=credentials is not None)
    with connect(target.app_url) as conn, conn.transaction():
        source = conn.execute(
            "SELECT id, config_schema, default_config FROM prediction_data_sources"
            " WHERE source_id = %s",
            (args.source,),
        ).fetchone()
        if source is None:
            raise FeedCommandError(f"unknown source {args.source}")
        effective = {**(source[2] or {}), **config}
        errors = sorted(
            jsonschema.Draft202012Validator(source[1] or {}).iter_errors(effective),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            raise FeedCommandError(
                "invalid config: "
                + "; ".join(
                    f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                    for e in errors[:5]
                )
            )
        user = conn.execute("SELECT id FROM auth.users WHERE email = %s", (args.user_email,))
        user_row = user.fetchone()
        if user_row is None:
            raise FeedCommandError(f"no user with email {args.user_email} in auth.users")
        feed_id = uuid.uuid4()
        encrypted = (
            encrypt_json(credentials, key=load_key_from_env(), aad=credentials_aad(feed_id))
            if credentials
            else None
        )
        try:
            create_feed(
                conn,
                feed_id=feed_id,
                source_id=source[0],
                user_id=user_row[0],
                name=args.name,
                config=config,
                poll_interval_minutes=args.poll_minutes,
                cron_expression=args.cron,
                credentials_encrypted=encrypted,
                event_mapping_mode=args.mapping,
            )
        except (PlanLimitError, FeedStateError) as exc:
            raise FeedCommandError(f"feed not created: {exc}") from None
    print(
        f"feed {feed_id} created ({args.source}, every "
        f"{args.cron or f'{args.poll_minutes} minutes'})"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect

    target = bootstrap()
    with connect(target.app_url) as conn:
        rows = conn.execute(
            "SELECT h.id, h.name, h.source_id, h.enabled, h.consecutive_failures,"
            " h.last_run_status, h.last_run_at, coalesce(h.last_error, ''), f.paused_at,"
            " f.breaker_probe_at FROM v_feed_health h JOIN prediction_data_feeds f ON f.id = h.id"
            " ORDER BY h.name"
        ).fetchall()
    print(f"{'feed id':<36}  {'name':<36} {'source':<10} {'on':<11} {'fails':>5}  last run")
    for fid, name, source, enabled, fails, status, at, error, paused, probe in rows:
        when = f"{status} {at:%Y-%m-%d %H:%M}" if at else "never"
        # on: yes, paused, no (by hand), or the time of an auto-disabled feed's next probe
        on = "paused" if paused else "yes" if enabled else f"probe {probe:%H:%M}" if probe else "no"
        print(
            f"{fid!s:<36}  {name[:36]:<36} {source:<10} {on:<11} {fails:>5}  {when}  {error[:60]}"
        )
    return 0


def _change_state(args: argparse.Namespace) -> int:
    """`feeds enable|disable|pause|resume FEED_ID`: as the operator, or as --as USER on their
    own feeds only."""
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.ingestion.store import FeedStateError, change_feed_state
    from predict_pipeline.tenancy import find_user

    target = bootstrap()
    with connect(target.app_url, autocommit=True) as conn:
        try:
            owner = find_user(conn, args.as_user) if args.as_user else None
            change = change_feed_state(
                conn, args.feed_id, args.feeds_command, now=datetime.now(UTC), owner=owner
            )
        except (LookupError, FeedStateError) as exc:
            raise FeedCommandError(str(exc)) from None
    if args.json:
        print(json.dumps(change.as_json()))
        return 0
    done = {"enable": "enabled", "disable": "disabled", "pause": "paused", "resume": "resumed"}
    said = done[change.action] if change.changed else f"already {done[change.action]}"
    if change.action == "resume" and change.changed and not change.enabled:
        said += " (still disabled: feeds enable to poll it)"
    elif change.action == "enable" and change.paused:
        said += " (still paused: feeds resume to poll it)"
    due = f", next poll {change.next_run_at:%Y-%m-%d %H:%M} UTC" if change.next_run_at else ""
    live = change.enabled and not change.paused
    print(f"feed {change.feed_id} ({change.name}): {said}{due if live else ''}")
    return 0


# `feeds enable|disable|pause|resume`: what each does, for its --help.
_STATE_COMMANDS = {
    "enable": "turn a feed on: its breaker closes (failures reset) and it is due at once",
    "disable": "turn a feed off until `feeds enable` (never probed, unlike an auto-disable)",
    "pause": "stop polling (and refuse pushes) keeping config, cursor and health",
    "resume": "poll a paused feed again, due at once",
}


def _serve_webhooks(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.ingestion.landing import LandingZone
    from predict_pipeline.ingestion.webhook_server import ReceiverLimits, serve

    target = bootstrap(require_key=True)
    chosen = {field: getattr(args, field) for field, _, _ in _RECEIVER_FLAGS.values()}
    limits = ReceiverLimits(**{k: v for k, v in chosen.items() if v is not None})
    landing = LandingZone(Settings.from_env().landing_zone)
    return serve(target.app_url, landing, host=args.host, port=args.port, limits=limits)


def add_commands(commands: argparse._SubParsersAction) -> None:
    feeds = commands.add_parser("feeds", help="feed payloads, uploads and health").add_subparsers(
        dest="feeds_command", required=True
    )
    parse = feeds.add_parser(
        "parse", help="print the normalised records of one recorded response as JSON Lines"
    )
    parse.add_argument("source", choices=sorted(SOURCES))
    parse.add_argument("file")
    parse.add_argument("--fetched-at", help="observation time of polled values (ISO-8601)")
    parse.set_defaults(func=_parse)

    upload = feeds.add_parser("upload", help="land a CSV/JSON/JSON Lines file for an upload feed")
    upload.add_argument("feed_id")
    upload.add_argument("file")
    upload.set_defaults(func=_upload)

    add = feeds.add_parser("add", help="create a feed (config validated, credentials encrypted)")
    add.add_argument("source", choices=sorted(SOURCES))
    add.add_argument("name")
    add.add_argument("--user-email", required=True, help="the owner (auth.users.email)")
    add.add_argument("--config", default="{}", help="the feed's config as JSON")
    add.add_argument("--credentials-file", help="JSON credentials, stored encrypted")
    add.add_argument("--poll-minutes", type=int, default=15)
    add.add_argument("--cron", help="a cron expression instead of the poll interval")
    add.add_argument("--mapping", choices=["auto", "manual", "ai"], default="auto")
    add.set_defaults(func=_add)

    feeds.add_parser("list", help="feeds and their health").set_defaults(func=_list)

    for name, text in _STATE_COMMANDS.items():
        command = feeds.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}.",
            epilog=f"example:\n  predict-pipeline feeds {name} "
            "6f1c0c1e-5b1a-4d4e-9a53-2f1f0d6b9c11 --as ana@example.com --json",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("feed_id", type=uuid_argument, help="the feed's id (feeds list)")
        command.add_argument(
            "--as",
            dest="as_user",
            metavar="USER",
            help="act as this user (id or e-mail): only their own feeds; without it, any "
            "feed (the operator's view)",
        )
        command.add_argument("--json", action="store_true", help="print the result as JSON")
        command.set_defaults(func=_change_state)

    webhooks = commands.add_parser("webhooks", help="receive webhook deliveries").add_subparsers(
        dest="webhooks_command", required=True
    )
    serve = webhooks.add_parser("serve", help="serve POST /webhooks/<feed id> and GET /health")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    for flag, (field, kind, text) in _RECEIVER_FLAGS.items():
        serve.add_argument(flag, type=kind, help=text, dest=field)
    serve.set_defaults(func=_serve_webhooks)


# Flags of `webhooks serve`: the ReceiverLimits field each sets (its defaults are in the README).
_RECEIVER_FLAGS = {
    "--max-in-flight": ("max_in_flight", int, "deliveries read or landed at once; more get 503"),
    "--pool-size": ("pool_size", int, "database connections and landing threads"),
    "--head-timeout": ("head_timeout_s", float, "seconds for a request head to arrive"),
    "--body-timeout": ("body_timeout_s", float, "seconds for a request body to arrive"),
    "--max-connections": ("max_connections", int, "open sockets; more get 503"),
    "--shutdown-timeout": ("shutdown_timeout_s", int, "seconds to let deliveries finish"),
}
