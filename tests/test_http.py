"""The HTTP client against a real local server on 127.0.0.1, the SSRF guard and replay mode."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.http import (
    AuthFailedError,
    DeadlineExceededError,
    FetchStats,
    FetchTimeoutError,
    HttpClient,
    HttpStatusError,
    InvalidJsonError,
    RateLimitedError,
    ReplayManifestError,
    ReplayMissError,
    ReplayTransport,
    ResponseLimits,
    ResponseTooLargeError,
    TokenBucket,
    TransportFailure,
    UnsafeUrlError,
    backoff_delay,
    build_http_client,
    check_url_allowed,
    parse_retry_after,
    redact_url,
)
from predict_pipeline.model import PageRequest
from tests.support.http_server import DripServer, Reply, ScriptedServer, gzip_of_zeros

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
KALSHI_EVENTS = (PAYLOADS / "kalshi_events.json").read_bytes()
MANIFOLD_MARKETS = (PAYLOADS / "manifold_markets.json").read_bytes()
GAMMA_MARKETS = (PAYLOADS / "polymarket_gamma_markets.json").read_bytes()


@pytest.fixture
def server():
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps):
    with HttpClient(
        timeout=(2.0, 2.0),
        max_retries=3,
        backoff_base=0.5,
        backoff_max=8.0,
        sleep=sleeps.append,
        rng=lambda: 0.5,
    ) as http:
        yield http


def get(url: str, **kw) -> PageRequest:
    return PageRequest(endpoint="test", url=url, **kw)


class FakeClock:
    def __init__(self, advance_on_sleep: bool = True) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._advance = advance_on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self._advance:
            self.now += seconds


# ---------------------------------------------------------------------------------------------
# Retries, errors and stats


def test_500_then_200_succeeds_on_the_second_attempt(server, client, sleeps):
    server.add("/events", Reply(500, b"boom"), Reply(200, KALSHI_EVENTS))

    response = client.send(get(server.url("/events")), trusted=True)

    assert response.attempts == 2
    assert response.status_code == 200
    assert response.body == KALSHI_EVENTS
    assert response.json()["events"][0]["event_ticker"] == "KXELONTWEETS-25APR04"
    assert response.url == server.url("/events")
    assert sleeps == [0.25]  # full jitter: rng 0.5 x base 0.5
    assert server.hits("/events") == 2


def test_elapsed_ms_spans_the_whole_send(server, sleeps):
    server.add("/m", Reply(500, b""), Reply(200, KALSHI_EVENTS))
    readings = iter([100.0, 100.75])
    with HttpClient(sleep=sleeps.append, clock=lambda: next(readings)) as http:
        response = http.send(get(server.url("/m")), trusted=True)
    assert response.elapsed_ms == 750.0


def test_malformed_urls_are_refused_before_any_request(client):
    with pytest.raises(UnsafeUrlError, match="malformed URL"):
        client.send(get("http://[::1/markets"), trusted=True)
    with pytest.raises(UnsafeUrlError, match="malformed URL"):
        client.send(get("https://api.example.org:99999/x"))
    assert client.stats.requests == 0


def test_429_with_retry_after_seconds_waits_that_long(server, client, sleeps):
    server.add(
        "/markets", Reply(429, b"slow down", {"Retry-After": "2"}), Reply(200, MANIFOLD_MARKETS)
    )

    response = client.send(get(server.url("/markets")), trusted=True)

    assert sleeps == [2.0]
    assert response.attempts == 2
    assert response.json()[0]["id"] == "qy222g0Nhq"


def test_503_with_retry_after_http_date_waits_until_then(server, sleeps):
    server.add(
        "/m",
        Reply(503, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}),
        Reply(200, KALSHI_EVENTS),
    )
    with HttpClient(
        sleep=sleeps.append, utcnow=lambda: datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    ) as http:
        response = http.send(get(server.url("/m")), trusted=True)
    assert sleeps == [30.0]
    assert response.attempts == 2


def test_retry_after_is_capped_by_the_maximum_wait(server, sleeps):
    server.add("/m", Reply(429, b"", {"Retry-After": "3600"}), Reply(200, KALSHI_EVENTS))
    with HttpClient(sleep=sleeps.append, retry_after_max=45.0) as http:
        http.send(get(server.url("/m")), trusted=True)
    assert sleeps == [45.0]


def test_429_forever_raises_rate_limited_after_every_retry(server, client, sleeps):
    server.add("/m", *[Reply(429, b"Please limit requests to one every 5 seconds")] * 4)
    stats = FetchStats()

    with pytest.raises(RateLimitedError) as caught:
        client.send(get(server.url("/m")), trusted=True, stats=stats)

    error = caught.value
    assert error.attempts == 4
    assert error.status_code == 429
    assert "HTTP 429 Too Many Requests" in str(error)
    assert stats.requests == 4
    assert stats.bytes_received == 4 * len(b"Please limit requests to one every 5 seconds")
    assert server.hits("/m") == 4
    assert sleeps == [0.25, 0.5, 1.0]  # rng 0.5 x min(8, 0.5 * 2**(n-1))


def test_read_timeout_raises_fetch_timeout_error(server, sleeps):
    server.add("/slow", Reply(200, KALSHI_EVENTS, delay=1.0), Reply(200, KALSHI_EVENTS, delay=1.0))
    with (
        HttpClient(timeout=(1.0, 0.2), max_retries=1, sleep=sleeps.append) as http,
        pytest.raises(FetchTimeoutError) as caught,
    ):
        http.send(get(server.url("/slow")), trusted=True)
    assert caught.value.attempts == 2
    assert caught.value.status_code is None
    assert "ReadTimeout" in caught.value.reason
    assert len(sleeps) == 1


def test_connection_refused_raises_transport_failure(sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    with (
        HttpClient(max_retries=2, sleep=sleeps.append, rng=lambda: 1.0) as http,
        pytest.raises(TransportFailure) as caught,
    ):
        http.send(get(f"http://127.0.0.1:{port}/x"), trusted=True)
    assert caught.value.attempts == 3
    assert "ConnectError" in caught.value.reason
    assert sleeps == [0.5, 1.0]


def test_401_is_auth_failed_and_not_retried(server, client, sleeps):
    server.add("/private", Reply(401, b"unauthorised"), Reply(200, KALSHI_EVENTS))
    request = get(
        server.url("/private"),
        params={"api_key": "sk-live-abc123", "limit": "200"},
        headers={"Authorization": "Bearer tok-xyz789"},
    )

    with pytest.raises(AuthFailedError) as caught:
        client.send(request, trusted=True)

    error = caught.value
    assert error.attempts == 1
    assert error.status_code == 401
    assert error.url == server.url("/private") + "?api_key=***&limit=200"
    assert "sk-live-abc123" not in str(error)
    assert "tok-xyz789" not in str(error)
    assert sleeps == []
    assert server.hits("/private") == 1
    assert server.received[0].query == "api_key=sk-live-abc123&limit=200"


def test_404_is_an_http_status_error_and_not_retried(server, client):
    server.add("/gone", Reply(404, b"no such market"))
    with pytest.raises(HttpStatusError) as caught:
        client.send(get(server.url("/gone")), trusted=True)
    assert (caught.value.status_code, caught.value.attempts) == (404, 1)
    assert server.hits("/gone") == 1


def test_malformed_json_error_names_the_url(server, client):
    truncated = KALSHI_EVENTS[:1000]
    server.add("/events", Reply(200, truncated))

    response = client.send(get(server.url("/events"), params={"limit": "200"}), trusted=True)

    assert response.body == truncated
    with pytest.raises(InvalidJsonError) as caught:
        response.json()
    assert caught.value.url == server.url("/events") + "?limit=200"
    assert server.url("/events") in str(caught.value)
    assert "HTTP 200" in str(caught.value)


@pytest.mark.parametrize(
    "header", ["X-RateLimit-Remaining", "RateLimit-Remaining", "x-ratelimit-remaining"]
)
def test_stats_count_bytes_requests_and_rate_limit_remaining(server, client, header):
    server.add("/a", Reply(200, GAMMA_MARKETS, {header: "299"}))
    server.add(
        "/b", Reply(500, b"oops", {header: "298"}), Reply(200, KALSHI_EVENTS, {header: "297"})
    )
    server.add("/c", Reply(200, MANIFOLD_MARKETS))
    stats = FetchStats()

    for path in ("/a", "/b", "/c"):
        client.send(get(server.url(path)), trusted=True, stats=stats)

    assert stats.requests == 4
    assert stats.bytes_received == 113556 + 4 + 2601 + 16531
    assert stats.rate_limit_remaining == 297  # /c sent none, so the last reported value stays
    assert stats.as_dict() == {
        "requests": 4,
        "bytes_received": 132692,
        "rate_limit_remaining": 297,
    }
    assert client.stats.requests == 0  # a passed stats object receives the numbers


def test_client_stats_accumulate_when_no_stats_are_passed(server, client):
    server.add("/a", Reply(200, KALSHI_EVENTS, {"RateLimit-Remaining": "19"}))
    server.add("/b", Reply(200, KALSHI_EVENTS))
    client.send(get(server.url("/a")), trusted=True)
    client.send(get(server.url("/b")), trusted=True)
    assert client.stats.as_dict() == {
        "requests": 2,
        "bytes_received": 2 * 2601,
        "rate_limit_remaining": 19,
    }


def test_rate_limiter_is_acquired_before_every_attempt(server, client):
    fake = FakeClock()
    bucket = TokenBucket(60, 1, sleep=fake.sleep, clock=fake.clock)
    server.add("/m", Reply(502, b""), Reply(503, b""), Reply(200, KALSHI_EVENTS))

    response = client.send(get(server.url("/m")), trusted=True, rate_limiter=bucket)

    assert response.attempts == 3
    assert fake.sleeps == [1.0, 1.0]  # first token free, then one a second


def test_post_sends_the_json_body(server, client):
    server.add("/hook", Reply(200, b'{"accepted": 7}'))
    request = PageRequest(
        endpoint="hook", url=server.url("/hook"), method="POST", body={"tickers": ["KXELON"]}
    )
    assert client.send(request, trusted=True).json() == {"accepted": 7}
    assert server.received[0].method == "POST"
    assert json.loads(server.received[0].body) == {"tickers": ["KXELON"]}


# ---------------------------------------------------------------------------------------------
# Bounded responses: a body past its size, a send past its deadline


def bounded_client(sleeps: list[float], **limits) -> HttpClient:
    return HttpClient(
        timeout=(2.0, 5.0),
        allow_private_hosts=("127.0.0.1",),
        sleep=sleeps.append,
        limits=ResponseLimits(**limits),
    )


def test_a_body_inflating_past_the_limit_is_refused_and_not_retried(server, sleeps):
    bomb = gzip_of_zeros(32 << 20)
    assert len(bomb) < 64 << 10
    server.add("/bomb", Reply(200, bomb, {"Content-Encoding": "gzip"}))
    stats = FetchStats()
    with (
        bounded_client(sleeps, max_bytes=1 << 20) as http,
        pytest.raises(ResponseTooLargeError) as caught,
    ):
        http.send(get(server.url("/bomb")), stats=stats)
    assert caught.value.reason == (
        "response_too_large: the body passed 1 MiB after decoding (HTTP 200); "
        "refused without reading further"
    )
    assert (caught.value.attempts, caught.value.status_code, sleeps) == (1, 200, [])
    assert server.hits("/bomb") == 1
    assert stats.bytes_received > 1 << 20  # what was decoded before the refusal


def test_gzip_and_both_deflate_framings_are_inflated(server, client):
    body = json.dumps({"markets": [{"id": n, "p": 0.5} for n in range(2000)]}).encode()
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    encoded = [
        ("gzip", zlib.compress(body, wbits=31)),
        ("deflate", zlib.compress(body)),
        ("deflate", raw.compress(body) + raw.flush()),
    ]
    for encoding, data in encoded:
        server.add("/z", Reply(200, data, {"Content-Encoding": encoding}))
    assert [client.send(get(server.url("/z")), trusted=True).body for _ in encoded] == [body] * 3


def test_a_corrupt_gzip_body_is_a_transport_failure(server, client):
    server.add("/z", *[Reply(200, b"not gzip at all", {"Content-Encoding": "gzip"})] * 4)
    with pytest.raises(TransportFailure) as caught:
        client.send(get(server.url("/z")), trusted=True)
    assert caught.value.reason.startswith("DecodingError: gzip body: ")
    assert caught.value.attempts == 4  # retried like any broken transfer


def test_a_declared_length_past_the_limit_is_refused_unread(server, sleeps):
    server.add("/big", Reply(200, b"[" + b"0," * (1 << 20) + b"0]"))
    stats = FetchStats()
    with bounded_client(sleeps, max_bytes=1 << 20) as http, pytest.raises(ResponseTooLargeError):
        http.send(get(server.url("/big")), stats=stats)
    assert stats.bytes_received == 0 and stats.requests == 1


def test_a_body_at_the_limit_is_read_whole(server, sleeps):
    body = json.dumps(["x" * 100] * 10).encode()
    server.add("/fits", Reply(200, body, {"Content-Type": "application/json"}))
    with bounded_client(sleeps, max_bytes=len(body)) as http:
        assert http.send(get(server.url("/fits"))).body == body


def test_a_source_may_tighten_the_clients_limits_never_loosen_them(server, sleeps):
    body = b"[" + b"1," * 2000 + b"1]"
    server.add("/m", Reply(200, body), Reply(200, body))
    with bounded_client(sleeps, max_bytes=len(body)) as http:
        loose = http.send(get(server.url("/m")), limits=ResponseLimits(max_bytes=1 << 30))
        assert loose.body == body
        with pytest.raises(ResponseTooLargeError):
            http.send(get(server.url("/m")), limits=ResponseLimits(max_bytes=len(body) - 1))


# Peak memory from VmHWM, this process image's own high-water mark: ru_maxrss would carry
# over the RSS of the (large) pytest process it was forked from.
BOMB_PROBE = """
import re, sys
from pathlib import Path
from predict_pipeline.model import PageRequest
from predict_pipeline.http import HttpClient, ResponseTooLargeError
with HttpClient(allow_private_hosts=("127.0.0.1",)) as http:
    try:
        http.send(PageRequest("bomb", sys.argv[1]))
    except ResponseTooLargeError as exc:
        print(exc.reason)
status = Path("/proc/self/status").read_text()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def test_a_500_mb_gzip_bomb_is_refused_with_bounded_memory(server):
    """The client's default limit (64 MiB) against 500 MB inflating from half a megabyte: the
    fetch process's peak memory stays far below the bomb (read whole, it took 1.2 GB)."""
    server.add("/bomb", Reply(200, gzip_of_zeros(500 << 20), {"Content-Encoding": "gzip"}))
    probe = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE, server.url("/bomb")],
        capture_output=True,
        text=True,
        check=True,
    )
    reason, peak_mb = probe.stdout.splitlines()
    assert reason.startswith("response_too_large: the body passed 64 MiB after decoding")
    assert int(peak_mb) < 256


@pytest.mark.parametrize("drip_headers", [False, True], ids=["body", "headers"])
def test_a_dripping_server_fails_at_the_deadline(drip_headers, sleeps):
    """A byte every 0.2 s never lets the 5 s read timeout end a read; the 1.5 s deadline ends
    the send, in the headers as in the body, and it is not retried."""
    drip = DripServer(interval=0.2, length=10_000, drip_headers=drip_headers)
    try:
        with bounded_client(sleeps, deadline_s=1.5) as http:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError) as caught:
                http.send(get(drip.url("/drip")))
            elapsed = time.monotonic() - started
    finally:
        drip.close()
    assert caught.value.reason == "deadline_exceeded: no complete response within 1.5 s"
    assert caught.value.attempts == 1 and sleeps == []
    assert 1.5 <= elapsed < 4.5  # at the deadline, not after 10,000 drips (over half an hour)
    assert isinstance(caught.value, FetchTimeoutError)  # a TIMEOUT feed run


def test_a_retry_that_would_end_past_the_deadline_is_not_made(server, sleeps):
    server.add("/busy", Reply(503, b"", {"Retry-After": "30"}), Reply(200, b"[]"))
    with bounded_client(sleeps, deadline_s=10) as http, pytest.raises(HttpStatusError) as caught:
        http.send(get(server.url("/busy")))
    assert caught.value.reason == (
        "HTTP 503 Service Unavailable; not retried: the 10 s deadline would pass first"
    )
    assert sleeps == [] and server.hits("/busy") == 1


def test_json_nested_past_the_decoders_depth_is_invalid_json_not_a_crash(server, client):
    server.add("/deep", Reply(200, b"[" * 100_000 + b"]" * 100_000))
    response = client.send(get(server.url("/deep")), trusted=True)
    with pytest.raises(InvalidJsonError, match="nested too deeply to decode"):
        response.json()


# ---------------------------------------------------------------------------------------------
# Redirects


def test_redirect_to_a_private_address_is_refused_when_not_trusted(server, sleeps):
    server.add("/r", Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}))
    with (
        HttpClient(allow_private_hosts=["127.0.0.1"], sleep=sleeps.append) as http,
        pytest.raises(UnsafeUrlError) as caught,
    ):
        http.send(get(server.url("/r")))
    assert "169.254.169.254, a link-local address" in str(caught.value)
    assert caught.value.url == "http://169.254.169.254/latest/meta-data/"
    assert server.hits("/r") == 1


def test_redirect_hops_are_checked_even_for_trusted_requests(server, client):
    server.add("/r", Reply(301, b"", {"Location": "http://10.0.0.1/admin"}))
    with pytest.raises(UnsafeUrlError, match="10.0.0.1, a private address"):
        client.send(get(server.url("/r")), trusted=True)


def test_untrusted_loopback_url_is_refused_before_any_request(server, client):
    server.add("/m", Reply(200, KALSHI_EVENTS))
    with pytest.raises(UnsafeUrlError, match="127.0.0.1, a loopback address"):
        client.send(get(server.url("/m")))
    assert server.received == []
    assert client.stats.requests == 0


def test_redirects_are_followed_and_credentials_stay_on_their_origin(server, sleeps):
    other = ScriptedServer()
    try:
        server.add("/start", Reply(307, b"", {"Location": "/moved"}))
        server.add("/moved", Reply(302, b"", {"Location": other.url("/final?page=2")}))
        other.add("/final", Reply(200, KALSHI_EVENTS))
        request = get(
            server.url("/start"),
            headers={"Authorization": "Bearer tok-xyz789", "Accept": "application/json"},
        )
        with HttpClient(allow_private_hosts=["127.0.0.1"], sleep=sleeps.append) as http:
            response = http.send(request)

        assert response.attempts == 3
        assert response.url == other.url("/final?page=2")
        assert response.json()["events"][0]["series_ticker"] == "KXELONTWEETS"
        same_origin = server.received[1].headers
        cross_origin = other.received[0].headers
        assert same_origin["authorization"] == "Bearer tok-xyz789"
        assert "authorization" not in cross_origin
        assert cross_origin["accept"] == "application/json"
        assert other.received[0].query == "page=2"
    finally:
        other.close()


def test_more_than_five_redirects_is_an_error(server):
    server.add("/loop", *[Reply(302, b"", {"Location": "/loop"})] * 6)
    with (
        HttpClient(allow_private_hosts=["127.0.0.1"]) as http,
        pytest.raises(HttpStatusError, match="more than 5 redirects") as caught,
    ):
        http.send(get(server.url("/loop")))
    assert caught.value.attempts == 6
    assert server.hits("/loop") == 6


def test_303_after_post_becomes_a_get(server):
    server.add("/submit", Reply(303, b"", {"Location": "/result"}))
    server.add("/result", Reply(200, b"[]"))
    request = PageRequest(endpoint="x", url=server.url("/submit"), method="POST", body={"a": 1})
    with HttpClient(allow_private_hosts=["127.0.0.1"]) as http:
        assert http.send(request).json() == []
    assert [(r.method, r.path, r.body) for r in server.received] == [
        ("POST", "/submit", b'{"a":1}'),
        ("GET", "/result", b""),
    ]


# ---------------------------------------------------------------------------------------------
# SSRF guard (no request is made; only 'localhost' is looked up, in the hosts file)


def _no_lookup(host: str) -> list[str]:
    raise AssertionError(f"the guard must not resolve {host}")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1, a loopback address"),
        ("http://10.0.0.1/", "10.0.0.1, a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://[::1]:8080/", "::1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1, a loopback address"),
        ("http://100.64.0.1/", "100.64.0.1, a shared (CGNAT) address"),
        ("http://0.0.0.0/", "0.0.0.0, a unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1, a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1, a private address"),
        ("http://[fe80::1]/", "fe80::1, a link-local address"),
        ("http://[fd00::1]/", "fd00::1, a private address"),
        ("http://[2002:a00:1::]/", "2002:a00:1::, a private address"),
        ("https://192.168.1.1./", "192.168.1.1, a private address"),
        ("ftp://x/", "scheme 'ftp' refused; only http and https"),
        ("file:///etc/passwd", "scheme 'file' refused"),
        ("http:///path", "URL has no host"),
    ],
)
def test_guard_refuses_non_public_targets(url, reason):
    with pytest.raises(UnsafeUrlError) as caught:
        check_url_allowed(url, resolver=_no_lookup)
    assert reason in caught.value.reason
    assert caught.value.attempts == 0


def test_guard_refuses_a_host_name_that_resolves_to_loopback():
    with pytest.raises(UnsafeUrlError) as caught:
        check_url_allowed("http://localhost:8000/x")
    assert "host 'localhost' resolves to" in caught.value.reason
    assert "a loopback address" in caught.value.reason


def test_guard_refuses_when_any_resolved_address_is_private():
    def resolver(host: str) -> list[str]:
        assert host == "feeds.example.org"
        return ["93.184.216.34", "10.1.2.3"]

    with pytest.raises(UnsafeUrlError, match="resolves to 10.1.2.3, a private address"):
        check_url_allowed("https://feeds.example.org/api", resolver=resolver)


def test_guard_accepts_public_addresses_without_a_request():
    check_url_allowed("http://93.184.216.34/markets", resolver=_no_lookup)
    check_url_allowed("https://[2606:2800:220:1:248:1893:25c8:1946]/", resolver=_no_lookup)
    check_url_allowed("https://feeds.example.org/x", resolver=lambda host: ["93.184.216.34"])


def test_guard_accepts_allow_listed_hosts_and_networks():
    check_url_allowed("http://127.0.0.1:8080/x", ["127.0.0.1"], resolver=_no_lookup)
    check_url_allowed("http://[::ffff:127.0.0.1]/x", ["127.0.0.1"], resolver=_no_lookup)
    check_url_allowed("http://10.20.30.40/x", ["10.0.0.0/8"], resolver=_no_lookup)
    check_url_allowed("http://Internal.Example/x", ["internal.example"], resolver=_no_lookup)
    check_url_allowed("http://localhost/x", ["localhost"])
    with pytest.raises(UnsafeUrlError, match="10.0.0.1, a private address"):
        check_url_allowed("http://10.0.0.1/x", ["127.0.0.1", "192.168.0.0/16"])


def test_guard_reports_an_unresolvable_host_as_a_transport_failure():
    def resolver(host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(TransportFailure, match="cannot resolve host 'nowhere.invalid'"):
        check_url_allowed("https://nowhere.invalid/x", resolver=resolver)


def test_guard_without_a_resolver_checks_only_literal_addresses():
    check_url_allowed("https://api.elections.kalshi.com/trade-api/v2/events", resolver=None)
    with pytest.raises(UnsafeUrlError):
        check_url_allowed("http://10.0.0.1/", resolver=None)


def test_bad_allow_list_entry_is_rejected_when_the_client_is_built():
    with pytest.raises(ValueError, match="'not a host/x' is not a host name, IP or CIDR"):
        HttpClient(allow_private_hosts=["not a host/x"])


def test_redact_url_masks_credentials():
    assert (
        redact_url("https://user:pw@api.example.org/v1?apiKey=k1&limit=5&access_token=t#frag")
        == "https://api.example.org/v1?apiKey=***&limit=5&access_token=***"
    )
    assert (
        redact_url("https://gamma-api.polymarket.com/markets?clob_token_ids=123&limit=500")
        == "https://gamma-api.polymarket.com/markets?clob_token_ids=123&limit=500"
    )


# ---------------------------------------------------------------------------------------------
# Pure helpers and the token bucket


def test_token_bucket_60_rpm_burst_1_makes_the_second_acquire_wait_a_second():
    fake = FakeClock()
    bucket = TokenBucket(60, 1, sleep=fake.sleep, clock=fake.clock)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(1.0)
    assert fake.sleeps == [pytest.approx(1.0)]
    fake.now += 5.0  # idle time refills only up to the burst
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(1.0)


def test_token_bucket_burst_allows_that_many_at_once():
    fake = FakeClock()
    bucket = TokenBucket(120, 3, sleep=fake.sleep, clock=fake.clock)
    assert [bucket.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]


def test_token_bucket_queues_concurrent_callers():
    fake = FakeClock(advance_on_sleep=False)  # every thread asks at the same instant
    bucket = TokenBucket(60, 1, sleep=fake.sleep, clock=fake.clock)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        wait = bucket.acquire()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_token_bucket_rejects_nonsense_sizes():
    with pytest.raises(ValueError, match="rate_per_minute must be positive"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="burst must be at least 1"):
        TokenBucket(60, 0)


def test_backoff_delay_bounds():
    assert backoff_delay(1, 0.5, 30.0, lambda: 0.0) == 0.0
    assert backoff_delay(1, 0.5, 30.0, lambda: 1.0) == 0.5
    assert backoff_delay(4, 0.5, 30.0, lambda: 1.0) == 4.0
    assert backoff_delay(10, 0.5, 30.0, lambda: 1.0) == 30.0
    assert backoff_delay(5000, 0.5, 30.0, lambda: 0.5) == 15.0
    with pytest.raises(ValueError, match="start at 1"):
        backoff_delay(0, 0.5, 30.0, lambda: 0.5)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_delay_stays_within_the_jitter_window(attempt, draw):
    delay = backoff_delay(attempt, 0.5, 30.0, lambda: draw)
    assert 0.0 <= delay <= min(30.0, 0.5 * 2 ** min(attempt - 1, 62))


def test_parse_retry_after_both_forms():
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:29:00 -0000", now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after(None, now) is None


# ---------------------------------------------------------------------------------------------
# Replay mode


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("replay mode opened a socket or looked up a host")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def write_manifest(directory: Path, entries: list[dict]) -> Path:
    (directory / "replay.json").write_text(json.dumps(entries), encoding="utf-8")
    return directory


KALSHI = "https://api.elections.kalshi.com/trade-api/v2/events"


def test_replay_serves_recorded_files_byte_exact(tmp_path, no_network):
    write_manifest(
        tmp_path,
        [
            {
                "method": "GET",
                "url": "https://gamma-api.polymarket.com/markets",
                "file": str(PAYLOADS / "polymarket_gamma_markets.json"),
                "headers": {"X-RateLimit-Remaining": "299"},
            }
        ],
    )
    with build_http_client("replay", tmp_path) as http:
        request = get(
            "https://gamma-api.polymarket.com/markets",
            params={"active": "true", "closed": "false", "limit": "500"},
        )
        response = http.send(request)
        assert response.body == GAMMA_MARKETS
        assert response.headers["content-type"] == "application/json"
        assert [m["id"] for m in response.json()][:2] == ["517310", "517311"]
        assert http.stats.as_dict() == {
            "requests": 1,
            "bytes_received": 113556,
            "rate_limit_remaining": 299,
        }


def test_replay_most_specific_entry_wins(tmp_path, no_network):
    write_manifest(
        tmp_path,
        [
            {"method": "GET", "url": KALSHI, "file": str(PAYLOADS / "manifold_markets.json")},
            {
                "method": "GET",
                "url": KALSHI,
                "params": {"series_ticker": "KXELONTWEETS"},
                "file": str(PAYLOADS / "kalshi_events.json"),
            },
            {
                "method": "GET",
                "url": KALSHI,
                "params": {"series_ticker": "KXELONTWEETS", "cursor": "abc"},
                "status": 500,
                "file": str(PAYLOADS / "kalshi_events.json"),
            },
        ],
    )
    with build_http_client("replay", tmp_path) as http:
        specific = http.send(get(KALSHI, params={"series_ticker": "KXELONTWEETS", "limit": "200"}))
        general = http.send(get(KALSHI, params={"series_ticker": "KXBTC"}))
        with pytest.raises(HttpStatusError) as caught:
            http.send(get(KALSHI, params={"series_ticker": "KXELONTWEETS", "cursor": "abc"}))
    assert specific.body == KALSHI_EVENTS
    assert general.body == MANIFOLD_MARKETS
    assert (caught.value.status_code, caught.value.attempts) == (500, 1)


def test_replay_miss_raises_and_names_the_request(tmp_path, no_network):
    write_manifest(
        tmp_path, [{"method": "GET", "url": KALSHI, "file": str(PAYLOADS / "kalshi_events.json")}]
    )
    with build_http_client("replay", tmp_path) as http:
        with pytest.raises(ReplayMissError) as caught:
            http.send(get(KALSHI + "/KXELONTWEETS-25APR04", params={"token": "s3cret"}))
        with pytest.raises(ReplayMissError):
            http.send(PageRequest(endpoint="events", url=KALSHI, method="POST"))
    message = str(caught.value)
    assert f"GET {KALSHI}/KXELONTWEETS-25APR04?token=***" in message
    assert "s3cret" not in message
    assert caught.value.attempts == 1


def test_replay_transport_miss_is_a_marked_404(tmp_path):
    write_manifest(tmp_path, [])
    transport = ReplayTransport(tmp_path)
    import httpx

    response = transport.handle_request(httpx.Request("GET", "https://www.predictit.org/api/x"))
    assert response.status_code == 404
    assert response.headers["X-Replay-Miss"] == "1"
    assert b"GET https://www.predictit.org/api/x" in response.read()


def test_replay_manifest_errors_name_the_entry(tmp_path):
    with pytest.raises(ReplayManifestError, match="does not exist"):
        ReplayTransport(tmp_path)
    write_manifest(tmp_path, [{"url": KALSHI, "file": "missing.json"}])
    with pytest.raises(ReplayManifestError, match=r"entry 0: file .*missing.json does not exist"):
        ReplayTransport(tmp_path)
    write_manifest(tmp_path, [{"url": KALSHI + "?limit=1", "file": "x"}])
    with pytest.raises(ReplayManifestError, match="entry 0: 'url' must be scheme\\+host\\+path"):
        ReplayTransport(tmp_path)


def test_replay_relative_file_paths_are_read_from_the_directory(tmp_path, no_network):
    (tmp_path / "events.json").write_bytes(KALSHI_EVENTS)
    write_manifest(tmp_path, [{"url": KALSHI, "file": "events.json"}])
    with build_http_client("replay", tmp_path) as http:
        assert http.send(get(KALSHI)).body == KALSHI_EVENTS


def test_build_http_client_validates_the_mode(tmp_path):
    with pytest.raises(ValueError, match="needs replay_dir"):
        build_http_client("replay")
    with pytest.raises(ValueError, match="unknown HTTP mode 'record'"):
        build_http_client("record")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only used with mode='replay'"):
        build_http_client("live", tmp_path)
    with build_http_client("live") as http:
        assert isinstance(http, HttpClient)
