"""Dagster layer of operator alerts: a sensor for failed runs and one for feeds the breaker
disabled or that went stale (logic in predict_pipeline/alerts.py). Neither launches a run."""

from datetime import UTC, datetime

import dagster as dg

from predict_pipeline.alerts import Alert, AlertSettings, feed_alerts, raise_alerts
from predict_pipeline.config import Settings
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.rules.channels import http_client_factory, smtp_factory
from predict_pipeline.secrets import SecretKeyError, load_key_from_env


def _raise(database: PostgresResource, alerts: list[Alert]) -> str:
    settings = AlertSettings.from_env()
    hosts = Settings.from_env().allow_private_hosts
    try:
        key = load_key_from_env() if settings.configured else None
    except SecretKeyError:
        key = None  # raise_alerts says so in one line when a delivery needs it
    with database.connection() as conn:
        report = raise_alerts(
            conn,
            alerts,
            settings,
            encryption_key=key,
            http_client_factory=http_client_factory(allow_private_hosts=hosts),
            smtp_factory=smtp_factory(allow_private_hosts=hosts),
            now=datetime.now(UTC),
        )
    return report.describe()


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Alerts the operator (PREDICT_ALERT_ACTIONS through PREDICT_ALERT_USER's connections) "
        "when any run of this code location fails; the same run alerts once."
    ),
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, database: PostgresResource):
    run = context.dagster_run
    message = context.failure_event.message or "the run failed"
    alert = Alert(
        "RUN_FAILED",
        run.run_id,
        f"{run.job_name} run {run.run_id[:8]}",
        " ".join(message.split())[:500],
    )
    context.log.info(_raise(database, [alert]))


@dg.sensor(
    name="feed_alerts_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every 5 minutes: alerts the operator about feeds the breaker disabled and polled "
        "feeds that are stale (twice their expected interval without a successful poll), "
        "each at most once per PREDICT_ALERT_COOLDOWN_MINUTES. Launches no run."
    ),
)
def feed_alerts_sensor(context: dg.SensorEvaluationContext, database: PostgresResource):
    with database.connection() as conn:
        alerts = feed_alerts(conn, datetime.now(UTC))
    return dg.SkipReason(_raise(database, alerts) if alerts else "every feed healthy")


defs = dg.Definitions(sensors=[run_failure_alert_sensor, feed_alerts_sensor])
