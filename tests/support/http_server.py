"""A real HTTP server on 127.0.0.1 whose answers each test scripts, path by path."""

from __future__ import annotations

import socket
import threading
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# ---------------------------------------------------------------------------------------------
# A scripted local server: a queue of responses per path


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    def __init__(self) -> None:
        self.script: dict[str, deque[Reply]] = defaultdict(deque)
        self.received: list[Received] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, *replies: Reply) -> None:
        self.script[path].extend(replies)

    def hits(self, path: str) -> int:
        return sum(1 for r in self.received if r.path == path)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.received.append(
                    Received(
                        self.command,
                        parts.path,
                        parts.query,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                queue = server.script[parts.path]
                reply = queue.popleft() if queue else Reply(599, b"unscripted path")
                if reply.delay:
                    threading.Event().wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (read-timeout test) and closed the socket

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def gzip_of_zeros(size: int) -> bytes:
    """`size` zero bytes (whole MiB), gzip-compressed: about a thousandth of the size."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, compressor.flush()])


# ---------------------------------------------------------------------------------------------
# A server that drips its answer: a byte at a time, never fast enough to end a read timeout


class DripServer:
    """Answers every connection with `200 OK` and a body of `length` bytes, sending one byte
    every `interval` seconds (from the first byte of the status line with `drip_headers`)."""

    def __init__(self, *, interval: float, length: int = 1000, drip_headers: bool = False):
        self.interval = interval
        self.length = length
        self.drip_headers = drip_headers
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.length}\r\n\r\n".encode()
        with connection:
            connection.recv(65536)  # the request (small, one read)
            try:
                if not self.drip_headers:
                    connection.sendall(head)
                    head = b""
                for byte in [head[i : i + 1] for i in range(len(head))] + [b"x"] * self.length:
                    if self._stop.wait(self.interval):
                        return
                    connection.sendall(byte)
                    self.bytes_sent += 1
            except OSError:
                return  # the client gave up: what the tests expect of it
