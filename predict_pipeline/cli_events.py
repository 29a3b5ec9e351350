"""`predict-pipeline events resolve` and `disputes open|review|close`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from predict_pipeline.errors import CommandError, uuid_argument


class EventsCommandError(CommandError):
    pass


def _with_connection(step: Callable[..., Any], **kwargs: Any) -> Any:
    from predict_pipeline.calibration.disputes import WorkflowError
    from predict_pipeline.db.connection import connect
    from predict_pipeline.runtime import bootstrap

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


def add_commands(commands: argparse._SubParsersAction) -> None:
    outcomes = ["YES", "NO", "AMBIGUOUS", "CANCELLED"]
    events = commands.add_parser("events", help="event resolution").add_subparsers(
        dest="events_command", required=True
    )
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
