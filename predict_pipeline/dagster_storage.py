"""Dagster's run, event-log and schedule storage in PostgreSQL, with pooled connections.

dagster-postgres opens a new connection for every storage call outside the webserver (its
engines use NullPool): a ranged backfill run writes one event per partition and asset, and
each cost a connection (~2.5 ms on a local socket, more over TCP and TLS). This storage is
dagster-postgres's own with pooled engines, as its webserver mode has, in every process: one
connection kept open for runs, one for schedules and two for the event log (an event write
holds one while it indexes on another), checked before use and recycled hourly, more opened
(and closed again) only under concurrency. Count four per Dagster process (webserver, daemon,
run, step) against the server's max_connections.
"""

from __future__ import annotations

from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

POOL_SIZES = {"runs": 1, "event_log": 2, "schedules": 1}
POOL_RECYCLE_S = 3600
MAX_OVERFLOW = 10  # connections beyond the pooled ones while threads share a storage


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage that keeps its connections (see the module docstring)."""

    def __init__(self, *args: Any, token_provider: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, token_provider=token_provider, **kwargs)
        storages = {
            "runs": self._run_storage,
            "event_log": self._event_log_storage,
            "schedules": self._schedule_storage,
        }
        for name, storage in storages.items():
            unpooled = storage._engine
            options = unpooled.url.query.get("options")
            storage._engine = create_pg_engine(
                storage.postgres_url,
                token_provider,
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZES[name],
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_S,
                pool_pre_ping=True,
                **({"connect_args": {"options": options}} if options else {}),
            )
            unpooled.dispose()

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


def storage_config(postgres_url: str) -> dict[str, Any]:
    """The `storage:` section of a dagster.yaml for this storage on a SQLAlchemy URL."""
    return {
        "custom": {
            "module": __name__,
            "class": PooledPostgresStorage.__name__,
            "config": {"postgres_url": postgres_url},
        }
    }
