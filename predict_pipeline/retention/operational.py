"""Operational history past its period: feed runs, rule executions, resolved unmatched signals."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from predict_pipeline.db.rows import one_row
from predict_pipeline.retention.batches import delete_in_batches
from predict_pipeline.retention.policy import RetentionPolicy
from predict_pipeline.retention.report import StepReport


def _detach_unmatched(conn: psycopg.Connection, run_ids: list) -> int:
    # The review queue outlives the runs that filled it: its rows keep everything but the link.
    return conn.execute(
        "UPDATE prediction_unmatched_signals SET feed_run_id = NULL WHERE feed_run_id = ANY(%s)",
        (run_ids,),
    ).rowcount


def prune_feed_runs(
    conn: psycopg.Connection, policy: RetentionPolicy, now: datetime, *, dry_run: bool
) -> StepReport:
    report = StepReport("feed_runs", dry_run)
    cutoff = policy.cutoff(now, "feed_runs_days")
    params = {"cutoff": cutoff}
    if dry_run:
        would_detach = one_row(
            conn.execute(
                """SELECT count(*) FROM prediction_unmatched_signals u
                   JOIN prediction_feed_runs r ON r.id = u.feed_run_id
                   WHERE r.created_at < %(cutoff)s""",
                params,
            )
        )[0]
        detach = None
    else:
        detached = 0

        def detach(batch_conn: psycopg.Connection, ids: list) -> None:
            nonlocal detached
            detached += _detach_unmatched(batch_conn, ids)

    report.add(
        "feed_runs_deleted",
        delete_in_batches(
            conn,
            "prediction_feed_runs",
            sql.SQL("created_at < %(cutoff)s"),
            params,
            order_by="created_at",
            batch_size=policy.batch_size,
            dry_run=dry_run,
            before_each_batch=detach,
        ),
    )
    report.add("unmatched_signals_detached", would_detach if dry_run else detached)
    report.details["cutoff"] = cutoff.isoformat()
    return report


def prune_rule_executions(
    conn: psycopg.Connection, policy: RetentionPolicy, now: datetime, *, dry_run: bool
) -> StepReport:
    return _prune(
        conn,
        policy,
        now,
        dry_run,
        step="rule_executions",
        table="prediction_rule_executions",
        where="started_at < %(cutoff)s",
        order_by="started_at",
    )


def prune_unmatched_signals(
    conn: psycopg.Connection, policy: RetentionPolicy, now: datetime, *, dry_run: bool
) -> StepReport:
    """Only items a reviewer closed (DISCARDED, MATCHED) go; PENDING ones wait for review."""
    return _prune(
        conn,
        policy,
        now,
        dry_run,
        step="unmatched_signals",
        table="prediction_unmatched_signals",
        where="status IN ('DISCARDED', 'MATCHED') AND created_at < %(cutoff)s",
        order_by="created_at",
    )


def _prune(
    conn: psycopg.Connection,
    policy: RetentionPolicy,
    now: datetime,
    dry_run: bool,
    *,
    step: str,
    table: str,
    where: str,
    order_by: str,
) -> StepReport:
    """Rows of `table` matching `where` before the step's cutoff, deleted in batches."""
    report = StepReport(step, dry_run)
    cutoff = policy.cutoff(now, f"{step}_days")
    report.add(
        f"{step}_deleted",
        delete_in_batches(
            conn,
            table,
            sql.SQL(where),  # module constants only; the cutoff is a bound parameter
            {"cutoff": cutoff},
            order_by=order_by,
            batch_size=policy.batch_size,
            dry_run=dry_run,
        ),
    )
    report.details["cutoff"] = cutoff.isoformat()
    return report
