"""`predict-pipeline flags review|resolve`: the compliance queue of manipulation flags.

Without `--as USER` / `--org ORG`, `flags review` lists the flags of every tenant's events: the
operator's (compliance team's) view, for whoever runs the pipeline with its database role. With
one of them it lists only the flags on events that user (with their orgs) or org can see.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from predict_pipeline.errors import CommandError, uuid_argument


def _review(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.tenancy import find_org, find_user
    from predict_pipeline.trust.store import unreviewed_flags

    target = bootstrap()
    with connect(target.app_url) as conn:
        try:
            user = find_user(conn, args.as_user) if args.as_user else None
            org = find_org(conn, args.org) if args.org else None
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        flags = unreviewed_flags(conn, limit=args.limit, user=user, org=org)
    if not flags:
        print("no flag awaits review")
        return 0
    for flag_id, created, title, flag_type, severity, description in flags:
        print(f"{flag_id}  {created:%Y-%m-%d %H:%M}  {severity:<8} {flag_type:<20} {title}")
        print(f"    {description}")
    print(
        f"\n{len(flags)} unreviewed; close one with: predict-pipeline flags resolve ID "
        "--notes TEXT [--by USER_ID]"
    )
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.trust.store import review_flag

    target = bootstrap()
    with connect(target.app_url, autocommit=True) as conn:
        try:
            review_flag(
                conn, args.flag_id, notes=args.notes, reviewer=args.by, now=datetime.now(UTC)
            )
        except LookupError as exc:
            raise CommandError(str(exc.args[0])) from None
    print(f"flag {args.flag_id} reviewed")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    flags = commands.add_parser("flags", help="manipulation flags").add_subparsers(
        dest="flags_command", required=True
    )
    review = flags.add_parser("review", help="list flags awaiting review")
    review.add_argument("--limit", type=int, default=50)
    viewer = review.add_mutually_exclusive_group()
    viewer.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        help="only flags on events this user (id or e-mail) can see; without --as/--org, "
        "every tenant's (the operator's view)",
    )
    viewer.add_argument("--org", help="only flags on events this org (id or slug) can see")
    review.set_defaults(func=_review)
    resolve = flags.add_parser("resolve", help="record an analyst's review of a flag")
    resolve.add_argument("flag_id", type=uuid_argument)
    resolve.add_argument("--notes", required=True)
    resolve.add_argument("--by", type=uuid_argument, help="id of the reviewing user (auth.users)")
    resolve.set_defaults(func=_resolve)
