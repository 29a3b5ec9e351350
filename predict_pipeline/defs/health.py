"""Dagster layer of feed health: the source_health_daily asset with the feeds' freshness and
completeness checks, and the hourly job that runs it (logic in ingestion/health.py)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.defs.catalog import table_definition_metadata, with_table_metadata
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.ingestion.health import (
    COMPLETENESS_DROP,
    FRESHNESS_FACTOR,
    MIN_TRAILING,
    FeedCompleteness,
    FeedFreshness,
    feed_completeness,
    feed_freshness,
    write_daily_health,
)

HEALTH_TABLE = "prediction_source_health_daily"
_SHOWN = 20  # feeds named in a check's metadata


class SourceHealthConfig(dg.Config):
    days: int = 2  # UTC days recomputed, ending today: yesterday's last hours settle today


@dg.asset(
    group_name="ingestion",
    deps=["raw_feed_fetches"],
    kinds={"postgres"},
    owners=["team:data-platform"],
    description=(
        "prediction_source_health_daily: per source and UTC day (per owner, and for every "
        "owner together) freshness, completeness, error rate, p50/p95 fetch latency, rejects "
        "by reason and a 0-100 health score with its status, as seed 002's signal-health "
        "table. Each run recomputes its days and replaces their rows."
    ),
    metadata=table_definition_metadata(HEALTH_TABLE),
    # Checks of the asset, not of raw_feed_fetches: every backfill run would carry them.
    check_specs=[
        dg.AssetCheckSpec(
            "feeds_fresh",
            asset="source_health_daily",
            description=(
                f"Warns when an enabled polled feed's last successful poll is older than "
                f"{FRESHNESS_FACTOR:g} expected intervals (its poll interval, or its cron's "
                "longest gap in the week before)."
            ),
        ),
        dg.AssetCheckSpec(
            "feeds_complete",
            asset="source_health_daily",
            description=(
                f"Warns when a feed's latest successful poll fetched under "
                f"{COMPLETENESS_DROP:.0%} of the median of its polls before it (judged after "
                f"{MIN_TRAILING} polls)."
            ),
        ),
    ],
)
def source_health_daily(
    context: dg.AssetExecutionContext, config: SourceHealthConfig, database: PostgresResource
) -> dg.MaterializeResult:
    now = datetime.now(UTC)
    last = now.date()
    first = last - timedelta(days=max(1, config.days) - 1)
    with database.connection() as conn:
        rows = write_daily_health(conn, first, last, now)
        checks = [
            feeds_fresh(feed_freshness(conn, now)),
            feeds_complete(feed_completeness(conn, now)),
        ]
        platform = conn.execute(
            f"""SELECT source, feeds, runs, error_rate, freshness_score, completeness_score,
                       health_score, status, issues
                FROM {HEALTH_TABLE} WHERE day = %s AND user_id IS NULL ORDER BY source""",  # noqa: S608
            (last,),
        ).fetchall()
    table = "\n".join(
        [
            "| source | feeds | runs | error rate | freshness | completeness | health | issues |",
            "|---|---|---|---|---|---|---|---|",
            *(_health_line(row) for row in platform),
        ]
    )
    context.log.info(f"source health: {rows} rows for {first}..{last}")
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            "rows_written": rows,
            "days": f"{first}..{last}",
            "today": dg.MetadataValue.md(table),
            "unhealthy_sources": [s for s, *_, st, _i in platform if st == "unhealthy"],
        },
        check_results=checks,
    )
    return with_table_metadata(result, database, HEALTH_TABLE)


def _health_line(row: tuple) -> str:
    source, feeds, runs, error_rate, fresh, complete, health, status, issues = row
    cells = [source, feeds, runs, "" if error_rate is None else f"{error_rate:.1%}"]
    cells += ["" if v is None else v for v in (fresh, complete)]
    cells += [f"{'' if health is None else health} {status or ''}", "; ".join(issues)]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def feeds_fresh(feeds: list[FeedFreshness]) -> dg.AssetCheckResult:
    stale = [f for f in feeds if f.stale]
    return dg.AssetCheckResult(
        check_name="feeds_fresh",
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(stale)} of {len(feeds)} polled feeds stale",
        metadata={
            "stale_feeds": [_stale(f) for f in stale[:_SHOWN]],
            "polled_feeds": len(feeds),
        },
    )


def feeds_complete(feeds: list[FeedCompleteness]) -> dg.AssetCheckResult:
    dropped = [f for f in feeds if f.dropped]
    return dg.AssetCheckResult(
        check_name="feeds_complete",
        passed=not dropped,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(dropped)} of {len(feeds)} feeds dropped",
        metadata={
            "dropped_feeds": [
                f"{f.source}/{f.name} ({f.feed_id}): {f.latest} records against a median "
                f"of {f.median:g} over {f.trailing} polls"
                for f in dropped[:_SHOWN]
            ],
            "judged_feeds": sum(f.trailing >= MIN_TRAILING for f in feeds),
        },
    )


def _stale(feed: FeedFreshness) -> str:
    since = f"{feed.last_success:%Y-%m-%d %H:%M} UTC" if feed.last_success else "never"
    return (
        f"{feed.source}/{feed.name} ({feed.feed_id}): last success {since},"
        f" expected every {feed.expected}"
    )


feed_health_job = dg.define_asset_job(
    "feed_health_job",
    selection=dg.AssetSelection.assets(source_health_daily),
    description="source_health_daily with the feeds' freshness and completeness checks.",
)

feed_health_schedule = dg.ScheduleDefinition(
    name="feed_health_schedule",
    job=feed_health_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly at :05: today's and yesterday's source health, and whether every polled feed "
        "is fresh and complete (one run an hour, whatever the number of feeds)."
    ),
)


defs = dg.Definitions(
    assets=[source_health_daily], jobs=[feed_health_job], schedules=[feed_health_schedule]
)
