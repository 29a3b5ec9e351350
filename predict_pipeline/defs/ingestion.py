"""Dagster layer of stage 1: raw_feed_fetches, its check, the due-feeds sensor and job."""

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from predict_pipeline.config import Settings
from predict_pipeline.defs.catalog import (
    PartitionedTable,
    partitioned_result,
    preview_table,
    table_definition_metadata,
)
from predict_pipeline.defs.partitions import BACKFILL_POLICY, HOURLY, hourly_windows
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from predict_pipeline.ingestion.runner import (
    HELD,
    FeedFetchReport,
    RateLimiters,
    fetch_window,
    fetch_windows,
)
from predict_pipeline.ingestion.runs import close_stale_runs
from predict_pipeline.ingestion.store import (
    Feed,
    advance_next_run,
    claim_probe,
    load_feeds,
    requests_left_today,
)
from predict_pipeline.model import FetchWindow
from predict_pipeline.plans import describe_holds, record_plan_holds, recorded_holds

SOURCE_TAG = "predict/source"
FEED_TAG = "predict/feed_id"  # on every fetch run the sensor launches: one feed per run
# A fetch run in one of these states still holds its feed: no second fetch is launched.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FEED_RUNS_TABLE = "prediction_feed_runs"
FETCH_POOL = "feed_fetches"  # `dagster instance concurrency set feed_fetches 1` in production


class FeedFetchConfig(dg.Config):
    """Which feeds to fetch for the window, and how."""

    feed_ids: list[str] = []  # empty: every enabled feed that is due (or supports backfill)
    mode: str = "auto"  # auto: past windows are backfilled, the current one is polled
    probe: bool = False  # the feeds are auto-disabled ones due a half-open probe


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=BACKFILL_POLICY,
    # A backfill's runs each fetch every source with a per-process token bucket: the pool
    # bounds how many fetch steps (hence buckets) spend a source's quota at once.
    pool=FETCH_POOL,
    group_name="ingestion",
    kinds={"python", "postgres"},
    owners=["team:data-platform"],
    description=(
        "Raw pages of every due feed for the hour window, as fetched, in the landing zone "
        "(gzip JSON Lines per feed and window, with the request that produced each page). "
        "Each fetch writes one prediction_feed_runs row and keeps the feed's health current. "
        "Past windows fetch the source's history (backfill); the current window polls."
    ),
    metadata=table_definition_metadata(FEED_RUNS_TABLE),
    check_specs=[
        dg.AssetCheckSpec(
            "every_feed_fetched",
            asset="raw_feed_fetches",
            description="Warns when any feed's fetch in the window did not succeed.",
        )
    ],
    tags={"dagster/storage_kind": "filesystem"},
)
def raw_feed_fetches(
    context: dg.AssetExecutionContext,
    config: FeedFetchConfig,
    database: PostgresResource,
    http: HttpClientResource,
    landing: LandingZoneResource,
    secrets: SecretsResource,
) -> dg.MaterializeResult:
    if config.mode not in ("auto", "poll", "backfill"):
        raise dg.Failure(f"mode must be auto, poll or backfill, not {config.mode!r}")
    feed_ids = [uuid.UUID(f) for f in config.feed_ids] or None
    time_window = context.partition_time_window
    hours = hourly_windows(time_window.start, time_window.end)
    mode = None if config.mode == "auto" else config.mode
    # History comes a day per request sequence and feed run; the current hour is polled.
    windows = fetch_windows(hours, mode, datetime.now(UTC))  # type: ignore[arg-type]
    http_mode = http.settings()[0]
    limiters = RateLimiters(enabled=http_mode == "live")  # a replay does not spend quota
    reports: list[FeedFetchReport] = []
    by_window: list[tuple[FetchWindow, list[FeedFetchReport]]] = []
    with database.connection(autocommit=True) as conn, http.client() as client:
        zone = landing.zone()
        for window in windows:
            fetched = fetch_window(
                conn,
                client,
                zone,
                window,
                mode=mode,  # type: ignore[arg-type]
                feed_ids=feed_ids,
                encryption_key=secrets.key,
                rate_limiters=limiters,
                disable_after_failures=Settings.from_env().disable_after_failures,
                probe=config.probe,
            )
            by_window.append((window, fetched))
            reports += fetched
    for report in reports:
        log = context.log.info if report.ok else context.log.warning
        log(
            f"{report.source}/{report.feed_name}: {report.status} {report.mode}, "
            f"{report.pages} pages, {report.records} records, {report.requests} requests"
            + (f" — {report.error}" if report.error else "")
        )
    failed = [r for r in reports if r.status != "SUCCESS" and not r.held]
    held = [r for r in reports if r.status == HELD]
    skipped = [r for r in reports if r.held and r.status != HELD]
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            "windows": len(hours),
            "fetch_windows": len(windows),
            "feeds_fetched": len(reports),
            "feeds_failed": len(failed),
            "feeds_held_by_plan": len(held),
            "feeds_skipped": len(skipped),  # daily quota spent, or nothing recorded to replay
            "pages": sum(r.pages for r in reports),
            # What the pages offered (markets, points, posts): records are read in stage 2.
            "items_offered": sum(r.records for r in reports),
            "requests": sum(r.requests for r in reports),
            "bytes_received": sum(r.bytes_received for r in reports),
            "http_mode": http_mode,
            "landing_zone": dg.MetadataValue.path(landing.zone().root),
            "feed_runs": _runs_table(reports),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_feed_fetched",
                passed=not failed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "failed_feeds": dg.MetadataValue.json(
                        [
                            {"feed": r.feed_name, "status": r.status, "error": r.error}
                            for r in failed
                        ]
                    )
                },
            )
        ],
    )
    return partitioned_result(
        context,
        result,
        database,
        PartitionedTable(FEED_RUNS_TABLE, time_column=None),
        _partition_counts(context, by_window),
    )


def _partition_counts(
    context: dg.AssetExecutionContext, by_window: list[tuple[FetchWindow, list[FeedFetchReport]]]
) -> dict[str, dict[str, Any]]:
    """Each partition's feed runs: those of the fetch windows that cover its hour (a day-long
    history window covers 24 partitions, and says so)."""
    counts: dict[str, dict[str, Any]] = {}
    for key in context.partition_keys:
        hour = HOURLY.time_window_for_partition_key(key)
        covering = [
            (window, got)
            for window, got in by_window
            if window.start <= hour.start and hour.end <= window.end
        ]
        got = [report for _, report_list in covering for report in report_list]
        counts[key] = {
            "dagster/row_count": len(got),
            "partition_feed_runs": len(got),
            "partition_items_offered": sum(r.records for r in got),
            "partition_failed": sum(r.status != "SUCCESS" and not r.held for r in got),
            # ISO 8601 intervals: a day-long history window shows as such in each of its hours.
            "partition_fetch_windows": dg.MetadataValue.text(
                ", ".join(f"{w.start:%Y-%m-%dT%H:%M}/{w.end:%Y-%m-%dT%H:%M}" for w, _ in covering)
            ),
        }
    return counts


def _runs_table(reports: list[FeedFetchReport]) -> dg.TableMetadataValue:
    counts = ("pages", "records", "requests", "ms")
    columns = {
        name: "int" if name in counts else "string"
        for name in ("feed", "source", "mode", "status", *counts, "error")
    }
    return preview_table(
        columns,
        [
            {
                "feed": r.feed_name,
                "source": r.source,
                "mode": r.mode,
                "status": r.status,
                "pages": r.pages,
                "records": r.records,
                "requests": r.requests,
                "ms": r.duration_ms,
                "error": r.error or "",
            }
            for r in reports
        ],
        limit=len(reports),
    )


fetch_feeds_job = dg.define_asset_job(
    "fetch_feeds_job",
    selection=dg.AssetSelection.assets(raw_feed_fetches),
    description="Fetch the selected feeds for a window into the landing zone.",
)


def feeds_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Feeds (ids) with a fetch run queued or in progress: one query of the run storage."""
    runs = instance.get_run_records(
        filters=dg.RunsFilter(job_name=fetch_feeds_job.name, statuses=IN_FLIGHT)
    )
    return {r.dagster_run.tags[FEED_TAG] for r in runs if FEED_TAG in r.dagster_run.tags}


def fetch_request(feed: Feed, partition_key: str, run_key: str, *, probe: bool) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        partition_key=partition_key,
        run_config=dg.RunConfig(
            ops={
                "raw_feed_fetches": FeedFetchConfig(
                    feed_ids=[str(feed.id)], mode="poll", probe=probe
                )
            }
        ),
        tags={SOURCE_TAG: feed.source, FEED_TAG: str(feed.id), "predict/feed": feed.name[:60]},
    )


@dg.sensor(
    job=fetch_feeds_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches a fetch run per due feed (enabled, not paused, of a pollable source that is "
        "not DISABLED, next_run_at reached) for the current hour window, tagged with its "
        "source so the run queue limits concurrency per source, and advances next_run_at by "
        "the feed's poll interval or cron expression. Push-only feeds (upload, webhook) are "
        "never polled. A feed with a fetch run still queued or in progress gets no second one; "
        "a source that spent its rate_limit_rpd over the last 24 hours waits. An auto-disabled "
        "feed whose cool-off passed gets one half-open probe run, which re-enables it on "
        "success. Feeds their owner's plan holds (subscription not in force, or beyond "
        "max_feeds) are skipped, with the reason in the tick's skip reason and an observation "
        "of raw_feed_fetches when a hold begins or ends; they resume when the plan allows. Each "
        "tick also closes feed runs left RUNNING for over STALE_RUN_AFTER (2 hours) as FAILED."
    ),
)
def due_feeds_sensor(context: dg.SensorEvaluationContext, database: PostgresResource):
    now = datetime.now(UTC)
    partition_key = HOURLY.get_partition_key_for_timestamp(now.timestamp())
    requests = []
    waiting: Counter[str] = Counter()  # why due feeds were not launched this tick -> how many
    busy = feeds_in_flight(context.instance)
    live = Settings.from_env().http_mode == "live"
    with database.connection() as conn:
        closed = close_stale_runs(conn, now)
        if closed:
            context.log.warning(f"closed {len(closed)} feed run(s) left RUNNING as FAILED")
        changes = record_plan_holds(conn, now).of("feed")
        holds = recorded_holds(conn, "feed")
        held = {feed_id for feed_id, _, _ in holds}
        due = [f for f in load_feeds(conn, due_before=now) if f.id not in held]
        probes = [f for f in load_feeds(conn, due_before=now, probes=True) if f.id not in held]
        quota = (
            requests_left_today(conn, sorted({f.source for f in due + probes}), now) if live else {}
        )
        for feed in due + probes:
            if str(feed.id) in busy:
                waiting["a fetch run already queued or in progress"] += 1
                continue
            if quota.get(feed.source, 1) <= 0:
                waiting[f"{feed.source} spent its requests per day (rate_limit_rpd)"] += 1
                continue
            if feed.probing:
                key = f"probe:{feed.id}:{feed.breaker_probe_at.isoformat()}"  # type: ignore[union-attr]
                claim_probe(conn, feed, now)
                requests.append(fetch_request(feed, partition_key, key, probe=True))
                continue
            at = feed.next_run_at or now
            advance_next_run(conn, feed, now)
            requests.append(
                fetch_request(feed, partition_key, f"{feed.id}:{at.isoformat()}", probe=False)
            )
    skipped = describe_holds(holds, "feed") if holds else None
    if skipped:
        context.log.info(skipped)
    if waiting:
        said = "; ".join(f"{count} due feed(s) wait: {why}" for why, count in waiting.items())
        context.log.info(said)
        skipped = f"{skipped}; {said}" if skipped else said
    observations = []
    if changes:
        observations.append(
            dg.AssetObservation(
                asset_key="raw_feed_fetches",
                metadata={
                    "feeds_held_by_plan": len(holds),
                    "holds_begun": len(changes.held),
                    "holds_ended": len(changes.released),
                    "plan_holds": preview_table(
                        {"feed": "string", "reason": "string"},
                        [{"feed": name, "reason": reason} for _, name, reason in holds],
                        limit=len(holds),
                    ),
                },
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        skip_reason=None if requests else (skipped or "no feed is due"),
        asset_events=observations,
    )


defs = dg.Definitions(assets=[raw_feed_fetches], jobs=[fetch_feeds_job], sensors=[due_feeds_sensor])
