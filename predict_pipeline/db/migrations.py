"""Versioned SQL migrations from `sql/`, applied in order and recorded in a checksummed ledger."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from predict_pipeline.config import PROJECT_ROOT

LEDGER = "predict_meta.schema_migrations"
# Any fixed number: it serialises concurrent `db upgrade` runs against one database.
_UPGRADE_LOCK_KEY = 7_242_031_001
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: object
    duration_ms: int


def sql_dir() -> Path:
    """Installed wheels carry the SQL inside the package; a checkout reads the repo's sql/."""
    packaged = Path(__file__).resolve().parents[1] / "_sql"
    return packaged if packaged.is_dir() else PROJECT_ROOT / "sql"


def discover(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir()
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        text = path.read_text(encoding="utf-8")
        migrations.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                path=path,
                sql=text,
                checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            )
        )
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return migrations


def _ensure_ledger(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS predict_meta")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS predict_meta.schema_migrations (
              version INTEGER PRIMARY KEY,
              name TEXT NOT NULL,
              checksum TEXT NOT NULL,
              applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
              duration_ms INTEGER NOT NULL
            )"""
    )


def applied(conn: psycopg.Connection) -> list[AppliedMigration]:
    exists = conn.execute("SELECT to_regclass(%s)", (LEDGER,)).fetchone()
    if exists is None or exists[0] is None:
        return []
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at, duration_ms "
        "FROM predict_meta.schema_migrations ORDER BY version"
    ).fetchall()
    return [AppliedMigration(*row) for row in rows]


def pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    """Migrations not yet applied; refuses a ledger that disagrees with the files."""
    done = {m.version: m for m in applied(conn)}
    for migration in migrations:
        recorded = done.get(migration.version)
        if recorded is not None and recorded.checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.path.name} was changed after it was applied "
                f"(checksum {recorded.checksum[:12]} in the ledger, {migration.checksum[:12]} on "
                f"disk); add a new migration instead of editing an applied one"
            )
    known = {m.version for m in migrations}
    unknown = sorted(set(done) - known)
    if unknown:
        raise MigrationError(f"the database has migrations this code does not know: {unknown}")
    return [m for m in migrations if m.version not in done]


def upgrade(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations, each in its own transaction; returns those applied."""
    migrations = discover() if migrations is None else migrations
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_UPGRADE_LOCK_KEY,))
    try:
        with conn.transaction():
            _ensure_ledger(conn)
        todo = pending(conn, migrations)
        for migration in todo:
            started = time.perf_counter()
            try:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO predict_meta.schema_migrations "
                        "(version, name, checksum, duration_ms) VALUES (%s, %s, %s, %s)",
                        (
                            migration.version,
                            migration.name,
                            migration.checksum,
                            int((time.perf_counter() - started) * 1000),
                        ),
                    )
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {migration.path.name} failed and was rolled back: "
                    f"{str(exc).strip()}"
                ) from exc
        return todo
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_UPGRADE_LOCK_KEY,))
