"""`predict-pipeline events add|list|resolve` and `disputes open|review|close`.

`events add` creates an event as the `--as` user under the spec's RLS (public, private to its
creator, or in one of their orgs; the plan's max_events is the database's), audited;
`events list` shows the events a user sees (`--as`), or every tenant's without it.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from predict_pipeline.errors import CommandError, uuid_argument


class EventsCommandError(CommandError):
    pass


def _with_connection(step: Callable[..., Any], **kwargs: Any) -> Any:
    from predict_pipeline.calibration.disputes import WorkflowError
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect

    target = bootstrap()
    with connect(target.app_url, autocommit=True) as conn:
        try:
            return step(conn, now=datetime.now(UTC), **kwargs)
        except WorkflowError as exc:
            raise EventsCommandError(str(exc)) from None


def _resolve(args: argparse.Namespace) -> int:
    from predict_pipeline.calibration.disputes import resolve_manually

    step = _with_connection(
        resolve_manually,
        event_id=args.event_id,
        outcome=args.outcome,
        evidence_urls=args.evidence,
        resolved_by=args.by,
        details=args.details,
    )
    print(f"event {step.event_id} resolved {step.outcome} (resolution {step.resolution_id})")
    return 0


def _open(args: argparse.Namespace) -> int:
    from predict_pipeline.calibration.disputes import open_dispute

    step = _with_connection(
        open_dispute,
        event_id=args.event_id,
        disputed_by=args.by,
        reason=args.reason,
        evidence_urls=args.evidence,
    )
    print(f"dispute {step.dispute_id} opened on resolution {step.resolution_id}")
    return 0


def _review(args: argparse.Namespace) -> int:
    from predict_pipeline.calibration.disputes import review_dispute

    step = _with_connection(review_dispute, dispute_id=args.dispute_id, reviewer=args.by)
    print(f"dispute {step.dispute_id} is under review")
    return 0


def _close(args: argparse.Namespace) -> int:
    from predict_pipeline.calibration.disputes import close_dispute

    step = _with_connection(
        close_dispute,
        dispute_id=args.dispute_id,
        decision=args.decision,
        reviewer=args.by,
        notes=args.notes,
        new_outcome=args.outcome,
    )
    print(f"dispute {step.dispute_id} {args.decision}; the outcome is {step.outcome}")
    return 0


_EVENT_COLUMNS = (
    "id",
    "title",
    "slug",
    "status",
    "category",
    "current_probability",
    "trust_score",
    "is_public",
    "org_id",
    "tags",
    "resolution_date",
    "created_at",
)


def _add(args: argparse.Namespace) -> int:
    import psycopg

    from predict_pipeline.audit import record_audits
    from predict_pipeline.cli.acting import acting_as, emit
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.plans import PlanLimitError, plan_limits
    from predict_pipeline.signals.linking import slug_base
    from predict_pipeline.tenancy import find_org

    if not args.title.strip():
        raise EventsCommandError("an event needs a title")
    target = bootstrap()
    with acting_as(target.app_url, args.as_user) as (conn, user_id):
        org_id = None
        if args.org:
            try:
                org_id = find_org(conn, args.org)
            except LookupError as exc:
                raise EventsCommandError(str(exc)) from None
        category_id = None
        if args.category:
            row = conn.execute(
                "SELECT id FROM prediction_categories WHERE slug = %s OR name = %s",
                (args.category, args.category),
            ).fetchone()
            if row is None:
                raise EventsCommandError(f"no category {args.category!r} (give its slug)")
            category_id = row[0]
        event_id = uuid.uuid4()
        # Slugs are unique across tenants: the id's digits keep one title from blocking another.
        slug = args.slug or f"{slug_base(args.title)}-{event_id.hex[:8]}"
        is_public = not (args.private or org_id)
        try:
            with plan_limits(), conn.transaction():
                conn.execute(
                    """INSERT INTO prediction_events
                         (id, title, description, slug, category_id, resolution_criteria,
                          resolution_date, tags, is_public, org_id, created_by)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (
                        event_id,
                        args.title,
                        args.description,
                        slug,
                        category_id,
                        args.criteria,
                        args.resolution_date,
                        args.tag or None,
                        is_public,
                        org_id,
                        user_id,
                    ),
                )
                record_audits(
                    conn,
                    action="event.created",
                    resource_type="prediction_events",
                    actor_type="user",
                    actor_id=user_id,
                    entries=[(event_id, {"slug": slug, "is_public": is_public, "via": "cli"})],
                )
        except PlanLimitError as exc:
            raise EventsCommandError(f"event not created: {exc}") from None
        except psycopg.errors.UniqueViolation:
            raise EventsCommandError(f"event not created: the slug {slug!r} is taken") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise EventsCommandError(f"event not created: {str(exc).splitlines()[0]}") from None
    visibility = "public" if is_public else (f"org {org_id}" if org_id else "private")
    return emit(
        args,
        {"event_id": event_id, "slug": slug, "is_public": is_public, "org_id": org_id},
        lambda: [f"event {event_id} created ({slug}, {visibility})"],
    )


def _list(args: argparse.Namespace) -> int:
    from predict_pipeline.cli.acting import emit, reader, table
    from predict_pipeline.db.bootstrap import bootstrap

    target = bootstrap()
    with reader(target.app_url, args.as_user) as (conn, _):
        rows = conn.execute(
            """SELECT e.id, e.title, e.slug, e.status, c.slug, e.current_probability,
                      e.trust_score, e.is_public, e.org_id, e.tags, e.resolution_date,
                      e.created_at
               FROM prediction_events e
               LEFT JOIN prediction_categories c ON c.id = e.category_id
               WHERE (%(status)s::text IS NULL OR e.status = %(status)s)
                 AND (%(category)s::text IS NULL OR c.slug = %(category)s)
                 AND (%(tag)s::text IS NULL OR %(tag)s = ANY(e.tags))
               ORDER BY e.created_at DESC, e.id LIMIT %(limit)s""",
            {
                "status": args.status,
                "category": args.category,
                "tag": args.tag,
                "limit": args.limit,
            },
        ).fetchall()
    events = [dict(zip(_EVENT_COLUMNS, row, strict=True)) for row in rows]
    return emit(
        args,
        {"events": events},
        lambda: (
            table(
                [
                    (
                        e["id"],
                        e["title"][:50],
                        e["status"],
                        e["category"] or "",
                        "" if e["current_probability"] is None else e["current_probability"],
                        "public" if e["is_public"] else ("org" if e["org_id"] else "private"),
                    )
                    for e in events
                ],
                ("event id", "title", "status", "category", "probability", "visibility"),
            )
            if events
            else ["no event matches"]
        ),
    )


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1: {text}")
    return value


def add_commands(commands: argparse._SubParsersAction) -> None:
    from predict_pipeline.cli.acting import acting_user_option, command, when_argument

    outcomes = ["YES", "NO", "AMBIGUOUS", "CANCELLED"]
    events = commands.add_parser("events", help="events: create, list, resolve").add_subparsers(
        dest="events_command", required=True
    )
    me = "you@example.com"
    add = command(
        events,
        "add",
        "create an event (public unless --private or --org), audited",
        f"predict-pipeline events add 'Will the ECB cut rates in June?' --category finance "
        f"--resolution-date 2026-06-30T23:59Z --tag ecb --as {me}",
    )
    add.add_argument("title")
    acting_user_option(add, required=True, what="the event's creator")
    add.add_argument("--category", help="the category's slug (e.g. finance)")
    add.add_argument("--description")
    add.add_argument("--criteria", help="how the event resolves (resolution_criteria)")
    add.add_argument("--resolution-date", type=when_argument, help="UTC, ISO 8601")
    add.add_argument("--tag", action="append", help="a tag (repeat for more)")
    add.add_argument("--slug", help="default: from the title, made unique")
    where = add.add_mutually_exclusive_group()
    where.add_argument("--private", action="store_true", help="only you see it")
    where.add_argument("--org", help="your org's (id or slug): its members see it")
    add.set_defaults(func=_add)

    listing = command(
        events,
        "list",
        "the events you see, newest first",
        f"predict-pipeline events list --as {me}",
    )
    acting_user_option(
        listing, required=False, what="only the events they see; without it, every tenant's"
    )
    listing.add_argument(
        "--status",
        choices=[
            "ACTIVE",
            "PAUSED",
            "RESOLVED_YES",
            "RESOLVED_NO",
            "RESOLVED_AMBIGUOUS",
            "CANCELLED",
        ],
    )
    listing.add_argument("--category", help="a category's slug")
    listing.add_argument("--tag")
    listing.add_argument("--limit", type=_limit, default=50)
    listing.set_defaults(func=_list)
    resolve = events.add_parser("resolve", help="resolve an event by hand")
    resolve.add_argument("event_id", type=uuid_argument)
    resolve.add_argument("--outcome", required=True, choices=outcomes)
    resolve.add_argument("--evidence", action="append", default=[], metavar="URL")
    resolve.add_argument("--details", help="what the resolution rests on")
    resolve.add_argument("--by", type=uuid_argument, help="id of the resolving user (auth.users)")
    resolve.set_defaults(func=_resolve)

    disputes = commands.add_parser("disputes", help="dispute a resolution").add_subparsers(
        dest="disputes_command", required=True
    )
    opened = disputes.add_parser("open", help="dispute an event's resolution")
    opened.add_argument("event_id", type=uuid_argument)
    opened.add_argument("--by", type=uuid_argument, required=True)
    opened.add_argument("--reason", required=True)
    opened.add_argument("--evidence", action="append", default=[], metavar="URL")
    opened.set_defaults(func=_open)

    review = disputes.add_parser("review", help="take an open dispute under review")
    review.add_argument("dispute_id", type=uuid_argument)
    review.add_argument("--by", type=uuid_argument, required=True)
    review.set_defaults(func=_review)

    close = disputes.add_parser("close", help="decide a dispute")
    close.add_argument("dispute_id", type=uuid_argument)
    close.add_argument("--decision", required=True, choices=["upheld", "dismissed", "overturned"])
    close.add_argument("--outcome", choices=outcomes, help="the new outcome (overturned only)")
    close.add_argument("--by", type=uuid_argument, required=True)
    close.add_argument("--notes", required=True)
    close.set_defaults(func=_close)
