"""Dagster layer of stage 2: validated_signals and its checks."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
from psycopg.rows import dict_row

from predict_pipeline.defs.catalog import (
    PartitionedTable,
    partitioned_result,
    preview_table,
    table_definition_metadata,
)
from predict_pipeline.defs.partitions import BACKFILL_POLICY, HOURLY, hourly_windows
from predict_pipeline.defs.resources import LandingZoneResource, PostgresResource
from predict_pipeline.model import history_chunks
from predict_pipeline.signals.ingest import FeedValidationReport
from predict_pipeline.signals.routing import MatchingSettings
from predict_pipeline.signals.similarity import DEFAULT_MATCH_THRESHOLD
from predict_pipeline.signals.stage import validate_window

SIGNALS_TABLE = "prediction_signals"


class SignalValidationConfig(dg.Config):
    match_threshold: float = DEFAULT_MATCH_THRESHOLD  # similarity at which a market auto-matches
    max_rejected_share: float = 0.2  # the check fails above this share of rejected records
    clock_skew_minutes: int = 5  # how far in the future fetched_at may be


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=BACKFILL_POLICY,
    deps=["raw_feed_fetches"],
    group_name="signals",
    kinds={"pandas", "postgres"},
    owners=["team:data-platform"],
    description=(
        "prediction_signals for the hour window: every landed page read again through its "
        "adapter, validated with pandera (rejected records kept beside their page with named "
        "reasons), deduplicated by source + source_event_id + signal_type per 5-minute UTC "
        "bucket, matched to events (manual mapping, confirmed link, similarity) and written "
        "with COPY; unmatched markets go to prediction_unmatched_signals for review. A feed "
        "whose write fails is rolled back and its runs marked FAILED; the other feeds' rows "
        "are written and the asset still materialises (the every_feed_written check warns)."
    ),
    metadata=table_definition_metadata(SIGNALS_TABLE),
    check_specs=[
        dg.AssetCheckSpec(
            "rejected_share_within_limit",
            asset="validated_signals",
            description="Fails when more than max_rejected_share of a window's records are "
            "rejected by validation.",
        ),
        dg.AssetCheckSpec(
            "every_feed_written",
            asset="validated_signals",
            description="Warns when a feed's signals for the window could not be written (rolled "
            "back, its runs FAILED with the reason); re-run the partition to retry it.",
        ),
    ],
)
def validated_signals(
    context: dg.AssetExecutionContext,
    config: SignalValidationConfig,
    database: PostgresResource,
    landing: LandingZoneResource,
) -> dg.MaterializeResult:
    time_window = context.partition_time_window
    now = datetime.now(UTC)
    matching = MatchingSettings(threshold=config.match_threshold)
    reports: list[FeedValidationReport] = []
    zone = landing.zone()
    with database.connection(autocommit=True) as conn:
        # A day at a time: the day's landed files (hourly polls and day-long backfills) at once.
        for window in history_chunks(hourly_windows(time_window.start, time_window.end)):
            reports += validate_window(
                conn,
                zone,
                window,
                now=now,
                matching=matching,
                clock_skew=timedelta(minutes=config.clock_skew_minutes),
            )
        with conn.cursor(row_factory=dict_row) as cur:
            preview = cur.execute(
                """SELECT e.title AS event, s.source, s.signal_type, s.value, s.fetched_at
                   FROM prediction_signals s JOIN prediction_events e ON e.id = s.event_id
                   WHERE s.fetched_at >= %s AND s.fetched_at < %s
                   ORDER BY s.fetched_at DESC, s.id LIMIT 20""",
                (time_window.start, time_window.end),
            ).fetchall()
    failed = [r for r in reports if not r.ok]
    for report in failed:
        context.log.error(f"{report.source}/{report.feed_name}: {report.error}")
    records = sum(r.records for r in reports)
    rejected = sum(r.rejected for r in reports)
    share = rejected / records if records else 0.0
    reasons: dict[str, int] = {}
    for report in reports:
        for reason, count in report.rejected_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            "feeds": len(reports),
            "records": records,
            "valid": sum(r.valid for r in reports),
            "rejected": rejected,
            "deduplicated": sum(r.deduplicated for r in reports),
            "matched": sum(r.matched for r in reports),
            "unmatched": sum(r.unmatched for r in reports),
            "written": sum(r.written for r in reports),
            "events_updated": sum(r.events for r in reports),
            # Days before this window that got rows (an upload or backfill of old history):
            # late_history_sensor snapshots them.
            LATE_HISTORY_DAYS: dg.MetadataValue.json(
                sorted(
                    {
                        day
                        for r in reports
                        for day in r.observed_days
                        if day < time_window.start.date().isoformat()
                    }
                )
            ),
            "rejected_reasons": dg.MetadataValue.json(reasons),
            "feeds_failed": len(failed),
            "rejected_by_reason": preview_table(
                {"reason": "string", "records": "int"},
                [
                    {"reason": reason, "records": count}
                    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])
                ],
            ),
            "by_feed": _feeds_table(reports),
            "latest_signals": preview_table(
                {
                    "event": "string",
                    "source": "string",
                    "signal_type": "string",
                    "value": "float",
                    "fetched_at": "string",
                },
                preview,
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="rejected_share_within_limit",
                passed=share <= config.max_rejected_share,
                metadata={
                    "rejected_share": round(share, 4),
                    "limit": config.max_rejected_share,
                    "rejected_reasons": dg.MetadataValue.json(reasons),
                },
            ),
            dg.AssetCheckResult(
                check_name="every_feed_written",
                passed=not failed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "failed_feeds": dg.MetadataValue.json(
                        [{"feed": f"{r.source}/{r.feed_name}", "error": r.error} for r in failed]
                    )
                },
            ),
        ],
    )
    return partitioned_result(
        context,
        result,
        database,
        PartitionedTable(SIGNALS_TABLE, "fetched_at"),
        _partition_counts(context, reports),
    )


def _partition_counts(
    context: dg.AssetExecutionContext, reports: list[FeedValidationReport]
) -> dict[str, dict[str, int]]:
    """Each partition's records, rejected and written, by the records' own hour (a record
    whose time could not be read is counted in the run's totals only)."""
    hourly: Counter[tuple[str, datetime]] = Counter()
    for report in reports:
        hourly.update(report.hourly)
    counts = {}
    for key in context.partition_keys:
        hour = HOURLY.time_window_for_partition_key(key).start
        valid, rejected = hourly[("valid", hour)], hourly[("rejected", hour)]
        counts[key] = {
            "partition_records": valid + rejected,
            "partition_rejected": rejected,
            "partition_written": hourly[("written", hour)],
        }
    return counts


LATE_HISTORY_DAYS = "late_history_days"


def _feeds_table(reports: list[FeedValidationReport]) -> dg.TableMetadataValue:
    counts = ("records", "valid", "rejected", "deduplicated", "matched", "unmatched", "written")
    return preview_table(
        {
            "feed": "string",
            **dict.fromkeys(counts, "int"),
            "page_errors": "string",
            "error": "string",
        },
        [
            {
                "feed": f"{r.source}/{r.feed_name}",
                **{name: getattr(r, name) for name in counts},
                "page_errors": "; ".join(r.page_errors),
                "error": r.error or "",
            }
            for r in reports
        ],
        limit=len(reports),
    )


defs = dg.Definitions(assets=[validated_signals])
