"""Dagster layer of stage 5: event_resolutions, calibration_scores and source_calibration (with
its trust-band check), and the one calibration job with its two schedules (hourly, and after
the nightly retention)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.calibration.diagram import (
    diagram_markdown,
    reliability_diagram_png,
    source_reliability_png,
)
from predict_pipeline.calibration.metrics import calibration_rows
from predict_pipeline.calibration.resolutions import resolve_from_markets, resolved_events
from predict_pipeline.calibration.source_calibration import (
    POOLED,
    SeriesFilters,
    pooled_vs_best_source,
    save_source_calibration,
    scored_series,
    source_calibration_rows,
)
from predict_pipeline.calibration.store import active_categories, save_calibration
from predict_pipeline.calibration.trust_bands import (
    MIN_BAND_EVENTS,
    band_order_violations,
    pooled_at_close_by_band,
    trust_band_report,
)
from predict_pipeline.defs.catalog import (
    preview_table,
    table_definition_metadata,
    with_table_metadata,
)
from predict_pipeline.defs.resources import PostgresResource

RESOLUTIONS_TABLE = "prediction_resolutions"
CALIBRATION_TABLE = "prediction_calibration_scores"
SOURCE_CALIBRATION_TABLE = "prediction_source_calibration"
TRUST_BAND_CHECK = "trust_bands_ordered"


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


class SourceCalibrationConfig(dg.Config):
    """Which scored series count (0 turns a filter off; source_calibration.py defines each)."""

    min_volume: float = 0.0  # the market's traded volume up to close, in source units
    min_traders: int = 0  # raw_data.unique_bettors; no adapter records it yet
    min_trust: float = 0.0  # the event's trust_score at its last snapshot at or before close


@dg.asset(
    deps=["event_resolutions"],
    group_name="calibration",
    kinds={"pandas", "postgres"},
    owners=["team:data-platform"],
    description=(
        "prediction_source_calibration: Brier, log score, accuracy and the ten-bin curve of "
        "every market source and of pooled, per category × window × horizon, over "
        "v_market_scores (filters: min volume, min traders, min trust at close). The "
        "materialisation compares pooled with the best single source on the same events "
        "(CLOSE, all time), draws one reliability curve per source with Wilson bands, and "
        "scores pooled at close by trust band; the check warns when a higher trust band "
        "does not score a lower Brier."
    ),
    metadata=table_definition_metadata(SOURCE_CALIBRATION_TABLE),
    check_specs=[
        dg.AssetCheckSpec(
            TRUST_BAND_CHECK,
            asset="source_calibration",
            description=(
                f"Each trust band at close (with ≥ {MIN_BAND_EVENTS} events) scores a lower "
                "pooled Brier than the band below it; WARN otherwise."
            ),
        )
    ],
)
def source_calibration(
    config: SourceCalibrationConfig, database: PostgresResource
) -> dg.MaterializeResult:
    now = datetime.now(UTC)
    filters = SeriesFilters(config.min_volume, config.min_traders, config.min_trust)
    with database.connection() as conn:
        categories = active_categories(conn)
        names = dict(conn.execute("SELECT id, slug FROM prediction_categories").fetchall())
        scored = scored_series(conn, filters)
        rows = source_calibration_rows(scored, now=now, categories=categories)
        written = save_source_calibration(conn, rows, filters, now)
        trust = trust_band_report(pooled_at_close_by_band(conn))
    comparison = pooled_vs_best_source(scored, now=now, category_names=names)
    curves = {
        r.source: r.row.calibration_curve["bins"]
        for r in rows
        if r.horizon == "CLOSE" and r.row.time_window == "ALL_TIME" and r.row.category_id is None
    }
    violations = band_order_violations(trust)
    metadata: dict = {
        "rows": written,
        "scored_series": len(scored),
        "sources": sorted({r.source for r in rows} - {POOLED}),
        "pooled_vs_best_source": preview_table(
            {
                "category": "string",
                "pooled_brier": "float",
                "best_source": "string",
                "best_source_brier": "float",
                "difference": "float",
                "events": "int",
            },
            comparison,
            limit=100,
        ),
        # pooled − best single source, global: negative means pooling beats every source.
        "pooled_minus_best_source_brier": next(
            (c["difference"] for c in comparison if c["category"] == "global"), float("nan")
        ),
        "trust_bands": preview_table(
            {
                "band": "string",
                "events": "int",
                "brier": "float",
                "brier_low": "float",
                "brier_high": "float",
                "accuracy_50": "float",
                "accuracy_low": "float",
                "accuracy_high": "float",
            },
            [
                {
                    "band": b.band,
                    "events": b.events,
                    "brier": b.brier_score,
                    "brier_low": b.brier_low,
                    "brier_high": b.brier_high,
                    "accuracy_50": b.accuracy_at_50,
                    "accuracy_low": b.accuracy_low,
                    "accuracy_high": b.accuracy_high,
                }
                for b in trust.bands
            ],
        ),
        "events_without_trust_at_close": trust.untrusted_events,
    }
    if curves:
        png = source_reliability_png(
            curves, title=f"Reliability at close by source, {now:%Y-%m-%d %H:%M} UTC"
        )
        metadata["reliability_by_source"] = dg.MetadataValue.md(diagram_markdown(png))
    check = dg.AssetCheckResult(
        check_name=TRUST_BAND_CHECK,
        passed=not violations,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "violations": dg.MetadataValue.json(
                [
                    {
                        "lower": lo.band,
                        "lower_brier": lo.brier_score,
                        "higher": hi.band,
                        "higher_brier": hi.brier_score,
                    }
                    for lo, hi in violations
                ]
            ),
            "min_band_events": MIN_BAND_EVENTS,
        },
    )
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata=metadata, check_results=[check]
    )
    return with_table_metadata(result, database, SOURCE_CALIBRATION_TABLE)


calibration_job = dg.define_asset_job(
    "calibration_job",
    selection=["event_resolutions", "calibration_scores", "source_calibration"],
    description=(
        "event_resolutions → calibration_scores and source_calibration over everything "
        "resolved so far."
    ),
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
    assets=[event_resolutions, calibration_scores, source_calibration],
    jobs=[calibration_job],
    schedules=[calibration_schedule, calibration_after_retention_schedule],
)
