"""A plain static file server on 127.0.0.1 that honours HTTP Range requests, as a static host or CDN does.

Python's ``http.server`` ignores Range (it answers 200 with the whole file), and the pmtiles browser build refuses
that for an archive, so this handler answers ``Range: bytes=A-B`` with 206 and Content-Range. Every request is
logged (path, Range header, status, bytes sent) for the tests to check.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class RequestLog:
    """What the server answered: (path, Range header or None, status, body bytes)."""

    entries: list[tuple[str, str | None, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, range_header: str | None, status: int, n_bytes: int) -> None:
        """Log one answered request."""
        with self.lock:
            self.entries.append((path, range_header, status, n_bytes))


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single byte ranges (206, or 416 beyond the file)."""

    log: RequestLog

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        """A file, whole or the range asked for."""
        path = self.translate_path(self.path)
        wanted = self.headers.get("Range")
        if not wanted or not os.path.isfile(path):
            super().do_GET()
            self.log.add(self.path, wanted, 200, os.path.getsize(path) if os.path.isfile(path) else 0)
            return
        self._send_range(path, wanted)

    def end_headers(self) -> None:
        """Every answer says ranges are served."""
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def _send_range(self, path: str, wanted: str) -> None:
        size = os.path.getsize(path)
        match = _RANGE.match(wanted.strip())
        start = int(match.group(1)) if match else size
        end = min(int(match.group(2)) if match and match.group(2) else size - 1, size - 1)
        if start >= size or end < start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            self.log.add(self.path, wanted, 416, 0)
            return
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.log.add(self.path, wanted, 206, len(body))


@contextlib.contextmanager
def range_server(folder: Path) -> Iterator[tuple[str, RequestLog]]:
    """Serve ``folder`` on 127.0.0.1: (base URL with a trailing slash, the request log)."""
    log = RequestLog()
    handler = functools.partial(type("Handler", (RangeHandler,), {"log": log}), directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", log
    finally:
        server.shutdown()
        server.server_close()
