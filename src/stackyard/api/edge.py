"""The edge: security headers on every response, the request body limit, and a log filter
that keeps tokens out of the server's log.

Both middlewares are plain ASGI so they wrap every response, the problem details and the
event streams included, without buffering a body.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackyard.api.problems import PROBLEM_JSON, simple

#: What every API response carries.
API_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
)
#: The interactive docs load Swagger UI's script and style from its CDN, nothing else.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    b"https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


class SecurityHeaders:
    """Adds ``API_HEADERS`` to every response (a looser CSP on the docs pages)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to its response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path") in DOCS_PATHS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                for name, value in API_HEADERS:
                    if name in names:
                        continue
                    docs_csp = docs and name == b"content-security-policy"
                    headers.append((name, DOCS_CSP if docs_csp else value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuses a request body larger than ``limit`` bytes with 413, whether it announces its
    length (refused before reading) or streams it (read up to the limit, then refused).

    A body within the limit is read here and handed on whole: the API's bodies are small
    JSON documents, and a handler never sees half of one.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body (up to the limit) and pass the request on; 413 past the limit."""
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = 0
                if announced > self.limit:
                    await self._refuse(send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        ]

        async def replay() -> Message:
            if pending:
                return pending.pop()
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            simple(
                413,
                "Request too large",
                f"The request body is larger than {self.limit} bytes",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


#: Bearer credentials and stackyard tokens, wherever they appear in a log line, and OAuth
#: authorization codes (the portal's OIDC callback URL carries one).
_SECRETS = re.compile(r"(?i)(bearer\s+)\S+|\bsy_[A-Za-z0-9_\-.]+|(token=|\bcode=)[^&\s\"]+")


#: What every match of ``_SECRETS`` contains (lower case): a line with none of them is kept
#: as it is without running the expression (the access log writes one line per request).
_MARKERS = ("bearer", "sy_", "token=", "code=")


def scrub(text: str) -> str:
    """``text`` with every bearer credential and stackyard token replaced by ``***``."""
    lowered = text.lower()
    if not any(m in lowered for m in _MARKERS):
        return text
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)


class NoSecrets(logging.Filter):
    """Rewrites a log record so that no token reaches a handler (the access log prints the
    request line, which a client may have put a token into)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the message and its arguments; keep the record."""
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if record.args:
            args: Any = record.args
            if isinstance(args, tuple):
                record.args = tuple(scrub(a) if isinstance(a, str) else a for a in args)
            elif isinstance(args, dict):
                record.args = {k: scrub(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


def guard_logs(*names: str) -> None:
    """Attach ``NoSecrets`` to the named loggers and to the root logger's handlers (once
    each): a logger's filter sees only what is logged on it, a handler's everything it
    writes, whichever logger it came from."""
    loggers = [
        logging.getLogger(n)
        for n in names or ("uvicorn", "uvicorn.access", "uvicorn.error", "stackyard")
    ]
    for target in [*loggers, *logging.getLogger().handlers]:
        if not any(isinstance(f, NoSecrets) for f in target.filters):
            target.addFilter(NoSecrets())
