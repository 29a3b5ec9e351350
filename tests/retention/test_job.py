"""The retention job end to end: dry run against the real run that follows, the schedules,
the partitions check, the counters, Dagster's own storage and the command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from predict_pipeline import cli
from predict_pipeline.definitions import defs
from predict_pipeline.defs.retention import RETENTION_ASSETS, purge_dagster_runs
from predict_pipeline.retention.partitions import missing_months
from tests.retention.conftest import (
    NOW,
    audit,
    days_ago,
    ensure_partitions,
    feed_run,
    months_back,
    rule_execution,
    snapshot,
    step_counts,
    unmatched,
)
from tests.support.feeds import USER_ID

TABLES = (
    "prediction_feed_runs",
    "prediction_rule_executions",
    "prediction_unmatched_signals",
    "prediction_snapshots",
    "prediction_audit_log",
    "prediction_data_feeds",
    "prediction_usage_metrics",
    "predict_meta.audit_archive",
)


def _state(conn) -> dict[str, object]:
    """Every row of every table retention touches, and the snapshot partitions."""
    state: dict[str, object] = {
        table: conn.execute(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')), count(*)"  # noqa: S608
            f" FROM {table} t"
        ).fetchone()
        for table in TABLES
    }
    state["partitions"] = sorted(
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'prediction_snapshots'::regclass"
        )
    )
    return state


def _seed_everything(conn, world) -> None:
    feed, rule, event = world["feed"], world["feed"], world["event"]
    old_run = feed_run(conn, feed, days_ago(91), written=5)
    feed_run(conn, feed, days_ago(89), written=7)
    feed_run(conn, feed, NOW - timedelta(hours=2), written=11)
    unmatched(conn, feed, days_ago(31), "DISCARDED")
    unmatched(conn, feed, days_ago(31), "PENDING", run_id=old_run)
    rule_execution(conn, world["rule"], days_ago(91))
    rule_execution(conn, world["rule"], days_ago(89))
    assert rule
    ensure_partitions(conn, months_back(25), NOW)
    hour = days_ago(100).replace(minute=0, second=0, microsecond=0)
    for minutes in (15, 30, 45):
        snapshot(conn, event, hour + timedelta(minutes=minutes), signals=2, volume=3)
    snapshot(conn, event, months_back(25) + timedelta(days=2))
    audit(conn, days_ago(800))
    audit(conn, days_ago(95))
    audit(conn, days_ago(5))


def test_dry_run_changes_nothing_and_reports_what_the_real_run_does(
    admin_conn, world, run_retention, tmp_path
):
    _seed_everything(admin_conn, world)
    admin_conn.execute("UPDATE prediction_data_feeds SET signals_ingested_24h = 999")
    before = _state(admin_conn)

    dry = run_retention(dry_run=True)

    assert dry.success
    assert _state(admin_conn) == before
    # Observed, not materialised: the assets' last materialisation stays the last real run.
    assert all(not dry.asset_materializations_for_node(a.op.name) for a in RETENTION_ASSETS)
    assert all(len(dry.asset_observations_for_node(a.op.name)) == 1 for a in RETENTION_ASSETS)
    assert not list((tmp_path / "archive").rglob("*.parquet"))
    real = run_retention()
    assert real.success
    assert step_counts(dry) == step_counts(real)
    counts = step_counts(real)
    assert counts["feed_run_retention"] == {
        "feed_runs_deleted": 1,
        "unmatched_signals_detached": 1,
    }
    assert counts["rule_execution_retention"] == {"rule_executions_deleted": 1}
    assert counts["unmatched_signal_retention"] == {"unmatched_signals_deleted": 1}
    assert counts["snapshot_retention"] == {
        "partitions_dropped": 1,
        "snapshots_dropped_with_partitions": 1,
        "market_edges_dropped_with_partitions": 0,
        "hours_downsampled": 1,
        "snapshots_removed_by_downsampling": 2,
    }
    assert counts["audit_log_archive"]["audit_rows_archived"] == 2
    assert counts["audit_log_archive"]["audit_rows_deleted"] == 1
    assert counts["audit_log_archive"]["archive_bytes_written"] > 0
    assert counts["usage_counters"] == {"feed_counters_corrected": 1, "usage_rows_refreshed": 1}
    assert _state(admin_conn) != before


def test_counters_are_recomputed_from_the_rows(admin_conn, world, run_retention):
    feed = world["feed"]
    feed_run(admin_conn, feed, NOW - timedelta(hours=3), written=4)
    feed_run(admin_conn, feed, NOW - timedelta(hours=30), written=100)
    admin_conn.execute(
        "UPDATE prediction_data_feeds SET signals_ingested_24h = 12345 WHERE id = %s", (feed,)
    )
    admin_conn.execute(
        "UPDATE prediction_events SET status = 'RESOLVED_YES' WHERE id = %s", (world["event2"],)
    )

    assert run_retention().success

    assert admin_conn.execute(
        "SELECT signals_ingested_24h FROM prediction_data_feeds WHERE id = %s", (feed,)
    ).fetchone() == (4,)
    # The month the job counted in is the month it ran in, which need not be NOW's: the suite
    # may have crossed midnight of a month's last day since NOW was read.
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # The runs of this calendar month only: on its first day, even the 3-hour-old one may not be.
    in_month = sum(n for hours, n in ((3, 4), (30, 100)) if NOW - timedelta(hours=hours) >= start)
    usage = admin_conn.execute(
        "SELECT signals_ingested, feeds_active, rules_active, events_tracked"
        " FROM prediction_usage_metrics WHERE user_id = %s AND period_start = %s",
        (USER_ID, start),
    ).fetchone()
    assert usage == (in_month, 1, 1, 1)


def test_partitions_are_kept_two_months_ahead_and_the_check_fails_loudly(
    admin_conn, maint, world, run_retention
):
    ahead = [f"prediction_snapshots_y{m:%Y}m{m:%m}" for m in (months_back(-1), months_back(-2))]
    for name in ahead:
        admin_conn.execute(f"DROP TABLE IF EXISTS {name}")
    assert missing_months(maint, "prediction_snapshots", NOW, 2)

    dry = run_retention(dry_run=True)
    [check] = dry.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert missing_months(maint, "prediction_snapshots", NOW, 2)

    real = run_retention()
    assert real.success
    [check] = real.get_asset_check_evaluations()
    assert check.check_name == "partitions_ahead" and check.passed
    assert missing_months(maint, "prediction_snapshots", NOW, 2) == []
    [mat] = real.asset_materializations_for_node("monthly_partitions")
    assert set(mat.metadata["created_partition_names"].value) >= {ahead[1]}

    # Partitions that cannot be made (the function broken) fail the run, not just warn.
    admin_conn.execute(
        "CREATE OR REPLACE FUNCTION predict_ensure_snapshot_partitions("
        "from_ts timestamptz, to_ts timestamptz)"
        " RETURNS SETOF text LANGUAGE sql AS $$ SELECT NULL::text WHERE false $$"
    )
    admin_conn.execute(f"DROP TABLE {ahead[1]}")
    broken = run_retention()
    assert not broken.success
    [check] = broken.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR


def test_schedules_run_retention_at_three_and_calibration_after_it():
    retention = defs.resolve_schedule_def("retention_schedule")
    assert retention.cron_schedule == "0 3 * * *"
    assert retention.execution_timezone == "UTC"
    assert retention.job_name == "retention_job"
    calibration = defs.resolve_schedule_def("calibration_after_retention_schedule")
    assert (calibration.cron_schedule, calibration.execution_timezone) == ("30 3 * * *", "UTC")
    # One calibration job, two schedules: hourly, and after retention has pruned.
    assert calibration.job_name == defs.resolve_schedule_def("calibration_schedule").job_name
    job = defs.resolve_job_def(calibration.job_name)
    assert {n.name for n in job.nodes} == {
        "event_resolutions",
        "calibration_scores",
        "source_calibration",
    }


@dg.asset
def tracked_asset() -> int:
    return 1


@dg.op
def plain_op() -> None:
    return None


@dg.job
def plain_job():
    plain_op()


def test_old_dagster_runs_are_purged_except_latest_materialisations(dagster_instance, admin_conn):
    first = dg.materialize([tracked_asset], instance=dagster_instance).run_id
    latest = dg.materialize([tracked_asset], instance=dagster_instance).run_id
    plain = plain_job.execute_in_process(instance=dagster_instance).run_id
    recent = plain_job.execute_in_process(instance=dagster_instance).run_id
    # Age three of them by 100 days, as time would.
    admin_conn.execute(
        "UPDATE runs SET create_timestamp = create_timestamp - interval '100 days'"
        " WHERE run_id = ANY(%s)",
        ([first, latest, plain],),
    )
    assert dagster_instance.get_records_for_run(first).records

    dry = purge_dagster_runs(dagster_instance, older_than=days_ago(90), dry_run=True, page_size=1)
    assert dagster_instance.get_run_by_id(first) is not None
    report = purge_dagster_runs(
        dagster_instance, older_than=days_ago(90), dry_run=False, page_size=1
    )

    assert (
        dry.counts
        == report.counts
        == {
            "dagster_runs_deleted": 2,
            "dagster_runs_kept_latest_materialisation": 1,
        }
    )
    assert dagster_instance.get_run_by_id(first) is None
    assert dagster_instance.get_run_by_id(plain) is None
    assert not dagster_instance.get_records_for_run(first).records  # its event log too
    assert dagster_instance.get_run_by_id(latest) is not None
    assert dagster_instance.get_run_by_id(recent) is not None
    assert dagster_instance.get_latest_materialization_event(tracked_asset.key).run_id == latest


@pytest.fixture
def cli_env(db_url, tmp_path, monkeypatch, dagster_instance):
    monkeypatch.setenv("PREDICT_DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICT_ARCHIVE_URL", str(tmp_path / "cli-archive"))
    monkeypatch.setenv("PREDICT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(dg.DagsterInstance, "get", staticmethod(lambda: dagster_instance))
    return tmp_path


def test_command_runs_the_job_and_dry_run_keeps_rows(admin_conn, world, cli_env, capsys):
    feed_run(admin_conn, world["feed"], days_ago(91))
    audit(admin_conn, days_ago(100))

    assert cli.main(["retention", "run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "feed_run_retention: feed_runs_deleted=1" in out
    assert "dry run: nothing changed" in out
    assert admin_conn.execute("SELECT count(*) FROM prediction_feed_runs").fetchone() == (1,)

    assert cli.main(["retention", "run"]) == 0
    out = capsys.readouterr().out
    assert "feed_run_retention: feed_runs_deleted=1" in out and "retention ok" in out
    assert admin_conn.execute("SELECT count(*) FROM prediction_feed_runs").fetchone() == (0,)
    assert list((cli_env / "cli-archive").rglob("*.parquet"))
