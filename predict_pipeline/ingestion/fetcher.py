"""One fetch of one feed: plan, send, navigate, page after page, and account for every request.

The fetcher never raises for a feed's own faults: an invalid config, a refused URL, a 401, a
rate limit, a timeout or a body that does not parse all become a `FeedRunResult` status with
the reason, and every page that did arrive is kept (bad ones with their error) for the
landing zone.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

import jsonschema

from predict_pipeline.http import (
    AuthFailedError,
    FetchError,
    FetchResponse,
    FetchStats,
    FetchTimeoutError,
    HttpClient,
    InvalidJsonError,
    RateLimitedError,
    ResponseLimits,
    ResponseTooLargeError,
    TokenBucket,
)
from predict_pipeline.ingestion.landing import LandedPage
from predict_pipeline.ingestion.runs import FeedRunResult
from predict_pipeline.ingestion.store import Feed
from predict_pipeline.model import FetchMode, FetchWindow, PageRequest, PayloadError
from predict_pipeline.secrets import MASK
from predict_pipeline.sources.base import Adapter

# A bound on pages per fetch so a cursor that never ends cannot run forever.
MAX_PAGES_PER_FETCH = 500
# Undecodable bodies are kept for diagnosis up to this size.
MAX_KEPT_BODY_CHARS = 200_000
# Errors that stop a fetch: more requests would fail the same way, spend the source's quota,
# or (a body past the size limit, a deadline passed) keep the feeds queued behind it waiting.
_STATUS_BY_ERROR: tuple[tuple[type[FetchError], str], ...] = (
    (AuthFailedError, "AUTH_FAILED"),
    (RateLimitedError, "RATE_LIMITED"),
    (FetchTimeoutError, "TIMEOUT"),  # deadline_exceeded is one
    (ResponseTooLargeError, "FAILED"),
)


class FeedConfigError(ValueError):
    """A feed's stored configuration does not satisfy its source's JSON Schema."""


def validate_feed_config(feed: Feed) -> dict[str, Any]:
    """The effective config, validated against the source's schema; FeedConfigError if not."""
    if "credentials" in (feed.config or {}):
        raise FeedConfigError(
            "config must not hold credentials: store them in credentials_encrypted"
        )
    config = feed.effective_config()
    if feed.config_schema:
        validator = jsonschema.Draft202012Validator(feed.config_schema)
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        if errors:
            reasons = "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in errors[:5]
            )
            raise FeedConfigError(f"invalid config for source {feed.source}: {reasons}")
    return config


@dataclass(slots=True)
class FetchOutcome:
    result: FeedRunResult
    pages: list[LandedPage] = field(default_factory=list)


def fetch_feed(
    feed: Feed,
    adapter: Adapter,
    client: HttpClient,
    *,
    mode: FetchMode,
    window: FetchWindow,
    feed_run_id: str,
    credentials: dict[str, Any] | None = None,
    trusted: bool = True,
    rate_limiter: TokenBucket | None = None,
    limits: ResponseLimits | None = None,
    max_pages: int = MAX_PAGES_PER_FETCH,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FetchOutcome:
    started = now()
    stats = FetchStats()
    outcome = FetchOutcome(
        result=FeedRunResult(status="RUNNING", started_at=started, completed_at=started)
    )
    errors: list[dict[str, Any]] = []
    pages_failed = 0
    items = 0  # what the pages offered; the signals stage reads them into records
    cursor: str | None = None
    stopped_by: str | None = None

    def finish(status: str) -> FetchOutcome:
        result = outcome.result
        result.status = status
        result.completed_at = now()
        result.request_count = stats.requests
        result.bytes_received = stats.bytes_received
        result.rate_limit_remaining = stats.rate_limit_remaining
        result.signals_fetched = items
        result.cursor = cursor
        if errors:
            result.error_message = (
                errors[0]["reason"]
                if len(errors) == 1
                else (f"{errors[0]['reason']} (and {len(errors) - 1} more errors)")
            )
        result.error_details = {
            "mode": mode,
            "pages_landed": len(outcome.pages) - pages_failed,
            "pages_failed": pages_failed,
            **({"errors": errors[:20]} if errors else {}),
        }
        return outcome

    try:
        slots = RequestCredentials.of(credentials)
    except ValueError as exc:
        errors.append({"kind": "credentials", "reason": str(exc)})
        return finish("FAILED")
    try:
        config = validate_feed_config(feed)
        # Adapters that take credentials declare them in their schema (Metaculus's token);
        # for every source, credential `headers` and `query` are added to each request sent.
        if credentials and "credentials" in (feed.config_schema or {}).get("properties", {}):
            config = {**config, "credentials": credentials}
        queue: deque[PageRequest] = deque(adapter.plan(config, mode, window, feed.cursor))
    except (FeedConfigError, ValueError, PayloadError) as exc:
        errors.append({"kind": "config", "reason": _safe_reason(exc)})
        return finish("FAILED")

    while queue:
        if len(outcome.pages) >= max_pages:
            errors.append({"kind": "page_limit", "reason": f"stopped after {max_pages} pages"})
            break
        request = queue.popleft()  # as planned: what lands and what the adapter reads
        fetched_at = now()
        try:
            response = _send(
                adapter,
                client,
                slots.applied(request),
                fetched_at,
                rate_limiter,
                trusted,
                stats,
                limits,
            )
        except FetchError as exc:
            errors.append(slots.scrubbed(_fetch_error(request, exc)))
            stopped_by = next((s for t, s in _STATUS_BY_ERROR if isinstance(exc, t)), None)
            if stopped_by:
                break
            continue  # one missing page (404, refused URL) does not stop the others
        # The page as landed; what was read from its body is added below.
        page = LandedPage(
            feed_id=str(feed.id),
            source=feed.source,
            endpoint=request.endpoint,
            request=slots.landed(LandedPage.request_dict(request)),
            status_code=response.status_code,
            fetched_at=fetched_at.isoformat() if mode == "poll" else None,
            feed_run_id=feed_run_id if mode == "poll" else None,
        )
        try:
            payload = response.json()
        except InvalidJsonError as exc:
            pages_failed += 1
            reason = slots.scrub(str(exc))
            errors.append(
                {
                    "kind": "payload",
                    "endpoint": request.endpoint,
                    "url": slots.scrub(response.url),
                    "reason": reason,
                }
            )
            text = response.body.decode("utf-8", errors="replace")[:MAX_KEPT_BODY_CHARS]
            outcome.pages.append(replace(page, body_text=slots.scrub(text), error=reason))
            continue
        try:
            # Only where the page leads: its records are read once, from the landed page.
            navigation = adapter.navigate(payload, request=request, window=window)
        except (PayloadError, ValueError, KeyError, TypeError) as exc:
            pages_failed += 1
            reason = slots.scrub(_safe_reason(exc))
            errors.append(
                {
                    "kind": "payload",
                    "endpoint": request.endpoint,
                    "url": slots.scrub(response.url),
                    "reason": reason,
                }
            )
            outcome.pages.append(replace(page, payload=slots.scrub_payload(payload), error=reason))
            continue
        outcome.pages.append(replace(page, payload=slots.scrub_payload(payload)))
        items += navigation.items
        cursor = navigation.cursor or cursor
        queue.extend(navigation.next_requests)

    landed = len(outcome.pages) - pages_failed
    if stopped_by:
        return finish(stopped_by)
    if errors:
        return finish("PARTIAL" if landed > 0 else "FAILED")
    return finish("SUCCESS")


def _send(
    adapter: Adapter,
    client: HttpClient,
    request: PageRequest,
    fetched_at: datetime,
    rate_limiter: TokenBucket | None,
    trusted: bool,
    stats: FetchStats,
    limits: ResponseLimits | None,
) -> FetchResponse:
    """Over HTTP, or, for a local source (the simulator), from the adapter's own `respond`."""
    respond = getattr(adapter, "respond", None)
    if respond is None:
        return client.send(
            request, rate_limiter=rate_limiter, trusted=trusted, stats=stats, limits=limits
        )
    started = time.perf_counter()
    body = respond(request, at=fetched_at)
    stats.count_request()
    stats.bytes_received += len(body)
    return FetchResponse(
        status_code=200,
        headers={"content-type": "application/json"},
        body=body,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
        attempts=1,
        url=request.url,
    )


@dataclass(frozen=True, slots=True)
class RequestCredentials:
    """A feed's credentials that go with every request it sends: `headers` (name -> value)
    and `query` (parameter -> value, for APIs that take their key in the URL). They are added
    only to the request sent; the landed request never holds them (an API that echoes its
    key into a next-page link is stripped too), and error text shows them masked."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, credentials: dict[str, Any] | None) -> RequestCredentials:
        slots = {}
        for slot in ("headers", "query"):
            given = (credentials or {}).get(slot) or {}
            if not isinstance(given, dict) or not all(
                isinstance(name, str) and isinstance(value, str) and value
                for name, value in given.items()
            ):
                raise ValueError(
                    f"credentials {slot!r} must map names to non-empty text (values not shown)"
                )
            slots[slot] = dict(given)
        return cls(**slots)

    def applied(self, request: PageRequest) -> PageRequest:
        if not self.headers and not self.query:
            return request
        headers = {**request.headers, **self.headers}
        parts = urlsplit(request.url)
        if not self.query or request.params or not parts.query:
            return replace(request, headers=headers, params={**request.params, **self.query})
        # A next-page link carries its own query (httpx would replace it with `params`).
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        own = (
            urlencode([(k, v) for k, v in pairs if k not in self.query])
            if any(k in self.query for k, _ in pairs)
            else parts.query
        )
        query = "&".join(q for q in (own, urlencode(self.query)) if q)
        return replace(request, url=urlunsplit(parts._replace(query=query)), headers=headers)

    def landed(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.query:
            return request
        names = set(self.query)
        params = {k: v for k, v in (request.get("params") or {}).items() if k not in names}
        parts = urlsplit(request["url"])
        query = parse_qsl(parts.query, keep_blank_values=True)
        kept = urlencode([(k, v) for k, v in query if k not in names])
        url = urlunsplit(parts._replace(query=kept)) if parts.query else request["url"]
        return {**request, "url": self.scrub(url), "params": params}

    def scrub(self, text: str) -> str:
        for value in self.query.values():
            for shown in {value, quote(value, safe=""), quote_plus(value, safe="")}:
                text = text.replace(shown, MASK)
        return text

    def scrub_payload(self, payload: Any) -> Any:
        """The payload with every query credential the API echoed (a next-page link that
        carries the key) masked: what lands never holds it."""
        if not self.query:
            return payload
        text = json.dumps(payload, ensure_ascii=False)
        scrubbed = self.scrub(text)
        for value in self.query.values():  # as JSON writes it inside a string
            scrubbed = scrubbed.replace(json.dumps(value, ensure_ascii=False)[1:-1], MASK)
        if scrubbed == text:
            return payload
        try:
            return json.loads(scrubbed)
        except ValueError:  # a mask that cut through an escape: keep nothing of the page
            return {"withheld": "the page held a credential of this feed"}

    def scrubbed(self, error: dict[str, Any]) -> dict[str, Any]:
        return {k: self.scrub(v) if isinstance(v, str) else v for k, v in error.items()}


def _fetch_error(request: PageRequest, exc: FetchError) -> dict[str, Any]:
    return {
        "kind": type(exc).__name__,
        "endpoint": request.endpoint,
        "url": exc.url,  # redacted by the client
        "reason": str(exc),
        "attempts": exc.attempts,
        "status_code": exc.status_code,
        **({"auth_expired": True} if isinstance(exc, AuthFailedError) and exc.expired else {}),
    }


def _safe_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "…"
