"""`predict-pipeline rules add|list|show|enable|disable|test`: rules without hand-written SQL.

A rule is validated before anything is written: its trigger against TRIGGER_SCHEMAS, its actions
against ACTION_SCHEMAS, its throttle as the tick reads it, its scope against what the acting user
may see. Writes run as that user under the spec's RLS (`--as`, see cli/acting.py), the plans'
limits are the database's (sql/0041: a refused rule is one line), and each change is audited.
`rules test` runs the tick's checks on one event and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.cli.acting import (
    acting_as,
    acting_user_option,
    command,
    emit,
    json_argument,
    reader,
    table,
    when_argument,
)
from predict_pipeline.errors import CommandError, uuid_argument

SCOPES = ("all", "event", "category", "tag", "campaign")
# Actions that need a connection of the rule owner's (one per platform).
CONNECTED_ACTIONS = ("webhook", "slack", "email")

_COLUMNS = """r.id, r.name, r.description, r.enabled, r.user_id, r.org_id, r.is_system,
  r.scope_type, r.scope_id, r.scope_tag, r.trigger_type, r.trigger_params, r.actions,
  r.cooldown_minutes, r.max_fires_per_day, r.active_hours, r.expires_at, r.last_fired_at,
  r.fire_count, r.created_at, r.updated_at"""
_NAMES = [c.strip().removeprefix("r.") for c in _COLUMNS.split(",")]


class RulesCommandError(CommandError):
    pass


def _scope(text: str) -> tuple[str, str | None]:
    """argparse type for --scope: all, or KIND:VALUE (event:ID, category:SLUG, tag:TAG...)."""
    kind, _, value = text.partition(":")
    if kind not in SCOPES:
        raise argparse.ArgumentTypeError(
            f"unknown scope {kind!r}: all, event:ID, category:SLUG|ID, tag:TAG or campaign:ID"
        )
    if kind == "all":
        if value:
            raise argparse.ArgumentTypeError("scope all takes no value")
        return kind, None
    if not value:
        raise argparse.ArgumentTypeError(f"scope {kind} needs a value: {kind}:...")
    if kind in ("event", "campaign"):
        try:
            uuid.UUID(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"scope {kind}: not an id: {value}") from None
    return kind, value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None


def _validated(args: argparse.Namespace) -> dict[str, Any]:
    """The rule's columns from the arguments, each checked as the tick will read it."""
    from predict_pipeline.rules import RuleError
    from predict_pipeline.rules.action_schemas import validate_actions
    from predict_pipeline.rules.throttle import validate_throttle
    from predict_pipeline.rules.trigger_schemas import validate_rule

    trigger = validate_rule(args.trigger, args.params)
    if isinstance(trigger, RuleError):
        raise RulesCommandError(f"invalid trigger: {trigger.reason}")
    actions = validate_actions(args.actions)
    if isinstance(actions, RuleError):
        raise RulesCommandError(f"invalid actions: {actions.reason}")
    throttle = validate_throttle(
        cooldown_minutes=args.cooldown_minutes,
        max_fires_per_day=args.max_fires_per_day,
        active_hours=args.active_hours,
    )
    if isinstance(throttle, RuleError):
        raise RulesCommandError(f"invalid throttle: {throttle.reason}")
    if args.trigger == "CAMPAIGN_THRESHOLD" and args.scope[0] != "campaign":
        raise RulesCommandError(
            "CAMPAIGN_THRESHOLD watches a campaign's links: give --scope campaign:ID"
        )
    return {"actions": args.actions, "types": [a["type"] for a in actions]}


def _resolve_scope(conn, kind: str, value: str | None) -> tuple[uuid.UUID | None, str | None]:
    """(scope_id, scope_tag), the target read under the acting user's RLS: a rule may only be
    scoped to an event or campaign its owner can see."""
    if kind == "all":
        return None, None
    if kind == "tag":
        return None, value
    if kind == "category":
        try:
            category_id: uuid.UUID | None = uuid.UUID(value or "")
        except ValueError:
            category_id = None
        row = conn.execute(
            "SELECT id FROM prediction_categories WHERE id = %s OR slug = %s LIMIT 1",
            (category_id, value),
        ).fetchone()
        if row is None:
            raise RulesCommandError(f"no category {value!r} (give a slug or an id)")
        return row[0], None
    table_name = "prediction_events" if kind == "event" else "prediction_campaigns"
    row = conn.execute(
        f"SELECT id FROM {table_name} WHERE id = %s",  # noqa: S608 (one of two names)
        (uuid.UUID(value or ""),),
    ).fetchone()
    if row is None:
        raise RulesCommandError(f"no {kind} {value} visible to the acting user")
    return row[0], None


def _add(args: argparse.Namespace) -> int:
    from predict_pipeline.audit import record_audits
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.plans import PlanLimitError, plan_limits
    from predict_pipeline.tenancy import find_org

    checked = _validated(args)  # before any connection: a bad rule never touches the database
    target = bootstrap()
    with acting_as(target.app_url, args.as_user) as (conn, user_id):
        org_id = None
        if args.org:
            try:
                org_id = find_org(conn, args.org)
            except LookupError as exc:
                raise RulesCommandError(str(exc)) from None
        rule_id = uuid.uuid4()
        try:
            with plan_limits(), conn.transaction():
                scope_id, scope_tag = _resolve_scope(conn, *args.scope)
                conn.execute(
                    """INSERT INTO prediction_rules
                         (id, user_id, org_id, name, description, enabled, scope_type, scope_id,
                          scope_tag, trigger_type, trigger_params, actions, cooldown_minutes,
                          max_fires_per_day, active_hours, expires_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (
                        rule_id,
                        user_id,
                        org_id,
                        args.name,
                        args.description,
                        not args.disabled,
                        args.scope[0],
                        scope_id,
                        scope_tag,
                        args.trigger,
                        Jsonb(args.params),
                        Jsonb(checked["actions"]),
                        args.cooldown_minutes,
                        args.max_fires_per_day,
                        None if args.active_hours is None else Jsonb(args.active_hours),
                        args.expires_at,
                    ),
                )
                record_audits(
                    conn,
                    action="rule.created",
                    resource_type="prediction_rules",
                    actor_type="user",
                    actor_id=user_id,
                    entries=[
                        (
                            rule_id,
                            {
                                "name": args.name,
                                "trigger_type": args.trigger,
                                "scope_type": args.scope[0],
                                "enabled": not args.disabled,
                                "via": "cli",
                            },
                        )
                    ],
                )
        except PlanLimitError as exc:
            raise RulesCommandError(f"rule not created: {exc}") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            # An org the owner is not a member of (0040's trigger), or a write RLS refuses.
            raise RulesCommandError(f"rule not created: {_first_line(exc)}") from None
        missing = _missing_connections(conn, user_id, checked["types"])
    note = (
        [f"note: no active {', '.join(missing)} connection yet: predict-pipeline connections add"]
        if missing
        else []
    )
    return emit(
        args,
        {"rule_id": rule_id, "enabled": not args.disabled, "missing_connections": missing},
        lambda: [
            f"rule {rule_id} created ({args.trigger} on {_scope_text(*args.scope)}, "
            f"{'enabled' if not args.disabled else 'disabled'})",
            *note,
        ],
    )


def _missing_connections(conn, user_id: uuid.UUID, types: list[str]) -> list[str]:
    wanted = sorted({t for t in types if t in CONNECTED_ACTIONS})
    if not wanted:
        return []
    have = {
        platform
        for (platform,) in conn.execute(
            "SELECT platform FROM prediction_action_connections WHERE user_id = %s"
            " AND status = 'ACTIVE'",
            (user_id,),
        )
    }
    return [platform for platform in wanted if platform not in have]


def _scope_text(kind: str, value: str | None) -> str:
    return "all events" if kind == "all" else f"{kind} {value}"


def _list(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap

    target = bootstrap()
    with reader(target.app_url, args.as_user) as (conn, _):
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM prediction_rules r"  # noqa: S608 (constant columns)
            " WHERE (%s::boolean IS NULL OR r.enabled = %s) ORDER BY r.name, r.id",
            (args.enabled, args.enabled),
        ).fetchall()
    rules = [dict(zip(_NAMES, row, strict=True)) for row in rows]
    return emit(
        args,
        {"rules": rules},
        lambda: (
            table(
                [
                    (
                        r["id"],
                        r["name"][:40],
                        "yes" if r["enabled"] else "no",
                        r["trigger_type"],
                        _scope_text(r["scope_type"], r["scope_tag"] or r["scope_id"]),
                        r["fire_count"] or 0,
                        f"{r['last_fired_at']:%Y-%m-%d %H:%M}" if r["last_fired_at"] else "never",
                    )
                    for r in rules
                ],
                ("rule id", "name", "on", "trigger", "scope", "fired", "last fired"),
            )
            if rules
            else ["no rule"]
        ),
    )


def _visible_rule(conn, rule_id: uuid.UUID, who: str) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM prediction_rules r WHERE r.id = %s",  # noqa: S608
        (rule_id,),
    ).fetchone()
    if row is None:
        raise RulesCommandError(f"no rule {rule_id} visible to {who}")
    return dict(zip(_NAMES, row, strict=True))


def _show(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap

    target = bootstrap()
    with acting_as(target.app_url, args.as_user) as (conn, _):
        rule = _visible_rule(conn, args.rule_id, args.as_user)
        executions = [
            dict(
                zip(
                    ("id", "event_id", "status", "started_at", "summary", "error"), row, strict=True
                )
            )
            for row in conn.execute(
                "SELECT id, event_id, status, started_at, trigger_snapshot->>'summary',"
                " error_message FROM prediction_rule_executions WHERE rule_id = %s"
                " ORDER BY started_at DESC, id LIMIT %s",
                (args.rule_id, args.executions),
            )
        ]

    def text() -> list[str]:
        lines = [
            f"{k}: {json.dumps(v) if isinstance(v, dict | list) else v}"
            for k, v in rule.items()
            if v is not None and k != "actions"
        ]
        lines += [f"action {i}: {json.dumps(a)}" for i, a in enumerate(rule["actions"] or [])]
        lines += [
            f"execution {e['started_at']:%Y-%m-%d %H:%M} {e['status']}: "
            f"{e['summary'] or e['error'] or ''}"
            for e in executions
        ] or ["no execution yet"]
        return lines

    return emit(args, {"rule": rule, "executions": executions}, text)


def _set_enabled(enabled: bool):
    def run(args: argparse.Namespace) -> int:
        from predict_pipeline.audit import record_audits
        from predict_pipeline.db.bootstrap import bootstrap
        from predict_pipeline.plans import PlanLimitError, plan_limits
        from predict_pipeline.rules import RuleError
        from predict_pipeline.rules.action_schemas import validate_actions
        from predict_pipeline.rules.trigger_schemas import validate_rule

        target = bootstrap()
        verb = "enabled" if enabled else "disabled"
        with acting_as(target.app_url, args.as_user) as (conn, user_id):
            try:
                with plan_limits(), conn.transaction():
                    rule = _visible_rule(conn, args.rule_id, args.as_user)
                    if rule["user_id"] != user_id:
                        raise RulesCommandError(
                            f"rule {args.rule_id} is not {args.as_user}'s: only its owner "
                            "changes it"
                        )
                    if rule["enabled"] == enabled:
                        return emit(
                            args,
                            {"rule_id": args.rule_id, "enabled": enabled, "changed": False},
                            lambda: [f"rule {args.rule_id} is already {verb}"],
                        )
                    if enabled:
                        # A rule stored broken (hand-written SQL) is not switched on as it is.
                        for fault in (
                            validate_rule(rule["trigger_type"], rule["trigger_params"]),
                            validate_actions(rule["actions"]),
                        ):
                            if isinstance(fault, RuleError):
                                raise RulesCommandError(f"rule not enabled: {fault.reason}")
                    conn.execute(
                        "UPDATE prediction_rules SET enabled = %s, updated_at = now()"
                        " WHERE id = %s",
                        (enabled, args.rule_id),
                    )
                    record_audits(
                        conn,
                        action=f"rule.{verb}",
                        resource_type="prediction_rules",
                        actor_type="user",
                        actor_id=user_id,
                        entries=[(args.rule_id, {"enabled": {"from": not enabled, "to": enabled}})],
                    )
            except PlanLimitError as exc:
                raise RulesCommandError(f"rule not enabled: {exc}") from None
        return emit(
            args,
            {"rule_id": args.rule_id, "enabled": enabled, "changed": True},
            lambda: [f"rule {args.rule_id} {verb}"],
        )

    return run


def _test(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.rules.dry_run import explain_rule

    target = bootstrap()
    at = args.at or datetime.now(UTC)
    with acting_as(target.app_url, args.as_user) as (conn, _):
        _visible_rule(conn, args.rule_id, args.as_user)
        if not conn.execute(
            "SELECT 1 FROM prediction_events WHERE id = %s", (args.event,)
        ).fetchone():
            raise RulesCommandError(f"no event {args.event} visible to {args.as_user}")
    # The verdict is the tick's, read as the pipeline reads it: the rule's own view decides.
    with connect(target.app_url) as conn:
        conn.read_only = True  # a test never writes, whatever it evaluates
        verdict = explain_rule(conn, args.rule_id, args.event, at)
        conn.rollback()

    def text() -> list[str]:
        if verdict.would_fire:
            head = "would fire"
        elif verdict.outcome:
            head = f"would not fire: it would be recorded as {verdict.outcome}"
        else:
            failed = next(c for c in verdict.checks if not c.passed)
            head = f"would not fire ({failed.name})"
        return [
            f"rule {args.rule_id} on event {args.event} at {at.isoformat()}: {head}",
            *(f"  {'ok ' if c.passed else 'no '} {c.name}: {c.detail}" for c in verdict.checks),
            "nothing was recorded (no execution, no delivery)",
        ]

    return emit(args, verdict.as_json(), text)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def add_commands(commands: argparse._SubParsersAction) -> None:
    from predict_pipeline.rules.trigger_schemas import TRIGGER_TYPES

    rules = commands.add_parser(
        "rules", help="rules: triggers on events and the actions they fire"
    ).add_subparsers(dest="rules_command", required=True)
    me = "you@example.com"

    add = command(
        rules,
        "add",
        "create a rule (trigger, actions and throttle validated; one line when refused)",
        f"predict-pipeline rules add 'Election odds moved' --as {me} --scope tag:elections "
        '--trigger PROBABILITY_SHIFT --params \'{"min_change": 0.1, "window_minutes": 60}\' '
        '--actions \'[{"type": "slack", "text": "{event_title}: {summary}"}]\'',
    )
    add.add_argument("name")
    acting_user_option(add, required=True, what="the rule's owner")
    add.add_argument(
        "--scope",
        required=True,
        type=_scope,
        help="all, event:ID, category:SLUG|ID, tag:TAG or campaign:ID",
    )
    add.add_argument("--trigger", required=True, choices=TRIGGER_TYPES, metavar="TYPE")
    add.add_argument(
        "--params", type=json_argument, default={}, help="trigger_params as JSON (default {})"
    )
    add.add_argument(
        "--actions", type=json_argument, default=[], help="the ordered actions as a JSON array"
    )
    add.add_argument("--cooldown-minutes", type=_whole, default=60)
    add.add_argument("--max-fires-per-day", type=_whole, default=10)
    add.add_argument(
        "--active-hours",
        type=json_argument,
        help='JSON: {"timezone": "Europe/Paris", "start": "08:00", "end": "20:00"}',
    )
    add.add_argument("--org", help="share the rule with this org (id or slug; you are a member)")
    add.add_argument("--description")
    add.add_argument("--expires-at", type=when_argument, help="UTC time the rule stops")
    add.add_argument("--disabled", action="store_true", help="create it switched off")
    add.set_defaults(func=_add)

    listing = command(
        rules,
        "list",
        "the rules you see (own, your orgs', system)",
        f"predict-pipeline rules list --as {me}",
    )
    acting_user_option(
        listing, required=False, what="only the rules they see; without it, every tenant's"
    )
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--enabled", dest="enabled", action="store_const", const=True)
    state.add_argument("--disabled", dest="enabled", action="store_const", const=False)
    listing.set_defaults(func=_list, enabled=None)

    show = command(
        rules,
        "show",
        "one rule with its latest executions",
        f"predict-pipeline rules show 6f1c0f9e-2d4b-4c61-9d3e-1a2b3c4d5e6f --as {me}",
    )
    show.add_argument("rule_id", type=uuid_argument)
    acting_user_option(show, required=True, what="a rule they see")
    show.add_argument("--executions", type=_whole, default=5, help="how many (default 5)")
    show.set_defaults(func=_show)

    for name, enabled in (("enable", True), ("disable", False)):
        toggle = command(
            rules,
            name,
            f"{name} one of your rules (audited)",
            f"predict-pipeline rules {name} 6f1c0f9e-2d4b-4c61-9d3e-1a2b3c4d5e6f --as {me}",
        )
        toggle.add_argument("rule_id", type=uuid_argument)
        acting_user_option(toggle, required=True, what="the rule's owner")
        toggle.set_defaults(func=_set_enabled(enabled))

    test = command(
        rules,
        "test",
        "would the rule fire on this event now, and why: the tick's checks, nothing recorded",
        "predict-pipeline rules test 6f1c0f9e-2d4b-4c61-9d3e-1a2b3c4d5e6f "
        f"--event 0b7d5a51-3f0e-4d8e-9a3c-2f1e0d9c8b7a --as {me}",
    )
    test.add_argument("rule_id", type=uuid_argument)
    test.add_argument("--event", required=True, type=uuid_argument, help="the event's id")
    acting_user_option(test, required=True, what="one who sees the rule and the event")
    test.add_argument(
        "--at", type=when_argument, help="evaluate as of this UTC time (default: now)"
    )
    test.set_defaults(func=_test)
