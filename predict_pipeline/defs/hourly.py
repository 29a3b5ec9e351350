"""The hourly stages' job and schedule: what keeps the stages after raw_feed_fetches current.

due_feeds_sensor lands raw pages; this materialises what follows: the hourly stages of the
current hour every 15 minutes (polled pages arrive through the hour) and the finished hour
once more after it closes (its last polls). Calibration has its own (defs/calibration.py).
"""

from datetime import timedelta

import dagster as dg

from predict_pipeline.defs.partitions import HOURLY

hourly_stages_job = dg.define_asset_job(
    "hourly_stages_job",
    selection=["validated_signals", "event_snapshots", "trust_scores"],
    description="validated_signals → event_snapshots → trust_scores for one hour window.",
)


@dg.schedule(
    job=hourly_stages_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every 15 minutes: signals, snapshots and trust scores of the current hour window "
        "from the pages landed so far; in the first quarter of an hour also the hour that "
        "just closed, so its last polls are included. Re-running a window never duplicates."
    ),
)
def hourly_stages_schedule(context: dg.ScheduleEvaluationContext):
    at = context.scheduled_execution_time
    windows = [at - timedelta(hours=1), at] if at.minute < 15 else [at]
    return [
        dg.RunRequest(
            run_key=f"{key}@{at.isoformat()}",
            partition_key=key,
        )
        for key in (HOURLY.get_partition_key_for_timestamp(t.timestamp()) for t in windows)
    ]


defs = dg.Definitions(jobs=[hourly_stages_job], schedules=[hourly_stages_schedule])
