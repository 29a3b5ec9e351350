"""Dagster layer of stage 3: event_snapshots (snapshots, event state, explanations)."""

import json
from datetime import UTC, date, datetime, timedelta
from typing import TypedDict

import dagster as dg

from predict_pipeline.defs.catalog import (
    PartitionedTable,
    partitioned_result,
    preview_table,
    table_definition_metadata,
)
from predict_pipeline.defs.partitions import (
    BACKFILL_POLICY,
    HISTORY_BACKFILL_POLICY,
    HISTORY_DAILY,
    HOURLY,
    axis_start,
    hourly_start,
)
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.signals import LATE_HISTORY_DAYS
from predict_pipeline.retention.partitions import make_partitions_between
from predict_pipeline.snapshots.compute import PoolingSettings, compute_snapshots
from predict_pipeline.snapshots.explain import MoveThresholds, explain_moves
from predict_pipeline.usage import refresh_usage

SNAPSHOTS_TABLE = "prediction_snapshots"
# Rows are stamped at their interval's end: an hour partition holds (start, end].
SNAPSHOTS_ROWS = PartitionedTable(SNAPSHOTS_TABLE, "snapshot_at", stamped_at_end=True)


class SnapshotConfig(dg.Config):
    half_life_minutes: float = 60.0  # recency decay of a signal's weight
    extremize: float = 1.0  # 1 = off
    probability_shift: float = 0.05  # explain moves of at least this much
    sentiment_shift: float = 0.25
    divergence_to: str = "HIGH"
    volatility_anomaly: float = 0.5


# The tables the snapshot step writes by month: the snapshots and the markets' edges.
SNAPSHOT_MONTHLY_TABLES = (SNAPSHOTS_TABLE, "prediction_market_edges")


def _prepare(
    window: dg.TimeWindow, config: SnapshotConfig, database: PostgresResource
) -> PoolingSettings:
    """The run's pooling settings, once the window's partitions are made: committed before the
    compute, concurrent backfill runs taking turns at a new month."""
    with database.connection() as conn:
        for table in SNAPSHOT_MONTHLY_TABLES:  # always in this order: the runs' locks cannot cross
            make_partitions_between(
                conn, table, window.start + timedelta(hours=1), window.end, serialised=True
            )
    return PoolingSettings(half_life_minutes=config.half_life_minutes, extremize=config.extremize)


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=BACKFILL_POLICY,
    deps=["validated_signals"],
    group_name="snapshots",
    kinds={"postgres", "sql"},
    owners=["team:data-platform"],
    description=(
        "prediction_snapshots at the end of each hour: log-odds pooled probability, sentiment, "
        "volume, volatility, divergence and confidence per active event (computed set-based in "
        "PostgreSQL, see predict_pipeline/snapshots/compute.py); events' current_*/previous_* "
        "state; explanations of significant moves. Re-materialising replaces the interval."
    ),
    metadata=table_definition_metadata(SNAPSHOTS_TABLE),
)
def event_snapshots(
    context: dg.AssetExecutionContext, config: SnapshotConfig, database: PostgresResource
) -> dg.MaterializeResult:
    window = context.partition_time_window
    settings = _prepare(window, config, database)
    with database.connection() as conn:
        batch = compute_snapshots(conn, window.start, window.end, settings, largest_moves=10)
        explained = explain_moves(
            conn,
            batch,
            thresholds=MoveThresholds(
                probability_shift=config.probability_shift,
                sentiment_shift=config.sentiment_shift,
                divergence_to=config.divergence_to,
                volatility_anomaly=config.volatility_anomaly,
            ),
        )
        refresh_usage(conn, datetime.now(UTC), ("explanations_generated",))
    columns = ("event", "probability", "previous", "divergence", "confidence", "carried_forward")
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            "intervals": batch.intervals,
            "snapshots": batch.snapshots,
            "events": batch.events,
            "carried_forward": batch.carried_forward,
            "explanations": explained,
            "largest_moves": preview_table(
                {
                    "event": "string",
                    "probability": "float",
                    "previous": "float",
                    "divergence": "string",
                    "confidence": "string",
                    "carried_forward": "bool",
                },
                [dict(zip(columns, row, strict=True)) for row in batch.largest_moves],
            ),
        }
    )
    return partitioned_result(context, result, database, SNAPSHOTS_ROWS)


@dg.asset(
    partitions_def=HISTORY_DAILY,
    backfill_policy=HISTORY_BACKFILL_POLICY,
    group_name="snapshots",
    kinds={"postgres", "sql"},
    owners=["team:data-platform"],
    description=(
        "prediction_snapshots of history older than the hourly axis, one partition per UTC "
        "day from PREDICT_PARTITIONS_START: the same hourly snapshots as event_snapshots "
        "(resolved events' up to their resolution), from the signals a backfill or an upload "
        "of old data wrote. `predict-pipeline backfill` of an old period records these days "
        "itself. Re-materialising replaces the day."
    ),
    metadata=table_definition_metadata(SNAPSHOTS_TABLE),
)
def event_history(
    context: dg.AssetExecutionContext, config: SnapshotConfig, database: PostgresResource
) -> dg.MaterializeResult:
    window = context.partition_time_window
    settings = _prepare(window, config, database)
    snapshots = events = carried = 0
    day = window.start
    with database.connection(autocommit=True) as conn:
        while day < window.end:  # a day per transaction: memory follows a day, not the range
            with conn.transaction():
                batch = compute_snapshots(
                    conn, day, min(window.end, day + timedelta(days=1)), settings
                )
            snapshots, events = snapshots + batch.snapshots, max(events, batch.events)
            carried += batch.carried_forward
            day += timedelta(days=1)
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            "days": int((window.end - window.start) / timedelta(days=1)),
            "snapshots": snapshots,
            "events": events,
            "carried_forward": carried,
        }
    )
    return partitioned_result(context, result, database, SNAPSHOTS_ROWS)


event_history_job = dg.define_asset_job(
    "event_history_job",
    selection=dg.AssetSelection.assets(event_history),
    description="Snapshots of days before the hourly axis (event_history), for a day range.",
)
late_snapshots_job = dg.define_asset_job(
    "late_snapshots_job",
    selection=dg.AssetSelection.assets(event_snapshots),
    description="event_snapshots again for past hours that got history late (an upload).",
)
# Days per run: event_history's backfill policy; hours per run: event_snapshots' (two weeks).
_DAYS_PER_RUN = {"event_history_job": 92, "late_snapshots_job": 14}
# As many as the run queue runs at once (dagster.yaml): a long upload drains over ticks
# instead of filling the queue ahead of everyone's runs.
MAX_LATE_RUNS_PER_TICK = 4


def late_history_runs(days: list[str]) -> list[tuple[str, str, str]]:
    """(job, first partition, last partition) of the runs that snapshot these UTC days:
    days before the hourly axis as event_history ranges, later days as their hours of
    event_snapshots; days within a run's size of the run's first day share it."""
    runs: list[tuple[str, str, str]] = []
    first_hour = hourly_start().date()
    span: list[date] = []

    def flush() -> None:
        if not span:
            return
        if span[0] < first_hour:
            runs.append(("event_history_job", f"{span[0]:%Y-%m-%d}", f"{span[-1]:%Y-%m-%d}"))
        else:
            runs.append(
                ("late_snapshots_job", f"{span[0]:%Y-%m-%d}-00:00", f"{span[-1]:%Y-%m-%d}-23:00")
            )
        span.clear()

    for day in sorted({date.fromisoformat(d) for d in days if d >= f"{axis_start():%Y-%m-%d}"}):
        job = "event_history_job" if day < first_hour else "late_snapshots_job"
        # Days within one run's size share it, gaps included (an empty day costs little): a
        # year of scattered days is a few runs, not one per stretch of consecutive days.
        if span and (
            (span[0] < first_hour) != (day < first_hour)
            or (day - span[0]).days >= _DAYS_PER_RUN[job]
        ):
            flush()
        span.append(day)
    flush()
    return runs


class _LateHistoryCursor(TypedDict):
    """late_history_sensor's cursor."""

    after: int  # the storage id of the last materialisation read
    pending: list[str]  # the days whose runs wait for a later tick


@dg.sensor(
    jobs=[event_history_job, late_snapshots_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Snapshots history that arrived late: reads the days before their window that "
        "validated_signals wrote rows for (an upload or a backfill of old data, "
        "late_history_days in its materialisations) and launches event_history for days "
        "before the hourly axis and event_snapshots for later days' hours; days within a "
        "run's size (92 days of history, 14 of hours) share one run, gaps included; at most "
        "four runs a tick, the rest on the next ticks."
    ),
)
def late_history_sensor(context: dg.SensorEvaluationContext):
    state: _LateHistoryCursor = {"after": 0, "pending": []}
    if context.cursor:
        stored = json.loads(context.cursor)
        # A bare storage id is a cursor written before days could wait.
        state = {"after": stored, "pending": []} if isinstance(stored, int) else stored
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("validated_signals"), after_storage_id=state["after"]
        ),
        limit=500,
        ascending=True,
    ).records
    days: set[str] = set(state["pending"])
    for record in records:
        materialization = record.asset_materialization
        value = materialization.metadata.get(LATE_HISTORY_DAYS) if materialization else None
        if value is not None:
            days.update(value.value)  # type: ignore[arg-type]
    if not days:
        return dg.SkipReason(
            "no validated_signals materialisation with late days since the last tick"
        )
    last = max((r.storage_id for r in records), default=state["after"])
    runs = late_history_runs(sorted(days))
    launched, waiting = runs[:MAX_LATE_RUNS_PER_TICK], runs[MAX_LATE_RUNS_PER_TICK:]
    requests = [
        dg.RunRequest(
            run_key=f"{job}:{first}:{end}:{last}",
            job_name=job,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": end,
            },
        )
        for job, first, end in launched
    ]
    pending = sorted(d for d in days if any(_covers(run, d) for run in waiting))
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps({"after": last, "pending": pending}),
    )


def _covers(run: tuple[str, str, str], day: str) -> bool:
    """Whether a late-history run's partition range holds this UTC day."""
    _job, first, end = run
    return first[:10] <= day <= end[:10]


defs = dg.Definitions(
    assets=[event_snapshots, event_history],
    jobs=[event_history_job, late_snapshots_job],
    sensors=[late_history_sensor],
)
