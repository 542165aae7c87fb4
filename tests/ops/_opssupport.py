"""Helpers of the webhook tests: a real receiver on 127.0.0.1 that checks stackyard's
signature, a small platform with webhooks, and a home to run them on."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Received", "Receiver", "platform_yaml", "receiving", "verify"]

#: The secret the webhooks of these tests sign with (in their server's environment).
SECRET = "whsec-canary-7f3a9c1e5b"
SECRET_ENV = "STACKYARD_TEST_WEBHOOK_SECRET"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: float = 300) -> bool:
    """A receiver's check of ``X-Stackyard-Signature: t=<unix>,v1=<hex>`` (as docs/webhooks.md
    shows it): the HMAC-SHA256 of ``<t>.<body>`` with the shared secret, recent enough."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - stamp) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the receiver got, and how it answers: ``fail_first`` requests get a 500."""

    url: str
    secret: str
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_type(self, type_: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("x-stackyard-event") == type_]


@contextmanager
def receiving(secret: str = SECRET, *, fail_first: int = 0) -> Iterator[Receiver]:
    """A webhook receiver (http.server in a thread) on a free 127.0.0.1 port."""
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            recv = box["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok = verify(recv.secret, headers.get("x-stackyard-signature", ""), body)
            with recv.lock:
                failing = len(recv.requests) < recv.fail_first
                code = 500 if failing else (200 if ok else 401)
                recv.requests.append(Received(self.path, headers, body, ok, code))
            reply = b"broken on purpose" if failing else b'{"ok": true}'
            self.send_response(code)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    box["r"] = Receiver(f"http://127.0.0.1:{port}/hook", secret, fail_first)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def platform_yaml(webhooks: str = "") -> str:
    """Two environment types (``lite``, TTL by default 30m and at most 1d; ``other``), two
    teams, and the given ``Webhook`` documents."""
    base = textwrap.dedent(
        """\
        apiVersion: stackyard.dev/v1
        kind: EnvironmentType
        metadata: {name: lite}
        spec:
          runtime: local
          ttl: {default: 30m, maximum: 1d}
        ---
        apiVersion: stackyard.dev/v1
        kind: EnvironmentType
        metadata: {name: other}
        spec: {runtime: local}
        ---
        apiVersion: stackyard.dev/v1
        kind: Team
        metadata: {name: team-a}
        spec: {members: []}
        ---
        apiVersion: stackyard.dev/v1
        kind: Team
        metadata: {name: team-b}
        spec: {members: []}
        """
    )
    return base + ("---\n" + textwrap.dedent(webhooks) if webhooks.strip() else "")


def webhook_doc(
    name: str,
    url: str,
    events: str = "['*']",
    filters: str = "{}",
    extra: str = "",
) -> str:
    """One ``Webhook`` document (YAML)."""
    return (
        "apiVersion: stackyard.dev/v1\n"
        "kind: Webhook\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  url: {url}\n"
        f"  events: {events}\n"
        f"  secret_env: {SECRET_ENV}\n"
        f"  filters: {filters}\n" + (f"  {extra}\n" if extra else "")
    )


def fresh_home(template: Path, home: Path) -> Path:
    """A copy of the template home."""
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(template, home)
    return home


def apply(ws: Any, directory: Path, text: str) -> None:
    """Write ``text`` as the platform folder and apply it."""
    from stackyard.environments.platform import apply_dir

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "platform.yaml").write_text(text)
    apply_dir(ws.platform, ws.access, directory, confirm=lambda _q: True)


def deliveries(ws: Any) -> list[dict[str, Any]]:
    """Every delivery row, oldest first."""
    import sqlalchemy as sa

    from stackyard.state.tables import webhook_deliveries

    with ws.store.reading() as conn:
        rows = conn.execute(
            sa.select(webhook_deliveries).order_by(
                webhook_deliveries.c.created_at, webhook_deliveries.c.event_seq
            )
        )
        return [dict(r) for r in rows.mappings()]
