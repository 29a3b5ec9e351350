"""The client: `HttpClient.send(PageRequest)` returns a `FetchResponse` or raises a typed
`FetchError` that the caller maps to a feed-run status. Nothing here knows about Dagster or
Postgres.

A send checks each hop's URL with the SSRF guard (guard.py), paces itself with the caller's
token bucket (ratelimit.py), retries 429/5xx and transport failures with backoff or Retry-After
(retry.py), follows redirects by hand, and keeps to its response limits and deadline
(limits.py) over the live transport (transport.py) or the replay transport (replay.py).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from predict_pipeline.http.errors import (
    AuthFailedError,
    DeadlineExceededError,
    FetchError,
    FetchTimeoutError,
    HttpStatusError,
    InvalidJsonError,
    RateLimitedError,
    ReplayMissError,
    TransportFailure,
    UnsafeUrlError,
    redact_url,
)
from predict_pipeline.http.guard import Resolver, _parse_allow_list, check_url_allowed, resolve_host
from predict_pipeline.http.limits import (
    _DEADLINE,
    ResponseLimits,
    _deadline_error,
    _deadline_passed,
    _read_body,
)
from predict_pipeline.http.ratelimit import TokenBucket
from predict_pipeline.http.replay import REPLAY_MANIFEST, REPLAY_MISS_HEADER, ReplayTransport
from predict_pipeline.http.retry import backoff_delay, parse_retry_after
from predict_pipeline.http.stats import FetchStats
from predict_pipeline.http.transport import _live_transport
from predict_pipeline.model import PageRequest

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
MAX_RETRIES = 4  # retries after the first attempt, so at most 5 requests per URL
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
RETRY_AFTER_MAX_S = 120.0  # a Retry-After longer than this is cut to this
MAX_REDIRECTS = 5
USER_AGENT = "predict-pipeline/0.1"

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
AUTH_FAILED_STATUSES = frozenset({401, 403})
# Only these request headers follow a redirect to another origin; the rest may carry credentials.
CROSS_ORIGIN_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_LIMITS = ResponseLimits()  # frozen, so one shared default is safe

# httpx logs every request line at INFO, query string included: a feed's query credentials
# must not reach a log that someone turns up to INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class FetchResponse:
    status_code: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed_ms: float  # the whole send: every attempt, wait and redirect
    attempts: int
    url: str  # the final url after redirects, with query secrets masked

    def json(self) -> Any:
        """The decoded JSON body; InvalidJsonError naming the url when it is not JSON."""
        if not self.body.strip():
            raise InvalidJsonError(self.url, f"empty body (HTTP {self.status_code})")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidJsonError(self.url, f"{exc} (HTTP {self.status_code})") from None
        except RecursionError:
            reason = f"nested too deeply to decode (HTTP {self.status_code})"
            raise InvalidJsonError(self.url, reason) from None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HttpClient:
    """Sends `PageRequest`s with retries, rate limiting, stats and the SSRF guard.

    Numbers go to the `stats` passed to `send`, or to `client.stats` when none is passed.
    """

    def __init__(
        self,
        *,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        max_retries: int = MAX_RETRIES,
        backoff_base: float = BACKOFF_BASE_S,
        backoff_max: float = BACKOFF_MAX_S,
        retry_after_max: float = RETRY_AFTER_MAX_S,
        transport: httpx.BaseTransport | None = None,
        limits: ResponseLimits = _DEFAULT_LIMITS,
        allow_private_hosts: Iterable[str] = (),
        resolver: Resolver | None = resolve_host,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        utcnow: Callable[[], datetime] = _utcnow,
    ):
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        connect, read = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.limits = limits
        self.allow_private_hosts = tuple(allow_private_hosts)
        _parse_allow_list(self.allow_private_hosts)  # a bad entry fails now, not mid-run
        self.stats = FetchStats()
        self._resolver = resolver
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._utcnow = utcnow
        self._client = httpx.Client(
            transport=transport or _live_transport(),
            timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
            follow_redirects=False,  # followed by hand so every hop passes the SSRF guard
            # Only the encodings _decoded_chunks inflates a bounded chunk at a time.
            headers={"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(
        self,
        request: PageRequest,
        *,
        rate_limiter: TokenBucket | None = None,
        trusted: bool = False,
        stats: FetchStats | None = None,
        limits: ResponseLimits | None = None,
    ) -> FetchResponse:
        """Send one request, retrying and following redirects; raises a FetchError subclass.

        `trusted=True` (built-in sources) skips the SSRF guard for the request's own URL only;
        redirect targets come from the remote server and are always checked. `limits` (the
        source's) bound the body and the whole send, within the client's own limits.
        """
        limits = self.limits if limits is None else limits.within(self.limits)
        token = _DEADLINE.set(time.monotonic() + limits.deadline_s)
        try:
            return self._send(request, rate_limiter, trusted, stats, limits)
        finally:
            _DEADLINE.reset(token)

    def _send(
        self,
        request: PageRequest,
        rate_limiter: TokenBucket | None,
        trusted: bool,
        stats: FetchStats | None,
        limits: ResponseLimits,
    ) -> FetchResponse:
        stats = self.stats if stats is None else stats
        started = self._clock()
        try:
            outgoing = self._client.build_request(
                request.method.upper(),
                request.url,
                params=request.params or None,
                headers=request.headers,
                **_body_arguments(request.body),
            )
        except httpx.InvalidURL as exc:
            raise UnsafeUrlError(request.url, f"malformed URL: {exc}") from None
        attempts = 0
        for hop in range(MAX_REDIRECTS + 1):
            if hop > 0 or not trusted:
                check_url_allowed(
                    str(outgoing.url), self.allow_private_hosts, resolver=self._resolver
                )
            response, body, attempts = self._send_with_retries(
                outgoing, attempts, rate_limiter, stats, limits
            )
            if response.status_code not in REDIRECT_STATUSES:
                break
            location = response.headers.get("Location")
            if not location:
                raise HttpStatusError(
                    str(outgoing.url),
                    f"HTTP {response.status_code} redirect without a Location header",
                    attempts=attempts,
                    status_code=response.status_code,
                )
            if hop == MAX_REDIRECTS:
                raise HttpStatusError(
                    str(outgoing.url),
                    f"more than {MAX_REDIRECTS} redirects",
                    attempts=attempts,
                    status_code=response.status_code,
                )
            try:
                outgoing = self._redirected(outgoing, response.status_code, location)
            except httpx.InvalidURL:
                raise HttpStatusError(
                    str(outgoing.url),
                    f"HTTP {response.status_code} redirect to a malformed Location",
                    attempts=attempts,
                    status_code=response.status_code,
                ) from None
        return FetchResponse(
            status_code=response.status_code,
            headers={name: value for name, value in response.headers.items()},
            body=body,
            elapsed_ms=(self._clock() - started) * 1000.0,
            attempts=attempts,
            url=redact_url(str(outgoing.url)),
        )

    def _send_with_retries(
        self,
        outgoing: httpx.Request,
        attempts: int,
        rate_limiter: TokenBucket | None,
        stats: FetchStats,
        limits: ResponseLimits,
    ) -> tuple[httpx.Response, bytes, int]:
        """One hop: a success or redirect response with its body, or the typed error once
        retries are spent (or the deadline would pass before the next attempt)."""
        url = str(outgoing.url)
        retries = 0
        while True:
            if rate_limiter is not None:
                rate_limiter.acquire()
            attempts += 1
            stats.count_request()
            wait: float | None = None
            try:
                response = self._client.send(outgoing, stream=True)
                try:
                    body = _read_body(response, url, attempts, limits, stats)
                finally:
                    response.close()
            except httpx.UnsupportedProtocol as exc:
                raise TransportFailure(url, _short(exc), attempts=attempts) from None
            except (httpx.TimeoutException, DeadlineExceededError) as exc:
                if _deadline_passed():
                    raise _deadline_error(url, attempts, limits) from None
                failure: FetchError = FetchTimeoutError(url, _short(exc), attempts=attempts)
            except httpx.RequestError as exc:
                failure = TransportFailure(url, _short(exc), attempts=attempts)
            else:
                stats.count_response(response, len(body))
                code = response.status_code
                if 200 <= code < 300 or code in REDIRECT_STATUSES:
                    return response, body, attempts
                failure, retryable = _status_failure(response, body, url, attempts)
                if not retryable:
                    raise failure
                after = parse_retry_after(response.headers.get("Retry-After"), self._utcnow())
                wait = None if after is None else min(after, self.retry_after_max)
            if retries >= self.max_retries:
                raise failure
            retries += 1
            if wait is None:
                wait = backoff_delay(retries, self.backoff_base, self.backoff_max, self._rng)
            if _deadline_passed(after=wait):
                raise type(failure)(
                    url,
                    f"{failure.reason}; not retried: the {limits.deadline_s:g} s deadline would "
                    "pass first",
                    attempts=attempts,
                    status_code=failure.status_code,
                )
            self._sleep(wait)

    def _redirected(self, previous: httpx.Request, status: int, location: str) -> httpx.Request:
        target = previous.url.join(location)
        method = previous.method
        content: bytes | None = previous.content or None
        # Browsers' rule, which servers rely on: 303 (and 301/302 after POST) become a GET.
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
        headers = httpx.Headers(
            {
                name: value
                for name, value in previous.headers.items()
                if name not in ("host", "content-length", "transfer-encoding")
                and (_origin(target) == _origin(previous.url) or name in CROSS_ORIGIN_HEADERS)
                and not (content is None and name == "content-type")
            }
        )
        return self._client.build_request(method, target, headers=headers, content=content)


def _status_failure(
    response: httpx.Response, body: bytes, url: str, attempts: int
) -> tuple[FetchError, bool]:
    """The error a non-success status stands for, and whether it is worth retrying."""
    code = response.status_code
    phrase = f"HTTP {code} {response.reason_phrase}".rstrip()
    if code == 404 and REPLAY_MISS_HEADER in response.headers:
        miss = body.decode("utf-8", errors="replace")
        return ReplayMissError(url, miss, attempts=attempts, status_code=code), False
    if code in AUTH_FAILED_STATUSES:
        expired = "expired" in response.headers.get("www-authenticate", "").lower()
        return AuthFailedError(
            url,
            f"{phrase}: credentials {'expired' if expired else 'refused'}",
            expired=expired,
            attempts=attempts,
            status_code=code,
        ), False
    if code == 429:
        return RateLimitedError(url, phrase, attempts=attempts, status_code=code), True
    return HttpStatusError(url, phrase, attempts=attempts, status_code=code), code >= 500


def _body_arguments(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, bytes | bytearray):
        return {"content": bytes(body)}
    if isinstance(body, str):
        return {"content": body.encode("utf-8")}
    return {"json": body}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _short(exc: Exception) -> str:
    """A one-line reason from an httpx error (its text names the fault, not the request)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def build_http_client(
    mode: Literal["live", "replay"], replay_dir: str | Path | None = None, **kwargs: Any
) -> HttpClient:
    """A live client, or one that serves recorded payloads from `replay_dir`.

    Replay defaults: no retries (a recorded answer does not change) and no DNS lookups.
    """
    if mode == "live":
        if replay_dir is not None:
            raise ValueError("replay_dir is only used with mode='replay'")
        return HttpClient(**kwargs)
    if mode == "replay":
        if replay_dir is None:
            raise ValueError(f"mode='replay' needs replay_dir (a directory with {REPLAY_MANIFEST})")
        if "transport" in kwargs:
            raise ValueError("mode='replay' supplies its own transport")
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("resolver", None)
        return HttpClient(transport=ReplayTransport(replay_dir), **kwargs)
    raise ValueError(f"unknown HTTP mode {mode!r}; expected 'live' or 'replay'")
