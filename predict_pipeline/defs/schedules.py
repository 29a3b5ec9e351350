"""Schedules that keep the stages after raw_feed_fetches current while the daemon runs.

due_feeds_sensor lands raw pages; these materialise what follows: the hourly stages of the
current hour every 15 minutes (polled pages arrive through the hour), the finished hour once
more after it closes (its last polls), and resolutions and calibration every hour.
"""

from datetime import timedelta

import dagster as dg

from predict_pipeline.defs.calibration import calibration_scores, event_resolutions
from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.defs.signals import validated_signals
from predict_pipeline.defs.snapshots import event_snapshots
from predict_pipeline.defs.trust import trust_scores

hourly_stages_job = dg.define_asset_job(
    "hourly_stages_job",
    selection=dg.AssetSelection.assets(validated_signals, event_snapshots, trust_scores),
    description="validated_signals → event_snapshots → trust_scores for one hour window.",
)

calibration_job = dg.define_asset_job(
    "calibration_job",
    selection=dg.AssetSelection.assets(event_resolutions, calibration_scores),
    description="event_resolutions → calibration_scores over everything resolved so far.",
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
