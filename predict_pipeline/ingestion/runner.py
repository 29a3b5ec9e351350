"""Fetch every selected feed for one window into the landing zone, one feed run per feed.

One feed's failure is that feed's FAILED (or TIMEOUT, ...) run and never stops the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from predict_pipeline.http import HttpClient, TokenBucket
from predict_pipeline.ingestion.fetcher import MAX_PAGES_PER_FETCH, FetchOutcome, fetch_feed
from predict_pipeline.ingestion.landing import (
    BACKFILL_FILE,
    LandingZone,
    landing_fault,
    poll_file_name,
)
from predict_pipeline.ingestion.runs import FeedRunResult, finish_feed_run, start_feed_run
from predict_pipeline.ingestion.store import (
    SKIPPED,
    Feed,
    advance_next_run,
    load_feeds,
    requests_left_today,
)
from predict_pipeline.model import FetchMode, FetchWindow, history_chunks
from predict_pipeline.plans import live_holds
from predict_pipeline.secrets import SecretDecryptError, SecretKeyError, decrypt_json
from predict_pipeline.sources.registry import source_definition

# A feed its owner's plan holds is not fetched; its report says why (no feed run is written).
HELD = "HELD"
# A feed whose source spent its rate_limit_rpd over the last 24 hours: not fetched, no feed
# run (the quota is the source's, not the feed's fault); it stays due.
OVER_QUOTA = "OVER_QUOTA"


@dataclass(frozen=True, slots=True)
class FeedFetchReport:
    feed_id: str
    feed_name: str
    source: str
    feed_run_id: str
    mode: str
    status: str
    pages: int
    records: int
    requests: int
    bytes_received: int
    duration_ms: int
    error: str | None
    landing_file: str | None
    auto_disabled: bool

    @property
    def ok(self) -> bool:
        return self.status in ("SUCCESS", "PARTIAL")

    @property
    def held(self) -> bool:
        """Not fetched: its owner's plan holds it, or its source's daily quota is spent, or
        there was nothing to fetch from (SKIPPED); the reason is in `error`."""
        return self.status in (HELD, OVER_QUOTA, SKIPPED)


def window_mode(window: FetchWindow, now: datetime) -> FetchMode:
    """A window that is over is history (backfill); the current one is polled."""
    return "backfill" if window.end <= now else "poll"


def fetch_windows(
    hours: Sequence[FetchWindow], mode: FetchMode | None, now: datetime
) -> list[FetchWindow]:
    """The windows to fetch for these hour windows: history (every hour when `mode` is
    backfill, hours that are over when it is None) in day chunks, polled hours one by one."""
    if mode == "poll":
        return list(hours)
    history = [w for w in hours if mode == "backfill" or window_mode(w, now) == "backfill"]
    return history_chunks(history) + [w for w in hours if w not in history]


def credentials_aad(feed_id: uuid.UUID | str) -> str:
    """Binds a feed's encrypted credentials to its row: a copied ciphertext does not decrypt."""
    return f"prediction_data_feeds:{feed_id}"


class RateLimiters:
    """One token bucket per source, shared by every feed of that source in this process."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._buckets: dict[str, TokenBucket] = {}

    def for_source(self, source: str, rate_limit_rpm: int | None) -> TokenBucket | None:
        if not self.enabled or not rate_limit_rpm:
            return None
        if source not in self._buckets:
            self._buckets[source] = TokenBucket(rate_limit_rpm, burst=max(1, rate_limit_rpm // 60))
        return self._buckets[source]


def fetch_window(
    conn: psycopg.Connection,
    client: HttpClient,
    landing: LandingZone,
    window: FetchWindow,
    *,
    mode: FetchMode | None = None,
    feed_ids: list[uuid.UUID] | None = None,
    encryption_key: Callable[[], bytes] | None = None,
    rate_limiters: RateLimiters | None = None,
    disable_after_failures: int = 5,
    probe: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[FeedFetchReport]:
    """Fetch the window for the selected feeds; `conn` must be in autocommit mode. With
    `probe`, the selected feeds are auto-disabled ones whose half-open probe is due.

    Each feed's run row is committed when it starts, so a crash mid-fetch leaves a RUNNING
    row that says so, and its result is committed with the feed's health in one transaction.
    A source's rate_limit_rpd is honoured when requests spend quota (live, not replay).
    """
    mode = mode or window_mode(window, now())
    if probe:
        feeds = load_feeds(conn, feed_ids=feed_ids, probes=True)
    elif feed_ids is not None:
        feeds = load_feeds(conn, feed_ids=feed_ids, with_paused=mode == "backfill")
    elif mode == "poll":
        feeds = load_feeds(conn, due_before=window.end)
    else:
        feeds = load_feeds(conn, backfill_only=True, with_paused=True)
    limiters = rate_limiters or RateLimiters()
    held = live_holds(conn, "feed", now(), [f.id for f in feeds]) if feeds else {}
    quota = (
        requests_left_today(conn, sorted({f.source for f in feeds}), now())
        if feeds and limiters.enabled
        else {}
    )
    reports = []
    for feed in feeds:
        definition = source_definition(feed.source)
        if definition.adapter is None:
            continue  # push sources land through `feeds upload` and webhook deliveries
        if mode == "backfill" and not feed.supports_backfill:
            continue  # the source has no history API; its history is what was polled
        if feed.id in held:
            reports.append(_held_report(feed, mode, f"held by its plan: {held[feed.id]}"))
            continue
        left = quota.get(feed.source)
        if left is not None and left <= 0:
            reason = (
                f"source {feed.source} spent its {feed.rate_limit_rpd} requests per day "
                "(rate_limit_rpd) over the last 24 hours"
            )
            reports.append(_held_report(feed, mode, reason, OVER_QUOTA))
            continue
        report = _fetch_one(
            conn,
            client,
            landing,
            window,
            feed,
            mode,
            encryption_key=encryption_key,
            limiter=limiters.for_source(feed.source, feed.rate_limit_rpm),
            disable_after_failures=disable_after_failures,
            max_pages=MAX_PAGES_PER_FETCH if left is None else min(left, MAX_PAGES_PER_FETCH),
            spends_quota=limiters.enabled,
            now=now,
        )
        if left is not None:
            quota[feed.source] = left - report.requests
        reports.append(report)
    return reports


def _held_report(feed: Feed, mode: FetchMode, reason: str, status: str = HELD) -> FeedFetchReport:
    return FeedFetchReport(
        feed_id=str(feed.id),
        feed_name=feed.name,
        source=feed.source,
        feed_run_id="",
        mode=mode,
        status=status,
        pages=0,
        records=0,
        requests=0,
        bytes_received=0,
        duration_ms=0,
        error=reason,
        landing_file=None,
        auto_disabled=False,
    )


def _fetch_one(
    conn: psycopg.Connection,
    client: HttpClient,
    landing: LandingZone,
    window: FetchWindow,
    feed: Feed,
    mode: FetchMode,
    *,
    encryption_key: Callable[[], bytes] | None,
    limiter: TokenBucket | None,
    disable_after_failures: int,
    max_pages: int,
    spends_quota: bool,
    now: Callable[[], datetime],
) -> FeedFetchReport:
    definition = source_definition(feed.source)
    adapter = definition.adapter
    if adapter is None:  # fetch_window skips push sources before they get here
        raise ValueError(f"source {feed.source} has no adapter: its feeds are pushed, not fetched")
    started = now()
    run_id = start_feed_run(conn, feed.id, started)
    credentials, credential_error = _credentials(feed, encryption_key)
    if credential_error:
        outcome = FetchOutcome(
            result=FeedRunResult(
                status="FAILED",
                started_at=started,
                completed_at=now(),
                error_message=credential_error,
                error_details={"errors": [{"kind": "credentials", "reason": credential_error}]},
            )
        )
    else:
        outcome = fetch_feed(
            feed,
            adapter,
            client,
            mode=mode,
            window=window,
            feed_run_id=str(run_id),
            credentials=credentials,
            trusted=definition.trusted,
            rate_limiter=limiter,
            limits=definition.response_limits,
            max_pages=max_pages,
            now=now,
        )
        if mode == "backfill":
            _skip_unrecorded(outcome.result)
    if not spends_quota:
        outcome.result.error_details["quota"] = False  # replayed: rate_limit_rpd not spent
    outcome.result.window = window
    landing_file = None
    if outcome.pages:
        name = BACKFILL_FILE if mode == "backfill" else poll_file_name(started, str(run_id))
        try:
            written = landing.write(feed.source, str(feed.id), window, name, outcome.pages)
        except (OSError, RecursionError) as exc:  # a full disk; a payload too deep to encode
            _landing_failed(outcome.result, exc)
        else:
            landing_file = outcome.result.landing_file = written.path
    with conn.transaction():
        health = finish_feed_run(
            conn,
            feed,
            run_id,
            outcome.result,
            disable_after_failures=disable_after_failures,
            # History is not the live feed: a failed backfill never disables live polling.
            counts_toward_health=mode == "poll",
        )
        if mode == "poll" and not health.auto_disabled and (feed.enabled or health.re_enabled):
            advance_next_run(conn, feed, outcome.result.completed_at)
    result = outcome.result
    return FeedFetchReport(
        feed_id=str(feed.id),
        feed_name=feed.name,
        source=feed.source,
        feed_run_id=str(run_id),
        mode=mode,
        status=result.status,
        pages=len(outcome.pages),
        records=result.signals_fetched,
        requests=result.request_count,
        bytes_received=result.bytes_received,
        duration_ms=result.duration_ms,
        error=result.error_message,
        landing_file=landing_file,
        auto_disabled=health.auto_disabled,
    )


def _skip_unrecorded(result: FeedRunResult) -> None:
    """A backfill in replay mode without a recording of any history it asked for: the feed is
    not at fault (the demo's recordings hold no such history), so the run is SKIPPED with that
    reason instead of FAILED. (A poll without a recording stays FAILED: polls are recorded.)"""
    errors = result.error_details.get("errors") or []
    missed = [e for e in errors if e.get("kind") == "ReplayMissError"]
    if result.status != "FAILED" or not missed or len(missed) != len(errors):
        return
    if result.error_details.get("pages_landed"):
        return
    result.status = SKIPPED
    result.error_message = (
        f"skipped: replay mode has no recorded history for this feed ({len(missed)} "
        f"request(s) unanswered, first: {missed[0].get('url')})"
    )


def _landing_failed(result: FeedRunResult, exc: OSError | RecursionError) -> None:
    """Pages that were fetched but never landed: the run is FAILED (and keeps no cursor), so
    the next run fetches them again."""
    fault = landing_fault(exc) if isinstance(exc, OSError) else "the payload is nested too deeply"
    reason = f"cannot write the landing zone, nothing landed: {fault}"
    result.status = "FAILED"
    result.error_message = reason
    result.error_details["pages_landed"] = 0
    result.error_details["errors"] = [
        {"kind": "landing", "reason": reason},
        *result.error_details.get("errors", []),
    ][:20]


def _credentials(
    feed: Feed, encryption_key: Callable[[], bytes] | None
) -> tuple[dict[str, Any] | None, str | None]:
    """Decrypted credentials, or the reason they cannot be had (never their content)."""
    if not feed.credentials_encrypted:
        return None, None
    if encryption_key is None:
        return None, "feed has encrypted credentials but no encryption key is configured"
    try:
        value = decrypt_json(
            feed.credentials_encrypted, key=encryption_key(), aad=credentials_aad(feed.id)
        )
    except (SecretKeyError, SecretDecryptError) as exc:
        return None, f"credentials cannot be decrypted: {exc}"
    if not isinstance(value, dict):
        return None, "decrypted credentials are not a JSON object"
    return value, None
