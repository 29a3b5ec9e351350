"""The landing record: stage 1 writes each run's window and landing file to
prediction_feed_run_landings, stage 2 keeps the validation state there, and migration 0132 moved
the rows recorded before it out of prediction_feed_runs.error_details."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.db.migrations import discover, upgrade
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.signals.stage import validate_window
from tests.support.feeds import USER_ID, feed_run, feed_run_landing, make_feed

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
LANDINGS = 132


def _upload(conn: psycopg.Connection, landing, feed, rows: list[dict]) -> str:
    body = "\n".join(json.dumps(r) for r in rows).encode()
    return land_upload(conn, landing, load_feed(conn, feed), body, "rows.jsonl", now=lambda: NOW)


def test_a_push_lands_with_its_record_and_validation_keeps_its_state_there(conn, landing):
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Rain?', 'rain') RETURNING id"
    ).fetchone()[0]
    feed = make_feed(conn, "upload", {}, manual_event_mappings=Jsonb({"q": str(event)}))
    at = (NOW - timedelta(minutes=5)).isoformat()
    report = _upload(
        conn, landing, feed, [{"source_event_id": "q", "value": 0.4, "fetched_at": at}] * 2
    )
    landed = feed_run_landing(conn, feed)
    window = hour_window(NOW)
    assert (landed["window_start"], landed["window_end"]) == (window.start, window.end)
    assert landed["landing_file"] == report.landing_file
    assert (landed["validation_status"], landed["validated_at"]) == ("PENDING", None)
    assert "landing_file" not in feed_run(conn, feed)["error_details"]
    validate_window(conn, landing, window, now=NOW)
    validate_window(conn, landing, window, now=NOW)  # a re-run: the same record, no second
    rows = conn.execute(
        "SELECT validation_status, validated_at, records_rejected FROM prediction_feed_run_landings"
    ).fetchall()
    assert rows == [("VALIDATED", NOW, 0)]
    assert feed_run(conn, feed)["signals_written"] == 1  # two rows of one 5-minute bucket


def _legacy_run(conn, feed, started: datetime, status: str, details: dict | None, error=None):
    return conn.execute(
        "INSERT INTO prediction_feed_runs (feed_id, started_at, status, error_message,"
        " error_details) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (feed, started, status, error, Jsonb(details) if details is not None else None),
    ).fetchone()[0]


def test_migration_moves_the_landing_keys_out_of_error_details(empty_db_url):
    before = [m for m in discover() if m.version < LANDINGS]
    with connect(empty_db_url, role=None, autocommit=True) as admin:
        upgrade(admin, before)
    with connect(empty_db_url, role=PIPELINE_ROLE, autocommit=True) as conn:
        conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'l@example.com')", (USER_ID,))
        feed = make_feed(conn, "polymarket", {})
        poll = _legacy_run(
            conn,
            feed,
            datetime(2026, 11, 22, 14, 7, tzinfo=UTC),
            "PARTIAL",
            {
                "mode": "poll",
                "window": ["2026-11-22T14:00:00+00:00", "2026-11-22T15:00:00+00:00"],
                "pages_landed": 1,
                "pages_failed": 1,
                "errors": [{"kind": "FetchError", "reason": "503"}],
                "landing_file": "landing/polymarket/f/2026-11-22T1400Z/poll-1.jsonl.gz",
                "validation": {"rejected": 2, "reasons": {"value_present": 2}, "samples": []},
                "validated_at": "2026-11-22T14:20:00+00:00",
            },
            error="503",
        )
        push = _legacy_run(
            conn,
            feed,
            datetime(2026, 11, 22, 23, 59, tzinfo=UTC),
            "FAILED",
            {
                "sha256": "ab",
                "landing_file": "landing/upload/f/2026-11-22T2300Z/upload-1.jsonl.gz",
                "validation_error": "EOFError: cut short",
                "fetch_status": "SUCCESS",
                "fetch_error_message": None,
            },
            error="writing signals failed, nothing was written: EOFError: cut short",
        )
        refused = _legacy_run(
            conn,
            feed,
            NOW,
            "FAILED",
            {"errors": [{"kind": "credentials", "reason": "no key"}]},
            error="no key",
        )
    with connect(empty_db_url, role=None, autocommit=True) as admin:
        applied = upgrade(admin)
        assert [m.version for m in applied][0] == LANDINGS
        with admin.cursor(row_factory=dict_row) as cur:
            landings = {
                r["feed_run_id"]: r
                for r in cur.execute("SELECT * FROM prediction_feed_run_landings").fetchall()
            }
            details = {
                r["id"]: r["error_details"]
                for r in cur.execute("SELECT id, error_details FROM prediction_feed_runs")
            }
    assert set(landings) == {poll, push}  # the run that landed nothing had no record
    assert landings[poll] | {"feed_run_id": None, "feed_id": None} == {
        "feed_run_id": None,
        "feed_id": None,
        "window_start": datetime(2026, 11, 22, 14, tzinfo=UTC),
        "window_end": datetime(2026, 11, 22, 15, tzinfo=UTC),
        "landing_file": "landing/polymarket/f/2026-11-22T1400Z/poll-1.jsonl.gz",
        "validation_status": "VALIDATED",
        "validated_at": datetime(2026, 11, 22, 14, 20, tzinfo=UTC),
        "records_rejected": 2,
        "rejected_reasons": {"value_present": 2},
        "rejected_samples": [],
        "validation_error": None,
        "fetch_status": None,
        "fetch_error_message": None,
    }
    # A push carried no window: the UTC hour it was received in.
    assert (landings[push]["window_start"], landings[push]["window_end"]) == (
        datetime(2026, 11, 22, 23, tzinfo=UTC),
        datetime(2026, 11, 23, tzinfo=UTC),
    )
    assert landings[push]["validation_status"] == "FAILED"
    assert landings[push]["validation_error"] == "EOFError: cut short"
    assert landings[push]["fetch_status"] == "SUCCESS"
    assert details == {
        poll: {
            "mode": "poll",
            "pages_landed": 1,
            "pages_failed": 1,
            "errors": [{"kind": "FetchError", "reason": "503"}],
        },
        push: {"sha256": "ab"},
        refused: {"errors": [{"kind": "credentials", "reason": "no key"}]},
    }
