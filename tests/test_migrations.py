"""Migrations: ordered, transactional, recorded with checksums, safe to run twice."""

from __future__ import annotations

import shutil

import pytest

from predict_pipeline.db.connection import connect
from predict_pipeline.db.migrations import (
    MigrationError,
    applied,
    discover,
    pending,
    sql_dir,
    upgrade,
)


def test_upgrade_twice_on_empty_database_records_one_ledger_row_per_file(empty_db_url):
    files = sorted(p.name for p in sql_dir().glob("*.sql"))
    with connect(empty_db_url, role=None, autocommit=True) as conn:
        first = upgrade(conn)
        second = upgrade(conn)
        ledger = applied(conn)
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'auth') "
            "AND tablename NOT LIKE 'prediction_snapshots_y%' "
            "AND tablename NOT LIKE 'prediction_signals_y%' "
            "AND tablename NOT LIKE 'prediction_market_edges_y%'"
        ).fetchone()[0]
    assert [m.path.name for m in first] == files
    assert second == []
    assert [f"{row.version:04d}_{row.name}.sql" for row in ledger] == files
    assert [row.checksum for row in ledger] == [m.checksum for m in discover()]
    assert tables == 35  # the spec's 28 and seven extensions (sql/0135 the market edges)


def test_changed_applied_migration_is_refused(empty_db_url, tmp_path):
    migrations_dir = tmp_path / "sql"
    shutil.copytree(sql_dir(), migrations_dir)
    with connect(empty_db_url, role=None, autocommit=True) as conn:
        upgrade(conn, discover(migrations_dir))
        views = migrations_dir / "0005_views.sql"
        views.write_text(views.read_text() + "\n-- edited after it was applied\n")
        with pytest.raises(MigrationError, match="0005_views.sql was changed after it was applied"):
            upgrade(conn, discover(migrations_dir))
        with pytest.raises(MigrationError, match="changed after it was applied"):
            pending(conn, discover(migrations_dir))


def test_failing_migration_rolls_back_and_is_not_recorded(empty_db_url, tmp_path):
    migrations_dir = tmp_path / "sql"
    shutil.copytree(sql_dir(), migrations_dir)
    (migrations_dir / "9999_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )
    with connect(empty_db_url, role=None, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="9999_broken.sql failed and was rolled back"):
            upgrade(conn, discover(migrations_dir))
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert [row.version for row in applied(conn)][-1] != 9999
        assert [m.version for m in pending(conn, discover(migrations_dir))] == [9999]


def test_badly_named_migration_file_is_refused(tmp_path):
    (tmp_path / "create_things.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_snake_name.sql"):
        discover(tmp_path)
