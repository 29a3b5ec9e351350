"""Dagster's storage keeps its Postgres connections: a ranged run's per-partition events do
not each open one (dagster-postgres's default outside the webserver)."""

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from sqlalchemy import event

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.db.connection import dagster_storage_url
from predict_pipeline.defs.storage import POOL_SIZES, PooledPostgresStorage

HOURS = dg.HourlyPartitionsDefinition(start_date="2025-01-01-00:00")


@dg.asset(partitions_def=HOURS, backfill_policy=dg.BackfillPolicy.single_run())
def hourly(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"hours": len(context.partition_keys)})


def test_a_ranged_run_stores_every_partition_on_a_few_kept_connections(dagster_instance):
    storages = [
        dagster_instance.run_storage,
        dagster_instance.event_log_storage,
        dagster_instance.schedule_storage,
    ]
    opened = []
    for storage in storages:
        event.listen(storage._engine, "connect", lambda *_: opened.append(1))
    job = dg.Definitions(assets=[hourly]).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dagster_instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2025-01-01-00:00",
            ASSET_PARTITION_RANGE_END_TAG: "2025-01-01-23:00",
        },
    )
    assert result.success
    stored = dagster_instance.get_materialized_partitions(dg.AssetKey("hourly"))
    assert stored == set(
        HOURS.get_partition_keys_in_range(
            dg.PartitionKeyRange("2025-01-01-00:00", "2025-01-01-23:00")
        )
    )
    # Unpooled, each of the run's ~100 events opened at least one connection.
    assert 0 < len(opened) <= sum(POOL_SIZES.values())


def test_the_project_instance_uses_the_pooled_storage(db_url, monkeypatch, tmp_path):
    # What `predict-pipeline` exports before Dagster reads the project's dagster.yaml.
    monkeypatch.setenv("PREDICT_DAGSTER_PG_URL", dagster_storage_url(db_url))
    monkeypatch.setenv("PREDICT_DAGSTER_ARTIFACTS_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("PREDICT_DAGSTER_COMPUTE_LOGS_DIR", str(tmp_path / "compute_logs"))
    with dg.DagsterInstance.from_config(str(PROJECT_ROOT)) as instance:
        assert instance.get_ref().storage_data.class_name == PooledPostgresStorage.__name__
        assert type(instance.event_log_storage._engine.pool).__name__ == "QueuePool"
        assert instance.get_runs() == []


@dg.asset(partitions_def=HOURS, backfill_policy=dg.BackfillPolicy.single_run())
def failing_hourly(context: dg.AssetExecutionContext) -> None:
    raise RuntimeError(f"{len(context.partition_keys)} hours failed")


DAY = ("2025-01-01-00:00", "2025-01-01-23:00")
DAY_KEYS = HOURS.get_partition_keys_in_range(dg.PartitionKeyRange(*DAY))


def _run_day(instance, asset) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(assets=[asset]).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: DAY[0], ASSET_PARTITION_RANGE_END_TAG: DAY[1]},
        raise_on_error=False,
    )


def test_a_ranged_runs_planned_materializations_are_written_as_one_batch(
    dagster_instance, monkeypatch
):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # as `predict-pipeline` sets it
    inserts = []
    event.listen(
        dagster_instance.event_log_storage._engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: (
            inserts.append(1) if statement.startswith("INSERT INTO event_logs") else None
        ),
    )
    result = _run_day(dagster_instance, hourly)
    assert result.success
    planned = dagster_instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    assert sorted(r.event_log_entry.dagster_event.partition for r in planned) == DAY_KEYS
    (record,) = dagster_instance.get_asset_records([dg.AssetKey("hourly")])
    assert record.asset_entry.last_run_id == result.run_id
    # 24 planned events and 24 materializations, each kind in one statement; a few step events.
    assert len(inserts) < 24


def test_the_partitions_of_a_failed_ranged_run_are_known_as_failed(dagster_instance, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    result = _run_day(dagster_instance, failing_hourly)
    assert not result.success
    storage = dagster_instance.event_log_storage
    attempts = storage.get_latest_asset_partition_materialization_attempts_without_materializations(
        dg.AssetKey("failing_hourly")
    )
    assert sorted(attempts) == DAY_KEYS
    assert {run_id for run_id, _event_id in attempts.values()} == {result.run_id}
