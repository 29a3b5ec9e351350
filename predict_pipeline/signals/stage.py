"""Stage 2 for one window: landing pages -> validated, deduplicated signals matched to events.

Per feed, in one transaction: validate (pandera), drop duplicates within the batch and
against the stored keys, match markets to events, COPY the matched rows into
prediction_signals, queue the unmatched ones for review, and account for everything in the
feed runs, the feed and the user's usage. A crash leaves nothing of that feed half-written.
Before it, a short transaction of its own creates the monthly partitions the rows need.

Feeds are isolated: whatever goes wrong while one feed is read or written is rolled back and
recorded on that feed's runs (FAILED, with the reason), and the next feed goes on.

This module reads the window's landed pages; `ingest` turns one feed's records into rows and
`routing` decides which event each market belongs to.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg

from predict_pipeline.ingestion import runs
from predict_pipeline.ingestion.landing import LandedPage, LandingZone, file_window
from predict_pipeline.ingestion.store import Feed, load_feed
from predict_pipeline.model import FetchWindow, NormalisedRecord, PayloadError, RecordReject
from predict_pipeline.retention.partitions import make_partitions
from predict_pipeline.signals import linking
from predict_pipeline.signals.frames import RecordBatch
from predict_pipeline.signals.ingest import FeedValidationReport, _record_months, ingest_batches
from predict_pipeline.signals.routing import MatchingSettings
from predict_pipeline.signals.similarity import EventRef
from predict_pipeline.signals.validation import DEFAULT_CLOCK_SKEW
from predict_pipeline.sources.push.decode import UploadError
from predict_pipeline.sources.push.delivery import parse_upload
from predict_pipeline.sources.registry import source_definition


class _VisibleEvents:
    """The open events each feed owner can see: the matcher's candidates for that owner's
    feeds, loaded once per owner and window, and only if one of their feeds needs similarity."""

    def __init__(self, conn: psycopg.Connection):
        self._conn = conn
        self._events: dict[uuid.UUID, list[EventRef]] = {}

    def of(self, owner: uuid.UUID) -> Callable[[], list[EventRef]]:
        def load() -> list[EventRef]:
            if owner not in self._events:
                self._events[owner] = linking.visible_open_events(self._conn, owner)
            return self._events[owner]

        return load


def validate_window(
    conn: psycopg.Connection,
    landing: LandingZone,
    window: FetchWindow,
    *,
    now: datetime,
    matching: MatchingSettings | None = None,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    feed_ids: list[uuid.UUID] | None = None,
    fail_between_copy_and_queue: Callable[[], None] | None = None,
) -> list[FeedValidationReport]:
    """Process every feed with pages in the window; `conn` must be in autocommit mode."""
    matching = matching or MatchingSettings()
    events = _VisibleEvents(conn)
    reports = []
    for (source, feed_key), paths in sorted(landing.window_files(window).items()):
        feed_id = uuid.UUID(feed_key)
        if feed_ids is not None and feed_id not in feed_ids:
            continue
        feed = load_feed(conn, feed_id)
        if feed is None:
            continue  # the feed was deleted; its landed pages stay for audit
        report = FeedValidationReport(str(feed.id), feed.name, source)
        try:
            batches, partial = _read_batches(conn, landing, feed, paths, report, window)
            # Committed on its own: a new partition keeps prediction_events and the feeds
            # locked against updates until commit, which must not last the whole write.
            with conn.transaction():
                make_partitions(
                    conn, "prediction_signals", _record_months(batches, now + clock_skew)
                )
            with conn.transaction():
                rejected = ingest_batches(
                    conn,
                    feed,
                    batches,
                    report,
                    now=now,
                    matching=matching,
                    events=events.of(feed.user_id),
                    clock_skew=clock_skew,
                    fail_between_copy_and_queue=fail_between_copy_and_queue,
                    timings={},
                )
                runs.record_files_validated(conn, str(feed.id), paths, now)
                # A file read in part keeps the rejects its whole validation wrote.
                _write_rejects(landing, [p for p in paths if p not in partial], rejected)
        except Exception as exc:  # one feed's fault, whatever it is, must not stop the others
            report.error = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            with conn.transaction():
                runs.record_files_failed(conn, str(feed.id), paths, report.error)
        reports.append(report)
    return reports


def _read_batches(
    conn: psycopg.Connection,
    landing: LandingZone,
    feed: Feed,
    paths: list[str],
    report: FeedValidationReport,
    window: FetchWindow,
) -> tuple[list[RecordBatch], set[str]]:
    """The feed's landed pages read again into records (a page that fails is reported), and
    the files read only in part: a backfill file of a longer window than `window` gives only
    the records observed inside `window`."""
    batches, partial = [], set()
    for path in paths:
        landed = file_window(path)
        inside = window.start <= landed.start and landed.end <= window.end
        if not inside:
            partial.add(path)
        # The adapter keeps to the part of the file's window that is being validated.
        span = FetchWindow(max(window.start, landed.start), min(window.end, landed.end))
        run_id: Any = None
        for page_index, page in enumerate(landing.read(path)):
            report.pages += 1
            if page.error:
                continue  # accounted for by the fetch that landed it
            try:
                records, rejects = _parse_page(feed, page, span)
            except (PayloadError, UploadError, ValueError, KeyError, TypeError) as exc:
                report.page_errors.append(f"{path}#{page_index}: {exc}"[:500])
                continue
            if not inside:
                records = [r for r in records if _observed_in(r, span)]
            run_id = page.feed_run_id or run_id or runs.feed_run_for_file(conn, str(feed.id), path)
            run = str(run_id) if run_id else None
            batches.append(RecordBatch(records, run, path, page_index, rejects))
    return batches, partial


def _observed_in(record: NormalisedRecord, window: FetchWindow) -> bool:
    moment = record.fetched_at
    return (
        isinstance(moment, datetime)
        and moment.tzinfo is not None
        and window.start <= moment < window.end
    )


def _parse_page(
    feed: Feed, page: LandedPage, window: FetchWindow
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    """Read a landed page again through its adapter (or the push normaliser): its records and
    the items it could not read.

    Backfill pages carry no fetch time (so a re-fetch is byte-identical): their records have
    their own observation times, and the adapter is given the window to keep to.
    """
    fetched_at = datetime.fromisoformat(page.fetched_at) if page.fetched_at else window.end
    if feed.source in ("upload", "webhook"):
        assert page.body_text is not None
        name = page.request.get("context", {}).get("filename", "body.json")
        return parse_upload(
            page.body_text.encode("utf-8"),
            name if feed.source == "upload" else "body.json",
            feed_config=feed.config,
            received_at=fetched_at,
        )
    adapter = source_definition(feed.source).adapter
    assert adapter is not None
    parsed = adapter.read_records(
        page.payload,
        fetched_at=fetched_at,
        request=page.page_request(),
        window=None if page.fetched_at else window,
    )
    return parsed.records, parsed.rejects


def _write_rejects(landing: LandingZone, paths: list[str], rejected: pd.DataFrame) -> None:
    for path in paths:
        mine = rejected[rejected["landing_file"] == path] if len(rejected) else rejected
        rows = [
            {
                "page_index": int(r.page_index),
                "record_index": int(r.record_index),
                "source_event_id": linking.display_market_id(r.source_event_id)
                if isinstance(r.source_event_id, str)
                else r.source_event_id,
                "signal_type": r.signal_type,
                "value": None if pd.isna(r.value) else r.value,
                "fetched_at": str(r.fetched_at),
                "reasons": list(r.reasons),
                "detail": r.detail,
            }
            for r in mine.itertuples(index=False)
        ]
        landing.write_rejects(path, rows)
