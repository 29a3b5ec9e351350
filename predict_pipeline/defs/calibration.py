"""Dagster layer of stage 5: event_resolutions and calibration_scores, and the one
calibration job with its two schedules (hourly, and after the nightly retention)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.calibration.diagram import diagram_markdown, reliability_diagram_png
from predict_pipeline.calibration.metrics import calibration_rows
from predict_pipeline.calibration.resolutions import resolve_from_markets, resolved_events
from predict_pipeline.calibration.store import active_categories, save_calibration
from predict_pipeline.defs.catalog import (
    preview_table,
    table_definition_metadata,
    with_table_metadata,
)
from predict_pipeline.defs.resources import PostgresResource

RESOLUTIONS_TABLE = "prediction_resolutions"
CALIBRATION_TABLE = "prediction_calibration_scores"


class ResolutionConfig(dg.Config):
    dispute_window_hours: int = 48


@dg.asset(
    deps=["event_snapshots"],
    group_name="calibration",
    kinds={"postgres"},
    owners=["team:data-platform"],
    description=(
        "prediction_resolutions from settled markets: an ACTIVE event whose linked markets "
        "all settled the same way is resolved (method market_settled, final_probability = "
        "the pooled probability at the last observation at or before close, a 48 h dispute "
        "window); disagreeing markets leave it open with an audit entry. Resolutions whose "
        "event got history after they were scored are scored again (audited "
        "resolution.rescored). Dispute windows that closed with no open dispute become final."
    ),
    metadata=table_definition_metadata(RESOLUTIONS_TABLE),
)
def event_resolutions(config: ResolutionConfig, database: PostgresResource) -> dg.MaterializeResult:
    with database.connection() as conn:
        report = resolve_from_markets(
            conn,
            now=datetime.now(UTC),
            dispute_window=timedelta(hours=config.dispute_window_hours),
        )
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            "resolved": len(report.resolved),
            "conflicts": len(report.conflicts),
            "finalised": report.finalised,
            "rescored": report.rescored,
            "resolved_events": preview_table(
                {"event": "string", "outcome": "string"},
                [{"event": t, "outcome": o} for t, o in report.resolved],
                limit=100,
            ),
            "left_open_because_markets_disagree": dg.MetadataValue.json(report.conflicts),
        }
    )
    return with_table_metadata(result, database, RESOLUTIONS_TABLE)


@dg.asset(
    deps=["event_resolutions"],
    group_name="calibration",
    kinds={"pandas", "postgres"},
    owners=["team:data-platform"],
    description=(
        "prediction_calibration_scores per category and globally for 7D, 30D, 90D and "
        "ALL_TIME: Brier, log score, accuracy at 50/70/90 %, a ten-bin calibration curve and "
        "horizon Brier scores, over events resolved YES or NO. The materialisation shows the "
        "reliability diagram; the global Brier per window is plotted over time."
    ),
    metadata=table_definition_metadata(CALIBRATION_TABLE),
)
def calibration_scores(database: PostgresResource) -> dg.MaterializeResult:
    now = datetime.now(UTC)
    with database.connection() as conn:
        events = resolved_events(conn)
        rows = calibration_rows(events, now=now, categories=active_categories(conn))
        written = save_calibration(conn, rows, now)
    png = reliability_diagram_png(rows, title=f"Reliability, computed {now:%Y-%m-%d %H:%M} UTC")
    global_rows = {r.time_window: r for r in rows if r.category_id is None}
    metadata: dict = {
        "rows": written,
        "resolved_events": len(events),
        # Markdown with a data: URI is what the UI renders as an image ([Show Markdown]).
        "reliability_diagram": dg.MetadataValue.md(diagram_markdown(png)),
        "global_scores": preview_table(
            {
                "window": "string",
                "resolved": "int",
                "brier": "float",
                "log_score": "float",
                "accuracy_50": "float",
                "accuracy_70": "float",
                "accuracy_90": "float",
            },
            [
                {
                    "window": r.time_window,
                    "resolved": r.resolved_predictions,
                    "brier": r.brier_score,
                    "log_score": r.log_score,
                    "accuracy_50": r.accuracy_at_50,
                    "accuracy_70": r.accuracy_at_70,
                    "accuracy_90": r.accuracy_at_90,
                }
                for r in global_rows.values()
            ],
        ),
    }
    for window, row in global_rows.items():
        metadata[f"brier_{window.lower()}"] = (
            float(row.brier_score) if row.brier_score is not None else float("nan")
        )
        metadata[f"scored_{window.lower()}"] = row.resolved_predictions
    return with_table_metadata(dg.MaterializeResult(metadata=metadata), database, CALIBRATION_TABLE)


calibration_job = dg.define_asset_job(
    "calibration_job",
    selection=["event_resolutions", "calibration_scores"],
    description="event_resolutions → calibration_scores over everything resolved so far.",
)


calibration_schedule = dg.ScheduleDefinition(
    name="calibration_schedule",
    job=calibration_job,
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly at :30: resolves events whose linked markets all settled, finalises closed "
        "dispute windows, and recomputes calibration (with its reliability diagram)."
    ),
)

# After retention (03:00) has finished with the tables calibration reads.
calibration_after_retention_schedule = dg.ScheduleDefinition(
    name="calibration_after_retention_schedule",
    job=calibration_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


defs = dg.Definitions(
    assets=[event_resolutions, calibration_scores],
    jobs=[calibration_job],
    schedules=[calibration_schedule, calibration_after_retention_schedule],
)
