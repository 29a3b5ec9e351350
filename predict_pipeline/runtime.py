"""Process set-up shared by every entry point: find the database and tell child processes."""

from __future__ import annotations

import os
from pathlib import Path

from predict_pipeline.config import DATABASE_URL_VAR, PROJECT_ROOT, Settings
from predict_pipeline.db.connection import DatabaseTarget, connect, resolve_database
from predict_pipeline.db.migrations import upgrade

DAGSTER_URL_VAR = "PREDICT_DAGSTER_PG_URL"


def bootstrap(settings: Settings | None = None, *, migrate: bool = True) -> DatabaseTarget:
    """Resolve (or start) the database once, migrate it, and export what children need.

    Step processes and the Dagster daemon read the exported URLs, so none of them starts
    another embedded server.
    """
    settings = settings or Settings.from_env()
    target = resolve_database(settings)
    os.environ[DATABASE_URL_VAR] = target.app_url
    os.environ[DAGSTER_URL_VAR] = target.dagster_url
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT))
    artifacts = Path(settings.state_dir) / "dagster"
    os.environ.setdefault("PREDICT_DAGSTER_ARTIFACTS_DIR", str(artifacts / "storage"))
    os.environ.setdefault("PREDICT_DAGSTER_COMPUTE_LOGS_DIR", str(artifacts / "compute_logs"))
    if migrate:
        with connect(target.app_url, role=None, autocommit=True) as conn:
            upgrade(conn)
    return target
