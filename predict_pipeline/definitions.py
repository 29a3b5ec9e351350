"""The one Definitions object the Dagster UI and `predict-pipeline run` load."""

from __future__ import annotations

import dagster as dg

from predict_pipeline.defs import (
    alerts,
    calibration,
    campaigns,
    feeds,
    health,
    history,
    retention,
    rules,
    schedules,
    signals,
    snapshots,
    trust,
)
from predict_pipeline.defs.executors import predict_executor
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)

defs = dg.Definitions(
    assets=[
        feeds.raw_feed_fetches,
        health.source_health_daily,
        signals.validated_signals,
        snapshots.event_snapshots,
        snapshots.event_history,
        trust.trust_scores,
        calibration.event_resolutions,
        calibration.calibration_scores,
        *campaigns.CAMPAIGN_ASSETS,
        *retention.RETENTION_ASSETS,
    ],
    jobs=[
        feeds.fetch_feeds_job,
        health.feed_health_job,
        history.refresh_feed_history_job,
        snapshots.event_history_job,
        snapshots.late_snapshots_job,
        schedules.hourly_stages_job,
        schedules.calibration_job,
        rules.rule_actions_job,
        retention.retention_job,
        *campaigns.CAMPAIGN_JOBS,
    ],
    schedules=[
        schedules.hourly_stages_schedule,
        schedules.calibration_schedule,
        health.feed_health_schedule,
        retention.retention_schedule,
        retention.calibration_after_retention_schedule,
        campaigns.campaign_loop_schedule,
    ],
    sensors=[
        feeds.due_feeds_sensor,
        snapshots.late_history_sensor,
        rules.rule_trigger_sensor,
        *campaigns.CAMPAIGN_SENSORS,
        alerts.run_failure_alert_sensor,
        alerts.feed_alerts_sensor,
    ],
    # Multiprocess, or Celery workers, as PREDICT_EXECUTOR says when a run starts.
    executor=predict_executor,
    resources={
        "database": PostgresResource(),
        "http": HttpClientResource(),
        "landing": LandingZoneResource(),
        "secrets": SecretsResource(),
        "retention": retention.RetentionResource(),
    },
)
