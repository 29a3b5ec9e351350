"""Replay mode: a transport that serves recorded real payloads, so the pipeline runs offline
through the same client and adapters, and tests never touch the network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from predict_pipeline.http.errors import ReplayManifestError, redact_url

REPLAY_MANIFEST = "replay.json"
REPLAY_MISS_HEADER = "X-Replay-Miss"


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    method: str
    scheme: str
    host: str
    port: int | None
    path: str
    params: tuple[tuple[str, str], ...]
    file: Path
    status: int
    headers: tuple[tuple[str, str], ...]

    def matches(self, request: httpx.Request) -> bool:
        url = request.url
        if (self.method, self.scheme, self.host, self.port, self.path) != (
            request.method.upper(),
            url.scheme,
            url.host,
            url.port,
            url.path,
        ):
            return False
        return all(value in url.params.get_list(name) for name, value in self.params)


class ReplayTransport(httpx.BaseTransport):
    """Serves recorded bodies listed in `<directory>/replay.json`; never opens a socket.

    Manifest entries: {"method", "url" (scheme+host+path), "params" (optional subset that must
    match), "file" (relative to the directory, or absolute), "status" (default 200), "headers"
    (optional)}. The entry matching the most params wins; on a tie the earlier entry wins. A
    request nothing matches gets a 404 marked with X-Replay-Miss, which the client raises as
    ReplayMissError.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.manifest = self.directory / REPLAY_MANIFEST
        self.entries = _load_manifest(self.manifest)

    def find(self, request: httpx.Request) -> ReplayEntry | None:
        best: ReplayEntry | None = None
        for entry in self.entries:
            if entry.matches(request) and (best is None or len(entry.params) > len(best.params)):
                best = entry
        return best

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        entry = self.find(request)
        if entry is None:
            text = (
                f"no replay entry in {self.manifest} for "
                f"{request.method} {redact_url(str(request.url))}"
            )
            return httpx.Response(
                404,
                headers={REPLAY_MISS_HEADER: "1", "Content-Type": "text/plain; charset=utf-8"},
                content=text.encode("utf-8"),
            )
        headers = dict(entry.headers)
        if not any(name.lower() == "content-type" for name in headers):
            json_file = entry.file.suffix.lower() == ".json"
            headers["Content-Type"] = "application/json" if json_file else "text/plain"
        return httpx.Response(entry.status, headers=headers, content=entry.file.read_bytes())


def _load_manifest(manifest: Path) -> tuple[ReplayEntry, ...]:
    try:
        raw = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayManifestError(f"replay manifest {manifest} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ReplayManifestError(f"replay manifest {manifest} is not valid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise ReplayManifestError(f"replay manifest {manifest} must be a JSON list of entries")
    return tuple(_replay_entry(manifest, index, item) for index, item in enumerate(raw))


def _replay_entry(manifest: Path, index: int, item: Any) -> ReplayEntry:
    def fault(reason: str) -> ReplayManifestError:
        return ReplayManifestError(f"replay manifest {manifest} entry {index}: {reason}")

    if not isinstance(item, dict):
        raise fault("must be an object")
    for required in ("url", "file"):
        if not isinstance(item.get(required), str) or not item[required]:
            raise fault(f"{required!r} must be a non-empty string")
    url = httpx.URL(item["url"])
    if url.query or not url.host:
        raise fault("'url' must be scheme+host+path; put query parameters in 'params'")
    params = item.get("params") or {}
    headers = item.get("headers") or {}
    status = item.get("status", 200)
    if not isinstance(params, dict) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in params.values()
    ):
        raise fault("'params' must map names to strings or integers")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise fault("'headers' must map names to strings")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise fault(f"'status' must be an HTTP status code, got {status!r}")
    path = Path(item["file"])
    path = path if path.is_absolute() else manifest.parent / path
    if not path.is_file():
        raise fault(f"file {path} does not exist")
    return ReplayEntry(
        method=str(item.get("method", "GET")).upper(),
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        path=url.path,
        params=tuple((str(k), str(v)) for k, v in params.items()),
        file=path,
        status=status,
        headers=tuple(headers.items()),
    )
