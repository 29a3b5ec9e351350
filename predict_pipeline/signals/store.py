"""prediction_signals and the review queue in Postgres: dedup keys, COPY, settlements, counts."""

from __future__ import annotations

import io
import json
import math
import sys
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import errors
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.json import Jsonb

from predict_pipeline import usage
from predict_pipeline.sources.parsing import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP

BUCKET = pd.Timedelta(minutes=5)
# Columns written by COPY; id and created_at take the table's defaults.
COPY_COLUMNS = (
    "event_id",
    "feed_id",
    "source",
    "source_url",
    "source_event_id",
    "signal_type",
    "value",
    "raw_data",
    "narrative",
    "weight",
    "reliability",
    "fetched_at",
)
_COPY_SQL = f"COPY prediction_signals ({', '.join(COPY_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"


def with_buckets(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `bucket`: the 5-minute UTC bucket of the dedup index (date_bin from 2000-01-01,
    which is itself a multiple of 5 minutes after the Unix epoch, so floor() agrees)."""
    frame = frame.copy()
    frame["bucket"] = frame["fetched_at"].dt.floor(BUCKET)
    return frame


def stored_keys(
    conn: psycopg.Connection,
    sources: set[str],
    earliest: datetime | None,
    latest: datetime | None,
) -> dict[tuple[str, str, str, int], tuple[tuple[int, float], str | None]]:
    """Dedup keys already stored in the 5-minute buckets from `earliest` to `latest`, each with
    its row's rank (observation time as epoch nanoseconds, exact value) and feed."""
    if not sources or earliest is None or latest is None:
        return {}
    start = pd.Timestamp(earliest).floor(BUCKET).to_pydatetime()
    end = pd.Timestamp(latest).floor(BUCKET).to_pydatetime() + timedelta(minutes=5)
    rows = conn.execute(
        """SELECT source, source_event_id, signal_type,
                  date_bin('5 minutes', fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                  fetched_at, coalesce((raw_data->>'value_exact')::float8, value::float8),
                  feed_id::text
           FROM prediction_signals
           WHERE source = ANY(%s) AND source_event_id IS NOT NULL
             AND fetched_at >= %s AND fetched_at < %s""",
        (sorted(sources), start, end),
    ).fetchall()
    # Same key shape as the stage's dedup: bucket as epoch nanoseconds.
    return {
        (s, e, t, pd.Timestamp(b).value): ((pd.Timestamp(f).value, rank_value(v)), feed)
        for s, e, t, b, f, v, feed in rows
    }


def rank_value(value: Any) -> float:
    """A value's place in the dedup's tie-break (higher wins); no value ranks lowest."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -math.inf
    return float(value)


# A row of the batch replaces the stored row of its key (same feed, later or higher): the
# best replacement per key, and only if it still outranks the stored row.
_REPLACE_SQL = """
UPDATE prediction_signals p SET
  event_id = r.event_id, source_url = r.source_url, value = r.value, raw_data = r.raw_data,
  narrative = r.narrative, weight = r.weight, reliability = r.reliability,
  fetched_at = r.fetched_at, created_at = now()
FROM (SELECT DISTINCT ON (source, source_event_id, signal_type,
                          date_bin('5 minutes', fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'))
             *, coalesce((raw_data->>'value_exact')::float8, value::float8) AS exact
      FROM signals_replacing
      ORDER BY source, source_event_id, signal_type,
               date_bin('5 minutes', fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               fetched_at DESC, exact DESC NULLS LAST) r
WHERE p.source = r.source AND p.source_event_id = r.source_event_id
  AND p.signal_type = r.signal_type AND p.feed_id = r.feed_id
  AND date_bin('5 minutes', p.fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
      = date_bin('5 minutes', r.fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
  AND (r.fetched_at, coalesce(r.exact, '-infinity'))
      > (p.fetched_at, coalesce((p.raw_data->>'value_exact')::float8, p.value::float8,
                                '-infinity'))
RETURNING p.event_id
"""


def replace_signals(conn: psycopg.Connection, rows: pd.DataFrame) -> set[Any]:
    """Stored rows outranked by rows of this batch from the same feed take their values (the
    bucket, hence the month partition, stays the same); returns the events touched."""
    if rows.empty:
        return set()
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS signals_replacing"
        " (LIKE prediction_signals INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    conn.execute("TRUNCATE signals_replacing")
    staging_sql = _COPY_SQL.replace("prediction_signals", "signals_replacing", 1)
    with conn.cursor().copy(staging_sql) as copy:
        copy.write(csv_block(rows))
    return {r[0] for r in conn.execute(_REPLACE_SQL).fetchall()}


def signal_months(moments: Iterable[Any], latest: datetime) -> set[datetime]:
    """UTC month starts of the aware moments in the accepted range and up to `latest`
    (validation rejects the others, and naive or missing ones, so no partition is made for
    them)."""
    months: set[tuple[int, int]] = set()
    latest = min(latest, LATEST_TIMESTAMP)
    for moment in moments:
        if (
            isinstance(moment, datetime)
            and moment.utcoffset() is not None
            and EARLIEST_TIMESTAMP <= moment <= latest
        ):
            if moment.tzinfo is not UTC:
                moment = moment.astimezone(UTC)
            months.add((moment.year, moment.month))
    return {datetime(year, month, 1, tzinfo=UTC) for year, month in months}


def copy_signal_blocks(
    conn: psycopg.Connection, blocks: Iterator[pd.DataFrame]
) -> list[tuple[pd.DataFrame, pd.Series]]:
    """Stream blocks of matched, deduplicated rows into prediction_signals; returns each block
    with a boolean Series of the rows written.

    The blocks are produced lazily: a writer thread sends each block while the caller's
    generator prepares the next, so client and server work overlap. The caller removed
    duplicates against the stored keys; if a concurrent writer stored the same key meanwhile,
    the COPY fails on the month's dedup index (idx_signals_dedup_yYYYYmMM), is rolled back to
    its savepoint, and the rows go through a staging table with INSERT ... ON CONFLICT DO
    NOTHING instead (no conflict target: every unique index of the partition is an arbiter).
    The partitions of the rows' months must exist (`retention.partitions.make_partitions`)."""
    kept: list[pd.DataFrame] = []
    switch = sys.getswitchinterval()
    # The writer thread needs the GIL briefly for every buffer it sends; with the default
    # 5 ms switch interval it waits behind the block-preparing thread and the server idles.
    sys.setswitchinterval(0.0001)
    try:
        with conn.transaction():
            cursor = conn.cursor()
            with cursor.copy(_COPY_SQL, writer=QueuedLibpqWriter(cursor)) as copy:
                for block in blocks:
                    kept.append(block)
                    if len(block):
                        copy.write(csv_block(block))
        return [(block, pd.Series(True, index=block.index)) for block in kept]
    except errors.UniqueViolation:
        kept.extend(blocks)  # the rest of the rows, if the server stopped the COPY early
        return _copy_via_staging(conn, kept)
    finally:
        sys.setswitchinterval(switch)


def _copy_via_staging(
    conn: psycopg.Connection, blocks: list[pd.DataFrame]
) -> list[tuple[pd.DataFrame, pd.Series]]:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS signals_staging"
        " (LIKE prediction_signals INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    conn.execute("TRUNCATE signals_staging")
    staging_sql = _COPY_SQL.replace("prediction_signals", "signals_staging", 1)
    with conn.cursor().copy(staging_sql) as copy:
        for block in blocks:
            if len(block):
                copy.write(csv_block(block))
    cols = ", ".join(COPY_COLUMNS)
    written = conn.execute(
        f"INSERT INTO prediction_signals ({cols}) SELECT {cols} FROM signals_staging"  # noqa: S608
        " ON CONFLICT DO NOTHING RETURNING source, source_event_id, signal_type, fetched_at"
    ).fetchall()
    keys = {(s, e, t, pd.Timestamp(f)) for s, e, t, f in written}
    return [
        (
            block,
            pd.Series(
                [
                    key in keys
                    for key in zip(
                        block["source"],
                        block["source_event_id"],
                        block["signal_type"],
                        block["fetched_at"],
                        strict=True,
                    )
                ],
                index=block.index,
                dtype=bool,
            ),
        )
        for block in blocks
    ]


def csv_block(frame: pd.DataFrame) -> bytes:
    """COPY csv of the rows (Arrow's C++ writer: formatting must keep pace with the server)."""
    table = pa.table(
        {
            "event_id": pa.array(frame["event_id"].astype(str), pa.string()),
            "feed_id": pa.array(frame["feed_id"], pa.string()),
            "source": pa.array(frame["source"], pa.string()),
            "source_url": pa.array(frame["source_url"], pa.string(), from_pandas=True),
            "source_event_id": pa.array(frame["source_event_id"], pa.string(), from_pandas=True),
            "signal_type": pa.array(frame["signal_type"], pa.string()),
            "value": pa.array(frame["value"].round(4), pa.float64(), from_pandas=True),
            "raw_data": pa.array([_json(v) for v in frame["raw_data"]], pa.string()),
            "narrative": pa.array(frame["narrative"], pa.string(), from_pandas=True),
            "weight": pa.array(frame["weight"].round(2), pa.float64(), from_pandas=True),
            "reliability": pa.array(frame["reliability"].round(2), pa.float64(), from_pandas=True),
            "fetched_at": pa.array(frame["fetched_at"]).cast(pa.timestamp("us", "UTC")),
        }
    )
    buffer = io.BytesIO()
    # Nulls are written as unquoted empty fields, which COPY csv reads as NULL.
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


def _json(value: Any) -> str | None:
    """Compact JSON of a validated raw_data (orjson; the stdlib for what orjson refuses, such
    as integers beyond 64 bits)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------
# Matching state


def save_settlements(
    conn: psycopg.Connection,
    source: str,
    settled: dict[str, Any],
    links: dict[str, uuid.UUID],
    now: datetime,
) -> None:
    """Remember what settled markets say about their outcome (the latest report wins), for the
    event this feed's owner linked each market to (or none yet): one row per market and
    event, so one user's link never moves another's."""
    if not settled:
        return
    rows = []
    for sid, record in settled.items():
        price = record.value if record.signal_type == "MARKET_PRICE" else None
        rows.append(
            (
                source,
                sid,
                links.get(sid),
                record.market.resolution,
                _share(record.market.resolution_probability),
                record.market.resolution_time or record.market.close_time,
                None if price is None or not 0 <= price <= 1 else round(price, 4),
                record.source_url,
                now,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO predict_meta.market_settlements
                 (source, source_event_id, event_id, resolution, resolution_probability,
                  resolved_at, last_price, source_url, observed_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (source, source_event_id, event_id) DO UPDATE SET
                 resolution = EXCLUDED.resolution,
                 resolution_probability = EXCLUDED.resolution_probability,
                 resolved_at = EXCLUDED.resolved_at,
                 last_price = coalesce(EXCLUDED.last_price, market_settlements.last_price),
                 source_url = EXCLUDED.source_url, observed_at = EXCLUDED.observed_at""",
            rows,
        )


def _share(value: Any) -> float | None:
    """A resolution probability the table accepts: a finite number in [0, 1], else none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def queue_unmatched(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    """One pending item per (feed, market, signal type): a new value refreshes it."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO prediction_unmatched_signals
                 (feed_run_id, feed_id, source_event_id, signal_type, value, narrative, raw_data,
                  match_attempts, suggested_event_id, suggestion_confidence)
               VALUES (%(feed_run_id)s, %(feed_id)s, %(source_event_id)s, %(signal_type)s,
                       %(value)s, %(narrative)s, %(raw_data)s, %(match_attempts)s,
                       %(suggested_event_id)s, %(suggestion_confidence)s)
               ON CONFLICT (feed_id, source_event_id, signal_type) WHERE status = 'PENDING'
               DO UPDATE SET feed_run_id = EXCLUDED.feed_run_id, value = EXCLUDED.value,
                 narrative = EXCLUDED.narrative, raw_data = EXCLUDED.raw_data,
                 match_attempts = EXCLUDED.match_attempts,
                 suggested_event_id = EXCLUDED.suggested_event_id,
                 suggestion_confidence = EXCLUDED.suggestion_confidence""",
            [
                {
                    **r,
                    "raw_data": Jsonb(r["raw_data"]),
                    "match_attempts": Jsonb(r["match_attempts"]),
                }
                for r in rows
            ],
        )


# ---------------------------------------------------------------------------------------
# Accounting


def record_feed_totals(
    conn: psycopg.Connection, feed_id: str, user_id: uuid.UUID, written: int, now: datetime
) -> None:
    """The feed's totals, and the user's usage for their usage period."""
    conn.execute(
        """UPDATE prediction_data_feeds SET
             signals_ingested_total = signals_ingested_total + %(written)s,
             signals_ingested_24h = (SELECT coalesce(sum(signals_written), 0)
                                     FROM prediction_feed_runs
                                     WHERE feed_id = %(feed)s
                                       AND started_at > %(now)s - interval '24 hours'),
             updated_at = now()
           WHERE id = %(feed)s""",
        {"written": written, "feed": feed_id, "now": now},
    )
    usage.record_signals_ingested(conn, user_id, written, now)
