"""RabbitMQ plumbing: the management HTTP API client, the error boundary, names and labels.

Every call goes through the management plugin's HTTP API (``/api/...``) with httpx. Names
reach a URL only through ``segment`` (every byte but ``A-Za-z0-9-_~`` percent-encoded, the dot
included, so ``a/../b`` stays one path segment), and only in a request path: never in a
message that could carry a secret. The admin credentials travel as HTTP basic auth, never in
the request URL.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, unquote, urlsplit

from stackyard.errors import ForeignObjectError, ProviderError, ProviderPermanentError
from stackyard.lazy import lazy
from stackyard.providers import timeouts
from stackyard.providers.api import NamingRule, ResourceMeta
from stackyard.providers.boundary import translate

if TYPE_CHECKING:
    import httpx
else:  # imported on first use: naming and planning never talk to the server
    httpx = lazy("httpx")

__all__ = [
    "LABEL_TAG_PREFIX",
    "NAMING",
    "PASSWORD_DRIFTED",
    "Clients",
    "ManagementApi",
    "RabbitApiError",
    "hash_password",
    "label_of_tag",
    "name_problem",
    "provider_errors",
    "refuse",
    "refuse_foreign",
    "segment",
    "tag_of_label",
    "verify_password",
]

#: Physical names: lower-case letters, digits and '-' (valid vhost and user names anywhere).
NAMING = NamingRule(max_length=63, allowed="a-z0-9", separator="-")
#: A stackyard limit: RabbitMQ has none, but nothing longer is a sensible vhost or user name.
MAX_NAME_BYTES = 255
#: User tags are Erlang atoms: at most 255 characters, Latin-1 only.
MAX_TAG_LENGTH = 255
#: Every ownership label starts so; its user tag (the label, percent-encoded) does too.
LABEL_TAG_PREFIX = "stackyard:"
#: What observe reports as the password when the user's hash does not verify the desired one.
PASSWORD_DRIFTED = "<password changed outside stackyard>"  # noqa: S105  (a marker)
#: The algorithm stackyard hashes with (RabbitMQ's default since 3.6).
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
_HASHES = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
#: Characters kept as they are in a user tag (the rest of the label is percent-encoded).
_TAG_SAFE = ":#/.@+=-_~"
_SEGMENT_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")
_TRANSIENT_STATUS = frozenset({408, 429, 502, 503, 504})


class RabbitApiError(ProviderError):
    """An unexpected HTTP status from the management API (names are never in the text). It
    never leaves the provider: the boundary translates it into a transient or permanent error."""

    def __init__(self, status: int, method: str, endpoint: str, reason: str) -> None:
        super().__init__(f"HTTP {status} on {method} {endpoint}: {reason}")
        self.status = status


def segment(name: str) -> str:
    """``name`` as one URL path segment: every byte but ``A-Za-z0-9-_~`` percent-encoded."""
    return "".join(
        ch if ch in _SEGMENT_SAFE else "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
        for ch in name
    )


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a vhost or user name, or ``None`` when it can.

    Any text is safe to send (``segment``); these checks keep out what the API cannot
    address (``.`` and ``..``, which its HTTP server normalises away), names longer than
    ``MAX_NAME_BYTES``, and control, format or unassigned characters (NUL, U+202E...).
    """
    if not name:
        return "is empty"
    if name in {".", ".."}:
        return "is a dot segment, which the management API cannot address"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "contains a control, format or unassigned character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def checked_name(meta: ResourceMeta, what: str, name: str) -> str:
    """``name``, or a ``ProviderPermanentError`` saying why it cannot be one."""
    problem = name_problem(name)
    if problem:
        refuse(meta.address, f"The {what} name {name!r} {problem}")
    return name


def tag_of_label(label: str) -> str:
    """The user tag that carries ``label`` (percent-encoded: tags are Latin-1 atoms, and a
    comma would split them)."""
    return quote(label, safe=_TAG_SAFE)


def label_of_tag(tags: Iterable[Any]) -> str | None:
    """The ownership label among a user's tags, or ``None``."""
    for tag in tags:
        text = str(tag)
        if text.startswith(LABEL_TAG_PREFIX):
            return unquote(text)
    return None


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password)),
    with a random 4-byte salt, so the plaintext never crosses the wire."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def verify_password(password: str, password_hash: str, algorithm: str) -> bool:
    """Whether ``password_hash`` (of ``algorithm``, as the API reports it) is ``password``'s."""
    hasher = _HASHES.get(algorithm)
    if hasher is None or not password_hash:
        return False
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except ValueError:
        return False
    salt, digest = raw[:4], raw[4:]
    expected = hasher(salt + password.encode("utf-8")).digest()
    return secrets.compare_digest(digest, expected)


def _describe(exc: Exception) -> str:
    if isinstance(exc, RabbitApiError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"the management API did not answer in time (limit: {timeouts.OPERATION_ENV})"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect to the management API (is the management plugin enabled?)"
    return f"{type(exc).__name__}: {exc}"


def _transient(exc: Exception) -> bool:
    if isinstance(exc, RabbitApiError):
        return exc.status in _TRANSIENT_STATUS
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def provider_errors(address: str, *, secrets: Iterable[str] = ()) -> AbstractContextManager[None]:
    """The one boundary where httpx exceptions and unexpected API answers become stackyard's.

    Lost or refused connections, timeouts and a busy server (408, 429, 502-504) are
    transient; refused credentials (401), missing rights (403), bad requests (400) and
    anything else are permanent. Messages are redacted of ``secrets``; when the original
    text held one, the cause is not chained either.
    """
    return translate(
        address,
        service="RabbitMQ",
        catch=(RabbitApiError, httpx.HTTPError, httpx.InvalidURL),
        transient=_transient,
        describe=_describe,
        secrets=secrets,
    )


def refuse(address: str, message: str, *, hint: str | None = None) -> NoReturn:
    """Raise the permanent error every refusal in this provider uses."""
    raise ProviderPermanentError(message, address=address, hint=hint)


def refuse_foreign(meta: ResourceMeta, what: str, name: str, why: str) -> NoReturn:
    """Refuse an object that exists and is not ours, before anything is written."""
    raise ForeignObjectError(
        f"The RabbitMQ {what} {name!r} exists and is not managed by this environment ({why})",
        address=meta.address,
        hint="It is not this installation's: remove or rename it, or choose another name. "
        "Taking over an existing object ('stackyard adopt') is not available yet.",
    )


def ownership(meta: ResourceMeta, name: str, label: str | None) -> tuple[bool, str]:
    """Ours only when the object carries exactly our label (its create is one request, so
    no crash leaves one of ours unlabelled)."""
    if label == meta.label:
        return True, ""
    if not label:
        return False, f"{name!r} exists without a stackyard label"
    return False, f"{name!r} is labelled {label!r}, not {meta.label!r}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A management API: its base URL (no credentials) and the admin's."""

    base: str
    username: str
    password: str


def parse_server(url: str, address: str) -> Endpoint:
    """The endpoint of a management URL ``http[s]://user:password@host:port[/prefix]``.

    Never echoes the URL: it holds the admin password.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        refuse(address, "The server is not a valid RabbitMQ management URL")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        refuse(
            address,
            "The server is not a valid RabbitMQ management URL",
            hint="Use http://<admin>:<password>@<host>:<management port>, e.g. port 15672.",
        )
    if parts.username is None:
        refuse(address, "The management URL names no admin user", hint="Put it in the URL.")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path.rstrip('/')}"
    return Endpoint(base, unquote(parts.username), unquote(parts.password or ""))


def url_secrets(url: str) -> list[str]:
    """The secret parts of a management URL: the URL, and its password (raw and decoded)."""
    out = [url]
    try:
        raw = urlsplit(url).password
    except ValueError:
        raw = None
    if raw:
        out += [raw, unquote(raw)]
    return out


class ManagementApi:
    """One management API, spoken through a shared httpx client."""

    def __init__(self, client: httpx.Client, endpoint: Endpoint) -> None:
        self._client = client
        self._auth = (endpoint.username, endpoint.password)
        self._base = endpoint.base

    def _url(self, *parts: str) -> str:
        return f"{self._base}/api/" + "/".join(segment(p) for p in parts)

    def _send(self, method: str, parts: tuple[str, ...], **kw: Any) -> httpx.Response:
        return self._client.request(method, self._url(*parts), auth=self._auth, **kw)

    @staticmethod
    def _fail(response: httpx.Response, method: str, parts: tuple[str, ...]) -> NoReturn:
        # the first segment is a fixed word (``vhosts``, ``users``...); the rest may be names,
        # which stay out of messages
        endpoint = "/api/" + "/".join([parts[0], *("…" for _ in parts[1:])])
        try:
            body = response.json()
            reason = (
                str(body.get("reason") or body.get("error") or "") if isinstance(body, dict) else ""
            )
        except ValueError:
            reason = ""
        raise RabbitApiError(
            response.status_code, method, endpoint, reason[:200] or response.reason_phrase
        )

    def get(self, *parts: str, params: Mapping[str, str] | None = None) -> Any:
        """The JSON at ``/api/<parts>``, or ``None`` when it is not found (404)."""
        response = self._send("GET", parts, params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self._fail(response, "GET", parts)
        return response.json()

    def put(self, *parts: str, body: Mapping[str, Any]) -> None:
        """Create or replace ``/api/<parts>`` with ``body``."""
        response = self._send("PUT", parts, json=dict(body))
        if response.status_code not in (200, 201, 204):
            self._fail(response, "PUT", parts)

    def delete(self, *parts: str) -> bool:
        """Delete ``/api/<parts>``; False when it was not there (404)."""
        response = self._send("DELETE", parts)
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 204):
            self._fail(response, "DELETE", parts)
        return True


class Clients:
    """httpx clients, one per management base URL, shared by threads (httpx is thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, httpx.Client] = {}

    def api(self, url: str, address: str) -> ManagementApi:
        """The management API that ``url`` (with its admin credentials) names."""
        endpoint = parse_server(url, address)
        with self._lock:
            client = self._clients.get(endpoint.base)
            if client is None:
                limits = timeouts.current()
                client = httpx.Client(
                    timeout=httpx.Timeout(limits.operation, connect=limits.connect),
                    follow_redirects=False,
                    # straight to the server, as the other providers connect: a proxy from the
                    # environment would see the admin's basic auth
                    trust_env=False,
                )
                self._clients[endpoint.base] = client
        return ManagementApi(client, endpoint)

    def close(self) -> None:
        """Close every client's connections."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()
