"""`predict-pipeline signals review|resolve`: work the unmatched review queue."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from predict_pipeline.errors import CommandError, uuid_argument


def _review(args: argparse.Namespace) -> int:
    from predict_pipeline.db.connection import connect
    from predict_pipeline.runtime import bootstrap
    from predict_pipeline.signals.review import pending_items

    target = bootstrap()
    with connect(target.app_url) as conn:
        items = pending_items(conn, limit=args.limit, feed_id=args.feed)
    if not items:
        print("the review queue is empty")
        return 0
    for item in items:
        value = "" if item["value"] is None else f"{item['value']:g}"
        print(
            f"{item['id']}  {item['feed']}  {item['source_event_id']}  "
            f"{item['signal_type']} {value}"
        )
        print(f"    market:     {item['title'] or '(no title)'}")
        if item["suggested_event_id"]:
            print(
                f"    suggestion: {item['suggested_title']} ({item['suggested_event_id']}, "
                f"confidence {item['confidence']:.2f})"
            )
    print(
        f"\n{len(items)} pending; resolve with: predict-pipeline signals resolve ID "
        "--event EVENT_ID | --new-event | --discard"
    )
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from predict_pipeline.db.connection import connect
    from predict_pipeline.runtime import bootstrap
    from predict_pipeline.signals.review import ReviewError, resolve_item

    target = bootstrap()
    with connect(target.app_url, autocommit=True) as conn:
        try:
            result = resolve_item(
                conn,
                args.item_id,
                event_id=args.event,
                new_event=args.new_event,
                discard=args.discard,
                resolved_by=args.by,
                now=datetime.now(UTC),
            )
        except ReviewError as exc:
            raise SignalsCommandError(str(exc)) from None
    event = f" -> event {result.event_id}" if result.event_id else ""
    print(
        f"{result.status}{event}: {result.items} item(s), "
        f"{result.signals_written} signal(s) written"
    )
    return 0


class SignalsCommandError(CommandError):
    pass


def add_commands(commands: argparse._SubParsersAction) -> None:
    signals = commands.add_parser("signals", help="the unmatched review queue").add_subparsers(
        dest="signals_command", required=True
    )
    review = signals.add_parser("review", help="list pending unmatched signals")
    review.add_argument("--limit", type=int, default=50)
    review.add_argument("--feed", type=uuid_argument, help="only this feed's items")
    review.set_defaults(func=_review)

    resolve = signals.add_parser("resolve", help="resolve one pending item (and its market's)")
    resolve.add_argument("item_id", type=uuid_argument)
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument("--event", type=uuid_argument, help="match the market to this event")
    choice.add_argument("--new-event", action="store_true", help="create an event from it")
    choice.add_argument("--discard", action="store_true", help="discard the market")
    resolve.add_argument("--by", type=uuid_argument, help="id of the reviewing user (auth.users)")
    resolve.set_defaults(func=_resolve)
