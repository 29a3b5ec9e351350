"""Stage 2 for one window: landing pages -> validated, deduplicated signals matched to events.

Per feed, in one transaction: validate (pandera), drop duplicates within the batch and
against the stored keys, match markets to events, COPY the matched rows into
prediction_signals, queue the unmatched ones for review, and account for everything in the
feed runs, the feed and the user's usage. A crash leaves nothing of that feed half-written.
Before it, a short transaction of its own creates the monthly partitions the rows need.

Feeds are isolated: whatever goes wrong while one feed is read or written is rolled back and
recorded on that feed's runs (FAILED, with the reason), and the next feed goes on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from predict_pipeline.calibration.resolutions import mark_for_rescoring
from predict_pipeline.feeds.base import FetchWindow
from predict_pipeline.feeds.parsing import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from predict_pipeline.feeds.push.decode import UploadError
from predict_pipeline.feeds.push.delivery import parse_upload
from predict_pipeline.feeds.records import NormalisedRecord, PayloadError, RecordReject
from predict_pipeline.feeds.registry import source_definition
from predict_pipeline.ingestion.landing import LandedPage, LandingZone, file_window
from predict_pipeline.ingestion.store import Feed, load_feed
from predict_pipeline.signals import linking, store
from predict_pipeline.signals.frames import RecordBatch, batches_frame, empty_frame, rejects_frame
from predict_pipeline.signals.matching import (
    DEFAULT_MATCH_THRESHOLD,
    EventRef,
    MarketRef,
    MatchDecision,
    Matcher,
    SimilarityMatcher,
)
from predict_pipeline.signals.validation import (
    DEFAULT_CLOCK_SKEW,
    rejection_summary,
    validate_signals,
)

DEDUP_KEY = ["source", "source_event_id", "signal_type", "bucket"]
MAX_ATTEMPTS_KEPT = 3


@dataclass(slots=True)
class FeedValidationReport:
    feed_id: str
    feed_name: str
    source: str
    pages: int = 0
    records: int = 0
    valid: int = 0
    rejected: int = 0
    deduplicated: int = 0
    matched: int = 0
    unmatched: int = 0
    discarded: int = 0
    created: int = 0  # events created from markets (AUTO_CREATE_BELOW)
    written: int = 0
    events: int = 0
    page_errors: list[str] = field(default_factory=list)
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # UTC days (ISO) of the rows written or replaced: where history landed, for snapshots.
    observed_days: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class MatchingSettings:
    threshold: float = DEFAULT_MATCH_THRESHOLD
    matcher: Matcher = field(default_factory=SimilarityMatcher)


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
                store.ensure_partitions(conn, _record_months(batches, now + clock_skew))
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
                # A file read in part keeps the rejects its whole validation wrote.
                _write_rejects(landing, [p for p in paths if p not in partial], rejected)
        except Exception as exc:  # one feed's fault, whatever it is, must not stop the others
            report.error = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            _record_failure(conn, feed, paths, report.error)
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
            run_id = page.feed_run_id or run_id or store.feed_run_for_file(conn, feed.id, path)
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


def _record_months(
    batches: list[RecordBatch],
    limit: datetime,
    span: tuple[datetime | None, datetime | None] | None = None,
) -> set[datetime]:
    """UTC months of the records' moments up to `limit` (validation rejects later ones). When
    the first and last moment lie in one month or two adjacent ones, they say which without a
    second look at every record."""
    moments = None
    if span is None:
        moments = [record.fetched_at for batch in batches for record in batch.records]
        try:
            span = (min(moments), max(moments)) if moments else None
        except TypeError:  # naive or missing moments among them: look at each one
            span = None
    first, last = span or (None, None)
    if (
        isinstance(first, datetime)
        and isinstance(last, datetime)
        and first.tzinfo is not None
        and last.tzinfo is not None
        and first >= EARLIEST_TIMESTAMP
        and last < LATEST_TIMESTAMP
    ):
        try:
            months = store.signal_months((first, last), limit) if last <= limit else set()
        except TypeError:
            months = set()
        if months and max(months) - min(months) <= timedelta(days=31):
            return months
    if moments is None:
        moments = [record.fetched_at for batch in batches for record in batch.records]
    return store.signal_months(moments, limit)


@dataclass(slots=True)
class _Tally:
    """What the pipeline saw, per feed run, while the COPY was under way."""

    rejected: list[pd.DataFrame] = field(default_factory=list)
    unmatched: list[pd.DataFrame] = field(default_factory=list)
    per_run: dict[Any, dict[str, int]] = field(default_factory=dict)

    def add(self, column: pd.Series, name: str) -> None:
        for run_id, count in column.value_counts(dropna=False).items():
            key = None if pd.isna(run_id) else run_id
            counts = self.per_run.setdefault(key, dict.fromkeys(_COUNTS, 0))
            counts[name] += int(count)


_COUNTS = ("valid", "deduplicated", "matched", "unmatched", "written", "events")


def ingest_batches(
    conn: psycopg.Connection,
    feed: Feed,
    batches: list[RecordBatch],
    report: FeedValidationReport,
    *,
    now: datetime,
    matching: MatchingSettings,
    events: Callable[[], list[EventRef]],
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    fail_between_copy_and_queue: Callable[[], None] | None = None,
    timings: dict[str, float],
) -> pd.DataFrame:
    """Validate, deduplicate, match and write one feed's records; returns the rejected rows.

    `events` gives the open events the feed's owner can see (the matcher's candidates). The
    caller owns the transaction. Lookups (stored dedup keys, event links, similarity)
    are made first from a scan of the records; then blocks of records are validated,
    deduplicated and matched while a COPY streams the previous blocks to the server, so the
    client's work overlaps the server's instead of adding to it.
    """
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - clock
        clock = time.perf_counter()

    definition = source_definition(feed.source)
    weight = float(feed.default_weight if feed.default_weight is not None else 1.0)
    namespace = linking.feed_namespace(feed.id, feed.adapter_type)
    if namespace is not None:
        batches = _in_namespace(batches, namespace)
    markets, sources, earliest, latest, settled, priced = _scan(batches)
    report.records = sum(len(b.records) + len(b.rejects) for b in batches)
    lap("scan")
    # First of all that touches prediction_signals: every row written has its partition.
    store.ensure_partitions(conn, _record_months(batches, now + clock_skew, (earliest, latest)))
    stored = store.stored_keys(conn, sources, earliest, latest)
    routing = _route_markets(conn, feed, markets, priced, matching, events, namespace)
    links, discarded = routing.links, routing.discarded
    report.created = routing.created
    lap("lookups")

    tally = _Tally()
    best: dict[tuple[Any, ...], tuple[tuple[int, float], str | None]] = {}
    replacing: list[pd.DataFrame] = []

    def blocks() -> Iterator[pd.DataFrame]:
        for chunk in _chunks(batches, BLOCK_RECORDS):
            started = time.perf_counter()
            frame = batches_frame(
                chunk, feed_id=str(feed.id), weight=weight, reliability=definition.reliability
            )
            result = validate_signals(
                frame, now=now, pull_source=definition.supports_pull, clock_skew=clock_skew
            )
            tally.rejected.append(result.rejected)
            valid = with_exact_values(store.with_buckets(result.valid))
            tally.add(valid["feed_run_id"], "valid")
            duplicate, replaces = _dedup(valid, best, stored, str(feed.id))
            tally.add(valid.loc[duplicate | replaces, "feed_run_id"], "deduplicated")
            replacing.append(
                valid[replaces.to_numpy() & valid["source_event_id"].isin(links).to_numpy()].assign(
                    event_id=lambda f: f["source_event_id"].map(links)
                )
            )
            fresh = valid[~(duplicate | replaces)]
            event_ids = fresh["source_event_id"].map(links)
            is_matched = event_ids.notna().to_numpy()
            matched = fresh[is_matched].assign(event_id=event_ids[is_matched])
            unmatched = fresh[~is_matched & ~fresh["source_event_id"].isin(discarded)]
            tally.unmatched.append(unmatched)
            tally.add(matched["feed_run_id"], "matched")
            tally.add(unmatched["feed_run_id"], "unmatched")
            report.valid += len(valid)
            report.deduplicated += int((duplicate | replaces).sum())
            report.matched += len(matched)
            report.unmatched += len(unmatched)
            report.discarded += len(fresh) - len(matched) - len(unmatched)
            timings["blocks_client"] = (
                timings.get("blocks_client", 0.0) + time.perf_counter() - started
            )
            yield matched

    written_blocks = store.copy_signal_blocks(conn, blocks())
    replaced = pd.concat(replacing, ignore_index=True)
    replaced_events = store.replace_signals(conn, replaced)
    report.observed_days.update(_days(replaced))
    lap("pipeline")
    if fail_between_copy_and_queue is not None:
        fail_between_copy_and_queue()  # tests inject a crash here: nothing may remain
    store.save_settlements(conn, feed.source, settled, links, now)
    unmatched_all = pd.concat(tally.unmatched or [empty_frame()], ignore_index=True)
    store.queue_unmatched(conn, _queue_rows(unmatched_all, routing))
    events_by_run: dict[Any, set[Any]] = {}
    all_events: set[Any] = set()
    for block, written in written_blocks:
        rows = block[written.to_numpy()]
        report.written += len(rows)
        report.observed_days.update(_days(rows))
        tally.add(rows["feed_run_id"], "written")
        pairs = rows[["feed_run_id", "event_id"]].drop_duplicates()  # a pair per run and event
        all_events.update(pairs["event_id"])
        for run_id, event_id in zip(pairs["feed_run_id"], pairs["event_id"], strict=True):
            events_by_run.setdefault(None if pd.isna(run_id) else run_id, set()).add(event_id)
    report.events = len(all_events)
    # A resolved event's history grew: its scores are computed again (calibration/resolutions).
    mark_for_rescoring(conn, list(all_events | replaced_events))
    # Validation's own empty result has the rejected shape (reasons, detail) when nothing came.
    unread = rejects_frame(batches, feed_id=str(feed.id))
    rejected = pd.concat(
        [*tally.rejected, *([unread] if len(unread) else [])]
        or [validate_signals(empty_frame(), now=now).rejected],
        ignore_index=True,
    )
    report.rejected = len(rejected)
    report.rejected_reasons = _reason_counts(rejected)
    _account(conn, feed, tally, events_by_run, rejected, report, now)
    lap("queue_and_account")
    return rejected


BLOCK_RECORDS = 20_000


def _scan(
    batches: list[RecordBatch],
) -> tuple[
    dict[str, NormalisedRecord],
    set[str],
    datetime | None,
    datetime | None,
    dict[str, NormalisedRecord],
    set[str],
]:
    """First record of each market, the sources, the time range (of the moments validation
    may accept), the latest price record of each market that reports its own resolution, and
    the markets with a price, from the raw records."""
    markets: dict[str, NormalisedRecord] = {}
    settled: dict[str, NormalisedRecord] = {}
    priced: set[str] = set()
    sources: set[str] = set()
    earliest: datetime | None = None
    latest: datetime | None = None
    for batch in batches:
        for record in batch.records:
            sid = record.source_event_id
            if sid is not None and sid not in markets:
                markets[sid] = record
                sources.add(record.source)
            if (
                sid is not None
                and record.market.resolution is not None
                and (sid not in settled or record.signal_type == "MARKET_PRICE")
            ):
                settled[sid] = record
            if record.signal_type == "MARKET_PRICE":
                priced.add(sid)
            moment = record.fetched_at
            if (
                isinstance(moment, datetime)
                and moment.tzinfo is not None
                and EARLIEST_TIMESTAMP <= moment < LATEST_TIMESTAMP  # validation rejects others
            ):
                if earliest is None or moment < earliest:
                    earliest = moment
                if latest is None or moment > latest:
                    latest = moment
    return markets, sources, earliest, latest, settled, priced


def _in_namespace(batches: list[RecordBatch], namespace: str) -> list[RecordBatch]:
    """The records with their market ids in the feed's namespace (user-defined sources; an
    empty id stays empty, for validation to reject)."""
    return [
        replace(
            batch,
            records=[
                replace(r, source_event_id=namespace + r.source_event_id)
                if isinstance(r.source_event_id, str) and r.source_event_id.strip()
                else r
                for r in batch.records
            ],
        )
        for batch in batches
    ]


def _chunks(batches: list[RecordBatch], size: int) -> Iterator[list[RecordBatch]]:
    """Pages grouped into blocks of about `size` records (a big page is split)."""
    chunk: list[RecordBatch] = []
    count = 0
    for batch in batches:
        for start in range(0, max(len(batch.records), 1), size):
            part = replace(batch, records=batch.records[start : start + size])
            chunk.append(part)
            count += len(part.records)
            if count >= size:
                yield chunk
                chunk, count = [], 0
    if chunk:
        yield chunk


def _days(rows: pd.DataFrame) -> set[str]:
    if rows.empty:
        return set()
    return set(rows["fetched_at"].dt.strftime("%Y-%m-%d").unique())


def with_exact_values(valid: pd.DataFrame) -> pd.DataFrame:
    """`raw_data.value_exact` holds the value where the DECIMAL(10,4) column rounds it, so that
    scores and the dedup's tie-break read the value as observed."""
    values = valid["value"].to_numpy(dtype=float, na_value=np.nan)
    rounds = ~np.isnan(values) & (np.round(values, 4) != values)
    if not rounds.any():
        return valid
    valid = valid.copy()
    raw = valid["raw_data"].tolist()
    for i in np.flatnonzero(rounds):
        raw[i] = {**(raw[i] if isinstance(raw[i], dict) else {}), "value_exact": float(values[i])}
    valid["raw_data"] = raw
    return valid


def _dedup(
    valid: pd.DataFrame,
    best: dict[tuple[Any, ...], tuple[tuple[int, float], str | None]],
    stored: dict[tuple[Any, ...], tuple[tuple[int, float], str | None]],
    feed_id: str,
) -> tuple[pd.Series, pd.Series]:
    """Which rows are duplicates, and which replace a row written before, by the dedup rule.

    One row per key (source, source_event_id, signal_type, 5-minute bucket as epoch
    nanoseconds) is kept whatever the input order: the latest observation of the bucket, and
    of equal times the higher value (exact). A stored row is replaced only by a row of the same
    feed (another feed's is a duplicate: the fact is stored once). `best` carries each key's
    kept rank and feed from block to block."""
    times = valid["fetched_at"].array.asi8.tolist()
    values = [store.rank_value(v) for v in valid["value"].tolist()]
    duplicate = [False] * len(valid)
    replaces = [False] * len(valid)
    # Best first, so the first row of a key in the block is the block's winner.
    order = sorted(range(len(valid)), key=lambda i: (times[i], values[i]), reverse=True)
    keys = list(
        zip(
            valid["source"].tolist(),
            valid["source_event_id"].tolist(),
            valid["signal_type"].tolist(),
            valid["bucket"].array.asi8.tolist(),
            strict=True,
        )
    )
    for i in order:
        key = keys[i]
        if not isinstance(key[1], str):
            continue  # no source_event_id: the dedup index does not apply
        rank = (times[i], values[i])
        kept = best.get(key) or stored.get(key)
        if kept is None:
            best[key] = (rank, feed_id)
        elif kept[1] == feed_id and rank > kept[0]:
            best[key] = (rank, feed_id)
            replaces[i] = True
        else:
            best.setdefault(key, kept)
            duplicate[i] = True
    return (
        pd.Series(duplicate, index=valid.index, dtype=bool),
        pd.Series(replaces, index=valid.index, dtype=bool),
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


# A market becomes an event of its own when nothing its owner can see resembles it: no open
# event scores this or more (a near-twin capped for a conflicting number or direction scores
# exactly 0.40, and goes to a reviewer, who knows whether it is a new question) and its facts
# make a question: a price, a title of its own and a close time. `ai` mapping creates for any
# source; `auto` only for a user-defined source (upload, webhook, custom_api), whose markets are
# the user's own questions; a platform listing of hundreds of markets waits for review in
# `auto` rather than becoming hundreds of events.
AUTO_CREATE_BELOW = 0.40
AUTO_CREATE_REASON = "auto: no open event the owner can see resembles the market"


@dataclass(slots=True)
class _Routing:
    """Where each market of a feed goes: an event, the discard pile, or review (with why)."""

    links: dict[str, uuid.UUID] = field(default_factory=dict)
    discarded: set[str] = field(default_factory=set)
    decisions: dict[str, MatchDecision] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # why a market waits for review
    created: int = 0


def _route_markets(
    conn: psycopg.Connection,
    feed: Feed,
    markets: dict[str, NormalisedRecord],
    priced: set[str],
    matching: MatchingSettings,
    events: Callable[[], list[EventRef]],
    namespace: str | None,
) -> _Routing:
    """Event of each market: manual mapping, then the owner's link, then similarity against
    the events the owner can see, then an event of its own (AUTO_CREATE_BELOW). Only events
    visible to the feed's owner are ever chosen; a mapping or link to any other goes to review,
    saying so."""
    ids = list(markets)
    routing = _Routing()
    manual, refused = _manual_mappings(conn, feed, namespace)
    for sid in ids:
        if sid in manual:
            routing.links[sid] = manual[sid]
        elif sid in refused:
            routing.reasons[sid] = refused[sid]
    if feed.event_mapping_mode == "manual":
        for sid in ids:
            if sid not in routing.links and sid not in routing.reasons:
                routing.reasons[sid] = "manual mapping mode: no manual_event_mappings entry"
        return routing
    todo = [sid for sid in ids if sid not in routing.links and sid not in routing.reasons]
    for sid, link in linking.load_links(conn, feed.source, feed.user_id, todo).items():
        if link.event_id is None:
            routing.discarded.add(sid)
        elif link.visible:
            routing.links[sid] = link.event_id
        else:
            routing.reasons[sid] = (
                f"linked to event {link.event_id}, which the feed's owner can no longer see"
            )
    todo = [
        sid
        for sid in todo
        if sid not in routing.links and sid not in routing.discarded and sid not in routing.reasons
    ]
    if not todo:
        return routing
    refs = [_market_ref(markets[sid]) for sid in todo]
    accepted: list[tuple[str, uuid.UUID | None, str, float | None]] = []
    new: list[linking.NewEvent] = []
    creates = feed.event_mapping_mode == "ai" or namespace is not None
    candidates = events()
    allowed = {event.id for event in candidates}
    chosen = matching.matcher.match_many(refs, candidates, threshold=matching.threshold)
    for ref, decision in zip(refs, chosen, strict=True):
        sid = ref.source_event_id
        routing.decisions[sid] = decision
        if decision.event_id is not None and decision.event_id not in allowed:
            # A pluggable matcher answers with an event it was not offered: never followed.
            routing.reasons[sid] = (
                f"the matcher chose event {decision.event_id}, which the feed's owner cannot see"
            )
        elif decision.event_id is not None:
            event_id = uuid.UUID(str(decision.event_id))
            routing.links[sid] = event_id
            accepted.append((sid, event_id, "similarity", round(decision.confidence, 2)))
        elif creates and sid in priced and _creatable(markets[sid], decision):
            new.append(_new_event(markets[sid], feed.user_id))
    if new:
        created = linking.create_events(conn, new, created_by=None, reason=AUTO_CREATE_REASON)
        for market, event_id in zip(new, created, strict=True):
            routing.links[market.source_event_id] = event_id
            accepted.append((market.source_event_id, event_id, "created", None))
        routing.created = len(created)
    linking.save_links(conn, feed.source, feed.user_id, accepted)
    return routing


def _creatable(record: NormalisedRecord, decision: MatchDecision) -> bool:
    """AUTO_CREATE_BELOW: nothing resembles the market, and its facts make a question."""
    best = decision.attempts[0].score if decision.attempts else 0.0
    facts = record.market
    title = (facts.title or "").strip()
    return (
        best < AUTO_CREATE_BELOW
        and bool(title)
        and title != linking.display_market_id(record.source_event_id)
        and _aware(facts.close_time) is not None
    )


def _new_event(record: NormalisedRecord, owner: uuid.UUID) -> linking.NewEvent:
    facts = record.market
    return linking.NewEvent(
        owner=owner,
        source=record.source,
        source_event_id=record.source_event_id,
        title=(facts.title or "").strip(),
        close_time=_aware(facts.close_time),
        source_url=record.source_url,
        category_hints=tuple(h for h in facts.category_hints if isinstance(h, str)),
    )


def _aware(moment: Any) -> datetime | None:
    return moment if isinstance(moment, datetime) and moment.tzinfo is not None else None


def _market_ref(record: NormalisedRecord) -> MarketRef:
    m = record.market
    close = m.close_time if isinstance(m.close_time, datetime) and m.close_time.tzinfo else None
    return MarketRef(
        source=record.source,
        source_event_id=record.source_event_id,
        title=m.title or linking.display_market_id(record.source_event_id) or "",
        slug=m.slug,
        close_time=close,
        category_hints=tuple(m.category_hints),
        outcome=m.outcome,
    )


def _manual_mappings(
    conn: psycopg.Connection, feed: Feed, namespace: str | None
) -> tuple[dict[str, uuid.UUID], dict[str, str]]:
    """The feed's manual_event_mappings (market id as sent -> event id) that name events its
    owner can see, by stored market id; and why each other mapping of an existing event was
    refused. Mappings of events that do not exist, or that are not ids, are ignored."""
    raw = feed.manual_event_mappings or {}
    wanted: dict[str, uuid.UUID] = {}
    for sid, value in raw.items():
        try:
            wanted[(namespace or "") + str(sid)] = uuid.UUID(str(value))
        except ValueError:
            continue
    visible = linking.event_visibility(conn, feed.user_id, wanted.values())
    mapped = {sid: eid for sid, eid in wanted.items() if visible.get(eid)}
    refused = {
        sid: f"manual_event_mappings names event {eid}, which the feed's owner cannot see"
        for sid, eid in wanted.items()
        if visible.get(eid) is False
    }
    return mapped, refused


def _queue_rows(unmatched: pd.DataFrame, routing: _Routing) -> list[dict]:
    """The latest value of each (market, signal type) with the matcher's best attempts and
    why it waits for review (`raw_data.review_reason`)."""
    if unmatched.empty:
        return []
    latest = unmatched.sort_values("fetched_at").drop_duplicates(
        ["source_event_id", "signal_type"], keep="last"
    )
    rows = []
    for row in latest.itertuples(index=False):
        decision = routing.decisions.get(row.source_event_id)
        attempts = decision.attempts[:MAX_ATTEMPTS_KEPT] if decision else []
        reason = routing.reasons.get(row.source_event_id) or (decision.reason if decision else None)
        best = attempts[0] if attempts else None
        rows.append(
            {
                "feed_run_id": _text(row.feed_run_id),
                "feed_id": row.feed_id,
                "source_event_id": row.source_event_id,
                "signal_type": row.signal_type,
                "value": None if pd.isna(row.value) else round(float(row.value), 4),
                "narrative": _text(row.narrative),
                "raw_data": {
                    "record": row.raw_data,
                    "market": _market_json(row.record),
                    "fetched_at": _iso(row.fetched_at),
                    "source": row.source,
                    "source_url": _text(row.source_url),
                    "landing_file": _text(row.landing_file),
                    "review_reason": reason,
                },
                "match_attempts": [
                    {
                        "event_id": str(a.event_id),
                        "score": round(a.score, 4),
                        "components": a.components,
                    }
                    for a in attempts
                ],
                "suggested_event_id": best.event_id if best else None,
                "suggestion_confidence": round(min(max(best.score, 0.0), 1.0), 2) if best else None,
            }
        )
    return rows


def _account(
    conn: psycopg.Connection,
    feed: Feed,
    tally: _Tally,
    events_by_run: dict[Any, set[Any]],
    rejected: pd.DataFrame,
    report: FeedValidationReport,
    now: datetime,
) -> None:
    runs = {r for r in tally.per_run if r is not None}
    runs |= {r for r in rejected["feed_run_id"].dropna().unique()} if len(rejected) else set()
    for run_id in sorted(runs):
        counts = dict(tally.per_run.get(run_id, dict.fromkeys(_COUNTS, 0)))
        counts["events"] = len(events_by_run.get(run_id, ()))
        run_rejected = rejected[rejected["feed_run_id"] == run_id]
        store.record_run_counts(
            conn, run_id, counts, rejection_summary(run_rejected), validated_at=now
        )
    store.record_run_events(conn, events_by_run)
    store.record_feed_totals(conn, str(feed.id), feed.user_id, report.written, now)


def _record_failure(conn: psycopg.Connection, feed: Feed, paths: list[str], error: str) -> None:
    """The write was rolled back: the runs behind these pages say why, as FAILED (the status
    and message they had are kept, so a later validation that writes restores them)."""
    with conn.transaction():
        conn.execute(
            """UPDATE prediction_feed_runs SET status = 'FAILED',
                 error_message = %s,
                 error_details = coalesce(error_details, '{}'::jsonb)
                   || jsonb_build_object('validation_error', %s::text)
                   || CASE WHEN error_details ? 'fetch_status' THEN '{}'::jsonb
                      ELSE jsonb_build_object('fetch_status', status,
                                              'fetch_error_message', error_message) END
               WHERE feed_id = %s AND error_details->>'landing_file' = ANY(%s)""",
            (f"writing signals failed, nothing was written: {error}", error, feed.id, paths),
        )


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


def _reason_counts(rejected: pd.DataFrame) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reasons in rejected.get("reasons", []):
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _market_json(record: NormalisedRecord) -> dict[str, Any]:
    m = record.market
    return {
        "title": m.title,
        "slug": m.slug,
        "close_time": _iso(m.close_time),
        "status": m.status,
        "resolution": m.resolution,
        "resolution_time": _iso(m.resolution_time),
        "parent_id": m.parent_id,
        "outcome": m.outcome,
        "category_hints": list(m.category_hints),
    }


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _time(value: Any) -> datetime | None:
    if value is None or (not isinstance(value, datetime) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime()


def _iso(value: Any) -> str | None:
    moment = _time(value)
    return moment.isoformat() if moment else None
