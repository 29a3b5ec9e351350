"""Process set-up shared by every entry point: find the database and tell child processes."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from predict_pipeline.config import DATABASE_URL_VAR, PROJECT_ROOT, Settings
from predict_pipeline.db.connection import DatabaseTarget, connect, resolve_database
from predict_pipeline.db.migrations import upgrade
from predict_pipeline.db.rows import one_row
from predict_pipeline.errors import ConfigError
from predict_pipeline.secrets import ENCRYPTION_KEY_ENV, generate_key, key_id, load_key_from_env

DAGSTER_URL_VAR = "PREDICT_DAGSTER_PG_URL"
# Dagster's opt-in: a ranged run's per-partition materializations are written in batches of
# this many events (one INSERT) instead of one by one; runs and steps inherit it.
EVENT_BATCH_VAR, EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE", "1000"


def bootstrap(
    settings: Settings | None = None, *, migrate: bool = True, require_key: bool = False
) -> DatabaseTarget:
    """Resolve (or start) the database once, migrate it, and export what children need.

    Step processes and the Dagster daemon read the exported URLs, so none of them starts
    another embedded server. With `require_key`, the encryption key must be set, well formed
    and the one the database's secrets were encrypted with, or nothing starts.
    """
    settings = settings or Settings.from_env()
    target = resolve_database(settings)
    os.environ[DATABASE_URL_VAR] = target.app_url
    os.environ[DAGSTER_URL_VAR] = target.dagster_url
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT))
    os.environ.setdefault(EVENT_BATCH_VAR, EVENT_BATCH_SIZE)
    artifacts = Path(settings.state_dir) / "dagster"
    os.environ.setdefault("PREDICT_DAGSTER_ARTIFACTS_DIR", str(artifacts / "storage"))
    os.environ.setdefault("PREDICT_DAGSTER_COMPUTE_LOGS_DIR", str(artifacts / "compute_logs"))
    if target.embedded and not os.environ.get(ENCRYPTION_KEY_ENV):
        os.environ[ENCRYPTION_KEY_ENV] = local_encryption_key(settings.state_dir)
    if require_key:
        load_key_from_env()  # a missing or malformed key is refused before anything runs
    if migrate or require_key:
        with connect(target.app_url, role=None, autocommit=True) as conn:
            if migrate:
                upgrade(conn)
            if require_key:
                check_key_matches(conn)
    return target


# Every envelope names its key's fingerprint (`kid`): the key in use must be among them.
_STORED_KEY_IDS = """
    SELECT DISTINCT kid FROM (
      SELECT credentials_encrypted->>'kid' FROM prediction_data_feeds
       WHERE credentials_encrypted IS NOT NULL
      UNION ALL
      SELECT credentials->>'kid' FROM prediction_action_connections
    ) AS stored(kid) WHERE kid IS NOT NULL"""


def check_key_matches(conn: psycopg.Connection) -> None:
    """Refuse a key that cannot read the secrets already stored (a wrong or rotated-away key)."""
    if one_row(conn.execute("SELECT to_regclass('public.prediction_data_feeds')"))[0] is None:
        return  # not migrated yet: nothing is stored
    stored = sorted(kid for (kid,) in conn.execute(_STORED_KEY_IDS))
    mine = key_id(load_key_from_env())
    if stored and mine not in stored:
        raise ConfigError(
            f"{ENCRYPTION_KEY_ENV} (key id {mine}) is not the key this database's secrets were "
            f"encrypted with (key id {', '.join(stored)}): set the key you used before"
        )


def local_encryption_key(state_dir: Path) -> str:
    """The embedded default's key, kept beside its data (0600); production sets the env var."""
    path = Path(state_dir) / "encryption.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key())
    return path.read_text().strip()
