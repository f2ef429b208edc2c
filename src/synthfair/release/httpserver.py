"""A small HTTP server with byte-range support, to serve a release directory on this machine.

Python's ``http.server.SimpleHTTPRequestHandler`` ignores ``Range`` headers, so an interrupted download from
it cannot resume. `RangeRequestHandler` answers a single ``Range: bytes=A-B`` (or ``A-``, ``-N``) with
``206 Partial Content`` and a ``Content-Range`` header, keeps connections alive (HTTP/1.1), and records
every response it sends (path, status, byte span, bytes written) in `ReleaseServer.served`.

    with serve("demo/release") as server:
        download(server.url, "copy")

or from a shell: ``python -m synthfair.release.httpserver RELEASE_DIR --port 8000``. It serves files only (no
directory listings) and binds to the loopback interface unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

logger = logging.getLogger(__name__)

SEND_BLOCK = 1 << 20  # bytes read from disk and written to the socket at a time
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class Served:
    """One response: ``start``/``end`` is the byte span of the file sent (end excluded)."""

    path: str
    method: str
    status: int
    start: int
    end: int
    sent: int  # body bytes actually written (less than end - start when the client hung up)


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of files under the served directory, honouring a single byte range."""

    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    ranges = True  # False: ignore Range headers, like servers that do not support them

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._respond(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(body=False)

    def body(self, path: Path, start: int, end: int) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of ``path``, in blocks; override to alter what is sent."""
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0 and (block := f.read(min(SEND_BLOCK, left))):
                left -= len(block)
                yield block

    def _inside_root(self, path: Path) -> bool:
        """Whether ``path`` is a regular file under the served directory with no symlink on the way: a link
        inside a release must not serve what lies outside it."""
        root = Path(self.directory).resolve()
        try:
            relative = path.resolve(strict=True).relative_to(root)
        except (OSError, ValueError):
            return False
        lexical = Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(self.directory)))
        return relative == lexical  # a link that stays inside the root still changes the path: refused

    def _respond(self, body: bool) -> None:
        with self.server.busy():
            self._send(body)

    def _send(self, body: bool) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file() or not self._inside_root(path):
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return
        size = path.stat().st_size
        span = parse_range(self.headers.get("Range"), size) if self.ranges else None
        if span == (size, size) and size > 0:  # unsatisfiable: starts at or after the end
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, size, size, 0)
            return
        start, end = span or (0, size)
        status = HTTPStatus.PARTIAL_CONTENT if span else HTTPStatus.OK
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes" if self.ranges else "none")
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        sent = 0
        try:
            for block in self.body(path, start, end) if body else ():
                self.wfile.write(block)
                sent += len(block)
        finally:
            self._record(status, start, end, sent)

    def _record(self, status: int, start: int, end: int, sent: int) -> None:
        path = self.path.split("?", 1)[0].lstrip("/")
        self.server.record(Served(path, self.command, int(status), start, end, sent))

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        logger.debug("%s %s", self.address_string(), format % args)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of one ``bytes=`` range; None: no usable range; ``(size, size)``: unsatisfiable."""
    match = RANGE.fullmatch((header or "").strip())
    if not match or size == 0 or match.groups() == ("", ""):
        return None  # absent, multiple ranges or another unit: answer with the whole file
    first, last = match.groups()
    if not first:  # suffix: the last N bytes
        return (max(size - int(last), 0), size) if int(last) > 0 else (size, size)
    start, end = int(first), min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None  # invalid range: ignored, as RFC 9110 says
    return (start, end) if start < size else (size, size)


class ReleaseServer(ThreadingHTTPServer):
    """A threading HTTP server over one directory; a context manager serving from a background thread."""

    daemon_threads = True

    def __init__(self, directory: str | Path, host: str, port: int, handler=RangeRequestHandler):
        super().__init__((host, port), partial(handler, directory=str(directory)))
        self.served: list[Served] = []  # responses sent; see wait_idle()
        self._lock = threading.Condition()
        self._responding = 0  # responses being sent now
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)

    @contextmanager
    def busy(self) -> Iterator[None]:
        with self._lock:
            self._responding += 1
        try:
            yield
        finally:
            with self._lock:
                self._responding -= 1
                self._lock.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> list[Served]:
        """``served`` once no response is being sent: a client can have all of a response before the
        server thread records it."""
        with self._lock:
            self._lock.wait_for(lambda: self._responding == 0, timeout)
            return list(self.served)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def handle_error(self, request, client_address) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def start(self) -> ReleaseServer:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="release-server", daemon=True
        )  # polls for shutdown every 0.05 s, so stopping is quick
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close kept-alive connections (so no client reuses them)."""
        self.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        self.server_close()

    def __enter__(self) -> ReleaseServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(
    directory: str | Path, port: int = 0, host: str = "127.0.0.1", handler=RangeRequestHandler
) -> ReleaseServer:
    """A started `ReleaseServer` for ``directory`` (``port=0``: any free port; see ``.url``). Stop it with
    ``.stop()`` or use it as a context manager."""
    return ReleaseServer(directory, host, port, handler).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a release directory over HTTP, with byte ranges.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves every interface")
    args = parser.parse_args(argv)
    server = serve(args.directory, args.port, args.host)
    print(f"serving {args.directory.resolve()} at {server.url} (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
