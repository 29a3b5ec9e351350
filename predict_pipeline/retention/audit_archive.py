"""The audit log's cold storage: rows past 90 days archived as Parquet (a file per time slice,
partitioned by month), each file read back and verified — row count and a checksum of the
rows — before it is recorded; rows past two years deleted only if found in a verified file.

Layout: ``{root}/prediction_audit_log/month=YYYY-MM/audit_<from>_<to>.parquet``, ``root`` a
local directory or any fsspec URL. The ledger is predict_meta.audit_archive.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec
import orjson
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from predict_pipeline.db.rows import one_row
from predict_pipeline.retention.policy import RetentionPolicy
from predict_pipeline.retention.report import StepReport
from predict_pipeline.retention.snapshots import next_month

TABLE = "prediction_audit_log"
# Every column as text (UUIDs, inet, JSONB exactly as PostgreSQL prints them) except the time.
COLUMNS = (
    "id",
    "actor_id",
    "actor_type",
    "actor_ip",
    "actor_user_agent",
    "action",
    "resource_type",
    "resource_id",
    "details",
    "previous_state",
    "new_state",
    "request_id",
    "service",
    "severity",
)
SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in COLUMNS]
    + [pa.field("created_at", pa.timestamp("us", tz="UTC"))]
)
_SELECT = sql.SQL(
    "SELECT {}, created_at FROM prediction_audit_log"
    " WHERE created_at >= %(lo)s AND created_at < %(hi)s ORDER BY created_at, id"
).format(sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in COLUMNS))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_READ_CHUNK = 1 << 20


class ArchiveVerificationError(RuntimeError):
    """An archive file read back differs from the rows written: nothing is deleted."""


@dataclass(frozen=True, slots=True)
class ArchivedSlice:
    range_start: datetime
    range_end: datetime
    url: str | None
    row_count: int
    rows_sha256: str
    file_sha256: str | None
    file_bytes: int


class RowDigest:
    """SHA-256 of rows in a canonical form, the same whether read from PostgreSQL or Parquet."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.rows = 0

    def update(self, values: Iterable[Any]) -> None:
        canonical = [
            (v - _EPOCH) // timedelta(microseconds=1) if isinstance(v, datetime) else v
            for v in values
        ]
        self._hash.update(orjson.dumps(canonical))
        self._hash.update(b"\n")
        self.rows += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def archive_root(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, base = fsspec.core.url_to_fs(url.rstrip("/"))
    return fs, base


def slice_path(base: str, lo: datetime, hi: datetime) -> str:
    stamp = "%Y%m%dT%H%M%S%fZ"
    return f"{base}/{TABLE}/month={lo:%Y-%m}/audit_{lo:{stamp}}_{hi:{stamp}}.parquet"


def _slices(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    lo = start
    while lo < end:
        hi = min(next_month(lo), end)
        yield lo, hi
        lo = hi


def _write_slice(
    conn: psycopg.Connection, lo: datetime, hi: datetime, sink, batch_size: int
) -> RowDigest:
    """Stream the slice's rows from a server-side cursor into a Parquet file."""
    digest = RowDigest()
    with conn.transaction(), conn.cursor(name="audit_archive") as cur:
        cur.execute(_SELECT, {"lo": lo, "hi": hi})
        with pq.ParquetWriter(sink, SCHEMA, compression="zstd") as writer:
            while rows := cur.fetchmany(batch_size):
                for row in rows:
                    digest.update(row)
                columns = [
                    pa.array(values, type=field.type)
                    for values, field in zip(zip(*rows, strict=True), SCHEMA, strict=True)
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=SCHEMA))
    return digest


def _file_sha256(opener) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with opener() as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _read_back(fs: fsspec.AbstractFileSystem, path: str) -> RowDigest:
    digest = RowDigest()
    with fs.open(path, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches():
            for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                digest.update(row)
    return digest


def _archive_slice(
    conn: psycopg.Connection,
    fs: fsspec.AbstractFileSystem,
    base: str,
    lo: datetime,
    hi: datetime,
    *,
    batch_size: int,
    dry_run: bool,
) -> ArchivedSlice:
    with tempfile.TemporaryDirectory(prefix="predict-audit-") as tmp:
        local = os.path.join(tmp, "slice.parquet")
        written = _write_slice(conn, lo, hi, local, batch_size)
        if written.rows == 0:
            return ArchivedSlice(lo, hi, None, 0, written.hexdigest(), None, 0)
        local_sha, size = _file_sha256(lambda: open(local, "rb"))  # noqa: SIM115
        path = slice_path(base, lo, hi)
        if dry_run:
            return ArchivedSlice(
                lo,
                hi,
                fs.unstrip_protocol(path),
                written.rows,
                written.hexdigest(),
                local_sha,
                size,
            )
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(local, path)
    stored_sha, stored_size = _file_sha256(lambda: fs.open(path, "rb"))
    read = _read_back(fs, path)
    if (stored_sha, stored_size) != (local_sha, size) or (read.rows, read.hexdigest()) != (
        written.rows,
        written.hexdigest(),
    ):
        raise ArchiveVerificationError(
            f"archive {fs.unstrip_protocol(path)} read back {read.rows} rows (expected "
            f"{written.rows}) or a different checksum: nothing of [{lo}, {hi}) is deleted"
        )
    return ArchivedSlice(
        lo, hi, fs.unstrip_protocol(path), read.rows, read.hexdigest(), stored_sha, stored_size
    )


def _archive(
    conn: psycopg.Connection,
    archive_url: str,
    policy: RetentionPolicy,
    now: datetime,
    report: StepReport,
    *,
    dry_run: bool,
) -> list[ArchivedSlice]:
    fs, base = archive_root(archive_url)
    end = policy.cutoff(now, "audit_archive_days")
    start = one_row(conn.execute("SELECT max(range_end) FROM predict_meta.audit_archive"))[0]
    if start is None:
        start = one_row(conn.execute("SELECT min(created_at) FROM prediction_audit_log"))[0]
    done: list[ArchivedSlice] = []
    if start is None:
        return done
    for lo, hi in _slices(start, end):
        archived = _archive_slice(
            conn, fs, base, lo, hi, batch_size=policy.batch_size, dry_run=dry_run
        )
        if not dry_run:
            # Recorded only once verified: the ledger is what allows deletion.
            conn.execute(
                """INSERT INTO predict_meta.audit_archive
                     (range_start, range_end, path, row_count, rows_sha256, file_sha256,
                      file_bytes)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (
                    archived.range_start,
                    archived.range_end,
                    archived.url,
                    archived.row_count,
                    archived.rows_sha256,
                    archived.file_sha256,
                    archived.file_bytes,
                ),
            )
        report.add("audit_rows_archived", archived.row_count)
        report.add("archive_bytes_written", archived.file_bytes)
        report.add("archive_files_written", 1 if archived.url else 0)
        done.append(archived)
    report.details["archived_before"] = end.isoformat()
    report.details["archive_files"] = [s.url for s in done if s.url]
    return done


def archived_ids(url: str, file_sha256: str | None) -> list[str]:
    """The ids in an archive file, after checking the file is the one that was verified
    (a ledger row without a checksum was never verified: refused the same way)."""
    fs, path = fsspec.core.url_to_fs(url)
    sha, _ = _file_sha256(lambda: fs.open(path, "rb"))
    if sha != file_sha256:
        raise ArchiveVerificationError(f"archive {url} changed since it was verified")
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle, columns=["id"]).column("id").to_pylist()


def _purge(
    conn: psycopg.Connection,
    policy: RetentionPolicy,
    now: datetime,
    report: StepReport,
    would_archive: list[ArchivedSlice],
    *,
    dry_run: bool,
) -> None:
    cutoff = policy.cutoff(now, "audit_delete_days")
    ledger = [
        ArchivedSlice(*row)
        for row in conn.execute(
            """SELECT range_start, range_end, path, row_count, rows_sha256, file_sha256,
                      file_bytes
               FROM predict_meta.audit_archive
               WHERE purged_at IS NULL AND range_start < %s ORDER BY range_start""",
            (cutoff,),
        )
    ]
    deleted = 0
    for piece in ledger:
        ids = archived_ids(piece.url, piece.file_sha256) if piece.url else []
        gone = 0
        for i in range(0, len(ids), policy.batch_size):
            batch = ids[i : i + policy.batch_size]
            if dry_run:
                gone += one_row(
                    conn.execute(
                        "SELECT count(*) FROM prediction_audit_log"
                        " WHERE id = ANY(%s::uuid[]) AND created_at < %s",
                        (batch, cutoff),
                    )
                )[0]
                continue
            with conn.transaction():
                gone += conn.execute(
                    "DELETE FROM prediction_audit_log"
                    " WHERE id = ANY(%s::uuid[]) AND created_at < %s",
                    (batch, cutoff),
                ).rowcount
        deleted += gone
        if not dry_run:
            conn.execute(
                """UPDATE predict_meta.audit_archive
                   SET rows_deleted = rows_deleted + %s,
                       purged_at = CASE WHEN range_end <= %s THEN %s END
                   WHERE range_start = %s""",
                (gone, cutoff, now, piece.range_start),
            )
    if dry_run:
        # What this run's archiving would have recorded is deletable the same way.
        for piece in would_archive:
            if piece.range_start < cutoff:
                deleted += one_row(
                    conn.execute(
                        "SELECT count(*) FROM prediction_audit_log"
                        " WHERE created_at >= %s AND created_at < %s",
                        (piece.range_start, min(piece.range_end, cutoff)),
                    )
                )[0]
    # Past the deletion age yet in no verified file (e.g. written late into a range already
    # archived): kept, never lost, and counted so someone looks.
    past_age = one_row(
        conn.execute("SELECT count(*) FROM prediction_audit_log WHERE created_at < %s", (cutoff,))
    )[0]
    report.add("audit_rows_deleted", deleted)
    report.add("audit_rows_kept_unarchived", past_age - deleted if dry_run else past_age)
    report.details["deleted_before"] = cutoff.isoformat()


def archive_audit_log(
    conn: psycopg.Connection,
    archive_url: str,
    policy: RetentionPolicy,
    now: datetime,
    *,
    dry_run: bool,
) -> StepReport:
    """Archive, verify, record; then delete what is past the deletion age and archived.

    `conn` must act as the maintenance role: no other role may delete audit rows.
    """
    report = StepReport("audit_log", dry_run)
    for name in ("audit_rows_archived", "archive_bytes_written", "archive_files_written"):
        report.add(name, 0)  # the same keys every day, for the asset's plots
    archived = _archive(conn, archive_url, policy, now, report, dry_run=dry_run)
    _purge(conn, policy, now, report, archived, dry_run=dry_run)
    return report
