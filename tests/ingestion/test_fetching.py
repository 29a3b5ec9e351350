"""Fetching feeds against a real local HTTP server: every outcome is a feed run with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, quote_plus, urlencode

from predict_pipeline.http import HttpClient, ResponseLimits
from predict_pipeline.ingestion.runner import fetch_window
from predict_pipeline.model import FetchWindow
from tests.support.feeds import (
    KEY,
    custom_config,
    feed_row,
    feed_run,
    feed_run_landing,
    file_size_limit,
    make_feed,
)
from tests.support.http_server import DripServer, Reply, gzip_of_zeros

WINDOW = FetchWindow(datetime(2026, 11, 22, 15, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC))
NOW = datetime(2026, 11, 22, 15, 20, tzinfo=UTC)
GOOD = json.dumps(
    {
        "items": [
            {"id": "m1", "p": 0.61, "title": "Will A?"},
            {"id": "m2", "p": 0.2, "title": "Will B?"},
        ]
    }
).encode()


def _fetch(conn, client, landing, feed_ids=None, **kw):
    return fetch_window(
        conn,
        client,
        landing,
        WINDOW,
        mode="poll",
        feed_ids=feed_ids,
        encryption_key=lambda: KEY,
        now=lambda: NOW,
        **kw,
    )


def test_500_then_200_is_retried_and_succeeds(conn, client, landing, server, sleeps):
    server.add("/api", Reply(500, b"oops"), Reply(200, GOOD))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    [report] = _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert (report.status, run["status"]) == ("SUCCESS", "SUCCESS")
    assert run["request_count"] == 2 and run["signals_fetched"] == 2
    assert run["bytes_received"] == len(b"oops") + len(GOOD)
    assert len(sleeps) == 1
    pages = list(landing.read_window("custom_api", str(feed), WINDOW))
    assert [p.payload for p in pages] == [json.loads(GOOD)]
    assert pages[0].feed_run_id == str(run["id"])
    landed = feed_run_landing(conn, feed)  # stage 1's hand-over to stage 2
    assert (landed["window_start"], landed["window_end"]) == (WINDOW.start, WINDOW.end)
    assert landed["landing_file"] == report.landing_file
    assert landed["validation_status"] == "PENDING"
    assert set(run["error_details"]) == {"mode", "pages_landed", "pages_failed"}
    health = feed_row(conn, feed)
    assert health["consecutive_failures"] == 0 and health["last_successful_run"] == NOW
    assert health["next_run_at"] == NOW.replace(minute=35)  # default 15-minute poll interval


def test_429_with_retry_after_waits_then_succeeds(conn, client, landing, server, sleeps):
    server.add("/api", Reply(429, b"slow down", {"Retry-After": "2"}), Reply(200, GOOD))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    _fetch(conn, client, landing, [feed])
    assert feed_run(conn, feed)["status"] == "SUCCESS"
    assert sleeps == [2.0]


def test_429_until_retries_are_spent_is_rate_limited(conn, client, landing, server):
    server.add("/api", *[Reply(429, b"", {"Retry-After": "1", "X-RateLimit-Remaining": "0"})] * 3)
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    [report] = _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert report.status == run["status"] == "RATE_LIMITED"
    assert run["request_count"] == 3 and run["rate_limit_remaining"] == 0
    assert "429" in run["error_message"]
    assert feed_row(conn, feed)["consecutive_failures"] == 1


def test_read_timeout_is_timeout(conn, client, landing, server):
    server.add("/api", *[Reply(200, GOOD, delay=1.0)] * 3)
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert run["status"] == "TIMEOUT" and run["request_count"] == 3
    assert run["error_details"]["errors"][0]["kind"] == "FetchTimeoutError"
    landed = feed_run_landing(conn, feed)  # the window was tried; nothing landed
    assert (landed["window_start"], landed["landing_file"]) == (WINDOW.start, None)
    assert landed["validation_status"] is None


def test_401_is_auth_failed_without_retry(conn, client, landing, server):
    server.add("/api", Reply(401, b'{"error": "bad token"}'))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert run["status"] == "AUTH_FAILED" and run["request_count"] == 1


def test_malformed_page_is_kept_with_its_reason_and_good_pages_land(conn, client, landing, server):
    page1 = json.dumps({"items": [{"id": f"m{i}", "p": 0.5} for i in range(2)]}).encode()
    server.add("/api", Reply(200, page1), Reply(200, b'{"items": [{"id": "m9", "p": 0.'))
    config = custom_config(
        server.url("/api"),
        pagination={
            "mode": "offset",
            "limit_param": "limit",
            "offset_param": "offset",
            "page_size": 2,
            "max_pages": 5,
        },
    )
    feed = make_feed(conn, "custom_api", config)
    _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert run["status"] == "PARTIAL" and run["signals_fetched"] == 2
    assert run["error_details"]["pages_landed"] == 1
    assert run["error_details"]["pages_failed"] == 1
    assert "JSON" in run["error_message"] or "Expecting" in run["error_message"]
    good, bad = landing.read_window("custom_api", str(feed), WINDOW)
    assert good.error is None and good.payload == json.loads(page1)
    assert bad.error and bad.body_text == '{"items": [{"id": "m9", "p": 0.'
    assert bad.request["params"] == {"limit": "2", "offset": "2"}


def test_payload_missing_required_fields_fails_with_the_reason(conn, client, landing, server):
    server.add("/api", Reply(200, b'{"data": {"unexpected": true}}'))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert run["status"] == "FAILED"
    assert "records_path: nothing at $.items" in run["error_message"]
    [kept] = landing.read_window("custom_api", str(feed), WINDOW)
    assert kept.payload == {"data": {"unexpected": True}} and kept.error


def test_feed_is_auto_disabled_after_n_failures_with_an_audit_entry(conn, client, landing, server):
    server.add("/api", *[Reply(503, b"down")] * 6)
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    first = _fetch(conn, client, landing, [feed], disable_after_failures=2)
    assert not first[0].auto_disabled and feed_row(conn, feed)["enabled"] is True
    second = _fetch(conn, client, landing, [feed], disable_after_failures=2)
    assert second[0].auto_disabled
    health = feed_row(conn, feed)
    assert health["enabled"] is False and health["auto_disabled_at"] == NOW
    assert health["consecutive_failures"] == 2
    audit = conn.execute(
        "SELECT action, severity, details->>'threshold' FROM prediction_audit_log"
        " WHERE resource_id = %s",
        (feed,),
    ).fetchall()
    assert audit == [("feed.auto_disabled", "WARNING", "2")]
    assert _fetch(conn, client, landing) == []  # a disabled feed is no longer due


def test_one_broken_feed_leaves_the_others_untouched(conn, client, landing, server):
    server.add("/good", Reply(200, GOOD))
    server.add("/broken", Reply(404, b"gone"))
    good = make_feed(conn, "custom_api", custom_config(server.url("/good")), name="a good")
    broken = make_feed(conn, "custom_api", custom_config(server.url("/broken")), name="b broken")
    reports = _fetch(conn, client, landing)
    assert {r.feed_name: r.status for r in reports} == {"a good": "SUCCESS", "b broken": "FAILED"}
    assert feed_run(conn, good)["signals_fetched"] == 2
    assert "404" in feed_run(conn, broken)["error_message"]


def test_invalid_config_fails_the_run_and_sends_nothing(conn, client, landing, server):
    feed = make_feed(conn, "custom_api", {"url": server.url("/api"), "records_path": 42})
    _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert run["status"] == "FAILED" and run["request_count"] == 0
    assert "invalid config for source custom_api" in run["error_message"]
    assert "records_path" in run["error_message"]
    assert server.received == []


def test_credentials_are_sent_but_never_stored_or_reported(conn, client, landing, server):
    server.add("/api", Reply(401, b"no"))
    secret = "sk-live-7f3a9c"
    feed = make_feed(
        conn,
        "custom_api",
        custom_config(server.url("/api")),
        credentials={"headers": {"Authorization": f"Bearer {secret}"}},
    )
    _fetch(conn, client, landing, [feed])
    assert server.received[0].headers["authorization"] == f"Bearer {secret}"
    run = feed_run(conn, feed)
    stored = json.dumps(feed_row(conn, feed)["credentials_encrypted"])
    assert secret not in stored and secret not in json.dumps(run, default=str)


def test_private_address_is_refused_unless_allowed(conn, landing, server):
    from predict_pipeline.http import HttpClient

    server.add("/api", Reply(200, GOOD))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    with HttpClient(max_retries=0) as strict:
        _fetch(conn, strict, landing, [feed])
    run = feed_run(conn, feed)
    assert run["status"] == "FAILED" and "UnsafeUrlError" in json.dumps(run["error_details"])
    assert server.received == []


# --- bounded fetches and a landing zone that refuses the write ------------------------------


def test_a_dripping_source_is_a_timeout_run_and_the_next_feed_is_still_fetched(
    conn, landing, server, sleeps
):
    drip = DripServer(interval=0.2, length=10_000)
    server.add("/api", Reply(200, GOOD))
    slow = make_feed(conn, "custom_api", custom_config(drip.url("/api")), name="a drip")
    fine = make_feed(conn, "custom_api", custom_config(server.url("/api")), name="b fine")
    try:
        with HttpClient(
            timeout=(1.0, 5.0),
            allow_private_hosts=("127.0.0.1",),
            sleep=sleeps.append,
            limits=ResponseLimits(deadline_s=1.5),
        ) as http:
            reports = _fetch(conn, http, landing, [slow, fine])
    finally:
        drip.close()
    assert [(r.feed_name, r.status) for r in reports] == [
        ("a drip", "TIMEOUT"),
        ("b fine", "SUCCESS"),
    ]
    run = feed_run(conn, slow)
    assert run["status"] == "TIMEOUT" and run["request_count"] == 1
    assert run["error_message"].startswith("deadline_exceeded: no complete response within 1.5 s")
    assert run["error_details"]["errors"][0]["kind"] == "DeadlineExceededError"
    assert landing.files("custom_api", str(slow), WINDOW) == []
    assert feed_run(conn, fine)["signals_fetched"] == 2


def test_a_body_past_its_sources_size_limit_is_a_failed_run(conn, client, landing, server):
    """custom_api's own limit (16 MiB) applies within the client's (64 MiB)."""
    server.add("/api", Reply(200, gzip_of_zeros(20 << 20), {"Content-Encoding": "gzip"}))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    [report] = _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert report.status == run["status"] == "FAILED"
    assert run["error_message"].startswith(
        "response_too_large: the body passed 16 MiB after decoding (HTTP 200)"
    )
    assert run["request_count"] == 1 and server.hits("/api") == 1
    assert landing.files("custom_api", str(feed), WINDOW) == []


def test_a_landing_zone_that_refuses_the_write_is_a_failed_run_leaving_no_file(
    conn, client, landing, server
):
    server.add("/api", Reply(200, GOOD), Reply(200, GOOD))
    feed = make_feed(conn, "custom_api", custom_config(server.url("/api")))
    with file_size_limit(64):  # the landing file is a few hundred bytes
        [report] = _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    reason = "cannot write the landing zone, nothing landed: File too large (EFBIG)"
    assert (report.status, run["status"], run["error_message"]) == ("FAILED", "FAILED", reason)
    assert run["error_details"]["pages_landed"] == 0
    assert landing.fs.find(landing.root) == []  # no page file, no temporary file
    assert feed_row(conn, feed)["consecutive_failures"] == 1
    [again] = _fetch(conn, client, landing, [feed])  # room again: the next fetch lands
    assert again.status == "SUCCESS"
    assert len(landing.files("custom_api", str(feed), WINDOW)) == 1


# --- query-parameter credentials: sent encrypted at rest, never landed ------------------------

SECRET_KEY = "k3y/with+signs=and&more"


def _landed_bytes(landing, feed) -> bytes:
    import gzip

    return b"".join(
        gzip.decompress(landing.read_bytes(path))
        for path in landing.files("custom_api", str(feed), WINDOW)
    )


def test_query_credentials_go_with_every_request_and_never_land(conn, client, landing, server):
    """The key rides in the query of each page's request (an API that echoes it into its
    next-page link included), and neither the landing zone nor the feed row holds it."""
    echoed = json.dumps(
        {
            "items": [{"id": "m3", "p": 0.3}],
            "next": server.url("/api") + "?page=2&" + urlencode({"k": SECRET_KEY}),
        }
    ).encode()
    last = json.dumps({"items": [{"id": "m4", "p": 0.4}], "next": None}).encode()
    server.add("/api", Reply(200, echoed), Reply(200, last))
    config = custom_config(
        server.url("/api"),
        params={"limit": "10"},
        pagination={"mode": "next_url", "next_url_path": "$.next"},
    )
    feed = make_feed(conn, "custom_api", config, credentials={"query": {"k": SECRET_KEY}})
    [report] = _fetch(conn, client, landing, [feed])
    assert report.status == "SUCCESS" and report.records == 2
    sent = [parse_qs(r.query) for r in server.received]
    assert sent == [{"limit": ["10"], "k": [SECRET_KEY]}, {"page": ["2"], "k": [SECRET_KEY]}]
    landed = _landed_bytes(landing, feed)
    assert b"m3" in landed and b"m4" in landed
    for shown in (SECRET_KEY, quote(SECRET_KEY, safe=""), quote_plus(SECRET_KEY)):
        assert shown.encode() not in landed
    pages = list(landing.read_window("custom_api", str(feed), WINDOW))
    assert [p.request["params"] for p in pages] == [{"limit": "10"}, {}]
    assert pages[1].request["url"] == server.url("/api") + "?page=2"
    assert pages[0].payload["next"] == server.url("/api") + "?page=2&k=***"  # the echo, masked
    stored = json.dumps(feed_row(conn, feed)["credentials_encrypted"])
    assert SECRET_KEY not in stored and quote_plus(SECRET_KEY) not in stored


def test_a_failed_request_names_its_url_with_the_query_credential_masked(
    conn, client, landing, server
):
    server.add("/api", Reply(404, b"no such page"))
    feed = make_feed(
        conn, "custom_api", custom_config(server.url("/api")), credentials={"query": {"k": "s3"}}
    )
    [report] = _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert report.status == "FAILED" and server.received[0].query == "k=s3"
    [error] = run["error_details"]["errors"]
    assert error["url"] == server.url("/api") + "?k=***"
    assert "s3" not in json.dumps(run["error_details"]) + run["error_message"]


def test_query_credentials_that_are_not_text_fail_the_run_without_showing_them(
    conn, client, landing, server
):
    feed = make_feed(
        conn, "custom_api", custom_config(server.url("/api")), credentials={"query": {"k": 12345}}
    )
    [report] = _fetch(conn, client, landing, [feed])
    run = feed_run(conn, feed)
    assert report.status == "FAILED" and server.received == []
    assert run["error_message"] == (
        "credentials 'query' must map names to non-empty text (values not shown)"
    )
