"""`make run`'s main job on a fresh database: its summary is what the database holds, and a
second run changes no table's row count and fires no rule twice."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.db.connection import connect
from predict_pipeline.defs.partitions import hourly_windows
from predict_pipeline.demo import REPLAY_DIR
from predict_pipeline.demo.run import run_main
from predict_pipeline.model import history_chunks
from predict_pipeline.secrets import generate_key

# End-to-end: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

# Smaller than the demo's defaults (12 hours, 120 events a day) to keep the suite quick, but
# past the 6 baseline hours the trust detectors need.
HISTORY_HOURS = 9
SIMULATOR = {"seed": 7, "events_per_day": 72}


@pytest.fixture
def run_env(db_url, empty_db_url, tmp_path, monkeypatch):
    """The environment `make run` sets up, pointed at a fresh application database (and a
    separate one for Dagster's storage, so every application table can be counted)."""
    for name, value in {
        "PREDICT_DATABASE_URL": db_url,
        "PREDICT_DAGSTER_DATABASE_URL": empty_db_url,
        "PREDICT_DAGSTER_PG_URL": "",
        "PREDICT_STATE_DIR": str(tmp_path / "state"),
        "PREDICT_LANDING_ZONE": str(tmp_path / "landing"),
        "PREDICT_HTTP_MODE": "replay",
        "PREDICT_REPLAY_DIR": str(REPLAY_DIR),
        "PREDICT_ENCRYPTION_KEY": generate_key(),
        "DAGSTER_HOME": str(PROJECT_ROOT),
        "PREDICT_DAGSTER_ARTIFACTS_DIR": str(tmp_path / "dagster" / "storage"),
        "PREDICT_DAGSTER_COMPUTE_LOGS_DIR": str(tmp_path / "dagster" / "logs"),
    }.items():
        monkeypatch.setenv(name, value)
    return db_url


def _row_counts(url: str) -> dict[str, int]:
    with connect(url, role=None) as conn:
        tables = conn.execute(
            """SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
               WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
               ORDER BY 1"""
        ).fetchall()
        return {
            name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # noqa: S608
            for (name,) in tables
        }


def _run(capsys, now: datetime) -> str:
    code = run_main(now=now, history_hours=HISTORY_HOURS, simulator_config=SIMULATOR)
    out, err = capsys.readouterr()
    assert code == 0, out
    # The terminal gets the summary; Dagster's step-by-step log stays in the instance.
    assert " - DEBUG - " not in out + err and " - INFO - " not in out + err
    assert re.search(r"run logs: \d+ Dagster runs \(\w{8} \.\. \w{8}\)", out)
    return out


def _number(pattern: str, text: str) -> tuple[str, ...]:
    found = re.search(pattern, text)
    assert found, (pattern, text)
    return found.groups()


def test_main_run_summary_matches_the_database_and_a_second_run_changes_nothing(run_env, capsys):
    now = datetime.now(UTC)
    out = _run(capsys, now)
    with connect(run_env, role=None) as conn:
        db = conn.execute(
            """SELECT (SELECT count(*) FROM prediction_signals),
                      (SELECT count(DISTINCT event_id) FROM prediction_signals),
                      (SELECT sum(signals_written) FROM prediction_feed_runs),
                      (SELECT sum(records_rejected) FROM prediction_feed_run_landings),
                      (SELECT sum(signals_unmatched) FROM prediction_feed_runs),
                      (SELECT count(*) FROM prediction_unmatched_signals
                       WHERE status = 'PENDING'),
                      (SELECT count(*) FROM prediction_events WHERE status = 'ACTIVE'),
                      (SELECT count(*) FROM prediction_events WHERE status LIKE 'RESOLVED%%'),
                      (SELECT count(*) FROM prediction_snapshots),
                      (SELECT count(*) FROM prediction_trust_flags)"""
        ).fetchone()
        feeds = conn.execute(
            """SELECT f.name, count(r.id), sum(r.signals_written),
                      bool_and(r.status = 'SUCCESS')
               FROM prediction_data_feeds f JOIN prediction_feed_runs r ON r.feed_id = f.id
               GROUP BY f.name"""
        ).fetchall()
        flags = dict(
            conn.execute(
                "SELECT flag_type, count(*) FROM prediction_trust_flags GROUP BY flag_type"
            ).fetchall()
        )
        fired = dict(
            conn.execute(
                """SELECT r.name, count(*) FROM prediction_rule_executions x
                   JOIN prediction_rules r ON r.id = x.rule_id
                   WHERE x.status NOT LIKE 'SKIPPED%%' GROUP BY r.name"""
            ).fetchall()
        )
        brier = conn.execute(
            "SELECT time_window, resolved_predictions, brier_score FROM"
            " prediction_calibration_scores WHERE category_id IS NULL"
        ).fetchall()
    signals = _number(
        r"signals: (\d+) stored on (\d+) events; written (\d+), rejected (\d+), "
        r"unmatched (\d+); review queue (\d+) pending",
        out,
    )
    assert tuple(map(int, signals)) == db[:6]
    events = _number(r"events: (\d+) active, (\d+) resolved; snapshots: (\d+)", out)
    assert tuple(map(int, events)) == db[6:9]
    assert int(_number(r"flags: (\d+) raised", out)[0]) == db[9] > 0
    for kind, count in flags.items():
        assert f"{kind} {count}" in out
    table = {line[:38].rstrip(): line[39:].split() for line in out.splitlines()}
    for name, runs, written, succeeded in feeds:
        _source, status, shown_runs, _records, shown_written, *_ = table[name[:38]]
        assert succeeded and status == "SUCCESS"
        assert (int(shown_runs), int(shown_written)) == (runs, written)
    # The simulator backfilled the history hours a day at a time, and polled the current one.
    hour = now.replace(minute=0, second=0, microsecond=0)
    history = hourly_windows(hour - timedelta(hours=HISTORY_HOURS), hour)
    assert table["Market simulator (sandbox)"][2] == str(len(history_chunks(history)) + 1)
    total = _number(r"(\d+) fired in this run \((\d+) executions in all\)", out)
    assert int(total[0]) == int(total[1]) == sum(fired.values())
    for name, count in fired.items():
        assert f"{count} x {name}" in out
    # Rules of several trigger types fire on the simulated data.
    assert {"Explain every resolved event", "Explain flagged simulated events"} <= set(fired)
    assert len(fired) >= 3
    assert {w for w, _, _ in brier} == {"7D", "30D", "90D", "ALL_TIME"}
    for window, scored, score in brier:
        assert f"{window} {score} ({scored} resolved)" in out
    assert db[7] > 0 and all(scored > 0 for _, scored, _ in brier)
    # The recorded real markets (demo/recordings): markets, resolved, scored, Brier.
    assert re.search(
        r"Recorded: Manifold MetaculusBot markets \(2022\)\s+80\s+76\s+75\s+0\.0281\n", out
    )
    assert re.search(r"Recorded: PredictIt 2016 election markets\s+59\s+58\s+58\s+0\.1327\n", out)

    # The campaign loop: five open campaigns predicted, both weeks of results scored against
    # the prediction made before each, calibrated; the line says what the tables hold.
    shown = _number(
        r"campaigns: (\d+) \((\d+) predicted\), (\d+) results, (\d+) scored: success Brier "
        r"([\d.]+), mean prediction error ([\d.]+), recommended variant right (\d+) of (\d+)",
        out,
    )
    with connect(run_env, role=None) as conn:
        loop = conn.execute(
            """SELECT (SELECT count(*) FROM prediction_campaigns),
                      (SELECT count(*) FROM prediction_campaigns WHERE predicted_at IS NOT NULL),
                      (SELECT count(*) FROM prediction_campaign_results),
                      (SELECT count(*) FROM prediction_campaign_results WHERE success IS NOT NULL
                         AND predicted_success_probability IS NOT NULL),
                      (SELECT count(*) FROM prediction_campaign_results r
                       JOIN prediction_campaigns c ON c.id = r.campaign_id
                       WHERE c.status = 'COMPLETED')"""
        ).fetchone()
        calibrated = conn.execute(
            "SELECT scored_results, brier_score FROM prediction_campaign_calibration"
            " WHERE platform = 'all' AND time_window = 'ALL_TIME'"
        ).fetchone()
    campaigns, predicted, results, scored = map(int, shown[:4])
    assert (campaigns, predicted, results, scored) == loop[:4]
    assert predicted == campaigns - 1  # the finished campaign is history, not predicted
    assert scored == results - loop[4] > 0  # every week scored; only the history is not
    assert calibrated == (scored, Decimal(shown[4]))
    assert 0 < int(shown[7]) <= scored

    # Each run is named for what it does: the UI lists no __ephemeral_asset_job__.
    with dg.DagsterInstance.get() as instance:
        jobs = {run.job_name for run in instance.get_runs()}
    assert jobs == {
        "run_history_job",
        "run_current_hour_job",
        "run_resolutions_job",
        *(f"run_campaign_week_{week}_job" for week in range(3)),
    }

    counts = _row_counts(run_env)
    again = _run(capsys, now)
    assert _row_counts(run_env) == counts
    # What it did not redo, it says: the history hours and the current hour are complete.
    assert re.search(r"\nhistory .* \(9 h\) +skipped: already complete\n", again)
    assert re.search(r"\ncurrent hour .* \(poll\) +skipped: already complete\n", again)
    assert "0 fired in this run" in again
    with connect(run_env, role=None) as conn:
        twice = conn.execute(
            """SELECT count(*) - count(DISTINCT (rule_id, event_id,
                                                 trigger_snapshot->>'state_key'))
               FROM prediction_rule_executions"""
        ).fetchone()[0]
    assert twice == 0
