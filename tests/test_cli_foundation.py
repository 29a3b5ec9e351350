"""The two-command promise: the embedded default, fail-fast configuration, loadable definitions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg

from predict_pipeline.db.embedded import APP_DATABASE, start_embedded_server, with_database

CLI = [sys.executable, "-m", "predict_pipeline.cli"]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _env_without_database(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
    env["PREDICT_STATE_DIR"] = str(state_dir)
    return env


def test_embedded_default_starts_its_own_server_with_the_schema(tmp_path):
    state_dir = tmp_path / "state"
    env = _env_without_database(state_dir)
    try:
        first = _run(["db", "upgrade"], env)
        assert first.returncode == 0, first.stderr
        assert "applied 0002_tables.sql" in first.stdout
        second = _run(["db", "upgrade"], env)
        assert second.returncode == 0 and "database is up to date" in second.stdout
        status = _run(["db", "status"], env)
        assert status.stdout.count("applied ") == len(list(Path("sql").glob("*.sql")))
        assert "pending" not in status.stdout

        admin_url = start_embedded_server(state_dir)  # finds the running server
        with psycopg.connect(with_database(admin_url, APP_DATABASE)) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'auth')"
                " AND tablename NOT LIKE 'prediction_snapshots_y%'"
                " AND tablename NOT LIKE 'prediction_signals_y%'"
                " AND tablename NOT LIKE 'prediction_market_edges_y%'"
            ).fetchone()[0]
            version = conn.execute("SHOW server_version_num").fetchone()[0]
        assert tables == 35  # the spec's 28 and seven extensions (sql/0135 the market edges)
        assert int(version) >= 160000
        assert (state_dir / "pgdata" / "PG_VERSION").exists()
    finally:
        stopped = _run(["db", "stop-embedded"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout


def test_unreachable_url_fails_fast_naming_variable_and_host(tmp_path):
    env = _env_without_database(tmp_path)
    env["PREDICT_DATABASE_URL"] = "postgresql://pp:secret-pw@127.0.0.1:1/predict"
    result = _run(["db", "upgrade"], env)
    assert result.returncode == 2
    assert result.stderr.startswith("predict-pipeline: error: PREDICT_DATABASE_URL:")
    assert "127.0.0.1:1/predict" in result.stderr
    assert "Traceback" not in result.stderr
    assert "secret-pw" not in result.stderr


def test_malformed_url_is_refused_without_leaking_the_password(tmp_path):
    env = _env_without_database(tmp_path)
    env["PREDICT_DATABASE_URL"] = "mysql://pp:secret-pw@db.example/predict"
    result = _run(["db", "status"], env)
    assert result.returncode == 2
    assert "PREDICT_DATABASE_URL is not a valid PostgreSQL URL" in result.stderr
    assert "secret-pw" not in result.stderr


def test_definitions_load_and_resolve():
    from predict_pipeline.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    assert "database" in repository.get_top_level_resources()
