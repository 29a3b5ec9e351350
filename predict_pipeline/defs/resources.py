"""Dagster resources: the application database (and, per stage, the clients they need)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from predict_pipeline.config import DATABASE_URL_VAR, Settings
from predict_pipeline.db.connection import PIPELINE_ROLE, connect, resolve_database
from predict_pipeline.http import HttpClient, build_http_client
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.secrets import load_key_from_env


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
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A connection; without autocommit its work commits on success, rolls back on error."""
        conn = connect(self.resolved_url(), role=self.role, autocommit=autocommit)
        try:
            if autocommit:
                yield conn
            else:
                with conn.transaction():
                    yield conn
        finally:
            conn.close()


class HttpClientResource(dg.ConfigurableResource):
    """The one HTTP client: live, or replaying recorded payloads (offline demo and tests).

    Unset fields come from the environment when a run starts: PREDICT_HTTP_MODE (live |
    replay), PREDICT_REPLAY_DIR, PREDICT_ALLOW_PRIVATE_HOSTS (comma-separated hosts/CIDRs
    that user-configured URLs may reach).
    """

    mode: str | None = None
    replay_dir: str | None = None
    allow_private_hosts: list[str] | None = None

    def settings(self) -> tuple[str, str | None, tuple[str, ...]]:
        env = Settings.from_env()
        hosts = self.allow_private_hosts
        return (
            self.mode or env.http_mode,
            self.replay_dir or env.replay_dir,
            tuple(hosts) if hosts is not None else env.allow_private_hosts,
        )

    @contextmanager
    def client(self) -> Iterator[HttpClient]:
        mode, replay_dir, hosts = self.settings()
        client = build_http_client(
            mode,  # type: ignore[arg-type]
            replay_dir=replay_dir if mode == "replay" else None,
            allow_private_hosts=hosts,
        )
        try:
            yield client
        finally:
            client.close()


class LandingZoneResource(dg.ConfigurableResource):
    """Where raw pages land: a local directory or fsspec URL (default PREDICT_LANDING_ZONE)."""

    root: str | None = None

    def zone(self) -> LandingZone:
        return LandingZone(self.root or Settings.from_env().landing_zone)


class SecretsResource(dg.ConfigurableResource):
    """The AES-256-GCM key for credentials at rest, read from PREDICT_ENCRYPTION_KEY on use."""

    def key(self) -> bytes:
        return load_key_from_env()


# What every run is wired to. The database URL is named as an EnvVar so the UI shows where it
# comes from (every entry point exports it: `predict-pipeline run|dev|backfill` resolve the
# embedded default or PREDICT_DATABASE_URL first); the other settings are optional and read
# from the environment on use, with defaults.
RESOURCES = {
    "database": PostgresResource(url=dg.EnvVar(DATABASE_URL_VAR)),
    "http": HttpClientResource(),
    "landing": LandingZoneResource(),
    "secrets": SecretsResource(),
}
