"""`predict-pipeline run`: the main job on whatever database is configured (embedded default).

Offline by default: unless PREDICT_HTTP_MODE says otherwise, feeds are served from the
recorded real API payloads of demo/replay (replay mode) through the real adapters.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from predict_pipeline.config import HTTP_MODE_VAR, REPLAY_DIR_VAR
from predict_pipeline.db.connection import connect
from predict_pipeline.demo import REPLAY_DIR, seed_demo
from predict_pipeline.runtime import bootstrap
from predict_pipeline.secrets import load_key_from_env


def _evaluate_rules(app_url: str, *, since: datetime) -> tuple[list[tuple[str, str]], int]:
    """One tick of the rule sensor, and the fired executions run inline (as the job would)."""
    from predict_pipeline.rules.actions import http_client_factory, smtp_factory
    from predict_pipeline.rules.engine import evaluate_tick
    from predict_pipeline.rules.execute import run_execution

    now = datetime.now(UTC)
    with connect(app_url) as conn, conn.transaction():
        report = evaluate_tick(conn, since=since, until=now)
    fired = []
    with connect(app_url) as conn:
        for execution in report.fired:
            with conn.transaction():
                status = run_execution(
                    conn,
                    execution,
                    encryption_key=load_key_from_env(),
                    http_client_factory=http_client_factory(),
                    smtp_factory=smtp_factory(),
                    now=now,
                )
            name = conn.execute(
                "SELECT r.name FROM prediction_rule_executions x"
                " JOIN prediction_rules r ON r.id = x.rule_id WHERE x.id = %s",
                (execution,),
            ).fetchone()[0]
            fired.append((name, status))
    return fired, report.evaluated


def run_main() -> int:
    """Migrate, seed the demo, materialise the pipeline for the current window, summarise."""
    started = time.perf_counter()
    run_started = datetime.now(UTC)
    if not os.environ.get(HTTP_MODE_VAR):
        os.environ[HTTP_MODE_VAR] = "replay"
        os.environ.setdefault(REPLAY_DIR_VAR, str(REPLAY_DIR))
    target = bootstrap()
    from predict_pipeline.definitions import defs  # after bootstrap: the env names the database
    from predict_pipeline.defs.feeds import FeedFetchConfig
    from predict_pipeline.defs.partitions import HOURLY

    with connect(target.app_url) as conn, conn.transaction():
        feed_ids = seed_demo(conn, encryption_key=load_key_from_env())
    partition = HOURLY.get_partition_key_for_timestamp(datetime.now(UTC).timestamp())
    run_config = dg.RunConfig(
        ops={"raw_feed_fetches": FeedFetchConfig(feed_ids=[str(f) for f in feed_ids], mode="poll")}
    )
    with dg.DagsterInstance.get() as instance:
        assets = list(defs.assets or [])
        windowed = [a for a in assets if a.partitions_def is not None]
        # Retention has its own schedule and command (`predict-pipeline retention run`).
        whole = [
            a
            for a in assets
            if a.partitions_def is None and "retention" not in a.group_names_by_key.values()
        ]
        # The hour's window through every partitioned stage, then the unpartitioned tables
        # (resolutions, calibration) over everything that is now known.
        ok = dg.materialize(
            windowed,
            instance=instance,
            resources=defs.resources,
            partition_key=partition,
            run_config=run_config,
            raise_on_error=False,
        ).success
        ok = (
            ok
            and dg.materialize(
                whole,
                instance=instance,
                resources=defs.resources,
                selection=whole,
                run_config=dg.RunConfig(loggers=run_config.loggers),
                raise_on_error=False,
            ).success
        )
    fired, evaluated = _evaluate_rules(target.app_url, since=run_started - timedelta(hours=1))
    with connect(target.app_url) as conn:
        runs = conn.execute(
            """SELECT f.name, r.status, r.request_count, r.signals_fetched, r.signals_written,
                      r.signals_unmatched,
                      r.signals_fetched - r.signals_valid AS rejected, r.duration_ms,
                      coalesce(r.error_message, '')
               FROM prediction_data_feeds f
               JOIN LATERAL (SELECT * FROM prediction_feed_runs WHERE feed_id = f.id
                             ORDER BY started_at DESC LIMIT 1) r ON true
               WHERE f.id = ANY(%s) ORDER BY f.name""",
            ([*feed_ids],),
        ).fetchall()
    where = "embedded PostgreSQL" if target.embedded else "configured PostgreSQL"
    print(
        f"\npredict_pipeline — main job, window {partition} UTC, {where}, "
        f"HTTP {os.environ[HTTP_MODE_VAR]}"
    )
    print(
        f"\n{'feed':<38} {'status':<8} {'requests':>8} {'records':>7} {'written':>7}"
        f" {'review':>6} {'rejected':>8} {'ms':>5}"
    )
    for name, status, requests, records, written, unmatched, rejected, ms, error in runs:
        print(
            f"{name[:38]:<38} {status:<8} {requests:>8} {records:>7} {written:>7}"
            f" {unmatched:>6} {rejected:>8} {ms or 0:>5}" + (f"  {error[:80]}" if error else "")
        )
        ok = ok and status == "SUCCESS"
    with connect(target.app_url) as conn:
        signals, events, pending, snapshots, explanations = conn.execute(
            """SELECT (SELECT count(*) FROM prediction_signals),
                      (SELECT count(DISTINCT event_id) FROM prediction_signals),
                      (SELECT count(*) FROM prediction_unmatched_signals
                       WHERE status = 'PENDING'),
                      (SELECT count(*) FROM prediction_snapshots),
                      (SELECT count(*) FROM prediction_explanations)"""
        ).fetchone()
        state = conn.execute(
            """SELECT title, current_probability, previous_probability, divergence, confidence,
                      trust_score,
                      (SELECT count(*) FROM prediction_trust_flags f WHERE f.event_id = e.id)
               FROM prediction_events e WHERE current_probability IS NOT NULL ORDER BY title"""
        ).fetchall()
    print(
        f"\nsignals stored: {signals} on {events} events; review queue: {pending} pending"
        " (predict-pipeline signals review)"
    )
    print(f"snapshots: {snapshots}; explanations: {explanations}")
    print(
        f"rules: {evaluated} rule/event pairs evaluated, {len(fired)} fired: "
        + (", ".join(f"{name} ({status})" for name, status in fired) or "none")
    )
    with connect(target.app_url) as conn:
        resolved = conn.execute(
            "SELECT e.title, r.outcome, r.final_probability FROM prediction_resolutions r"
            " JOIN prediction_events e ON e.id = r.event_id ORDER BY e.title"
        ).fetchall()
        brier = conn.execute(
            "SELECT time_window, resolved_predictions, brier_score FROM"
            " prediction_calibration_scores WHERE category_id IS NULL ORDER BY time_window"
        ).fetchall()
    for title, outcome, final in resolved:
        print(f"resolved: {title[:60]} -> {outcome} (final probability {final})")
    print(
        "calibration (global): "
        + ", ".join(f"{w} {n} scored, Brier {b if b is not None else '-'}" for w, n, b in brier)
    )
    print(
        f"\n{'event':<56} {'prob':>6} {'prev':>6} {'divergence':<10} {'confidence':<10}"
        f" {'trust':>6} flags"
    )
    for title, prob, prev, divergence, confidence, trust, flags in state:
        shown_prev = "" if prev is None else f"{prev:.4f}"
        shown_trust = "" if trust is None else f"{trust:.4f}"
        print(
            f"{title[:56]:<56} {prob:>6.4f} {shown_prev:>6} {divergence or '':<10} "
            f"{confidence or '':<10} {shown_trust:>6} {flags}"
        )
    print(f"\n{'ok' if ok else 'FAILED'} in {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1
