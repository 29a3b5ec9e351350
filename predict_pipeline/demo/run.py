"""`predict-pipeline run`: the main job on whatever database is configured (embedded default).

Offline by default: unless PREDICT_HTTP_MODE says otherwise, the real adapters read the
recorded real API payloads of demo/replay (replay mode). Beside them, the market simulator
(a sandbox source, `predict_pipeline/sources/simulator.py`) backfills the last
`DEMO_HISTORY_HOURS` hours so the trust detectors have baselines and events resolve.

The demo window is those hours and the current one. Each hourly partition goes through
raw_feed_fetches -> validated_signals -> event_snapshots -> trust_scores (the past hours in one
ranged run, the simulator's history; then the current hour, every demo feed polled), then
event_resolutions and calibration_scores over everything known, then one tick of the rule
sensor with its actions run inline, and a summary.

Safe to run again: a partition whose last materialisation of trust_scores came after its end
(or, for the current hour, any) is complete and not redone, and a feed already fetched for a
window is not fetched again, so a second run in the same hour writes nothing new; a later run
completes what is missing (the new hours, and the hour that was current before). The summary
names what was skipped as already complete, and where each named run's log is.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from predict_pipeline.config import HTTP_MODE_VAR, REPLAY_DIR_VAR, Settings
from predict_pipeline.db.bootstrap import bootstrap
from predict_pipeline.db.connection import connect
from predict_pipeline.db.rows import one_row
from predict_pipeline.demo.recordings import load_recordings, recording_summary
from predict_pipeline.demo.seed import DEMO_HISTORY_HOURS, DEMO_USER_ID, REPLAY_DIR, seed_demo
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.secrets import load_key_from_env

TOP_EVENTS = 12
_LAST_STAGE = dg.AssetKey("trust_scores")


def _evaluate_rules(app_url: str, *, since: datetime) -> tuple[list[tuple[str, str]], int]:
    """One tick of the rule sensor, and the fired executions run inline (as the job would)."""
    from predict_pipeline.rules.channels import http_client_factory, smtp_factory
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
            name = one_row(
                conn.execute(
                    "SELECT r.name FROM prediction_rule_executions x"
                    " JOIN prediction_rules r ON r.id = x.rule_id WHERE x.id = %s",
                    (execution,),
                )
            )[0]
            fired.append((name, status))
    return fired, report.evaluated


def _complete_partitions(
    instance: dg.DagsterInstance, keys: Sequence[str], *, now: datetime
) -> set[str]:
    """Partitions whose last stage was materialised after the hour ended (or, for the hour
    still running, at all): what a re-run need not do again."""
    from predict_pipeline.defs.partitions import HOURLY

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=_LAST_STAGE, asset_partitions=list(keys)),
        limit=10 * len(keys) + 10,
    ).records
    latest: dict[str, float] = {}
    for record in records:
        key = record.partition_key
        if key is not None:
            latest[key] = max(latest.get(key, 0.0), record.timestamp)
    complete = set()
    for key, stamp in latest.items():
        end = HOURLY.time_window_for_partition_key(key).end
        if end > now or stamp >= end.timestamp():
            complete.add(key)
    return complete


def _fetched(app_url: str, feed_ids: list[uuid.UUID], mode: str, windows: list[Any]) -> set:
    """(feed id, window start) pairs of the hour windows that successful fetches in this mode
    already covered (a backfill fetches a day's hours in one run)."""
    with connect(app_url) as conn:
        rows = conn.execute(
            """SELECT r.feed_id, l.window_start, l.window_end
               FROM prediction_feed_runs r
               JOIN prediction_feed_run_landings l ON l.feed_run_id = r.id
               WHERE r.feed_id = ANY(%s) AND r.status IN ('SUCCESS', 'PARTIAL')
                 AND r.error_details->>'mode' = %s""",
            (feed_ids, mode),
        ).fetchall()
    return {
        (feed, w.start)
        for feed, start, end in rows
        for w in windows
        if start <= w.start and w.end <= end
    }


def _fetch_config(config_class: Any, feed_ids: list[uuid.UUID], mode: str) -> dg.RunConfig:
    ids = [str(f) for f in feed_ids]
    return dg.RunConfig(ops={"raw_feed_fetches": config_class(feed_ids=ids, mode=mode)})


# The terminal gets the summary; each run's full log stays in the Dagster instance (the UI).
_QUIET = {"console": {"config": {"log_level": "WARNING"}}}


def _materialise(
    job_name: str,
    assets: list[Any],
    selection: list[Any],
    *,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any] | None,
    run_config: dg.RunConfig,
    run_ids: list[str],
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
) -> bool:
    """One named run (the UI lists it by name, not as an ephemeral job); its id is kept."""
    job = dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job(job_name, selection=selection)],
        resources=resources,
    ).resolve_job_def(job_name)
    config = dg.RunConfig(ops=run_config.ops, resources=run_config.resources, loggers=_QUIET)
    result = job.execute_in_process(
        run_config=config,
        instance=instance,
        partition_key=partition_key,
        tags=tags,
        raise_on_error=False,
    )
    run_ids.append(result.run_id)
    return result.success


def campaign_loop_demo(
    app_url: str,
    *,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any] | None,
    assets: Sequence[Any],
    run_ids: list[str],
) -> list[tuple[str, bool | None]]:
    """The campaign loop as a marketer lives it: the finished campaign's history, a prediction,
    the first week's results (pushed as an ad platform export, scored against that
    prediction), a new prediction, the second week, and the calibration. A week already stored
    is not sent again, so a second run adds nothing."""
    from predict_pipeline.campaigns.intake import receive_push
    from predict_pipeline.demo.seed import DEMO_EXPORT_MAPPING, DEMO_USER_ID, demo_results_export

    loop = [a for a in assets if "campaigns" in a.group_names_by_key.values()]
    by_key = {key.to_user_string(): a for a in loop for key in a.keys}
    results, predictions, calibration = (
        by_key[name]
        for name in ("campaign_results", "campaign_predictions", "campaign_calibration")
    )
    plan = (
        ("campaigns: history, first predictions", [results, predictions]),
        ("campaigns: week 1 results, predictions", [results, predictions]),
        ("campaigns: week 2 results, predictions, calibration", loop),
    )
    stages: list[tuple[str, bool | None]] = []
    for period, (label, selection) in enumerate(plan):
        with connect(app_url) as conn, conn.transaction():
            export = demo_results_export(conn, period)
            if export is not None:
                receive_push(
                    conn,
                    export,
                    f"demo-week-{period}.csv",
                    submitted_by=DEMO_USER_ID,
                    mapping_config=DEMO_EXPORT_MAPPING,
                    received_at=datetime.now(UTC),
                )
        stages.append(
            (
                label,
                _materialise(
                    f"run_campaign_week_{period}_job",
                    loop,
                    selection,
                    instance=instance,
                    resources=resources,
                    run_config=dg.RunConfig(),
                    run_ids=run_ids,
                ),
            )
        )
    return stages


def run_main(
    *,
    now: datetime | None = None,
    history_hours: int = DEMO_HISTORY_HOURS,
    simulator_config: dict[str, Any] | None = None,
    top: int = TOP_EVENTS,
) -> int:
    """Migrate, seed the demo, materialise the pipeline for the demo window, summarise.

    `now` fixes the demo window (tests pin it so two runs cover the same hours).
    """
    started = time.perf_counter()
    run_started = datetime.now(UTC)
    now = now or run_started
    if not os.environ.get(HTTP_MODE_VAR):
        os.environ[HTTP_MODE_VAR] = "replay"
        os.environ.setdefault(REPLAY_DIR_VAR, str(REPLAY_DIR))
    target = bootstrap(require_key=True)
    from predict_pipeline.definitions import defs  # after bootstrap: the env names the database
    from predict_pipeline.defs.ingestion import FeedFetchConfig, raw_feed_fetches
    from predict_pipeline.defs.partitions import HOURLY, hourly_windows

    with connect(target.app_url) as conn, conn.transaction():
        feed_ids = seed_demo(
            conn,
            encryption_key=load_key_from_env(),
            now=now,
            history_hours=history_hours,
            simulator_config=simulator_config,
        )
    simulated = feed_ids[-1]
    # Recorded real resolved markets (demo/recordings), uploaded once as a user would: the
    # calibration then scores real forecasts, not only the simulator's.
    with connect(target.app_url, autocommit=True) as conn:
        recorded, landed = load_recordings(
            conn,
            LandingZone(Settings.from_env().landing_zone),
            owner=DEMO_USER_ID,
            now=now,
        )
    hour = now.replace(minute=0, second=0, microsecond=0)
    current = HOURLY.get_partition_key_for_timestamp(now.timestamp())
    past = [
        HOURLY.get_partition_key_for_timestamp((hour - timedelta(hours=h)).timestamp())
        for h in range(history_hours, 0, -1)
    ]
    declared = list(defs.assets or [])
    assets = [a for a in declared if isinstance(a, dg.AssetsDefinition)]
    if len(assets) != len(declared):
        # Specs and cacheable assets have no groups or partitions to select runs by.
        raise TypeError("the demo materialises @asset definitions only")
    # The hourly stages; event_history (days before the hourly axis) runs on its own axis.
    windowed = [a for a in assets if a.partitions_def == HOURLY]
    # Retention has its own schedule and command (`predict-pipeline retention run`); the
    # campaign loop runs below, week by week.
    whole = [
        a
        for a in assets
        if a.partitions_def is None
        and not {"retention", "campaigns"} & set(a.group_names_by_key.values())
    ]
    downstream = [a for a in windowed if a is not raw_feed_fetches]
    # A stage is ok (True), FAILED (False) or skipped as already complete (None).
    stages: list[tuple[str, bool | None]] = []
    run_ids: list[str] = []
    with dg.DagsterInstance.get() as instance:
        complete = _complete_partitions(instance, [*past, current], now=now)
        if landed:
            complete.discard(current)  # the uploads landed in this hour: validate it again
        todo = [key for key in past if key not in complete]
        if todo:
            # The simulator's history, one ranged run (as a backfill of the range would be).
            first = HOURLY.time_window_for_partition_key(todo[0]).start
            last = HOURLY.time_window_for_partition_key(todo[-1]).end
            windows = hourly_windows(first, last)
            fetched = _fetched(target.app_url, [simulated], "backfill", windows)
            fetch = any((simulated, w.start) not in fetched for w in windows)
            stages.append(
                (
                    f"history {todo[0]} .. {todo[-1]} ({len(windows)} h)",
                    _materialise(
                        "run_history_job",
                        windowed,
                        windowed if fetch else downstream,
                        instance=instance,
                        resources=defs.resources,
                        run_config=_fetch_config(FeedFetchConfig, [simulated], "backfill")
                        if fetch
                        else dg.RunConfig(),
                        run_ids=run_ids,
                        tags={
                            "dagster/asset_partition_range_start": todo[0],
                            "dagster/asset_partition_range_end": todo[-1],
                        },
                    ),
                )
            )
        elif past:
            stages.append((f"history {past[0]} .. {past[-1]} ({len(past)} h)", None))
        if current not in complete:
            window = hourly_windows(hour, hour + timedelta(hours=1))
            fetched = _fetched(target.app_url, feed_ids, "poll", window)
            due = [f for f in feed_ids if (f, hour) not in fetched]
            stages.append(
                (
                    f"current hour {current} (poll)",
                    _materialise(
                        "run_current_hour_job",
                        windowed,
                        windowed if due else downstream,
                        instance=instance,
                        resources=defs.resources,
                        run_ids=run_ids,
                        partition_key=current,
                        run_config=_fetch_config(FeedFetchConfig, due, "poll")
                        if due
                        else dg.RunConfig(),
                    ),
                )
            )
        else:
            stages.append((f"current hour {current} (poll)", None))
        # Resolutions and calibration over everything that is now known.
        stages.append(
            (
                "resolutions and calibration",
                _materialise(
                    "run_resolutions_job",
                    whole,
                    whole,
                    instance=instance,
                    resources=defs.resources,
                    run_config=dg.RunConfig(),
                    run_ids=run_ids,
                ),
            )
        )
        stages.extend(
            campaign_loop_demo(
                target.app_url,
                instance=instance,
                resources=defs.resources,
                assets=assets,
                run_ids=run_ids,
            )
        )
    fired, evaluated = _evaluate_rules(target.app_url, since=run_started - timedelta(hours=1))
    where = "embedded PostgreSQL" if target.embedded else "configured PostgreSQL"
    print(
        f"\npredict_pipeline — main job, demo window {past[0] if past else current} .. "
        f"{current} UTC, {where}, HTTP {os.environ[HTTP_MODE_VAR]}"
    )
    ok = print_summary(target.app_url, [*feed_ids, *recorded], stages, fired, evaluated, top=top)
    with connect(target.app_url) as conn:
        summary = recording_summary(conn, recorded)
    # Indented under its header: a line of this table is never read as a feed's line.
    print(
        f"\nrecorded real markets (demo/recordings){'markets':>19} {'resolved':>8} {'scored':>6}"
        f" {'Brier':>8}"
    )
    for name, markets, resolved, scored, brier in summary:
        shown = "-" if brier is None else f"{brier:.4f}"
        print(f"  {name[:56]:<56} {markets:>7} {resolved:>8} {scored:>6} {shown:>8}")
    print(
        f"\nrun logs: {len(run_ids)} Dagster runs ({run_ids[0][:8]} .. {run_ids[-1][:8]}) in"
        f" the instance of {os.environ.get('DAGSTER_HOME') or 'DAGSTER_HOME'}/dagster.yaml:"
        " `make dev`, then Runs"
    )
    print(f"\n{'ok' if ok else 'FAILED'} in {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1


CAMPAIGN_SUMMARY_SQL = """
SELECT (SELECT count(*) FROM prediction_campaigns),
       (SELECT count(*) FROM prediction_campaigns WHERE predicted_at IS NOT NULL),
       count(*),
       count(*) FILTER (WHERE predicted_success_probability IS NOT NULL AND success IS NOT NULL),
       round(avg((predicted_success_probability - success::int)^2), 4),
       round(avg(prediction_error), 4),
       count(*) FILTER (WHERE prediction_direction_correct),
       count(prediction_direction_correct)
FROM prediction_campaign_results
"""


def campaign_summary(
    campaigns: int,
    predicted: int,
    results: int,
    scored: int,
    brier: Any,
    error: Any,
    right: int,
    directed: int,
) -> str:
    """The campaigns line: predictions, results, and how the scored ones did."""
    return (
        f"campaigns: {campaigns} ({predicted} predicted), {results} results, {scored} scored: "
        f"success Brier {brier if brier is not None else '-'}, mean prediction error "
        f"{error if error is not None else '-'}, recommended variant right {right} of {directed}"
    )


def print_summary(
    app_url: str,
    feed_ids: list[uuid.UUID],
    stages: list[tuple[str, bool | None]],
    fired: list[tuple[str, str]],
    evaluated: int,
    *,
    top: int,
) -> bool:
    """The summary tables, read back from the database; False if any stage or feed failed."""
    ok = all(success is not False for _, success in stages)
    print(f"\n{'stage':<58} result")
    shown = {True: "ok", False: "FAILED", None: "skipped: already complete"}
    for label, success in stages:
        print(f"{label[:58]:<58} {shown[success]}")
    if not stages:
        print("(nothing to do)")
    with connect(app_url) as conn:
        feeds = conn.execute(
            """SELECT f.name, s.source_id, last.status, count(r.id), sum(r.signals_fetched),
                      sum(r.signals_written), sum(r.signals_unmatched),
                      sum(coalesce(l.records_rejected, 0)), coalesce(last.error_message, '')
               FROM prediction_data_feeds f
               JOIN prediction_data_sources s ON s.id = f.source_id
               JOIN prediction_feed_runs r ON r.feed_id = f.id
               LEFT JOIN prediction_feed_run_landings l ON l.feed_run_id = r.id
               JOIN LATERAL (SELECT status, error_message FROM prediction_feed_runs
                             WHERE feed_id = f.id ORDER BY started_at DESC LIMIT 1) last ON true
               WHERE f.id = ANY(%s)
               GROUP BY f.name, s.source_id, last.status, last.error_message
               ORDER BY f.name""",
            (feed_ids,),
        ).fetchall()
        signals, on_events, pending, snapshots = one_row(
            conn.execute(
                """SELECT (SELECT count(*) FROM prediction_signals),
                      (SELECT count(DISTINCT event_id) FROM prediction_signals),
                      (SELECT count(*) FROM prediction_unmatched_signals
                       WHERE status = 'PENDING'),
                      (SELECT count(*) FROM prediction_snapshots)"""
            )
        )
        active, resolved = one_row(
            conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'ACTIVE'),"
                " count(*) FILTER (WHERE status LIKE 'RESOLVED%%') FROM prediction_events"
            )
        )
        flags = conn.execute(
            "SELECT flag_type, count(*) FROM prediction_trust_flags GROUP BY flag_type"
            " ORDER BY flag_type"
        ).fetchall()
        events = conn.execute(
            """SELECT e.title, e.status, e.current_probability, e.trust_score,
                      (SELECT count(*) FROM prediction_trust_flags f WHERE f.event_id = e.id) n
               FROM prediction_events e WHERE e.current_probability IS NOT NULL
               ORDER BY n DESC, e.trust_score NULLS LAST, e.title LIMIT %s""",
            (top,),
        ).fetchall()
        brier = conn.execute(
            "SELECT time_window, resolved_predictions, brier_score FROM"
            " prediction_calibration_scores WHERE category_id IS NULL ORDER BY time_window"
        ).fetchall()
        executions = one_row(
            conn.execute(
                "SELECT count(*) FROM prediction_rule_executions WHERE status NOT LIKE 'SKIPPED%%'"
            )
        )[0]
        campaigns = one_row(conn.execute(CAMPAIGN_SUMMARY_SQL))
    print(
        f"\n{'feed':<38} {'source':<10} {'status':<8} {'runs':>4} {'offered':>7} "
        f"{'written':>7} {'review':>6} {'rejected':>8}"
    )
    for name, source, status, runs, offered, written, unmatched, rejected, error in feeds:
        print(
            f"{name[:38]:<38} {source:<10} {status:<8} {runs:>4} {offered:>7} {written:>7}"
            f" {unmatched:>6} {rejected:>8}" + (f"  {error[:60]}" if error else "")
        )
        ok = ok and status == "SUCCESS"
    print(
        f"\nsignals: {signals} stored on {on_events} events; "
        f"written {sum(f[5] for f in feeds)}, rejected {sum(f[7] for f in feeds)}, "
        f"unmatched {sum(f[6] for f in feeds)}; review queue {pending} pending"
    )
    print(f"events: {active} active, {resolved} resolved; snapshots: {snapshots}")
    print(
        f"flags: {sum(n for _, n in flags)} raised"
        + (" (" + ", ".join(f"{kind} {n}" for kind, n in flags) + ")" if flags else "")
    )
    by_rule: dict[str, int] = {}
    for name, _status in fired:
        by_rule[name] = by_rule.get(name, 0) + 1
    print(
        f"rules: {evaluated} rule/event pairs evaluated, {len(fired)} fired in this run "
        f"({executions} executions in all)"
        + ("" if not by_rule else ": " + ", ".join(f"{n} x {k}" for k, n in by_rule.items()))
    )
    print(
        "calibration (global Brier): "
        + (
            ", ".join(f"{w} {b if b is not None else '-'} ({n} resolved)" for w, n, b in brier)
            or "none yet"
        )
    )
    print(campaign_summary(*campaigns))
    print(f"\n{'event (most flagged first)':<64} {'status':<12} {'prob':>6} {'trust':>6} flags")
    for title, status, prob, trust, count in events:
        shown_trust = "" if trust is None else f"{trust:.4f}"
        print(f"{title[:64]:<64} {status:<12} {prob:>6.4f} {shown_trust:>6} {count:>5}")
    return ok
