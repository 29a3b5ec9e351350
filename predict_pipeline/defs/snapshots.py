"""Dagster layer of stage 3: event_snapshots (snapshots, event state, explanations)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.defs.catalog import (
    on_last_partition,
    preview_table,
    table_definition_metadata,
    with_table_metadata,
)
from predict_pipeline.defs.partitions import (
    BACKFILL_POLICY,
    HISTORY_BACKFILL_POLICY,
    HISTORY_DAILY,
    HOURLY,
)
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.signals import validated_signals
from predict_pipeline.snapshots.compute import PoolingSettings, compute_snapshots
from predict_pipeline.snapshots.explain import MoveThresholds, explain_moves
from predict_pipeline.usage import refresh_usage

SNAPSHOTS_TABLE = "prediction_snapshots"


class SnapshotConfig(dg.Config):
    half_life_minutes: float = 60.0  # recency decay of a signal's weight
    extremize: float = 1.0  # 1 = off
    probability_shift: float = 0.05  # explain moves of at least this much
    sentiment_shift: float = 0.25
    divergence_to: str = "HIGH"
    volatility_anomaly: float = 0.5


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=BACKFILL_POLICY,
    deps=[validated_signals],
    group_name="event_state",
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
    settings = PoolingSettings(
        half_life_minutes=config.half_life_minutes, extremize=config.extremize
    )
    with database.connection() as conn:
        # Concurrent backfill runs reaching a new month would race to create its partition
        # (DuplicateTable): the first creates it under a lock, committed before the compute.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('predict_snapshot_partitions'))")
        conn.execute(
            "SELECT predict_ensure_snapshot_partitions(%s, %s)",
            (window.start + timedelta(hours=1), window.end),
        ).fetchall()
    with database.connection() as conn:
        batch = compute_snapshots(conn, window.start, window.end, settings)
        explained = explain_moves(
            conn,
            thresholds=MoveThresholds(
                probability_shift=config.probability_shift,
                sentiment_shift=config.sentiment_shift,
                divergence_to=config.divergence_to,
                volatility_anomaly=config.volatility_anomaly,
            ),
            half_life_minutes=config.half_life_minutes,
        )
        refresh_usage(conn, datetime.now(UTC), ("explanations_generated",))
        preview = conn.execute(
            """SELECT e.title, b.probability::float8, b.prev_probability::float8, b.divergence,
                      b.confidence, b.carried_forward
               FROM snapshot_batch b JOIN prediction_events e ON e.id = b.event_id
               ORDER BY abs(coalesce(b.probability - b.prev_probability, 0)) DESC LIMIT 10"""
        ).fetchall()
    columns = ("event", "probability", "previous", "divergence", "confidence", "carried_forward")
    result = dg.MaterializeResult(
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
                [dict(zip(columns, row, strict=True)) for row in preview],
            ),
        }
    )
    return on_last_partition(context, with_table_metadata(result, database, SNAPSHOTS_TABLE))


@dg.asset(
    partitions_def=HISTORY_DAILY,
    backfill_policy=HISTORY_BACKFILL_POLICY,
    group_name="event_state",
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
    settings = PoolingSettings(
        half_life_minutes=config.half_life_minutes, extremize=config.extremize
    )
    with database.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('predict_snapshot_partitions'))")
        conn.execute(
            "SELECT predict_ensure_snapshot_partitions(%s, %s)",
            (window.start + timedelta(hours=1), window.end),
        ).fetchall()
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
    result = dg.MaterializeResult(
        metadata={
            "days": int((window.end - window.start) / timedelta(days=1)),
            "snapshots": snapshots,
            "events": events,
            "carried_forward": carried,
        }
    )
    return on_last_partition(context, with_table_metadata(result, database, SNAPSHOTS_TABLE))
