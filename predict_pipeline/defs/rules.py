"""Dagster layer of rules: rule_trigger_sensor and the job that runs a tick's firings."""

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.config import Settings
from predict_pipeline.defs.resources import PostgresResource, SecretsResource
from predict_pipeline.plans import describe_holds, record_plan_holds, recorded_holds
from predict_pipeline.rules.channels import http_client_factory, smtp_factory
from predict_pipeline.rules.engine import TickReport, evaluate_tick
from predict_pipeline.rules.execute import run_execution
from predict_pipeline.usage import LIVE_COUNTS, refresh_usage

# The first tick of a new deployment looks back this far instead of over all history.
FIRST_TICK_LOOKBACK = timedelta(hours=1)
HOUR = timedelta(hours=1)
# One actions run carries every firing of its tick; a tick past this many firings (a burst after
# downtime) is split so that one run's duration stays bounded.
MAX_EXECUTIONS_PER_RUN = 200


def hourly_window(since: datetime, until: datetime) -> datetime | None:
    """Where the rules of plans without realtime_enabled look back from, on the tick that
    crosses an hour boundary (else None): the start of the hour of the previous tick, which is
    where their previous evaluation looked up to, so no change between two is missed."""
    hour = until.replace(minute=0, second=0, microsecond=0)
    if since >= hour:
        return None
    return since.replace(minute=0, second=0, microsecond=0)


class RuleExecutionsConfig(dg.Config):
    execution_ids: list[str]  # the tick's firings, run in order


@dg.op(
    description=(
        "Runs the ordered actions of each rule execution of one sensor tick and records their "
        "results; one execution's fault is its FAILED status, never the others' skip."
    ),
    tags={"kind": "postgres"},
)
def run_rule_actions(
    context: dg.OpExecutionContext,
    config: RuleExecutionsConfig,
    database: PostgresResource,
    secrets: SecretsResource,
) -> None:
    hosts = Settings.from_env().allow_private_hosts
    statuses: dict[str, int] = {}
    crashed: dict[str, str] = {}
    with database.connection(autocommit=True) as conn:
        for execution_id in config.execution_ids:
            try:
                with conn.transaction():  # each firing's results commit on their own
                    status = run_execution(
                        conn,
                        uuid.UUID(execution_id),
                        encryption_key=secrets.key(),
                        http_client_factory=http_client_factory(allow_private_hosts=hosts),
                        smtp_factory=smtp_factory(allow_private_hosts=hosts),
                        now=datetime.now(UTC),
                    )
            except Exception as exc:  # a fault of ours in one firing: the others still run
                crashed[execution_id] = f"{type(exc).__name__}: {exc}"
                context.log.error(f"rule execution {execution_id}: {crashed[execution_id]}")
                continue
            statuses[status] = statuses.get(status, 0) + 1
            context.log.info(f"rule execution {execution_id}: {status}")
    if crashed:
        raise dg.Failure(
            f"{len(crashed)} of {len(config.execution_ids)} rule executions could not run",
            metadata={"crashed": dg.MetadataValue.json(crashed), **statuses},
        )


@dg.job(
    description="Run the actions of every rule firing of one rule_trigger_sensor tick.",
    tags={"predict/job": "rule_actions"},
)
def rule_actions_job():
    run_rule_actions()


def tick_run_requests(fired: list[tuple[uuid.UUID, str]]) -> list[dg.RunRequest]:
    """The actions runs of one tick: its firings (execution id, rule:event:state key) in runs of
    at most MAX_EXECUTIONS_PER_RUN, so runs grow with ticks, not with firings. A run's key is
    the digest of its firings' keys: the same firings requested again are the same run."""
    requests = []
    for start in range(0, len(fired), MAX_EXECUTIONS_PER_RUN):
        batch = fired[start : start + MAX_EXECUTIONS_PER_RUN]
        digest = hashlib.sha256("\n".join(sorted(key for _, key in batch)).encode()).hexdigest()
        requests.append(
            dg.RunRequest(
                run_key=f"rule-firings:{digest[:32]}",
                run_config=dg.RunConfig(
                    ops={
                        "run_rule_actions": RuleExecutionsConfig(
                            execution_ids=[str(execution_id) for execution_id, _ in batch]
                        )
                    }
                ),
                tags={"predict/rule_executions": str(len(batch))},
            )
        )
    return requests


@dg.sensor(
    job=rule_actions_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Evaluates users' rules on the events whose state changed since its cursor (new "
        "snapshots, trust scores, resolutions, flags), in one set-based query; writes a "
        "prediction_rule_executions row per firing (or its SKIPPED_* status after throttling) "
        "and launches one actions run carrying every firing of the tick (runs grow with ticks, "
        "not firings); a firing's rule, event and state are unique, so a repeated tick never "
        "fires twice. Rules of plans with realtime_enabled are evaluated every tick, "
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
    requests = tick_run_requests(
        [
            (execution_id, report.run_keys[execution_id])
            for report in reports
            for execution_id in report.fired
        ]
    )
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


defs = dg.Definitions(jobs=[rule_actions_job], sensors=[rule_trigger_sensor])
