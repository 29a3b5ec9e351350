"""Dagster's run, event-log and schedule storage in PostgreSQL, with pooled connections.

dagster-postgres opens a new connection for every storage call outside the webserver (its
engines use NullPool): a ranged backfill run writes one event per partition and asset, and
each cost a connection (~2.5 ms on a local socket, more over TCP and TLS). This storage is
dagster-postgres's own with pooled engines, as its webserver mode has, in every process: one
connection kept open for runs, one for schedules and two for the event log (an event write
holds one while it indexes on another), checked before use and recycled hourly, more opened
(and closed again) only under concurrency. Count four per Dagster process (webserver, daemon,
run, step) against the server's max_connections.

A ranged run also plans one materialization per partition and asset before it starts (504 for
a week of the backfill's three assets). dagster-postgres stores such a batch event by event
(an insert, a NOTIFY and an asset-key upsert each); this storage writes the batch in one insert
and upserts each asset key once, from its newest event, as dagster-postgres already does for
a batch of materializations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import DagsterEventType, EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

POOL_SIZES = {"runs": 1, "event_log": 2, "schedules": 1}
POOL_RECYCLE_S = 3600
MAX_OVERFLOW = 10  # connections beyond the pooled ones while threads share a storage


class PlannedBatchEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log, storing a batch of planned materializations at once."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        planned_type = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        planned = [event for event in events if event.dagster_event_type == planned_type]
        others = [event for event in events if event.dagster_event_type != planned_type]
        if planned:
            self._store_planned(planned)
        if others:  # asset checks' planned evaluations, materializations: dagster-postgres's way
            super().store_event_batch(others)

    def _store_planned(self, events: list[EventLogEntry]) -> None:
        with self._connect() as conn:
            inserted = conn.execute(
                self.prepare_insert_event_batch(events).returning(SqlEventLogStorageTable.c.id)
            )
            event_ids = [int(row[0]) for row in inserted.fetchall()]
        newest = {
            event.get_dagster_event().asset_key: (event, event_id)
            for event, event_id in zip(events, event_ids, strict=True)
        }
        with self.index_transaction() as conn:
            for event, event_id in newest.values():
                self._store_asset_event(conn, event, event_id)


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage that keeps its connections and batches planned events (see the
    module docstring)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        # DagsterPostgresStorage.__init__, with this module's event log storage.
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = PostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._event_log_storage = PlannedBatchEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._schedule_storage = PostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        super(DagsterPostgresStorage, self).__init__()
        storages: dict[
            str, PostgresRunStorage | PostgresEventLogStorage | PostgresScheduleStorage
        ] = {
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
    def from_config_value(
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
