"""Dagster layer of rules: rule_trigger_sensor and the job that runs a firing's actions."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.config import Settings
from predict_pipeline.defs.resources import PostgresResource, SecretsResource
from predict_pipeline.rules.actions import http_client_factory, smtp_factory
from predict_pipeline.rules.engine import evaluate_tick, refresh_rules_active
from predict_pipeline.rules.execute import run_execution

# The first tick of a new deployment looks back this far instead of over all history.
FIRST_TICK_LOOKBACK = timedelta(hours=1)


class RuleExecutionConfig(dg.Config):
    execution_id: str


@dg.op(
    description="Runs one rule execution's ordered actions and records their results.",
    tags={"kind": "postgres"},
)
def run_rule_actions(
    context: dg.OpExecutionContext,
    config: RuleExecutionConfig,
    database: PostgresResource,
    secrets: SecretsResource,
) -> None:
    hosts = Settings.from_env().allow_private_hosts
    with database.connection() as conn:
        status = run_execution(
            conn,
            config.execution_id,
            encryption_key=secrets.key(),
            http_client_factory=http_client_factory(allow_private_hosts=hosts),
            smtp_factory=smtp_factory(allow_private_hosts=hosts),
            now=datetime.now(UTC),
        )
    context.log.info(f"rule execution {config.execution_id}: {status}")


@dg.job(description="Run the actions of one rule firing (launched by rule_trigger_sensor).")
def rule_actions_job():
    run_rule_actions()


@dg.sensor(
    job=rule_actions_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Evaluates users' rules on the events whose state changed since its cursor (new "
        "snapshots, trust scores, resolutions, flags), in one set-based query; writes a "
        "prediction_rule_executions row per firing (or its SKIPPED_* status after throttling) "
        "and launches the actions job with a run key of rule, event and state, so a repeated "
        "tick never fires twice."
    ),
)
def rule_trigger_sensor(context: dg.SensorEvaluationContext, database: PostgresResource):
    until = datetime.now(UTC)
    since = (
        datetime.fromisoformat(context.cursor) if context.cursor else until - FIRST_TICK_LOOKBACK
    )
    with database.connection() as conn:
        report = evaluate_tick(conn, since=since, until=until)
        refresh_rules_active(conn, until)
    for rule_id, reason in report.invalid_rules.items():
        context.log.warning(f"rule {rule_id} skipped: {reason}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=report.run_keys[execution_id],
                run_config=dg.RunConfig(
                    ops={"run_rule_actions": RuleExecutionConfig(execution_id=str(execution_id))}
                ),
                tags={"predict/rule_execution": str(execution_id)},
            )
            for execution_id in report.fired
        ],
        cursor=(report.covered_until or until).isoformat(),
    )
