"""The due-feeds sensor and the fetch stage as an operator runs them: no second fetch for a feed
with a run in flight, push-only feeds never polled, breakers that heal through a half-open
probe, credentials' state from 401/403, source status and daily quota honoured, backfills that
never disable live polling, and replayed history that is skipped rather than FAILED."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)

from predict_pipeline.defs.ingestion import (
    FEED_TAG,
    FeedFetchConfig,
    due_feeds_sensor,
    fetch_feeds_job,
    raw_feed_fetches,
)
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from predict_pipeline.demo import REPLAY_DIR
from predict_pipeline.http import build_http_client
from predict_pipeline.ingestion.runner import OVER_QUOTA, fetch_window
from predict_pipeline.ingestion.store import BREAKER_COOL_OFF, load_feeds
from predict_pipeline.model import FetchWindow
from predict_pipeline.secrets import generate_key
from tests.support.feeds import KEY, custom_config, feed_row, feed_run, make_feed
from tests.support.http_server import Reply

WINDOW = FetchWindow(datetime(2026, 11, 22, 15, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC))
NOW = datetime(2026, 11, 22, 15, 20, tzinfo=UTC)
GOOD = json.dumps({"items": [{"id": "m1", "p": 0.61, "title": "Will A?"}]}).encode()


@pytest.fixture
def database(db_url) -> PostgresResource:
    return PostgresResource(url=db_url)


def _tick(instance, database) -> dg.SensorResult:
    return due_feeds_sensor(
        dg.build_sensor_context(instance=instance, resources={"database": database})
    )


def _enqueue(instance, request, event: DagsterEventType) -> dg.DagsterRun:
    """The run the daemon made of a request, as the run queue holds it (not yet launched), or
    as a run that started: created, then the event the run coordinator reports."""
    run = instance.add_run(
        dg.DagsterRun(
            job_name=fetch_feeds_job.name,
            run_id=str(uuid.uuid4()),
            run_config=request.run_config,
            tags=request.tags,
            remote_job_origin=RemoteJobOrigin(
                RemoteRepositoryOrigin(
                    RegisteredCodeLocationOrigin("predict_pipeline"), "__repository__"
                ),
                fetch_feeds_job.name,
            ),
        )
    )
    instance.run_storage.handle_run_event(
        run.run_id, DagsterEvent(event_type_value=event.value, job_name=run.job_name)
    )
    return instance.get_run_by_id(run.run_id)


def _fed(request) -> list[str]:
    return request.run_config["ops"]["raw_feed_fetches"]["config"]["feed_ids"]


def _fetch(conn, client, landing, feed_ids, *, now=NOW, **kw):
    return fetch_window(
        conn,
        client,
        landing,
        WINDOW,
        mode=kw.pop("mode", "poll"),
        feed_ids=feed_ids,
        encryption_key=lambda: KEY,
        now=lambda: now,
        **kw,
    )


def _audits(conn, feed) -> list[str]:
    rows = conn.execute(
        "SELECT action FROM prediction_audit_log WHERE resource_id = %s ORDER BY created_at, id",
        (feed,),
    ).fetchall()
    return [action for (action,) in rows]


# ---------------------------------------------------------------------------------------
# The sensor: in-flight runs, push-only feeds


def test_a_feed_with_a_queued_run_gets_no_second_run(conn, database, dagster_instance):
    past = datetime.now(UTC) - timedelta(minutes=3)
    feed = make_feed(conn, "predictit", {}, name="busy", poll_interval_minutes=1, next_run_at=past)
    other = make_feed(conn, "predictit", {}, name="free", next_run_at=past)
    [first, second] = sorted(_tick(dagster_instance, database).run_requests, key=_fed)
    by_feed = {_fed(first)[0]: first, _fed(second)[0]: second}
    request = by_feed[str(feed)]
    assert request.tags[FEED_TAG] == str(feed)
    # The run is queued behind others: the daemon has not started it.
    run = _enqueue(dagster_instance, request, DagsterEventType.RUN_ENQUEUED)
    # Its feed is due again (a 1-minute poll interval behind a long queue); so is the other.
    conn.execute(
        "UPDATE prediction_data_feeds SET next_run_at = %s WHERE id = ANY(%s)",
        (past, [feed, other]),
    )
    again = _tick(dagster_instance, database)
    assert [_fed(r) for r in again.run_requests] == [[str(other)]]
    assert feed_row(conn, feed)["next_run_at"] == past  # still due: fetched once the run ends
    assert run.status == dg.DagsterRunStatus.QUEUED
    dagster_instance.report_run_failed(run)  # the queued run ended: the feed may go again
    conn.execute("UPDATE prediction_data_feeds SET next_run_at = %s WHERE id = %s", (past, other))
    later = _tick(dagster_instance, database)
    assert sorted(_fed(r)[0] for r in later.run_requests) == sorted([str(feed), str(other)])


def test_queued_run_is_named_in_the_skip_reason(conn, database, dagster_instance):
    past = datetime.now(UTC) - timedelta(minutes=3)
    feed = make_feed(conn, "predictit", {}, name="busy", next_run_at=past)
    [request] = _tick(dagster_instance, database).run_requests
    _enqueue(dagster_instance, request, DagsterEventType.RUN_START)
    conn.execute("UPDATE prediction_data_feeds SET next_run_at = %s WHERE id = %s", (past, feed))
    result = _tick(dagster_instance, database)
    assert result.run_requests == []
    assert result.skip_reason.skip_message == (
        "1 due feed(s) wait: a fetch run already queued or in progress"
    )


def test_push_only_feeds_never_get_a_fetch_run(conn, database, dagster_instance):
    past = datetime.now(UTC) - timedelta(hours=2)
    pushed = [
        make_feed(conn, "upload", {}, name="uploads", next_run_at=past),
        make_feed(conn, "webhook", {}, name="hooks", next_run_at=past),
        make_feed(conn, "upload", {}, name="never scheduled"),  # next_run_at NULL: "due at once"
    ]
    pulled = make_feed(conn, "predictit", {}, name="pulled", next_run_at=past)
    requested = []
    for _ in range(3):  # ticks through the hours
        requested += [_fed(r) for r in _tick(dagster_instance, database).run_requests]
        conn.execute(
            "UPDATE prediction_data_feeds SET next_run_at = %s WHERE id = %s", (past, pulled)
        )
    assert requested == [[str(pulled)]] * 3
    assert [feed_row(conn, f)["next_run_at"] for f in pushed] == [past, past, None]


# ---------------------------------------------------------------------------------------
# Breakers that heal


def test_half_open_probe_after_the_cool_off_keeps_or_closes_the_breaker(
    conn, client, landing, server
):
    server.add("/api", Reply(404, b"gone"), Reply(404, b"gone"), Reply(404, b"still gone"))
    server.add("/api", Reply(200, GOOD))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")), name="flaky")
    _fetch(conn, client, landing, [feed], disable_after_failures=2)
    [report] = _fetch(conn, client, landing, [feed], disable_after_failures=2)
    assert report.auto_disabled
    opened = feed_row(conn, feed)
    assert opened["enabled"] is False and opened["breaker_probe_at"] == NOW + BREAKER_COOL_OFF
    # Not before the cool-off: the feed is neither due nor probed.
    assert load_feeds(conn, due_before=NOW + BREAKER_COOL_OFF / 2, probes=True) == []
    assert _fetch(conn, client, landing, [feed]) == []
    probe_at = NOW + BREAKER_COOL_OFF
    [due] = load_feeds(conn, due_before=probe_at, probes=True)
    assert due.id == feed and due.probing
    # A failed probe keeps it open and doubles the cool-off.
    [failed] = _fetch(conn, client, landing, [feed], probe=True, now=probe_at)
    assert failed.status == "FAILED" and not failed.auto_disabled
    after = feed_row(conn, feed)
    assert after["enabled"] is False and after["breaker_failed_probes"] == 1
    assert after["breaker_probe_at"] == probe_at + 2 * BREAKER_COOL_OFF
    # The next probe succeeds: the breaker closes, the feed is polled again.
    healed_at = probe_at + 2 * BREAKER_COOL_OFF
    [healed] = _fetch(conn, client, landing, [feed], probe=True, now=healed_at)
    assert healed.status == "SUCCESS" and healed.records == 1
    closed = feed_row(conn, feed)
    assert (closed["enabled"], closed["consecutive_failures"], closed["auto_disabled_at"]) == (
        True,
        0,
        None,
    )
    assert closed["breaker_probe_at"] is None and closed["breaker_failed_probes"] == 0
    assert closed["next_run_at"] == healed_at + timedelta(minutes=15)
    assert _audits(conn, feed) == ["feed.auto_disabled", "feed.probe_failed", "feed.re_enabled"]
    assert server.hits("/api") == 4


def test_sensor_launches_the_probe_and_the_run_re_enables_the_feed(
    conn, database, dagster_instance, server, tmp_path, monkeypatch
):
    """End to end: an auto-disabled feed, its cool-off over, is probed by a run the sensor
    requests, against a real local HTTP server, and is enabled again."""
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    server.add("/api", Reply(200, GOOD))
    now = datetime.now(UTC)
    feed = make_feed(
        conn,
        "custom_api",
        custom_config(server.url("/api")),
        name="healing",
        enabled=False,
        consecutive_failures=5,
        auto_disabled_at=now - BREAKER_COOL_OFF - timedelta(minutes=1),
        breaker_probe_at=now - timedelta(minutes=1),
    )
    hand_off = make_feed(conn, "custom_api", custom_config(server.url("/x")), enabled=False)
    [request] = _tick(dagster_instance, database).run_requests
    config = request.run_config["ops"]["raw_feed_fetches"]["config"]
    assert config == {"feed_ids": [str(feed)], "mode": "poll", "probe": True}
    # The probe is claimed: the next tick does not launch a second one.
    assert feed_row(conn, feed)["breaker_probe_at"] > now + BREAKER_COOL_OFF / 2
    assert _tick(dagster_instance, database).run_requests == []
    result = dg.materialize(
        [raw_feed_fetches],
        instance=dagster_instance,
        resources={
            "database": database,
            "http": HttpClientResource(mode="live", allow_private_hosts=["127.0.0.1"]),
            "landing": LandingZoneResource(root=str(tmp_path / "landing")),
            "secrets": SecretsResource(),
        },
        partition_key=request.partition_key,
        run_config=request.run_config,
    )
    assert result.success
    healed = feed_row(conn, feed)
    assert healed["enabled"] is True and healed["consecutive_failures"] == 0
    assert feed_run(conn, feed)["status"] == "SUCCESS"
    assert feed_row(conn, hand_off)["enabled"] is False  # disabled by hand: never probed


# ---------------------------------------------------------------------------------------
# Credentials, source status, daily quota


def test_401_marks_the_credentials_invalid_and_a_success_active_again(
    conn, client, landing, server
):
    server.add("/api", Reply(401, b'{"error": "bad token"}'), Reply(200, GOOD))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    [refused] = _fetch(conn, client, landing, [feed])
    assert refused.status == "AUTH_FAILED"
    row = feed_row(conn, feed)
    assert (row["auth_status"], row["auth_expires_at"]) == ("INVALID", None)
    _fetch(conn, client, landing, [feed], now=NOW + timedelta(minutes=20))
    assert feed_row(conn, feed)["auth_status"] == "ACTIVE"


def test_a_token_the_source_says_expired_is_expired_as_of_the_refusal(
    conn, client, landing, server
):
    expired = (
        'Bearer realm="api", error="invalid_token", error_description="The access token expired"'
    )
    server.add("/api", Reply(401, b"", headers={"WWW-Authenticate": expired}), Reply(403, b""))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    _fetch(conn, client, landing, [feed])
    row = feed_row(conn, feed)
    assert (row["auth_status"], row["auth_expires_at"]) == ("EXPIRED", NOW)
    assert feed_run(conn, feed)["error_message"].startswith(
        "HTTP 401 Unauthorized: credentials expired"
    )
    _fetch(conn, client, landing, [feed], now=NOW + timedelta(hours=1))  # 403: refused
    row = feed_row(conn, feed)
    assert (row["auth_status"], row["auth_expires_at"]) == ("INVALID", NOW)


@pytest.mark.parametrize("status", ["DISABLED", "DEPRECATED"])
def test_source_status_decides_whether_its_feeds_are_fetched(
    conn, admin_conn, database, dagster_instance, client, landing, server, status
):
    server.add("/api", Reply(200, GOOD))
    past = datetime.now(UTC) - timedelta(minutes=3)
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")), next_run_at=past)
    admin_conn.execute(
        "UPDATE prediction_data_sources SET status = %s WHERE source_id = 'custom_api'", (status,)
    )
    requested = [_fed(r) for r in _tick(dagster_instance, database).run_requests]
    fetched = _fetch(conn, client, landing, [feed])
    if status == "DISABLED":  # the source is closed: not polled, not even by a run asked for it
        assert requested == [] and fetched == [] and server.hits("/api") == 0
        assert conn.execute("SELECT count(*) FROM prediction_feed_runs").fetchone() == (0,)
    else:  # deprecated: what exists keeps working (no new feeds: see the CLI's tests)
        assert requested == [[str(feed)]] and fetched[0].status == "SUCCESS"


def test_rate_limit_rpd_stops_a_source_for_the_rest_of_its_day(
    conn, admin_conn, client, landing, server
):
    admin_conn.execute(
        "UPDATE prediction_data_sources SET rate_limit_rpd = 3 WHERE source_id = 'custom_api'"
    )
    server.add("/api", *[Reply(200, GOOD)] * 5)
    feeds = [
        make_feed(conn, "custom_api", custom_config(server.url("/api")), name=f"f{i}")
        for i in range(4)
    ]
    for minute in range(2):  # two polls of each: the first three fetches spend the quota
        _fetch(conn, client, landing, feeds, now=NOW + timedelta(minutes=minute))
    assert server.hits("/api") == 3
    statuses = conn.execute(
        "SELECT status, count(*) FROM prediction_feed_runs GROUP BY status"
    ).fetchall()
    assert statuses == [("SUCCESS", 3)]  # a spent quota is no failed run of the feed
    [report] = _fetch(conn, client, landing, feeds[3:], now=NOW + timedelta(hours=2))
    assert report.status == OVER_QUOTA and "3 requests per day" in report.error
    # A day after the first requests, the quota is back.
    [again] = _fetch(conn, client, landing, feeds[3:], now=NOW + timedelta(days=1, minutes=1))
    assert again.status == "SUCCESS" and server.hits("/api") == 4
    # Replayed runs spend no quota.
    replayed = build_http_client("replay", replay_dir=REPLAY_DIR)
    with replayed:
        from predict_pipeline.ingestion.runner import RateLimiters

        _fetch(
            conn,
            replayed,
            landing,
            feeds[:1],
            now=NOW + timedelta(days=1, minutes=2),
            rate_limiters=RateLimiters(enabled=False),
        )
    quota = conn.execute(
        "SELECT error_details->>'quota' FROM prediction_feed_runs ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    assert quota == ("false",)


# ---------------------------------------------------------------------------------------
# Backfills and replayed history


def test_backfill_failures_never_count_toward_disabling_live_polling(
    conn, admin_conn, client, landing, server
):
    server.add("/api", *[Reply(404, b"no history")] * 6)
    server.add("/api", Reply(200, GOOD))
    config = custom_config(server.url("/api"), window_start_param="from", window_end_param="to")
    feed = make_feed(conn, "custom_api", config)
    admin_conn.execute(
        "UPDATE prediction_data_sources SET supports_backfill = true WHERE source_id = 'custom_api'"
    )
    for _ in range(6):
        [report] = _fetch(conn, client, landing, [feed], mode="backfill", disable_after_failures=2)
        assert report.status == "FAILED" and not report.auto_disabled
    row = feed_row(conn, feed)
    assert (row["enabled"], row["consecutive_failures"], row["last_error"]) == (True, 0, None)
    assert server.hits("/api") == 6  # each backfill asked the source for its history
    [polled] = _fetch(conn, client, landing, [feed], disable_after_failures=2)
    assert polled.status == "SUCCESS"
    assert conn.execute(
        "SELECT count(*) FROM prediction_feed_runs WHERE status = 'FAILED'"
        " AND error_details->>'mode' = 'backfill'"
    ).fetchone() == (6,)


def test_a_paused_feed_is_not_polled_but_its_history_can_be_fetched(
    conn, admin_conn, client, landing, server
):
    server.add("/api", Reply(200, GOOD))
    config = custom_config(server.url("/api"), window_start_param="from", window_end_param="to")
    feed = make_feed(conn, "custom_api", config, paused_at=NOW - timedelta(days=1))
    admin_conn.execute(
        "UPDATE prediction_data_sources SET supports_backfill = true WHERE source_id = 'custom_api'"
    )
    assert _fetch(conn, client, landing, [feed]) == []  # a run queued before the pause
    assert server.hits("/api") == 0
    [history] = _fetch(conn, client, landing, [feed], mode="backfill")
    assert history.status == "SUCCESS" and server.hits("/api") == 1


def test_replayed_backfill_without_recorded_history_is_skipped_with_its_reason(
    conn, dagster_instance, tmp_path, monkeypatch, database
):
    """The demo's recordings hold history for some feeds only: the others are SKIPPED with the
    reason (never FAILED, never counted toward disabling), and the run's check passes."""
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    unrecorded = make_feed(conn, "manifold", {"market_ids": ["not-recorded"]}, name="m")
    partition = "2025-03-20-12:00"  # a past window: its history
    result = dg.materialize(
        [raw_feed_fetches],
        instance=dagster_instance,
        resources={
            "database": database,
            "http": HttpClientResource(mode="replay", replay_dir=str(REPLAY_DIR)),
            "landing": LandingZoneResource(root=str(tmp_path / "landing")),
            "secrets": SecretsResource(),
        },
        partition_key=partition,
        run_config=dg.RunConfig(
            ops={"raw_feed_fetches": FeedFetchConfig(feed_ids=[str(unrecorded)], mode="backfill")}
        ),
    )
    assert result.success
    run = feed_run(conn, unrecorded)
    assert run["status"] == "SKIPPED"
    assert run["error_message"].startswith("skipped: replay mode has no recorded history")
    assert feed_row(conn, unrecorded)["consecutive_failures"] == 0
    [materialization] = result.asset_materializations_for_node("raw_feed_fetches")
    assert materialization.metadata["feeds_skipped"].value == 1
    assert materialization.metadata["feeds_failed"].value == 0
    [check] = result.get_asset_check_evaluations()
    assert check.passed
