"""One feed's records in one transaction: validated, deduplicated, matched, written, accounted.

Lookups (stored dedup keys, event links, similarity) are made first from a scan of the records;
then blocks of records are validated, deduplicated and matched while a COPY streams the previous
blocks to the server. The caller owns the transaction.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from predict_pipeline.calibration.resolutions import mark_for_rescoring
from predict_pipeline.ingestion import runs
from predict_pipeline.ingestion.store import Feed
from predict_pipeline.model import NormalisedRecord
from predict_pipeline.retention.partitions import make_partitions
from predict_pipeline.signals import linking, store
from predict_pipeline.signals.frames import (
    RecordBatch,
    batches_frame,
    concat_rows,
    empty_frame,
    rejects_frame,
)
from predict_pipeline.signals.routing import MatchingSettings, _route_markets, _Routing
from predict_pipeline.signals.similarity import EventRef
from predict_pipeline.signals.validation import (
    DEFAULT_CLOCK_SKEW,
    rejection_summary,
    validate_signals,
)
from predict_pipeline.sources.parsing import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from predict_pipeline.sources.registry import source_definition

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
    # (count, UTC hour) -> records of that hour by their own time: each partition's counts.
    hourly: Counter[tuple[str, datetime]] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.error is None


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
    make_partitions(
        conn, "prediction_signals", _record_months(batches, now + clock_skew, (earliest, latest))
    )
    stored = store.stored_keys(conn, sources, earliest, latest)
    routing = _route_markets(conn, feed, markets, priced, matching, events, namespace)
    links, discarded = routing.links, routing.discarded
    report.created = routing.created
    lap("lookups")

    tally = _Tally()
    best: dict[tuple[Any, ...], tuple[tuple[int, float], str | None]] = {}
    replacing: list[pd.DataFrame] = []

    def blocks() -> Iterator[pd.DataFrame]:
        for chunk in _chunks(batches, BLOCK_RECORDS, FIRST_BLOCK_RECORDS):
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
            _count_hours(report.hourly, "valid", valid["fetched_at"])
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
        _count_hours(report.hourly, "written", rows["fetched_at"])
        tally.add(rows["feed_run_id"], "written")
        # A pair per run and event; a market has one event, and its text id hashes much faster
        # than the event's UUID object.
        pairs = rows.drop_duplicates(["feed_run_id", "source_event_id"])
        all_events.update(pairs["event_id"])
        for run_id, event_id in zip(pairs["feed_run_id"], pairs["event_id"], strict=True):
            events_by_run.setdefault(None if pd.isna(run_id) else run_id, set()).add(event_id)
    report.events = len(all_events)
    # A resolved event's history grew: its scores are computed again (calibration/resolutions).
    mark_for_rescoring(conn, list(all_events | replaced_events))
    # Validation's own empty result has the rejected shape (reasons, detail) when nothing came.
    unread = rejects_frame(batches, feed_id=str(feed.id))
    rejected = concat_rows(
        [*tally.rejected, *([unread] if len(unread) else [])]
        or [validate_signals(empty_frame(), now=now).rejected]
    )
    report.rejected = len(rejected)
    _count_hours(report.hourly, "rejected", rejected["fetched_at"])
    report.rejected_reasons = _reason_counts(rejected)
    _account(conn, feed, tally, events_by_run, rejected, report, now)
    lap("queue_and_account")
    return rejected


BLOCK_RECORDS = 20_000
FIRST_BLOCK_RECORDS = 2_500


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


def _chunks(
    batches: list[RecordBatch], size: int, first: int | None = None
) -> Iterator[list[RecordBatch]]:
    """Pages grouped into blocks of about `size` records (a big page is split). With `first`,
    the blocks start at about that many records and double up to `size`: the server idles
    until the first block is ready."""
    goal = min(first or size, size)
    chunk: list[RecordBatch] = []
    count = 0
    for batch in batches:
        for start in range(0, max(len(batch.records), 1), size):
            part = replace(batch, records=batch.records[start : start + size])
            chunk.append(part)
            count += len(part.records)
            if count >= goal:
                yield chunk
                chunk, count = [], 0
                goal = min(2 * goal, size)
    if chunk:
        yield chunk


def _count_hours(hourly: Counter[tuple[str, datetime]], count: str, times: pd.Series) -> None:
    """Adds the rows to their UTC hours; a time validation could not read places no row."""
    hours = pd.to_datetime(times, utc=True, errors="coerce").dropna().dt.floor("h")
    for hour, rows in hours.value_counts().items():
        hourly[(count, hour.to_pydatetime())] += int(rows)


def _days(rows: pd.DataFrame) -> set[str]:
    if rows.empty:
        return set()
    # The few distinct days are formatted, not every row (strftime of 200k rows: 0.8 s).
    return set(rows["fetched_at"].dt.floor("D").drop_duplicates().dt.strftime("%Y-%m-%d"))


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
    stamps = valid["fetched_at"].array.asi8
    # store.rank_value of each value, at once: the column is float64 after validation.
    number = valid["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    ranks = np.where(np.isnan(number), -np.inf, number)
    times, values = stamps.tolist(), ranks.tolist()
    duplicate = [False] * len(valid)
    replaces = [False] * len(valid)
    # Best first, so the first row of a key in the block is the block's winner; a stable sort
    # on the negated ranks keeps equal rows in input order, as sorted(reverse=True) does.
    order = np.lexsort((-ranks, -stamps)).tolist()
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
    run_ids = {r for r in tally.per_run if r is not None}
    run_ids |= {r for r in rejected["feed_run_id"].dropna().unique()} if len(rejected) else set()
    for run_id in sorted(run_ids):
        counts = dict(tally.per_run.get(run_id, dict.fromkeys(_COUNTS, 0)))
        counts["events"] = len(events_by_run.get(run_id, ()))
        run_rejected = rejected[rejected["feed_run_id"] == run_id]
        runs.record_run_counts(
            conn, run_id, counts, rejection_summary(run_rejected), validated_at=now
        )
    runs.record_run_events(conn, events_by_run)
    store.record_feed_totals(conn, str(feed.id), feed.user_id, report.written, now)


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
