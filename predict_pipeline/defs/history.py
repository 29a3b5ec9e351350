"""A job a data engineer launches from the UI's launchpad: refresh one feed's history.

It fetches the feed's history window by window (the same fetch_window the raw_feed_fetches
asset calls, in backfill mode, for that feed only) and validates the landed pages into
prediction_signals, recording both as materialisations of the hour partitions it covered.
"""

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
from pydantic import Field

from predict_pipeline.config import PARTITIONS_START_VAR, Settings
from predict_pipeline.defs.partitions import (
    HISTORY_DAILY,
    HOURLY,
    axis_start,
    hourly_start,
    hourly_windows,
)
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from predict_pipeline.ingestion.runner import RateLimiters, fetch_window
from predict_pipeline.ingestion.store import Feed, load_feed
from predict_pipeline.plans import live_holds
from predict_pipeline.signals.stage import validate_window
from predict_pipeline.snapshots.compute import compute_snapshots

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class FeedHistoryConfig(dg.Config):
    """The launchpad's form: which feed, which UTC period (whole hours)."""

    feed_id: str = Field(description="The feed's id (prediction_data_feeds.id; `feeds list`).")
    start: str = Field(
        description="First hour to refresh, UTC, ISO 8601: 2025-04-01 or 2025-04-01T06:00."
    )
    end: str = Field(
        description="End of the period (exclusive, rounded up to the hour), UTC. Capped at "
        "the start of the current hour: the open hour is polled, not backfilled."
    )


class HistoryRequestError(ValueError):
    """A refresh that cannot run as asked: the message says why and what to do."""


def check_request(
    conn: psycopg.Connection, feed_id: str, start: str, end: str, *, now: datetime
) -> tuple[Feed, datetime, datetime]:
    """The feed and the whole UTC hours to refresh, or HistoryRequestError with the reason.

    The launchpad's op and `predict-pipeline backfill` both ask here, the CLI before any run
    is recorded."""
    try:
        feed_uuid = uuid.UUID(feed_id.strip())
    except ValueError:
        raise HistoryRequestError(
            f"{feed_id!r} is not a feed id (predict-pipeline feeds list shows them)"
        ) from None
    try:
        first, last = history_windows(start, end, now=now)
    except ValueError as exc:
        raise HistoryRequestError(str(exc)) from None
    feed = load_feed(conn, feed_uuid)
    if feed is None:
        raise HistoryRequestError(f"no feed {feed_uuid} (predict-pipeline feeds list shows them)")
    if not feed.enabled:
        raise HistoryRequestError(f"feed {feed.name!r} is disabled: enable it before refreshing")
    held = live_holds(conn, "feed", now, [feed.id]).get(feed.id)
    if held:
        raise HistoryRequestError(f"feed {feed.name!r} is held by its owner's plan: {held}")
    if not feed.supports_backfill:
        raise HistoryRequestError(
            f"source {feed.source} has no history API: its history is what was polled"
        )
    return feed, first, last


def history_windows(start: str, end: str, *, now: datetime) -> tuple[datetime, datetime]:
    """The period as whole UTC hours, checked; raises ValueError with the reason."""
    first, last = _utc(start, "start"), _utc(end, "end")
    first = first.replace(minute=0, second=0, microsecond=0)
    if last.replace(minute=0, second=0, microsecond=0) != last:
        last = last.replace(minute=0, second=0, microsecond=0) + HOUR
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    last = min(last, current_hour)
    earliest = axis_start()
    if first < earliest:
        raise ValueError(
            f"start {first:%Y-%m-%d %H:%M} is before the time axis begins ({earliest:%Y-%m-%d}):"
            f" set {PARTITIONS_START_VAR} to that day or earlier for every process, and restart"
        )
    if first >= last:
        raise ValueError(
            f"no complete hour between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M} UTC"
        )
    return first, last


def _utc(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{name} {text!r} is not an ISO 8601 date or time") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _snapshot_period(conn: psycopg.Connection, start: datetime, end: datetime, totals: dict):
    """Snapshots of the period a day at a time; each day before the hourly axis is recorded as
    an event_history partition, each hour after it as an event_snapshots partition."""
    day = start.replace(hour=0)
    while day < end:
        first, last = max(start, day), min(end, day + DAY)
        with conn.transaction():
            batch = compute_snapshots(conn, first, last)
        totals["snapshots"] += batch.snapshots
        if day < hourly_start():
            yield dg.AssetMaterialization(
                asset_key="event_history",
                partition=HISTORY_DAILY.get_partition_key_for_timestamp(day.timestamp()),
                metadata={"snapshots": batch.snapshots, "events": batch.events},
            )
        else:
            for window in hourly_windows(first, last):
                yield dg.AssetMaterialization(
                    asset_key="event_snapshots",
                    partition=HOURLY.get_partition_key_for_timestamp(window.start.timestamp()),
                    metadata={"snapshots_of_the_day": batch.snapshots},
                )
        day += DAY


@dg.op(
    description=(
        "Fetches one feed's history for every hour of the period (backfill mode: the landing "
        "file of each window is replaced whole) and validates it into prediction_signals; "
        "each hour is recorded as a materialisation of raw_feed_fetches and validated_signals. "
        "Safe to re-run: the same history lands byte-identical and signals are deduplicated."
    ),
)
def refresh_feed_history(
    context: dg.OpExecutionContext,
    config: FeedHistoryConfig,
    database: PostgresResource,
    http: HttpClientResource,
    landing: LandingZoneResource,
    secrets: SecretsResource,
):
    now = datetime.now(UTC)
    http_mode = http.settings()[0]
    limiters = RateLimiters(enabled=http_mode == "live")
    zone = landing.zone()
    failed: list[str] = []
    totals = {
        "windows": 0,
        "skipped": 0,
        "pages": 0,
        "records": 0,
        "written": 0,
        "rejected": 0,
        "snapshots": 0,
    }
    with database.connection(autocommit=True) as conn, http.client() as client:
        try:
            feed, start, end = check_request(
                conn, config.feed_id, config.start, config.end, now=now
            )
        except HistoryRequestError as exc:
            raise dg.Failure(str(exc)) from exc
        feed_id = feed.id
        windows = hourly_windows(start, end)
        context.log.info(f"{feed.source}/{feed.name}: {len(windows)} hour windows")
        for window in windows:
            reports = fetch_window(
                conn,
                client,
                zone,
                window,
                mode="backfill",
                feed_ids=[feed_id],
                encryption_key=secrets.key,
                rate_limiters=limiters,
                disable_after_failures=Settings.from_env().disable_after_failures,
            )
            if not reports:  # disabled or paused meanwhile, or its source no longer active
                raise dg.Failure(
                    f"feed {feed.name!r} can no longer be fetched (disabled, paused, or its "
                    f"source not active: predict-pipeline feeds list says which); "
                    f"windows that failed: {failed}"
                )
            fetched = reports[0]
            if fetched.status == "SKIPPED":  # e.g. replay without a recording: not a failure
                totals["skipped"] += 1
                context.log.info(
                    f"{fetched.feed_name}, {window.start:%Y-%m-%d %H:%M}: skipped: {fetched.error}"
                )
                continue
            signals = validate_window(conn, zone, window, now=datetime.now(UTC), feed_ids=[feed_id])
            key = HOURLY.get_partition_key_for_timestamp(window.start.timestamp())
            errors = [fetched.error] if not fetched.ok else []
            errors += [s.error for s in signals if not s.ok]
            if errors:
                failed.append(key)
                context.log.warning(f"{key}: {'; '.join(e or '' for e in errors)}")
                continue
            written = sum(s.written for s in signals)
            rejected = sum(s.rejected for s in signals)
            for name, value in (
                ("windows", 1),
                ("pages", fetched.pages),
                ("records", fetched.records),
                ("written", written),
                ("rejected", rejected),
            ):
                totals[name] += value
            tags = {"predict/feed_id": str(feed_id)}  # tag values allow no spaces
            if window.start < hourly_start():
                continue  # history kept by the day: event_history records its days below
            yield dg.AssetMaterialization(
                asset_key="raw_feed_fetches",
                partition=key,
                metadata={
                    "feed": feed.name,
                    "status": fetched.status,
                    "pages": fetched.pages,
                    "items_offered": fetched.records,
                    "requests": fetched.requests,
                },
                tags=tags,
            )
            yield dg.AssetMaterialization(
                asset_key="validated_signals",
                partition=key,
                metadata={"feed": feed.name, "written": written, "rejected": rejected},
                tags=tags,
            )
        # The period's snapshots follow at once (resolved events' too, up to resolution), so
        # what a backfill brought is scored without a further step.
        yield from _snapshot_period(conn, start, end, totals)
    context.log.info(f"refreshed {totals}")
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(windows)} windows failed (the others were "
            "written); re-run the job for the same period to retry them.",
            metadata={"failed_windows": dg.MetadataValue.json(failed), **totals},
        )
    yield dg.Output(totals)


@dg.job(
    description=(
        "Full refresh of one feed's history: launch it from the Launchpad with the feed's id "
        "and a UTC period; every hour of it is fetched again from the source's history API "
        "and validated into prediction_signals. Afterwards, materialise event_snapshots and "
        "trust_scores for the same period (Assets → Materialize → date range) to recompute "
        "the later stages."
    ),
    tags={"predict/job": "feed_history_refresh"},
)
def refresh_feed_history_job():
    refresh_feed_history()


defs = dg.Definitions(jobs=[refresh_feed_history_job])
