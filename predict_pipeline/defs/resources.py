"""Dagster resources: the application database (and, per stage, the clients they need)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from predict_pipeline.config import Settings
from predict_pipeline.db.connection import PIPELINE_ROLE, connect, resolve_database


@functools.lru_cache(maxsize=4)
def _resolved_app_url(settings: Settings) -> str:
    # Resolved once per process: with nothing configured this starts (or finds) the embedded server.
    return resolve_database(settings).app_url


class PostgresResource(dg.ConfigurableResource):
    """The application database (the documented schema), used as the pipeline's own role.

    `url` defaults to PREDICT_DATABASE_URL, or the embedded server when that is unset; it is
    read when a run uses the resource, never when definitions load.
    """

    url: str | None = None
    role: str = PIPELINE_ROLE

    def resolved_url(self) -> str:
        return self.url or _resolved_app_url(Settings.from_env())

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection whose transaction commits on success and rolls back on error."""
        conn = connect(self.resolved_url(), role=self.role)
        try:
            with conn.transaction():
                yield conn
        finally:
            conn.close()
