"""Bad input never sinks more than itself in stage 2: a record out of range is that record's
reject, and a feed whose write fails is that feed's FAILED run while every other feed lands."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.defs.resources import LandingZoneResource, PostgresResource
from predict_pipeline.defs.signals import validated_signals
from predict_pipeline.defs.snapshots import event_snapshots
from predict_pipeline.defs.trust import trust_scores
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.model import NormalisedRecord
from predict_pipeline.signals.frames import RecordBatch
from predict_pipeline.signals.ingest import FeedValidationReport, ingest_batches
from predict_pipeline.signals.linking import display_market_id
from predict_pipeline.signals.routing import MatchingSettings
from predict_pipeline.signals.stage import validate_window
from tests.support.feeds import USER_ID, feed_run, feed_run_landing, make_feed

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
WINDOW = hour_window(NOW)


def _event(conn: psycopg.Connection) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Will it rain?', 'rain') RETURNING id"
    ).fetchone()[0]


def _feed(conn: psycopg.Connection, event: uuid.UUID, name: str, source: str = "upload"):
    mapping = {f"{name}-{n}": str(event) for n in range(2)}
    return make_feed(conn, source, {}, name=name, manual_event_mappings=Jsonb(mapping))


def _rows(name: str, start: datetime) -> list[dict]:
    """Two good price rows of the feed's two markets, in the hour of `start`."""
    return [
        {
            "source_event_id": f"{name}-{n}",
            "value": 0.4 + n / 10,
            "fetched_at": (start + timedelta(minutes=5 + n)).isoformat(),
        }
        for n in range(2)
    ]


def _land(conn, landing, feed: uuid.UUID, rows: list[dict], at: datetime) -> str:
    body = "\n".join(json.dumps(r) for r in rows).encode()
    report = land_upload(conn, landing, load_feed(conn, feed), body, "rows.jsonl", now=lambda: at)
    return report.landing_file


def _written(conn: psycopg.Connection) -> list[str]:
    """The market ids written, as their feeds sent them (stored in each feed's namespace)."""
    return sorted(
        display_market_id(sid)
        for (sid,) in conn.execute("SELECT source_event_id FROM prediction_signals")
    )


def test_records_dated_year_1_or_9999_are_rejected_and_every_good_row_of_every_feed_lands(
    conn, landing
):
    event = _event(conn)
    feeds = {name: _feed(conn, event, name) for name in ("a", "b", "c", "d")}
    for name, feed in feeds.items():
        rows = _rows(name, WINDOW.start)
        if name == "d":
            rows += [
                {"source_event_id": "d-0", "value": 0.5, "fetched_at": "0001-01-01T00:00:00Z"},
                {"source_event_id": "d-1", "value": 0.5, "fetched_at": "9999-12-31T23:59:59Z"},
            ]
        _land(conn, landing, feed, rows, NOW)
    reports = sorted(validate_window(conn, landing, WINDOW, now=NOW), key=lambda r: r.feed_name)
    assert [(r.feed_name, r.error, r.written) for r in reports] == [
        (name, None, 2) for name in ("a", "b", "c", "d")
    ]
    assert _written(conn) == ["a-0", "a-1", "b-0", "b-1", "c-0", "c-1", "d-0", "d-1"]
    bad = feed_run(conn, feeds["d"])
    assert bad["status"] == "SUCCESS" and bad["signals_written"] == 2
    assert bad["error_details"]["rejected_on_receipt"]["reasons"] == {"timestamp_out_of_range": 2}
    assert feed_run_landing(conn, feeds["d"])["rejected_reasons"] == {"timestamp_out_of_range": 2}
    assert {r.feed_name: r.rejected for r in reports} == {"a": 0, "b": 0, "c": 0, "d": 2}


def _record(sid: str, at: datetime, value: float = 0.5) -> NormalisedRecord:
    return NormalisedRecord("kalshi", sid, "MARKET_PRICE", value, at)


def test_an_adapters_out_of_range_moments_and_unindexable_ids_are_rejected_by_validation(conn):
    """The backstop behind the readers: whatever an adapter hands over, validation rejects the
    row it cannot store, and the rest of the feed's batch is written."""
    event = _event(conn)
    oversized = secrets.token_hex(1500)  # 3,000 incompressible bytes: over btree's 2,704
    mapping = {sid: str(event) for sid in ("good", "year-1", "year-9999", "1899", oversized)}
    feed = load_feed(conn, make_feed(conn, "kalshi", {}, manual_event_mappings=Jsonb(mapping)))
    at = WINDOW.start + timedelta(minutes=5)
    records = [
        _record("good", at),
        _record("year-1", datetime(1, 1, 1, tzinfo=UTC)),
        _record("year-9999", datetime(9999, 12, 31, tzinfo=UTC)),
        _record("1899", datetime(1899, 6, 1, tzinfo=UTC)),
        _record(oversized, at),
    ]
    report = FeedValidationReport(str(feed.id), feed.name, feed.source)
    with conn.transaction():
        rejected = ingest_batches(
            conn,
            feed,
            [RecordBatch(records)],
            report,
            now=NOW,
            matching=MatchingSettings(),
            events=lambda: [],
            timings={},
        )
    assert _written(conn) == ["good"]
    assert report.rejected_reasons == {"fetched_at_in_range": 3, "source_event_id_size": 1}
    assert sorted(rejected["detail"].str.split(":").str[0]) == [
        "fetched_at_in_range",
        "fetched_at_in_range",
        "fetched_at_in_range",
        "source_event_id_size",
    ]
    months = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'prediction_signals'::regclass"
        " AND inhrelid::regclass::text < 'prediction_signals_y1970'"
    ).fetchone()
    assert months == (0,)  # no partition was made for a moment that is rejected


def _truncate(landing: LandingZone, path: str) -> None:
    """A landed file cut short (a disk that filled up, a copy that stopped): gzip's EOFError."""
    data = landing.read_bytes(path)
    with landing.fs.open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def test_a_feed_whose_landed_file_cannot_be_read_fails_alone_and_says_why(conn, landing):
    event = _event(conn)
    feeds = {name: _feed(conn, event, name) for name in ("a", "b", "c")}
    files = {n: _land(conn, landing, f, _rows(n, WINDOW.start), NOW) for n, f in feeds.items()}
    intact = landing.read_bytes(files["b"])
    _truncate(landing, files["b"])
    reports = sorted(validate_window(conn, landing, WINDOW, now=NOW), key=lambda r: r.feed_name)
    assert [(r.feed_name, r.written) for r in reports] == [("a", 2), ("b", 0), ("c", 2)]
    assert reports[1].error.startswith("EOFError: ")
    assert _written(conn) == ["a-0", "a-1", "c-0", "c-1"]
    failed = feed_run(conn, feeds["b"])
    assert failed["status"] == "FAILED"
    assert failed["error_message"].startswith(
        "writing signals failed, nothing was written: EOFError: "
    )
    assert [feed_run(conn, feeds[n])["status"] for n in ("a", "c")] == ["SUCCESS", "SUCCESS"]
    # Once the file is whole again, the retry writes it and the run says SUCCESS again.
    with landing.fs.open(files["b"], "wb") as handle:
        handle.write(intact)
    validate_window(conn, landing, WINDOW, now=NOW)
    assert _written(conn) == ["a-0", "a-1", "b-0", "b-1", "c-0", "c-1"]
    healed = feed_run(conn, feeds["b"])
    assert (healed["status"], healed["error_message"]) == ("SUCCESS", None)


def test_validated_signals_materialises_and_warns_when_one_feed_fails(
    conn, db_url, tmp_path, dagster_instance
):
    landed_at = datetime.now(UTC)  # the asset validates with the wall clock
    window = hour_window(landed_at)
    landing = LandingZone(str(tmp_path / "landing"))
    event = _event(conn)
    feeds = {name: _feed(conn, event, name) for name in ("a", "b")}
    start = window.start - timedelta(minutes=5)
    files = {n: _land(conn, landing, f, _rows(n, start), landed_at) for n, f in feeds.items()}
    _truncate(landing, files["a"])
    result = dg.materialize(
        [validated_signals],
        instance=dagster_instance,
        resources={
            "database": PostgresResource(url=db_url),
            "landing": LandingZoneResource(root=landing.root),
        },
        partition_key=HOURLY.get_partition_key_for_timestamp(landed_at.timestamp()),
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("validated_signals")
    assert materialization.metadata["written"].value == 2
    assert materialization.metadata["feeds_failed"].value == 1
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    written = checks["every_feed_written"]
    assert not written.passed and written.severity == dg.AssetCheckSeverity.WARN
    [failure] = written.metadata["failed_feeds"].value
    assert failure["feed"] == "upload/a" and failure["error"].startswith("EOFError: ")
    assert _written(conn) == ["b-0", "b-1"]
    assert feed_run(conn, feeds["a"])["status"] == "FAILED"


def test_a_feed_whose_rows_the_database_refuses_fails_alone_and_the_hour_flows_on(
    conn, db_url, tmp_path, dagster_instance
):
    """Snapshots and trust follow the feeds that were written. Feed `capped` belongs to an
    owner at their plan's max_events, and its market would become a new event: the database's
    plan-limit trigger refuses that row (SQLSTATE PL001), which rolls back the feed's write.
    Feed `good` of the same hour is written, snapshotted and scored."""
    landed_at = datetime.now(UTC)  # the assets run on the wall clock
    window = hour_window(landed_at)
    landing = LandingZone(str(tmp_path / "landing"))
    event = _event(conn)
    good = _feed(conn, event, "good")
    capped = make_feed(conn, "upload", {}, name="capped")  # auto mapping: creates events
    conn.execute(
        "INSERT INTO prediction_subscriptions (user_id, tier, status, max_events)"
        " VALUES (%s, 'pro', 'active', 1)",
        (USER_ID,),
    )
    conn.execute(
        "INSERT INTO prediction_events (title, slug, created_by, is_public)"
        " VALUES ('The owner''s one open question', 'owned', %s, false)",
        (USER_ID,),
    )
    start = window.start - timedelta(minutes=5)
    _land(conn, landing, good, _rows("good", start), landed_at)
    question = {
        "source_event_id": "new-question",
        "value": 0.3,
        "fetched_at": (start + timedelta(minutes=6)).isoformat(),
        "title": "Will the harbour bridge reopen before the spring festival?",
        "close_time": "2027-03-01T00:00:00Z",
    }
    _land(conn, landing, capped, [question], landed_at)
    result = dg.materialize(
        [validated_signals, event_snapshots, trust_scores],
        instance=dagster_instance,
        resources={
            "database": PostgresResource(url=db_url),
            "landing": LandingZoneResource(root=landing.root),
        },
        partition_key=HOURLY.get_partition_key_for_timestamp(landed_at.timestamp()),
    )
    assert result.success
    assert _written(conn) == ["good-0", "good-1"]
    refused = feed_run(conn, capped)
    assert refused["status"] == "FAILED"
    assert refused["error_message"].startswith("writing signals failed, nothing was written: ")
    assert "plan limit: the pro plan allows 1 open events (max_events)" in refused["error_message"]
    landed = feed_run_landing(conn, capped)
    assert landed["validation_status"] == "FAILED" and landed["fetch_status"] == "SUCCESS"
    assert "plan limit" in landed["validation_error"]
    assert feed_run(conn, good)["status"] == "SUCCESS"
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    written = checks["every_feed_written"]
    assert not written.passed and written.severity == dg.AssetCheckSeverity.WARN
    [failure] = written.metadata["failed_feeds"].value
    assert failure["feed"] == "upload/capped" and "plan limit" in failure["error"]
    # The hour flowed on: the good feed's event has its snapshot and its trust score.
    assert conn.execute(
        "SELECT count(*) FROM prediction_snapshots WHERE event_id = %s", (event,)
    ).fetchone() == (1,)
    assert conn.execute(
        "SELECT count(*) FROM prediction_trust_scores WHERE event_id = %s", (event,)
    ).fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM prediction_events").fetchone() == (2,)
