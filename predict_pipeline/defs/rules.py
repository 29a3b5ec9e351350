"""Dagster layer of rules: rule_trigger_sensor and the job that runs a firing's actions."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.config import Settings
from predict_pipeline.defs.resources import PostgresResource, SecretsResource
from predict_pipeline.plans import describe_holds, record_plan_holds, recorded_holds
from predict_pipeline.rules.actions import http_client_factory, smtp_factory
from predict_pipeline.rules.engine import TickReport, evaluate_tick
from predict_pipeline.rules.execute import run_execution
from predict_pipeline.usage import LIVE_COUNTS, refresh_usage

# The first tick of a new deployment looks back this far instead of over all history.
FIRST_TICK_LOOKBACK = timedelta(hours=1)
HOUR = timedelta(hours=1)


def hourly_window(since: datetime, until: datetime) -> datetime | None:
    """Where the rules of plans without realtime_enabled look back from, on the tick that
    crosses an hour boundary (else None): the start of the hour of the previous tick, which is
    where their previous evaluation looked up to, so no change between two is missed."""
    hour = until.replace(minute=0, second=0, microsecond=0)
    if since >= hour:
        return None
    return since.replace(minute=0, second=0, microsecond=0)


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
        "tick never fires twice. Rules of plans with realtime_enabled are evaluated every tick, "
        "the others once an hour (on the tick that crosses the hour, over the changes since "
        "the previous one); rules their owner's plan holds are skipped, with the reason in the "
        "tick's skip reason and the audit log."
    ),
)
def rule_trigger_sensor(context: dg.SensorEvaluationContext, database: PostgresResource):
    until = datetime.now(UTC)
    since = (
        datetime.fromisoformat(context.cursor) if context.cursor else until - FIRST_TICK_LOOKBACK
    )
    hourly_since = hourly_window(since, until)
    with database.connection() as conn:
        record_plan_holds(conn, until)
        reports = [evaluate_tick(conn, since=since, until=until, cadence="realtime")]
        if hourly_since is not None:
            reports.append(evaluate_tick(conn, since=hourly_since, until=until, cadence="hourly"))
        refresh_usage(conn, until, LIVE_COUNTS)
        holds = recorded_holds(conn, "rule")
    invalid = {rule: reason for report in reports for rule, reason in report.invalid_rules.items()}
    for rule_id, reason in invalid.items():
        context.log.warning(f"rule {rule_id} skipped: {reason}")
    skipped = describe_holds(holds, "rule") if holds else None
    if skipped:
        context.log.info(skipped)
    requests = [
        dg.RunRequest(
            run_key=report.run_keys[execution_id],
            run_config=dg.RunConfig(
                ops={"run_rule_actions": RuleExecutionConfig(execution_id=str(execution_id))}
            ),
            tags={"predict/rule_execution": str(execution_id)},
        )
        for report in reports
        for execution_id in report.fired
    ]
    return dg.SensorResult(
        run_requests=requests,
        skip_reason=None if requests else _quiet_tick(reports[0], hourly_since, skipped),
        cursor=(reports[0].covered_until or until).isoformat(),
    )


def _quiet_tick(report: TickReport, hourly_since: datetime | None, held: str | None) -> str:
    said = f"no rule fired on {report.changed_events} changed events"
    if hourly_since is not None:
        said += f" (hourly rules evaluated since {hourly_since:%H:%M} UTC)"
    return f"{said}; {held}" if held else said
