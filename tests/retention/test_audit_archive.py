"""The audit log's cold storage: exactly the archived rows in Parquet, verified before any
delete; a failure between writing and deleting keeps every row; the app role still cannot
delete audit rows."""

from __future__ import annotations

from datetime import UTC

import dagster as dg
import fsspec
import psycopg
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem
from psycopg import errors

from predict_pipeline.db.connection import APP_ROLE, connect
from predict_pipeline.retention.audit_archive import COLUMNS, archive_audit_log
from predict_pipeline.retention.policy import RetentionPolicy
from tests.retention.conftest import NOW, audit, days_ago


def _db_rows(conn: psycopg.Connection, ids) -> list[tuple]:
    select = ", ".join(f"{c}::text" for c in COLUMNS)
    return conn.execute(
        f"SELECT {select}, created_at FROM prediction_audit_log"  # noqa: S608
        " WHERE id = ANY(%s) ORDER BY created_at, id",
        (list(ids),),
    ).fetchall()


def _archived_rows(root) -> list[tuple]:
    rows = []
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        for record in table.to_pylist():
            created = record["created_at"].astimezone(UTC)
            rows.append(tuple(record[c] for c in COLUMNS) + (created,))
    return sorted(rows, key=lambda r: (r[-1], r[0]))


def _audit_ids(conn) -> set:
    return {row[0] for row in conn.execute("SELECT id FROM prediction_audit_log")}


def test_archive_holds_exactly_the_archived_rows_and_only_old_ones_are_deleted(
    admin_conn, maint, tmp_path
):
    ancient = [audit(admin_conn, days_ago(800 + i)) for i in range(3)]  # > 2 years
    old = [audit(admin_conn, days_ago(91)), audit(admin_conn, days_ago(200))]
    young = [audit(admin_conn, days_ago(89))]
    expected = _db_rows(admin_conn, ancient + old)
    root = tmp_path / "archive"

    report = archive_audit_log(maint, str(root), RetentionPolicy(), NOW, dry_run=False)

    assert _archived_rows(root) == expected  # read back: the same rows, every column
    files = sorted(p.relative_to(root).parts[:2] for p in root.rglob("*.parquet"))
    assert all(part[0] == "prediction_audit_log" for part in files)
    assert all(part[1].startswith("month=") for part in files)
    assert _audit_ids(admin_conn) == set(old + young)  # archived past 2 years: deleted
    assert report.counts["audit_rows_archived"] == 5
    assert report.counts["audit_rows_deleted"] == 3
    assert report.counts["audit_rows_kept_unarchived"] == 0
    assert report.counts["archive_bytes_written"] == sum(
        p.stat().st_size for p in root.rglob("*.parquet")
    )
    ledger = admin_conn.execute(
        "SELECT sum(row_count), sum(rows_deleted) FROM predict_meta.audit_archive"
    ).fetchone()
    assert ledger == (5, 3)

    # The next day finds nothing new to archive and nothing more to delete.
    again = archive_audit_log(maint, str(root), RetentionPolicy(), NOW, dry_run=False)
    assert again.counts["audit_rows_archived"] == 0 and again.counts["audit_rows_deleted"] == 0


def test_rows_missing_from_the_archive_are_never_deleted(admin_conn, maint, tmp_path):
    audit(admin_conn, days_ago(800))
    root = tmp_path / "archive"
    archive_audit_log(maint, str(root), RetentionPolicy(audit_delete_days=900), NOW, dry_run=False)
    # A row written late into an already archived range is in no file: it stays.
    late = audit(admin_conn, days_ago(801))
    report = archive_audit_log(maint, str(root), RetentionPolicy(), NOW, dry_run=False)
    assert _audit_ids(admin_conn) == {late}
    assert report.counts["audit_rows_deleted"] == 1
    assert report.counts["audit_rows_kept_unarchived"] == 1


class FailingReadFileSystem(LocalFileSystem):
    """Writes land; reading back (the verification before any delete) fails."""

    protocol = "failread"
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("failread://"))

    def _open(self, path, mode="rb", **kwargs):
        if "r" in mode:
            raise OSError("injected: cold storage unreadable")
        return super()._open(path, mode=mode, **kwargs)


def test_failure_after_writing_keeps_every_row_and_fails_the_run(
    admin_conn, run_retention, dagster_instance, tmp_path
):
    fsspec.register_implementation("failread", FailingReadFileSystem, clobber=True)
    ids = {audit(admin_conn, days_ago(800)), audit(admin_conn, days_ago(100))}
    root = tmp_path / "cold"

    result = run_retention(archive_url=f"failread://{root}")

    assert not result.success
    run = dagster_instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failed == ["audit_log_archive"]
    assert list(root.rglob("*.parquet"))  # the file was written ...
    assert _audit_ids(admin_conn) == ids  # ... yet no row was deleted
    assert admin_conn.execute("SELECT count(*) FROM predict_meta.audit_archive").fetchone() == (0,)

    # With readable storage the same rows are archived and the ancient one deleted.
    healthy = run_retention(archive_url=str(root))
    assert healthy.success
    assert len(_audit_ids(admin_conn)) == 1


@pytest.mark.parametrize("role", [APP_ROLE])
def test_app_role_still_cannot_delete_audit_rows(db_url, admin_conn, role):
    audit_id = audit(admin_conn, days_ago(800))
    with connect(db_url, role=role, autocommit=True) as app:
        with pytest.raises(errors.InsufficientPrivilege):
            app.execute("DELETE FROM prediction_audit_log WHERE id = %s", (audit_id,))
        with pytest.raises(errors.InsufficientPrivilege):
            app.execute("SELECT predict_drop_snapshot_partitions(now(), true)")
    assert _audit_ids(admin_conn) == {audit_id}
