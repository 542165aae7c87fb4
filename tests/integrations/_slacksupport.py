"""Test-only support of the Slack tests: requests signed exactly as Slack signs them (a form
body, ``X-Slack-Request-Timestamp``, ``X-Slack-Signature: v0=<hex HMAC-SHA256>``, written
here from Slack's documentation, not with stackyard's own ``sign``), and a loopback receiver
standing in for Slack's ``response_url``."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any
from urllib.parse import urlencode

import httpx

TEAM = "T0TEST"
PATH = "/api/v1/integrations/slack/commands"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` and the hex HMAC-SHA256, keyed with the signing secret, of ``v0:ts:body``."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it, by path."""

    def __init__(self) -> None:
        self.posts: dict[str, list[dict[str, Any]]] = {}
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver.changed:
                    receiver.posts.setdefault(self.path, []).append(body)
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, path: str, timeout: float = 180) -> dict[str, Any]:
        """The first message posted to ``path`` (waits for it; fails past ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.posts.get(path):
                left = deadline - time.monotonic()
                assert left > 0, f"nothing was posted to {path}"
                self.changed.wait(left)
            return self.posts[path][0]


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A running ``Receiver``."""
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@dataclass
class Slack:
    """Slack, as far as stackyard sees it: signed slash commands to the server, and the
    receiver their results are posted to. Every response and message is kept (``seen``)."""

    url: str
    secret: str
    receiver: Receiver
    env: str
    settings: Any
    logs: Any
    seen: list[str] = field(default_factory=list)
    _n: Iterator[int] = field(default_factory=lambda: count(1))

    def send(
        self,
        text: str,
        *,
        user: str,
        team: str = TEAM,
        secret: str | None = None,
        timestamp: str | None = None,
        response_url: str | None = None,
    ) -> tuple[httpx.Response, str]:
        """POST ``/stackyard text`` as Slack user ``user``; the response and the path its
        result will be posted to."""
        path = f"/hook/{next(self._n)}"
        fields = {
            "token": "legacy-verification-token",
            "team_id": team,
            "team_domain": "acme",
            "channel_id": "C0TEST",
            "channel_name": "platform",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/stackyard",
            "text": text,
            "api_app_id": "A0TEST",
            "response_url": response_url or self.receiver.url + path,
            "trigger_id": "1.2.3",
        }
        body = urlencode(fields).encode()
        ts = timestamp or str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature(secret or self.secret, ts, body),
        }
        response = httpx.post(self.url + PATH, content=body, headers=headers, timeout=30)
        self.seen.append(response.text)
        return response, path

    def ask(self, text: str, *, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send a command, check its ephemeral acknowledgement; the acknowledgement and the
        result posted to its ``response_url``."""
        response, path = self.send(text, user=user)
        assert response.status_code == 200, response.text
        ack = response.json()
        assert ack["response_type"] == "ephemeral"
        message = self.receiver.wait(path)
        self.seen.append(json.dumps(message))
        return ack, message


def text_of(message: dict[str, Any]) -> str:
    """A message's text and the text of its blocks, one string."""
    parts = [message.get("text", "")]
    parts += [b["text"]["text"] for b in message.get("blocks", []) if b.get("type") == "section"]
    return "\n".join(parts)
