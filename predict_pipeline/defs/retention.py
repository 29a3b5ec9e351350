"""Dagster layer of retention and maintenance: the retention job (one asset per policy, each
reporting what it removed), its 03:00 UTC schedule, the partitions-ahead check, and the daily
calibration refresh after it.

Dry run: run config ``{"resources": {"retention": {"config": {"dry_run": true}}}}`` (or
``predict-pipeline retention run --dry-run``) reports the same numbers and changes nothing.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg

from predict_pipeline import usage
from predict_pipeline.config import Settings
from predict_pipeline.db.connection import MAINTENANCE_ROLE, connect
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.retention.audit_archive import archive_audit_log
from predict_pipeline.retention.operational import (
    prune_feed_runs,
    prune_rule_executions,
    prune_unmatched_signals,
)
from predict_pipeline.retention.partitions import ensure_partitions, partitions_ahead_missing
from predict_pipeline.retention.policy import RetentionPolicy
from predict_pipeline.retention.report import StepReport
from predict_pipeline.retention.snapshots import prune_snapshots

GROUP = "retention"
_FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


_SPEC = RetentionPolicy()


class RetentionResource(dg.ConfigurableResource):
    """The retention policy and mode. Every field can be set per run; periods shorter than
    the spec's need allow_shorter_than_spec. archive_url defaults to PREDICT_ARCHIVE_URL."""

    # The policy's fields, with RetentionPolicy's defaults (one place for the spec's periods).
    dry_run: bool = False
    archive_url: str | None = None
    feed_runs_days: int = _SPEC.feed_runs_days
    rule_executions_days: int = _SPEC.rule_executions_days
    unmatched_signals_days: int = _SPEC.unmatched_signals_days
    snapshot_downsample_days: int = _SPEC.snapshot_downsample_days
    snapshot_drop_days: int = _SPEC.snapshot_drop_days
    audit_archive_days: int = _SPEC.audit_archive_days
    audit_delete_days: int = _SPEC.audit_delete_days
    partition_months_ahead: int = _SPEC.partition_months_ahead
    dagster_run_days: int = _SPEC.dagster_run_days
    batch_size: int = _SPEC.batch_size
    downsample_chunk_hours: int = _SPEC.downsample_chunk_hours
    allow_shorter_than_spec: bool = _SPEC.allow_shorter_than_spec

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy.from_mapping(self.model_dump())

    def resolved_archive_url(self) -> str:
        return self.archive_url or Settings.from_env().archive_url


@contextmanager
def _maintenance(database: PostgresResource) -> Iterator[psycopg.Connection]:
    # Retention acts as the maintenance role: the only one allowed to delete audit rows and
    # drop partitions. Autocommit: each step runs its own bounded transactions.
    conn = connect(database.resolved_url(), role=MAINTENANCE_ROLE, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _metadata(report: StepReport) -> dict[str, Any]:
    metadata: dict[str, Any] = {"dry_run": report.dry_run, **report.counts}
    for name, value in report.details.items():
        metadata[name] = dg.MetadataValue.json(value) if isinstance(value, list | dict) else value
    return metadata


StepEvent = dg.MaterializeResult | dg.AssetObservation | dg.AssetCheckResult


def _run_step(
    context: dg.AssetExecutionContext,
    report: StepReport,
    check_results: Sequence[dg.AssetCheckResult] = (),
) -> Iterator[StepEvent]:
    context.log.info(("dry run: would do " if report.dry_run else "") + report.summary())
    if report.dry_run:
        # Nothing changed: observed, not materialised, so the last materialisation stays real.
        yield dg.AssetObservation(asset_key=context.asset_key, metadata=_metadata(report))
        yield from check_results
    else:
        yield dg.MaterializeResult(metadata=_metadata(report), check_results=check_results)


def _asset(name: str, description: str, **kwargs):
    return dg.asset(
        name=name,
        group_name=GROUP,
        kinds={"postgres"},
        owners=["team:data-platform"],
        description=description,
        output_required=False,  # a dry run yields an observation only
        **kwargs,
    )


def _policy_step(name: str, description: str, prune: Callable[..., StepReport]):
    """An asset running one retention policy step (`prune(conn, policy, now, dry_run=...)`)."""

    @_asset(name, description)
    def step(
        context: dg.AssetExecutionContext,
        database: PostgresResource,
        retention: RetentionResource,
    ) -> Iterator[StepEvent]:
        with _maintenance(database) as conn:
            report = prune(conn, retention.policy(), datetime.now(UTC), dry_run=retention.dry_run)
        yield from _run_step(context, report)

    return step


feed_run_retention = _policy_step(
    "feed_run_retention",
    "prediction_feed_runs older than 90 days deleted in bounded batches; their unmatched "
    "signals keep their rows (feed_run_id set to NULL in the same batch).",
    prune_feed_runs,
)
rule_execution_retention = _policy_step(
    "rule_execution_retention",
    "prediction_rule_executions started more than 90 days ago deleted in bounded batches.",
    prune_rule_executions,
)
unmatched_signal_retention = _policy_step(
    "unmatched_signal_retention",
    "prediction_unmatched_signals DISCARDED or MATCHED more than 30 days ago deleted; PENDING "
    "items are never deleted.",
    prune_unmatched_signals,
)
snapshot_retention = _policy_step(
    "snapshot_retention",
    "prediction_snapshots: monthly partitions whose range ended more than two years ago "
    "dropped whole; rows older than 90 days downsampled to one per event and hour (the "
    "hour's last snapshot, signal_count and volume summed), a day per transaction.",
    prune_snapshots,
)


@_asset(
    "audit_log_archive",
    "prediction_audit_log older than 90 days archived as Parquet to cold storage "
    "(PREDICT_ARCHIVE_URL, partitioned by month), each file read back and verified (row "
    "count, checksum) before it is recorded; rows older than two years deleted by the "
    "maintenance role, only if found in a verified file.",
)
def audit_log_archive(
    context: dg.AssetExecutionContext, database: PostgresResource, retention: RetentionResource
) -> Iterator[StepEvent]:
    with _maintenance(database) as conn:
        report = archive_audit_log(
            conn,
            retention.resolved_archive_url(),
            retention.policy(),
            datetime.now(UTC),
            dry_run=retention.dry_run,
        )
    yield from _run_step(context, report)


@_asset(
    "monthly_partitions",
    "Monthly partitions created at least two months ahead (prediction_snapshots); the "
    "partitions_ahead check fails the run when any is missing.",
    check_specs=[
        dg.AssetCheckSpec(
            "partitions_ahead",
            asset="monthly_partitions",
            blocking=True,
            description="Every monthly-partitioned table has partitions for this month and "
            "the next two (a missing one would make writes fail).",
        )
    ],
)
def monthly_partitions(
    context: dg.AssetExecutionContext, database: PostgresResource, retention: RetentionResource
) -> Iterator[StepEvent]:
    now = datetime.now(UTC)
    policy = retention.policy()
    with _maintenance(database) as conn:
        report = ensure_partitions(
            conn, now, policy.partition_months_ahead, dry_run=retention.dry_run
        )
        missing = partitions_ahead_missing(conn, now, policy.partition_months_ahead)
    absent = {table: months for table, months in missing.items() if months}
    check = dg.AssetCheckResult(
        check_name="partitions_ahead",
        passed=not absent,
        # A dry run creates nothing, so what is missing is reported, not fatal.
        severity=dg.AssetCheckSeverity.WARN if retention.dry_run else dg.AssetCheckSeverity.ERROR,
        description=(
            "missing partitions: " + "; ".join(f"{t}: {', '.join(m)}" for t, m in absent.items())
            if absent
            else f"partitions exist {policy.partition_months_ahead} months ahead"
        ),
        metadata={"missing": dg.MetadataValue.json(missing)},
    )
    yield from _run_step(context, report, [check])


@_asset(
    "usage_counters",
    "Counters recomputed from the rows: prediction_data_feeds.signals_ingested_24h, and "
    "every user's prediction_usage_metrics of their usage period (billing period, else "
    "calendar month): signals ingested, feeds and rules active, events tracked, campaigns "
    "created, explanations generated and the storage estimate (predict_pipeline/usage.py).",
)
def usage_counters(
    context: dg.AssetExecutionContext, database: PostgresResource, retention: RetentionResource
) -> Iterator[StepEvent]:
    now = datetime.now(UTC)
    report = StepReport("counters", retention.dry_run)
    with _maintenance(database) as conn, conn.transaction():
        report.add(
            "feed_counters_corrected",
            usage.correct_feed_counters(conn, now, dry_run=retention.dry_run),
        )
        report.add(
            "usage_rows_refreshed", usage.refresh_usage(conn, now, dry_run=retention.dry_run)
        )
    report.details["usage_at"] = now.isoformat()
    yield from _run_step(context, report)


@dataclass(slots=True)
class _LatestMaterialisations:
    """Which asset (partition) materialisations are the latest: runs holding one are kept,
    so purging history never makes an asset or a partition look unmaterialised."""

    instance: dg.DagsterInstance
    _by_asset: dict[dg.AssetKey, dict[str | None, int]]

    def latest(self, key: dg.AssetKey) -> dict[str | None, int]:
        if key not in self._by_asset:
            by_partition = self.instance.event_log_storage.get_latest_storage_id_by_partition(
                key, dg.DagsterEventType.ASSET_MATERIALIZATION
            )
            latest: dict[str | None, int] = dict(by_partition.items())
            record = self.instance.fetch_materializations(key, limit=1).records
            if record and record[0].partition_key is None:
                latest[None] = record[0].storage_id
            self._by_asset[key] = latest
        return self._by_asset[key]

    def held_by(self, run_id: str) -> bool:
        records = self.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        return any(
            r.asset_key is not None
            and self.latest(r.asset_key).get(r.partition_key) == r.storage_id
            for r in records
        )


def purge_dagster_runs(
    instance: dg.DagsterInstance,
    *,
    older_than: datetime,
    dry_run: bool,
    page_size: int = 200,
) -> StepReport:
    """Delete finished runs created before `older_than`, with their event logs, except runs
    holding the latest materialisation of an asset or partition."""
    report = StepReport("dagster_storage", dry_run)
    latest = _LatestMaterialisations(instance, {})
    deleted = kept = 0
    cursor: str | None = None
    while True:
        records = instance.get_run_records(
            dg.RunsFilter(created_before=older_than, statuses=_FINISHED),
            limit=page_size,
            ascending=True,
            cursor=cursor,
        )
        for record in records:
            run_id = record.dagster_run.run_id
            if latest.held_by(run_id):
                kept += 1
                cursor = run_id  # the cursor must name a run that still exists
                continue
            if dry_run:
                cursor = run_id
            else:
                instance.delete_run(run_id)
            deleted += 1
        if len(records) < page_size:
            break
    report.add("dagster_runs_deleted", deleted)
    report.add("dagster_runs_kept_latest_materialisation", kept)
    report.details["deleted_before"] = older_than.isoformat()
    return report


@_asset(
    "dagster_storage_retention",
    "Dagster's own run and event-log records of finished runs older than dagster_run_days "
    "(90) deleted through the instance API, except runs holding an asset's (or partition's) "
    "latest materialisation.",
)
def dagster_storage_retention(
    context: dg.AssetExecutionContext, retention: RetentionResource
) -> Iterator[StepEvent]:
    policy = retention.policy()
    report = purge_dagster_runs(
        context.instance,
        older_than=datetime.now(UTC) - timedelta(days=policy.dagster_run_days),
        dry_run=retention.dry_run,
    )
    yield from _run_step(context, report)


RETENTION_ASSETS = [
    feed_run_retention,
    rule_execution_retention,
    unmatched_signal_retention,
    snapshot_retention,
    audit_log_archive,
    monthly_partitions,
    usage_counters,
    dagster_storage_retention,
]

retention_job = dg.define_asset_job(
    "retention_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="The spec's retention policies and maintenance, daily at 03:00 UTC. "
    "Dry run: resources.retention.config.dry_run = true.",
    # Steps touch different tables; in one process they share no locks and start fast.
    executor_def=dg.in_process_executor,
)

retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def retention_run_config(*, dry_run: bool, **policy: Any) -> dict[str, Any]:
    """Run config of retention_job: the mode and any policy field."""
    return {"resources": {"retention": {"config": {"dry_run": dry_run, **policy}}}}


defs = dg.Definitions(
    assets=RETENTION_ASSETS,
    jobs=[retention_job],
    schedules=[retention_schedule],
    resources={"retention": RetentionResource()},
)
