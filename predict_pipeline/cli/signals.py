"""`predict-pipeline signals review|resolve`: work the unmatched review queue, one item or a
thousand at a time.

Without `--as USER` both commands see every tenant's items: the operator's view, for whoever
runs the pipeline with its database role (who can read every table anyway). `--as USER` (an
id or e-mail) shows and resolves only that user's feeds' items, as the user would.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime

from predict_pipeline.errors import CommandError, uuid_argument


class SignalsCommandError(CommandError):
    pass


def _filter(args: argparse.Namespace, conn, *, status: str | None):
    from predict_pipeline.signals.review import ReviewFilter
    from predict_pipeline.tenancy import find_user

    owner = None
    if args.as_user:
        try:
            owner = find_user(conn, args.as_user)
        except LookupError as exc:
            raise SignalsCommandError(str(exc)) from None
    return ReviewFilter(
        item_ids=tuple(getattr(args, "item_ids", None) or ()),
        feed_id=args.feed,
        source=args.source,
        status=status,
        min_score=args.min_score,
        max_score=args.max_score,
        text=args.text,
        owner=owner,
    )


def _review(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.signals.review import count_items, review_items

    target = bootstrap()
    status = None if args.status == "ANY" else args.status
    with connect(target.app_url) as conn:
        where = _filter(args, conn, status=status)
        items = review_items(conn, where, limit=args.limit)
        total = count_items(conn, where) if items else 0
    if not items:
        print("no review item matches" if where.narrows() else "the review queue is empty")
        return 0
    for item in items:
        value = "" if item["value"] is None else f"{item['value']:g}"
        state = "" if item["status"] == "PENDING" else f"{item['status']}  "
        print(
            f"{item['id']}  {state}{item['feed']}  {item['market_id']}  "
            f"{item['signal_type']} {value}"
        )
        print(f"    market:     {item['title'] or '(no title)'}")
        if item["reason"]:
            print(f"    waiting:    {item['reason']}")
        if item["suggested_event_id"] and item["suggested_title"] is None:
            print("    suggestion: withheld (an event the feed's owner cannot see)")
        elif item["suggested_event_id"]:
            print(
                f"    suggestion: {item['suggested_title']} ({item['suggested_event_id']}, "
                f"confidence {item['confidence']:.2f})"
            )
    print(
        f"\n{len(items)} of {total} item(s) shown; resolve with: predict-pipeline signals "
        "resolve ID... | the same filters, and --event EVENT_ID | --suggested | --new-event | "
        "--discard"
    )
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect
    from predict_pipeline.signals.review import ReviewError, decision_of, resolve, resolve_item

    target = bootstrap()
    now = datetime.now(UTC)
    with connect(target.app_url, autocommit=True) as conn:
        where = _filter(args, conn, status="PENDING")
        if not where.narrows():
            raise SignalsCommandError(
                "name the items (ITEM_ID ...) or a filter (--feed, --source, --min-score, "
                "--max-score, --text, --as): resolving the whole queue is never implied"
            )
        by = args.by or where.owner
        try:
            decision = decision_of(
                event_id=args.event,
                new_event=args.new_event,
                discard=args.discard,
                suggested=args.suggested,
            )
            if len(where.item_ids) == 1 and not replace(where, item_ids=()).narrows():
                one = resolve_item(
                    conn,
                    where.item_ids[0],
                    event_id=args.event,
                    new_event=args.new_event,
                    discard=args.discard,
                    suggested=args.suggested,
                    resolved_by=by,
                    now=now,
                )
                event = f" -> event {one.event_id}" if one.event_id else ""
                print(
                    f"{one.status}{event}: {one.items} item(s), "
                    f"{one.signals_written} signal(s) written"
                )
                return 0
            done = resolve(
                conn,
                where,
                decision,
                event_id=args.event,
                resolved_by=by,
                now=now,
                limit=args.limit,
            )
        except ReviewError as exc:
            raise SignalsCommandError(str(exc)) from None
    print(
        f"{done.status}: {done.items} item(s) of {done.markets} market(s), "
        f"{done.signals_written} signal(s) written, {done.events_created} event(s) created"
    )
    for reason, count in sorted(done.refused.items()):
        print(f"refused {count} item(s): {reason}")
    return 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feed", type=uuid_argument, help="only this feed's items")
    parser.add_argument("--source", help="only items of this source (e.g. upload, kalshi)")
    parser.add_argument(
        "--min-score", type=float, help="only items whose suggestion scores at least this"
    )
    parser.add_argument(
        "--max-score", type=float, help="only items whose suggestion scores at most this"
    )
    parser.add_argument("--text", help="only items whose market title or id contains this")
    parser.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        help="act as this user (id or e-mail): only their feeds' items; without it, every "
        "tenant's (the operator's view)",
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    signals = commands.add_parser("signals", help="the unmatched review queue").add_subparsers(
        dest="signals_command", required=True
    )
    review = signals.add_parser("review", help="list unmatched signals (pending by default)")
    _add_filters(review)
    review.add_argument(
        "--status",
        default="PENDING",
        choices=["PENDING", "MATCHED", "NEW_EVENT_CREATED", "DISCARDED", "ANY"],
    )
    review.add_argument("--limit", type=int, default=50)
    review.set_defaults(func=_review)

    resolve = signals.add_parser(
        "resolve",
        help="resolve pending items, named or filtered, each with its market's other items",
    )
    resolve.add_argument("item_ids", nargs="*", type=uuid_argument, metavar="ITEM_ID")
    _add_filters(resolve)
    resolve.add_argument(
        "--limit",
        type=int,
        help="take the first N items the filter selects (oldest first); each brings its "
        "market's other pending items",
    )
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument("--event", type=uuid_argument, help="match the markets to this event")
    choice.add_argument(
        "--suggested", action="store_true", help="match each market to its suggested event"
    )
    choice.add_argument("--new-event", action="store_true", help="create an event from each")
    choice.add_argument("--discard", action="store_true", help="discard the markets")
    resolve.add_argument(
        "--by", type=uuid_argument, help="id of the reviewing user (default: the --as user)"
    )
    resolve.set_defaults(func=_resolve)
