"""Manual resolution and the dispute workflow, through the CLI and the library, audited."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from predict_pipeline.calibration.disputes import (
    WorkflowError,
    close_dispute,
    open_dispute,
    resolve_manually,
    review_dispute,
)
from predict_pipeline.calibration.metrics import calibration_rows
from predict_pipeline.calibration.resolutions import resolved_events
from tests.support.calendar import ensure_months
from tests.support.feeds import USER_ID

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)


@pytest.fixture
def event(conn) -> uuid.UUID:
    event_id = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Will it snow?', 'snow') RETURNING id"
    ).fetchone()[0]
    snapshot_at = NOW - timedelta(hours=1)
    ensure_months(conn, snapshot_at)  # as the snapshot writer does, whatever today's month
    conn.execute(
        "INSERT INTO prediction_snapshots (event_id, probability, snapshot_at)"
        " VALUES (%s, 0.8, %s)",
        (event_id, snapshot_at),
    )
    return event_id


def _actions(conn) -> list[str]:
    return [
        a
        for (a,) in conn.execute(
            "SELECT action FROM prediction_audit_log ORDER BY created_at, action"
        )
    ]


def test_open_then_overturned_changes_the_outcome_and_the_next_calibration(conn, event):
    resolve_manually(
        conn,
        event,
        "YES",
        evidence_urls=["https://example.org/snow"],
        resolved_by=USER_ID,
        details="weather service report",
        now=NOW,
    )
    before = calibration_rows(resolved_events(conn), now=NOW + timedelta(hours=1), categories=[])
    dispute = open_dispute(
        conn,
        event,
        disputed_by=USER_ID,
        reason="it rained",
        evidence_urls=[],
        now=NOW + timedelta(hours=2),
    ).dispute_id
    assert conn.execute("SELECT is_disputed FROM prediction_resolutions").fetchone() == (True,)
    review_dispute(conn, dispute, reviewer=USER_ID, now=NOW + timedelta(hours=3))
    step = close_dispute(
        conn,
        dispute,
        decision="overturned",
        reviewer=USER_ID,
        notes="station data says rain",
        new_outcome="NO",
        now=NOW + timedelta(hours=4),
    )
    assert step.outcome == "NO"
    state = conn.execute(
        "SELECT r.outcome, r.is_disputed, r.final_probability::float8, e.status"
        " FROM prediction_resolutions r JOIN prediction_events e ON e.id = r.event_id"
    ).fetchone()
    assert state == ("NO", False, 0.8, "RESOLVED_NO")
    after = calibration_rows(resolved_events(conn), now=NOW + timedelta(hours=5), categories=[])
    brier = {r.time_window: r.brier_score for r in before if r.category_id is None}
    brier_after = {r.time_window: r.brier_score for r in after if r.category_id is None}
    assert brier["7D"] == pytest.approx((0.8 - 1) ** 2)
    assert brier_after["7D"] == pytest.approx(0.8**2)
    assert _actions(conn) == [
        "event.resolved",
        "resolution.disputed",
        "dispute.under_review",
        "dispute.overturned",
    ]


def test_upheld_keeps_the_outcome_and_disputes_close_with_the_window(conn, event):
    resolve_manually(conn, event, "YES", evidence_urls=[], resolved_by=None, details=None, now=NOW)
    dispute = open_dispute(
        conn,
        event,
        disputed_by=USER_ID,
        reason="doubt",
        evidence_urls=[],
        now=NOW + timedelta(hours=1),
    ).dispute_id
    step = close_dispute(
        conn,
        dispute,
        decision="upheld",
        reviewer=USER_ID,
        notes="checked",
        new_outcome=None,
        now=NOW + timedelta(hours=2),
    )
    assert step.outcome == "YES"
    with pytest.raises(WorkflowError, match="dispute window"):
        open_dispute(
            conn,
            event,
            disputed_by=USER_ID,
            reason="late",
            evidence_urls=[],
            now=NOW + timedelta(hours=48),
        )
    with pytest.raises(WorkflowError, match="needs --outcome"):
        close_dispute(
            conn,
            dispute,
            decision="overturned",
            reviewer=USER_ID,
            notes="x",
            new_outcome=None,
            now=NOW,
        )
    with pytest.raises(WorkflowError, match="already resolved"):
        resolve_manually(
            conn, event, "NO", evidence_urls=[], resolved_by=None, details=None, now=NOW
        )


def test_cli_resolves_and_disputes(conn, db_url, event):
    env = {**os.environ, "PREDICT_DATABASE_URL": db_url}
    cli = [sys.executable, "-m", "predict_pipeline.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, check=False)

    resolved = run(
        "events",
        "resolve",
        str(event),
        "--outcome",
        "NO",
        "--evidence",
        "https://example.org/a",
        "--by",
        str(USER_ID),
    )
    assert resolved.returncode == 0 and "resolved NO" in resolved.stdout
    opened = run("disputes", "open", str(event), "--by", str(USER_ID), "--reason", "wrong")
    assert opened.returncode == 0
    dispute = opened.stdout.split()[1]
    closed = run(
        "disputes",
        "close",
        dispute,
        "--decision",
        "dismissed",
        "--by",
        str(USER_ID),
        "--notes",
        "no new evidence",
    )
    assert closed.returncode == 0 and "the outcome is NO" in closed.stdout
    again = run(
        "disputes",
        "close",
        dispute,
        "--decision",
        "dismissed",
        "--by",
        str(USER_ID),
        "--notes",
        "twice",
    )
    assert again.returncode == 2 and "is dismissed" in again.stderr
