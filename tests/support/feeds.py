"""Feeds in a real database for tests: create them, read their runs and health."""

from __future__ import annotations

import resource
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.ingestion.runner import credentials_aad
from predict_pipeline.secrets import decode_key, encrypt_json, generate_key

USER_ID = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
KEY = decode_key(generate_key())


def make_feed(
    conn: psycopg.Connection,
    source: str,
    config: dict[str, Any],
    *,
    name: str | None = None,
    credentials: dict[str, Any] | None = None,
    **columns: Any,
) -> uuid.UUID:
    feed_id = uuid.uuid4()
    encrypted = (
        encrypt_json(credentials, key=KEY, aad=credentials_aad(feed_id)) if credentials else None
    )
    extra = "".join(f", {c}" for c in columns)
    marks = "".join(", %s" for _ in columns)
    conn.execute(
        f"""INSERT INTO prediction_data_feeds
              (id, source_id, user_id, name, config, credentials_encrypted{extra})
            SELECT %s, s.id, %s, %s, %s, %s{marks}
            FROM prediction_data_sources s WHERE s.source_id = %s""",  # noqa: S608
        (
            feed_id,
            USER_ID,
            name or f"{source} feed {feed_id.hex[:6]}",
            Jsonb(config),
            Jsonb(encrypted) if encrypted else None,
            *columns.values(),
            source,
        ),
    )
    return feed_id


def custom_config(url: str, **overrides: Any) -> dict[str, Any]:
    """A custom_api feed reading {"items": [{"id": ..., "p": ...}]}."""
    return {
        "url": url,
        "records_path": "$.items[*]",
        "fields": {"source_event_id": "id", "value": "p", "title": "title"},
        "pagination": {"mode": "none"},
        **overrides,
    }


def feed_run(conn: psycopg.Connection, feed_id: uuid.UUID) -> dict[str, Any]:
    """The feed's latest run as a dict."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM prediction_feed_runs WHERE feed_id = %s ORDER BY started_at DESC"
            " LIMIT 1",
            (feed_id,),
        ).fetchone()
    assert row is not None
    return row


def feed_run_landing(conn: psycopg.Connection, feed_id: uuid.UUID) -> dict[str, Any]:
    """The landing record (prediction_feed_run_landings) of the feed's latest run."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "SELECT l.* FROM prediction_feed_run_landings l"
            " JOIN prediction_feed_runs r ON r.id = l.feed_run_id"
            " WHERE r.feed_id = %s ORDER BY r.started_at DESC LIMIT 1",
            (feed_id,),
        ).fetchone()
    assert row is not None
    return row


def feed_row(conn: psycopg.Connection, feed_id: uuid.UUID) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM prediction_data_feeds WHERE id = %s", (feed_id,)
        ).fetchone()
    assert row is not None
    return row


@contextmanager
def file_size_limit(max_bytes: int) -> Iterator[None]:
    """Within the block, this process may write no file larger than `max_bytes`: the kernel
    fails the write with EFBIG (Python ignores SIGXFSZ), as a full landing disk would fail it.
    Sockets (the database, HTTP) are not files and are not limited."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
