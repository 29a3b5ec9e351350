"""`feeds parse`, uploads and webhook deliveries: refused whole with line and column, or landed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from predict_pipeline.ingestion.pushed import PushRefused, hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from tests.conftest import FIXTURES
from tests.support.feeds import feed_run, make_feed

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
CLI = [sys.executable, "-m", "predict_pipeline.cli"]


def test_feeds_parse_prints_json_lines_of_a_recorded_payload():
    path = FIXTURES / "payloads" / "kalshi_markets_finalized_cents.json"
    result = subprocess.run(
        [*CLI, "feeds", "parse", "kalshi", str(path), "--fetched-at", "2026-11-22T15:00:00+00:00"],
        capture_output=True,
        text=True,
        check=True,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 26
    first = records[0]
    assert first["source_event_id"] == "KXELONTWEETS-25MAR28-849"
    assert first["fetched_at"] == "2026-11-22T15:00:00+00:00"
    assert first["market"]["resolution"] == "NO"
    assert first["market"]["close_time"] == "2025-03-28T16:00:00+00:00"


def test_feeds_parse_refuses_a_payload_it_cannot_read():
    path = FIXTURES / "payloads" / "manifold_bets.json"
    result = subprocess.run(
        [*CLI, "feeds", "parse", "kalshi", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("predict-pipeline: error: kalshi")
    assert "Traceback" not in result.stderr


GOOD_CSV = (
    b"source_event_id,signal_type,value,fetched_at,title\r\n"
    b"poll-42,MARKET_PRICE,0.61,2026-11-22T15:10:00Z,Will it rain?\r\n"
    b'poll-43,MARKET_PRICE,0.35,2026-11-22T15:11:00Z,"Will it snow, then?"\r\n'
)


def test_upload_lands_a_good_file(conn, landing):
    feed = load_feed(conn, make_feed(conn, "upload", {}))
    report = land_upload(conn, landing, feed, GOOD_CSV, "polls.csv", now=lambda: NOW)
    assert report.records == 2
    [page] = landing.read_window("upload", str(feed.id), hour_window(NOW))
    assert page.body_text == GOOD_CSV.decode()
    assert page.request["context"]["filename"] == "polls.csv"
    run = feed_run(conn, feed.id)
    assert run["status"] == "SUCCESS" and run["signals_fetched"] == 2


def test_malformed_upload_is_refused_with_line_and_column_and_nothing_lands(conn, landing):
    feed = load_feed(conn, make_feed(conn, "upload", {}))
    bad = GOOD_CSV + b"poll-44,MARKET_PRICE,zero point five,2026-11-22T15:12:00Z,x\r\n"
    with pytest.raises(PushRefused) as refused:
        land_upload(conn, landing, feed, bad, "polls.csv", now=lambda: NOW)
    assert "line 4" in str(refused.value) and "column 3" in str(refused.value)
    assert landing.files("upload", str(feed.id), hour_window(NOW)) == []
    run = feed_run(conn, feed.id)
    assert run["status"] == "FAILED" and "line 4" in run["error_message"]


def test_feeds_add_validates_config_and_encrypts_credentials(conn, db_url, tmp_path):
    import os

    from predict_pipeline.secrets import generate_key

    env = {**os.environ, "PREDICT_DATABASE_URL": db_url, "PREDICT_ENCRYPTION_KEY": generate_key()}
    creds = tmp_path / "creds.json"
    creds.write_text('{"token": "metaculus-secret-token"}')

    def add(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *CLI,
                "feeds",
                "add",
                "metaculus",
                "CP of post 578",
                "--user-email",
                "feeds@example.com",
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    bad = add("--config", '{"post_ids": ["not a number"]}')
    assert bad.returncode == 2 and "invalid config: post_ids/0" in bad.stderr
    good = add("--config", '{"post_ids": [578]}', "--credentials-file", str(creds))
    assert good.returncode == 0, good.stderr
    config, stored = conn.execute(
        "SELECT config, credentials_encrypted FROM prediction_data_feeds"
    ).fetchone()
    assert config == {"post_ids": [578]}
    assert stored["alg"] == "AES-256-GCM" and "metaculus-secret-token" not in json.dumps(stored)


# --- records rejected on receipt, and a landing zone that refuses the write -----------------


def test_an_upload_lands_its_good_rows_and_counts_the_rows_rejected_on_receipt(conn, landing):
    feed = load_feed(conn, make_feed(conn, "upload", {}))
    data = GOOD_CSV + b"poll-44,MARKET_PRICE,0.5,0001-01-01T00:00:00Z,Dated year 1\r\n"
    report = land_upload(conn, landing, feed, data, "polls.csv", now=lambda: NOW)
    assert report.records == 2
    assert [(r.reason, r.item_index, r.source_event_id) for r in report.rejected] == [
        ("timestamp_out_of_range", 2, "poll-44")
    ]
    run = feed_run(conn, feed.id)
    assert run["status"] == "SUCCESS" and run["signals_fetched"] == 2
    assert run["error_details"]["rejected_on_receipt"] == {
        "rejected": 1,
        "reasons": {"timestamp_out_of_range": 1},
        "first": "line 4, column 4 (fetched_at): timestamp 0001-01-01T00:00:00+00:00 is outside "
        "1900-01-01 .. 2200-01-01 (UTC)",
    }


def _cli_upload(db_url, landing, feed, path, *, max_file_bytes: int | None = None):
    import os
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**os.environ, "PREDICT_DATABASE_URL": db_url, "PREDICT_LANDING_ZONE": landing.root}
    return subprocess.run(
        [*CLI, "feeds", "upload", str(feed), str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=limit if max_file_bytes else None,
    )


def test_an_upload_to_a_full_landing_zone_fails_in_one_line_and_leaves_no_temp_file(
    conn, db_url, landing, tmp_path
):
    """The command's process may write no file over 64 bytes (RLIMIT_FSIZE): the landing
    write fails as on a full disk. Nothing stays behind, the run is FAILED with the reason,
    and the user reads one line; with room again the same file lands."""
    feed = make_feed(conn, "upload", {})
    path = tmp_path / "polls.csv"
    path.write_bytes(GOOD_CSV)
    full = _cli_upload(db_url, landing, feed, path, max_file_bytes=64)
    reason = "cannot write the landing zone, nothing landed: File too large (EFBIG)"
    assert (full.returncode, full.stdout) == (2, "")
    assert full.stderr == f"predict-pipeline: error: upload failed: {reason}\n"
    assert landing.fs.find(landing.root) == []  # neither the file nor its temporary
    run = feed_run(conn, feed)
    assert (run["status"], run["error_message"], run["signals_fetched"]) == ("FAILED", reason, 0)
    assert run["completed_at"] is not None
    room = _cli_upload(db_url, landing, feed, path)
    assert room.returncode == 0 and room.stdout.startswith("landed 2 records from polls.csv")
    assert len(landing.files("upload", str(feed), hour_window(run["started_at"]))) == 1


def test_a_webhook_delivery_the_landing_zone_refuses_is_a_503_and_a_failed_run(conn, landing):
    from predict_pipeline.ingestion.pushed import LandingFailed, land_webhook
    from predict_pipeline.sources.push.signature import sign_delivery
    from tests.support.feeds import KEY, file_size_limit

    feed_id = make_feed(conn, "webhook", {}, credentials={"webhook_secret": "whsec-test"})
    body = json.dumps([{"source_event_id": "wh-1", "value": 0.7}]).encode()
    headers = sign_delivery("whsec-test", body, sent_at=datetime.now(UTC), delivery_id="dlv-1")
    with file_size_limit(64), pytest.raises(LandingFailed) as refused:
        land_webhook(
            conn, landing, load_feed(conn, feed_id), body, headers, encryption_key=lambda: KEY
        )
    assert refused.value.status == 503
    assert str(refused.value).endswith("nothing landed: File too large (EFBIG)")
    assert landing.fs.find(landing.root) == []
    assert feed_run(conn, feed_id)["status"] == "FAILED"
