"""Support for the remote webhook tests: a receiver on 127.0.0.1 that answers every POST with
200 and keeps what it got (the signature is checked by tests/ops; here only the count and the
secret's absence matter)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Hooked", "receiving"]


@dataclass
class Hooked:
    """The receiver's URL and the bodies it got, in order."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def receiving() -> Iterator[Hooked]:
    """A webhook receiver (http.server in a thread) on a free 127.0.0.1 port."""
    box: dict[str, Hooked] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got = box["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with got.lock:
                got.bodies.append(body)
                got.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Hooked(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
