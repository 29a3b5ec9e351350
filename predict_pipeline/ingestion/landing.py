"""The landing zone: raw pages as fetched, per feed and partition window, as gzip JSON Lines.

Layout: ``{root}/{source}/{feed_id}/{window_start:%Y-%m-%dT%H%MZ}/{name}.jsonl.gz``, or
``.../{window_start}_{window_end}/...`` for a window longer than an hour (a backfill fetches
up to a day at a time, see `history_chunks`). A polled feed writes one file per fetch
(``poll-<fetch time>-<run>``), so a window keeps every poll; a backfill writes
``backfill.jsonl.gz``, replaced whole and byte-identical for the same history (no fetch
times inside, gzip mtime 0). ``root`` is a local directory or any fsspec
URL (``s3://bucket/prefix`` with the matching fsspec package installed).
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec

from predict_pipeline.model import FetchWindow, PageRequest

BACKFILL_FILE = "backfill"
REJECTS_SUFFIX = ".rejects"


@dataclass(frozen=True, slots=True)
class LandedPage:
    """One response as it landed, with the request that produced it (never its headers)."""

    feed_id: str
    source: str
    endpoint: str
    request: dict[str, Any]
    status_code: int | None = None
    payload: Any = None  # decoded JSON body
    body_text: str | None = None  # non-JSON bodies (CSV uploads) and undecodable responses
    error: str | None = None  # why this page could not be read, when it could not
    fetched_at: str | None = None  # ISO-8601; None in backfill files (see module doc)
    feed_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def request_dict(request: PageRequest) -> dict[str, Any]:
        # Headers carry credentials: they never land.
        return {
            "endpoint": request.endpoint,
            "method": request.method,
            "url": request.url,
            "params": dict(request.params),
            "body": request.body,
            "context": dict(request.context),
        }

    def page_request(self) -> PageRequest:
        r = self.request
        return PageRequest(
            endpoint=r["endpoint"],
            url=r["url"],
            params=dict(r.get("params") or {}),
            method=r.get("method", "GET"),
            body=r.get("body"),
            context=dict(r.get("context") or {}),
        )


@dataclass(frozen=True, slots=True)
class LandingFile:
    path: str
    pages: int
    bytes_written: int


_KEY_FORMAT = "%Y-%m-%dT%H%MZ"
_HOUR = timedelta(hours=1)


def window_key(window: FetchWindow) -> str:
    start = f"{window.start.astimezone(UTC):{_KEY_FORMAT}}"
    if window.end - window.start <= _HOUR:
        return start
    return f"{start}_{window.end.astimezone(UTC):{_KEY_FORMAT}}"


def key_window(key: str) -> FetchWindow:
    """The window a directory name stands for (the inverse of `window_key`)."""
    first, _, last = key.partition("_")
    start = datetime.strptime(first, _KEY_FORMAT).replace(tzinfo=UTC)
    end = datetime.strptime(last, _KEY_FORMAT).replace(tzinfo=UTC) if last else start + _HOUR
    return FetchWindow(start, end)


def file_window(path: str) -> FetchWindow:
    """The fetch window of a landed page file, from its directory."""
    return key_window(path.rsplit("/", 2)[1])


class LandingZone:
    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.fs, self._base = fsspec.core.url_to_fs(self.root)

    def _dir(self, source: str, feed_id: str, window: FetchWindow) -> str:
        if window.end - window.start > _HOUR and window.first_day != window.last_day:
            raise ValueError(f"a landed window may not cross a UTC midnight: {window}")
        return f"{self._base}/{source}/{feed_id}/{window_key(window)}"

    def write(
        self,
        source: str,
        feed_id: str,
        window: FetchWindow,
        name: str,
        pages: Iterable[LandedPage],
    ) -> LandingFile:
        """Write one file atomically (temporary name, then rename): readers never see half."""
        buffer = io.BytesIO()
        count = 0
        # Level 6 (zlib's default): a third of level 9's time for 4 % more bytes.
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as gz:
            for page in pages:
                gz.write(_encode(page))
                count += 1
        data = buffer.getvalue()
        directory = self._dir(source, feed_id, window)
        self.fs.makedirs(directory, exist_ok=True)
        final = f"{directory}/{name}.jsonl.gz"
        self._replace(final, f"{directory}/.{name}.{uuid.uuid4().hex}.tmp", data)
        return LandingFile(path=final, pages=count, bytes_written=len(data))

    def _replace(self, final: str, temporary: str, data: bytes) -> None:
        """Write `data` under a temporary name, then rename it to `final`. On any failure (a
        full disk) the temporary file is removed, so a failed write leaves nothing behind."""
        try:
            with self.fs.open(temporary, "wb") as handle:
                handle.write(data)
            self.fs.mv(temporary, final)
        except BaseException:
            try:
                if self.fs.exists(temporary):
                    self.fs.rm(temporary)
            except OSError:
                pass  # the write's own error is the one to report
            raise

    def files(self, source: str, feed_id: str, window: FetchWindow) -> list[str]:
        """Page files of one feed and window, in name order (polls sort by fetch time)."""
        directory = self._dir(source, feed_id, window)
        if not self.fs.exists(directory):
            return []
        names = [p for p in self.fs.ls(directory, detail=False) if p.endswith(".jsonl.gz")]
        return sorted(p for p in names if not p.endswith(f"{REJECTS_SUFFIX}.jsonl.gz"))

    def window_files(self, window: FetchWindow) -> dict[tuple[str, str], list[str]]:
        """Every page file whose fetch window overlaps `window`, by (source, feed id), in path
        order: the hour windows inside it and any longer (backfill) window across it. Windows
        never cross a UTC midnight, so one listing per day of `window` finds them all."""
        paths: set[str] = set()
        day = window.first_day
        while day <= window.last_day:
            paths.update(self.fs.glob(f"{self._base}/*/*/{day:%Y-%m-%d}T*/*.jsonl.gz"))
            day += timedelta(days=1)
        found: dict[tuple[str, str], list[str]] = {}
        for path in sorted(paths):
            if path.endswith(f"{REJECTS_SUFFIX}.jsonl.gz"):
                continue
            try:
                landed = file_window(path)
            except ValueError:
                continue  # not a window directory of ours
            if landed.end <= window.start or landed.start >= window.end:
                continue
            source, feed_id = path.rsplit("/", 4)[1:3]
            found.setdefault((source, feed_id), []).append(path)
        return found

    def write_rejects(self, page_file: str, rows: list[dict[str, Any]]) -> str | None:
        """Rejected records of a page file, beside it (replaced on every validation)."""
        path = page_file.removesuffix(".jsonl.gz") + f"{REJECTS_SUFFIX}.jsonl.gz"
        if not rows:
            if self.fs.exists(path):
                self.fs.rm(path)
            return None
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
            for row in rows:
                gz.write(
                    # ASCII escapes: a rejected value may hold lone surrogates that UTF-8 refuses.
                    json.dumps(row, ensure_ascii=True, default=str, sort_keys=True).encode() + b"\n"
                )
        self._replace(path, f"{path}.{uuid.uuid4().hex}.tmp", buffer.getvalue())
        return path

    def read_rejects(self, page_file: str) -> list[dict[str, Any]]:
        path = page_file.removesuffix(".jsonl.gz") + f"{REJECTS_SUFFIX}.jsonl.gz"
        if not self.fs.exists(path):
            return []
        with self.fs.open(path, "rb") as handle, gzip.GzipFile(fileobj=handle) as gz:
            return [json.loads(line) for line in gz]

    def read(self, path: str) -> Iterator[LandedPage]:
        with self.fs.open(path, "rb") as handle, gzip.GzipFile(fileobj=handle) as gz:
            for line in gz:
                yield LandedPage(**json.loads(line))

    def read_window(self, source: str, feed_id: str, window: FetchWindow) -> Iterator[LandedPage]:
        for path in self.files(source, feed_id, window):
            yield from self.read(path)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as handle:
            return handle.read()


_PAGE_FIELDS = tuple(f.name for f in fields(LandedPage))


def landing_fault(exc: OSError) -> str:
    """One line on why the landing zone refused a write ("No space left on device (ENOSPC)")."""
    if exc.strerror:
        code = errno.errorcode.get(exc.errno or 0)
        return f"{exc.strerror} ({code})" if code else exc.strerror
    return str(exc) or type(exc).__name__


def poll_file_name(fetched_at: datetime, feed_run_id: str) -> str:
    return f"poll-{fetched_at:%Y%m%dT%H%M%S%fZ}-{feed_run_id[:8]}"


def _encode(page: LandedPage) -> bytes:
    # Shallow: dataclasses.asdict would deep-copy every payload before encoding it.
    row = {name: getattr(page, name) for name in _PAGE_FIELDS}
    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate a source sent as "\ud800": kept escaped
        text = json.dumps(row, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
        return text.encode("ascii") + b"\n"
