"""`predict-pipeline run`: the main job on whatever database is configured (embedded default)."""

from __future__ import annotations

import time

import dagster as dg

from predict_pipeline.db.connection import connect
from predict_pipeline.runtime import bootstrap


def run_main() -> int:
    """Migrate, materialise every asset of the pipeline, print a summary; non-zero on failure."""
    started = time.perf_counter()
    target = bootstrap()
    from predict_pipeline.definitions import defs  # after bootstrap: the env names the database

    assets = list(defs.assets or [])
    ok = True
    if assets:
        with dg.DagsterInstance.get() as instance:
            result = dg.materialize(assets, instance=instance, resources=defs.resources)
            ok = result.success
    with connect(target.app_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'auth')"
            " AND tablename NOT LIKE 'prediction_snapshots_y%'"
        ).fetchone()[0]
    where = "embedded PostgreSQL" if target.embedded else "configured PostgreSQL"
    print(f"database: {where}, schema tables: {tables}")
    print(f"assets materialised: {len(assets)}; {'ok' if ok else 'FAILED'}")
    print(f"took {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1
