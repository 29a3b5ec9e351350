"""The one Definitions object the Dagster UI and `predict-pipeline run` load."""

from __future__ import annotations

import dagster as dg

from predict_pipeline.defs import calibration, feeds, rules, signals, snapshots, trust
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
        signals.validated_signals,
        snapshots.event_snapshots,
        trust.trust_scores,
        calibration.event_resolutions,
        calibration.calibration_scores,
    ],
    jobs=[feeds.fetch_feeds_job, rules.rule_actions_job],
    sensors=[feeds.due_feeds_sensor, rules.rule_trigger_sensor],
    # Multiprocess, or Celery workers, as PREDICT_EXECUTOR says when a run starts.
    executor=predict_executor,
    resources={
        "database": PostgresResource(),
        "http": HttpClientResource(),
        "landing": LandingZoneResource(),
        "secrets": SecretsResource(),
    },
)
