"""Feed runs, rule executions and unmatched signals on both sides of each boundary."""

from __future__ import annotations

import pytest

from predict_pipeline.retention.operational import (
    prune_feed_runs,
    prune_rule_executions,
    prune_unmatched_signals,
)
from predict_pipeline.retention.policy import RetentionPolicy, RetentionPolicyError
from tests.retention.conftest import NOW, days_ago, feed_run, rule_execution, unmatched

SMALL_BATCHES = RetentionPolicy(batch_size=2)  # several batches even for a handful of rows


def _ids(conn, table: str) -> set:
    return {row[0] for row in conn.execute(f"SELECT id FROM {table}")}  # noqa: S608


def test_feed_runs_older_than_90_days_go_and_their_unmatched_signals_stay(admin_conn, maint, world):
    feed = world["feed"]
    old = [feed_run(admin_conn, feed, days_ago(91)) for _ in range(5)]
    young = [feed_run(admin_conn, feed, days_ago(89)) for _ in range(3)]
    queued = unmatched(admin_conn, feed, days_ago(10), "PENDING", run_id=old[0])
    linked = unmatched(admin_conn, feed, days_ago(10), "PENDING", run_id=young[0])

    report = prune_feed_runs(maint, SMALL_BATCHES, NOW, dry_run=False)

    assert _ids(admin_conn, "prediction_feed_runs") == set(young)
    assert report.counts == {"feed_runs_deleted": 5, "unmatched_signals_detached": 1}
    links = dict(
        admin_conn.execute("SELECT id, feed_run_id FROM prediction_unmatched_signals").fetchall()
    )
    assert links == {queued: None, linked: young[0]}


def test_rule_executions_older_than_90_days_go(admin_conn, maint, world):
    old = [rule_execution(admin_conn, world["rule"], days_ago(91)) for _ in range(3)]
    young = [rule_execution(admin_conn, world["rule"], days_ago(89)) for _ in range(2)]
    assert old

    dry = prune_rule_executions(maint, SMALL_BATCHES, NOW, dry_run=True)
    assert _ids(admin_conn, "prediction_rule_executions") == set(old) | set(young)
    report = prune_rule_executions(maint, SMALL_BATCHES, NOW, dry_run=False)

    assert _ids(admin_conn, "prediction_rule_executions") == set(young)
    assert dry.counts == report.counts == {"rule_executions_deleted": 3}


def test_resolved_unmatched_signals_older_than_30_days_go_pending_never(admin_conn, maint, world):
    feed = world["feed"]
    kept = {
        unmatched(admin_conn, feed, days_ago(29), "DISCARDED"),
        unmatched(admin_conn, feed, days_ago(29), "MATCHED"),
        unmatched(admin_conn, feed, days_ago(400), "PENDING"),
        unmatched(admin_conn, feed, days_ago(31), "NEW_EVENT_CREATED"),
    }
    gone = {
        unmatched(admin_conn, feed, days_ago(31), "DISCARDED"),
        unmatched(admin_conn, feed, days_ago(31), "MATCHED"),
        unmatched(admin_conn, feed, days_ago(90), "DISCARDED"),
    }

    report = prune_unmatched_signals(maint, SMALL_BATCHES, NOW, dry_run=False)

    assert _ids(admin_conn, "prediction_unmatched_signals") == kept
    assert report.counts == {"unmatched_signals_deleted": len(gone)}


def test_periods_are_configurable_upwards_only():
    assert RetentionPolicy(feed_runs_days=120).cutoff(NOW, "feed_runs_days") == days_ago(120)
    with pytest.raises(RetentionPolicyError, match="feed_runs_days=30 is shorter than the spec"):
        RetentionPolicy(feed_runs_days=30)
    with pytest.raises(RetentionPolicyError, match="audit_delete_days=365"):
        RetentionPolicy(audit_delete_days=365)
    with pytest.raises(RetentionPolicyError, match="partition_months_ahead=1"):
        RetentionPolicy(partition_months_ahead=1)
    overridden = RetentionPolicy(unmatched_signals_days=7, allow_shorter_than_spec=True)
    assert overridden.cutoff(NOW, "unmatched_signals_days") == days_ago(7)
