"""Dagster layer of stage 4: trust_scores and its checks."""

from datetime import timedelta

import dagster as dg

from predict_pipeline.db.rows import one_row
from predict_pipeline.defs.catalog import (
    PartitionedTable,
    partitioned_result,
    preview_table,
    table_definition_metadata,
)
from predict_pipeline.defs.partitions import BACKFILL_POLICY, HOURLY, hourly_windows
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.trust import TrustConfig, compute_trust
from predict_pipeline.trust.store import ScoredInterval, load_window, save_intervals

TRUST_TABLE = "prediction_trust_scores"
# Rows are stamped at their interval's end: an hour partition holds (start, end].
TRUST_ROWS = PartitionedTable(TRUST_TABLE, "computed_at", stamped_at_end=True)


class TrustAssetConfig(dg.Config):
    trailing_hours: int = 24  # the baseline window before each interval
    volume_spike_z: float = 3.5
    # A ranged run reads its hours in blocks of this many, each block with its look-back in one
    # read: memory stays that of a block's window whatever the range (a 336-hour backfill would
    # otherwise hold two weeks of signals), and a signal is read (48 + 24) / 48 times, not 25.
    read_block_hours: int = 48


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=BACKFILL_POLICY,
    deps=["event_snapshots"],
    group_name="trust",
    kinds={"pandas", "postgres"},
    owners=["team:data-platform"],
    description=(
        "prediction_trust_scores per active event and hour (market integrity, sentiment "
        "authenticity, source diversity, volume and temporal consistency; formulas in "
        "predict_pipeline/trust/measure.py and score.py) and prediction_trust_flags with their "
        "evidence (one detector per flag type, predict_pipeline/trust/detectors.py). Re-running an "
        "interval replaces its scores and never duplicates or overwrites a reviewed flag."
    ),
    metadata=table_definition_metadata(TRUST_TABLE),
    check_specs=[
        dg.AssetCheckSpec(
            "every_active_event_scored",
            asset="trust_scores",
            description="Every active event with signals in the interval has a trust score.",
        ),
        dg.AssetCheckSpec(
            "components_within_unit_interval",
            asset="trust_scores",
            description="No component or overall score outside [0, 1].",
        ),
    ],
)
def trust_scores(
    context: dg.AssetExecutionContext, config: TrustAssetConfig, database: PostgresResource
) -> dg.MaterializeResult:
    trust_config = TrustConfig(
        trailing_window=timedelta(hours=config.trailing_hours),
        volume_spike_z=config.volume_spike_z,
        snapshot_stamp="end",  # prediction_snapshots are stamped at their interval's end
    )
    window = context.partition_time_window
    intervals = hourly_windows(window.start, window.end)
    flag_types: dict[str, int] = {}
    raised: list[dict] = []
    with database.connection() as conn:
        # A ranged (backfill) run reads each block of hours and its look-back once, scores
        # each hour from memory, and writes the block set-based; the checks span the range.
        totals = {"scores": 0, "flags_new": 0, "flags_updated": 0, "flags_kept_reviewed": 0}
        block = max(1, config.read_block_hours)
        for first in range(0, len(intervals), block):
            hours = intervals[first : first + block]
            inputs = load_window(conn, hours[0].start, hours[-1].end, trust_config)
            scored = []
            for interval in hours:
                signals, snapshots, events = inputs.inputs(interval.start, interval.end)
                trust = compute_trust(
                    signals,
                    snapshots,
                    events,
                    interval_start=interval.start,
                    interval_end=interval.end,
                    config=trust_config,
                )
                scored.append(ScoredInterval(interval.start, interval.end, trust))
                for flag in trust.flags:
                    flag_types[flag.flag_type] = flag_types.get(flag.flag_type, 0) + 1
                    raised.append(
                        {
                            "event_id": flag.event_id,
                            "flag_type": flag.flag_type,
                            "severity": flag.severity,
                            "description": flag.description,
                        }
                    )
            written = save_intervals(conn, scored)
            for key in totals:
                totals[key] += getattr(written, key)
        params = {
            "starts": [i.start for i in intervals],
            "ends": [i.end for i in intervals],
            "first": intervals[0].start,
            "last": intervals[-1].end,
        }
        # The hours are contiguous and in order, so a signal's hour is found by width_bucket on
        # their starts (one pass), not by testing it against every hour of the range.
        missing = conn.execute(
            """SELECT DISTINCT s.event_id::text
               FROM (SELECT DISTINCT event_id,
                            (%(ends)s::timestamptz[])[
                              width_bucket(fetched_at, %(starts)s::timestamptz[])] AS end_at
                     FROM prediction_signals
                     WHERE fetched_at >= %(first)s AND fetched_at < %(last)s) s
               JOIN prediction_events e ON e.id = s.event_id AND e.status = 'ACTIVE'
               WHERE NOT EXISTS (SELECT 1 FROM prediction_trust_scores t
                                 WHERE t.event_id = s.event_id AND t.computed_at = s.end_at)""",
            params,
        ).fetchall()
        out_of_range = one_row(
            conn.execute(
                """SELECT count(*) FROM prediction_trust_scores
               WHERE computed_at = ANY(%(ends)s::timestamptz[]) AND NOT (
                 overall_score BETWEEN 0 AND 1 AND market_integrity BETWEEN 0 AND 1
                 AND sentiment_authenticity BETWEEN 0 AND 1
                 AND source_diversity BETWEEN 0 AND 1
                 AND volume_consistency BETWEEN 0 AND 1
                 AND temporal_consistency BETWEEN 0 AND 1)""",
                params,
            )
        )[0]
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            **totals,
            "flags_by_type": dg.MetadataValue.json(flag_types),
            "flags_raised": preview_table(
                {
                    "event_id": "string",
                    "flag_type": "string",
                    "severity": "string",
                    "description": "string",
                },
                raised,
                limit=50,
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_active_event_scored",
                passed=not missing,
                metadata={"unscored_events": dg.MetadataValue.json([m[0] for m in missing][:50])},
            ),
            dg.AssetCheckResult(
                check_name="components_within_unit_interval",
                passed=out_of_range == 0,
                metadata={"rows_out_of_range": out_of_range},
            ),
        ],
    )
    return partitioned_result(context, result, database, TRUST_ROWS)


defs = dg.Definitions(assets=[trust_scores])
