"""`predict-pipeline calibration show`: how well the platform's probabilities did.

Two tables: `prediction_calibration_scores` (the spec's: global and per category, per window;
no tenant's data in a row) and `prediction_campaign_calibration` (the campaign loop's, per
tenant, platform, campaign type and window). With `--as USER` the second shows only the rows
that user reads under RLS (their own and their orgs'); without it, every tenant's.
"""

from __future__ import annotations

import argparse

from predict_pipeline.cli.acting import acting_user_option, command, emit, reader, table

WINDOWS = ("7D", "30D", "90D", "ALL_TIME")
_EVENT_COLUMNS = (
    "category",
    "time_window",
    "total_predictions",
    "resolved_predictions",
    "brier_score",
    "log_score",
    "accuracy_at_50",
    "accuracy_at_70",
    "accuracy_at_90",
    "calibration_curve",
    "computed_at",
)
_CAMPAIGN_COLUMNS = (
    "user_id",
    "org_id",
    "platform",
    "campaign_type",
    "time_window",
    "scored_results",
    "successes",
    "brier_score",
    "log_score",
    "accuracy_at_50",
    "mae_engagement_rate",
    "mae_conversion_rate",
    "direction_accuracy",
    "calibration_curve",
    "computed_at",
)


def _show(args: argparse.Namespace) -> int:
    from predict_pipeline.db.bootstrap import bootstrap

    target = bootstrap()
    windows = [args.window] if args.window else list(WINDOWS)
    with reader(target.app_url, args.as_user) as (conn, _):
        scores = [
            dict(zip(_EVENT_COLUMNS, row, strict=True))
            for row in conn.execute(
                """SELECT coalesce(c.slug, 'all'), s.time_window, s.total_predictions,
                          s.resolved_predictions, s.brier_score, s.log_score, s.accuracy_at_50,
                          s.accuracy_at_70, s.accuracy_at_90, s.calibration_curve, s.computed_at
                   FROM prediction_calibration_scores s
                   LEFT JOIN prediction_categories c ON c.id = s.category_id
                   WHERE s.time_window = ANY(%(windows)s)
                     AND (%(category)s::text IS NULL OR coalesce(c.slug, 'all') = %(category)s)
                   ORDER BY c.sort_order NULLS FIRST, c.slug,
                            array_position(%(order)s, s.time_window)""",
                {"windows": windows, "category": args.category, "order": list(WINDOWS)},
            )
        ]
        campaigns = [
            dict(zip(_CAMPAIGN_COLUMNS, row, strict=True))
            for row in conn.execute(
                """SELECT user_id, org_id, platform, campaign_type, time_window, scored_results,
                          successes, brier_score, log_score, accuracy_at_50, mae_engagement_rate,
                          mae_conversion_rate, direction_accuracy, calibration_curve, computed_at
                   FROM prediction_campaign_calibration
                   WHERE time_window = ANY(%(windows)s)
                   ORDER BY user_id NULLS LAST, org_id, platform, campaign_type,
                            array_position(%(order)s, time_window)""",
                {"windows": windows, "order": list(WINDOWS)},
            )
        ]
    if args.category and not scores:
        from predict_pipeline.errors import CommandError

        raise CommandError(
            f"no calibration for category {args.category!r} (a category slug, or all)"
        )

    def text() -> list[str]:
        lines = ["event calibration (prediction_calibration_scores)"]
        lines += (
            table(
                [
                    (
                        s["category"],
                        s["time_window"],
                        s["total_predictions"],
                        s["brier_score"],
                        s["log_score"],
                        s["accuracy_at_50"],
                        s["accuracy_at_70"],
                        s["accuracy_at_90"],
                        f"{s['computed_at']:%Y-%m-%d %H:%M}",
                    )
                    for s in scores
                ],
                (
                    "category",
                    "window",
                    "n",
                    "brier",
                    "log",
                    "acc@50",
                    "acc@70",
                    "acc@90",
                    "computed",
                ),
            )
            if scores
            else ["  not computed yet (the calibration_scores asset writes it)"]
        )
        lines.append("campaign calibration (prediction_campaign_calibration)")
        lines += (
            table(
                [
                    (
                        f"user {c['user_id']}" if c["user_id"] else f"org {c['org_id']}",
                        c["platform"],
                        c["campaign_type"],
                        c["time_window"],
                        c["scored_results"],
                        c["brier_score"],
                        c["direction_accuracy"],
                    )
                    for c in campaigns
                ],
                ("tenant", "platform", "type", "window", "n", "brier", "direction"),
            )
            if campaigns
            else ["  no scored campaign results"]
        )
        return lines

    return emit(args, {"calibration_scores": scores, "campaign_calibration": campaigns}, text)


def add_commands(commands: argparse._SubParsersAction) -> None:
    calibration = commands.add_parser(
        "calibration", help="calibration of probabilities (Brier, log score, accuracy)"
    ).add_subparsers(dest="calibration_command", required=True)
    show = command(
        calibration,
        "show",
        "print the calibration tables (events per category and window; campaigns per tenant)",
        "predict-pipeline calibration show --category finance --window 30D",
    )
    show.add_argument("--category", help="a category's slug, or all for the global rows")
    show.add_argument("--window", choices=WINDOWS)
    acting_user_option(
        show, required=False, what="only their campaigns' calibration; without it, every tenant's"
    )
    show.set_defaults(func=_show)
