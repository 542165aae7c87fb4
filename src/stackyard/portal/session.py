"""The portal's session: an encrypted cookie holding the signed-in token, and the CSRF tokens
bound to it.

The cookie is the API token sealed with Fernet (AES-128-CBC + HMAC-SHA256) under a key kept
in the server's home (``portal.key``, mode 0600), so the browser holds only ciphertext
(HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it; Secure on
TLS). Every request re-authenticates the token, so revoking it ends the session at once, and
no server-side session table is needed: the processes of one home share the key file. A
session begun by OIDC sign-in holds the ID token instead, and ends when it expires.

The same key seals the short-lived state of an OIDC sign-in in progress (``seal_data``).

A CSRF token is an HMAC of the session's random id (or of the bearer credential's hash, for
a script that calls the portal with ``Authorization``): a form carries it, a POST without
the right one is refused (403) before anything runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "sy_session"
#: The double-submit cookie of the sign-in form (no session yet to bind a token to).
SIGNIN_COOKIE = "sy_signin"
#: How long a session lasts (seconds), whatever the token's own expiry (re-checked anyway).
SESSION_S = 12 * 3600
KEY_FILE = "portal.key"


@dataclass(frozen=True, slots=True)
class Session:
    """What a session cookie holds once opened: the token, the session's random id, when it
    began, and (OIDC) when its ID token expires."""

    token: str
    sid: str
    issued: float
    expires: float | None = None
    oidc: bool = False


class Sealer:
    """Seals and opens session cookies and makes CSRF tokens, with one home's key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._mac_key = hashlib.sha256(b"stackyard-portal-csrf|" + key).digest()

    @classmethod
    def for_home(cls, home: Path) -> Sealer:
        """The sealer of ``home``'s key (made, private, on first use)."""
        return cls(_key(home))

    def seal(
        self,
        token: str,
        *,
        now: float | None = None,
        expires: float | None = None,
        oidc: bool = False,
    ) -> str:
        """A new session's cookie value for ``token`` (an OIDC ID token when ``oidc``; the
        session ends at ``expires`` when given)."""
        body: dict[str, Any] = {"t": token, "s": secrets.token_urlsafe(18), "i": now or time.time()}
        if expires is not None:
            body["x"] = float(expires)
        if oidc:
            body["o"] = 1
        return self._fernet.encrypt(json.dumps(body).encode()).decode()

    def open(self, value: str, *, now: float | None = None) -> Session | None:
        """The session of a cookie value; None when it is forged, damaged or too old."""
        try:
            raw = self._fernet.decrypt(value.encode(), ttl=SESSION_S)
            body = json.loads(raw)
            expires = None if body.get("x") is None else float(body["x"])
            session = Session(
                str(body["t"]), str(body["s"]), float(body["i"]), expires, bool(body.get("o"))
            )
        except (InvalidToken, ValueError, KeyError, TypeError, AttributeError):
            return None
        at = now or time.time()
        if at - session.issued > SESSION_S or (expires is not None and at >= expires):
            return None
        return session

    def seal_data(self, purpose: str, data: Mapping[str, str]) -> str:
        """``data`` sealed for ``purpose`` (opened only by ``open_data`` of that purpose)."""
        body = {"p": purpose, "d": dict(data)}
        return self._fernet.encrypt(json.dumps(body).encode()).decode()

    def open_data(self, purpose: str, value: str, *, ttl: int) -> dict[str, str] | None:
        """What ``seal_data(purpose, ...)`` sealed at most ``ttl`` seconds ago, else None."""
        try:
            body = json.loads(self._fernet.decrypt(value.encode(), ttl=ttl))
            data = body["d"] if body["p"] == purpose else None
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return None
        return {str(k): v for k, v in data.items()}

    def csrf(self, binding: str) -> str:
        """The CSRF token of a session id (or of a bearer credential's binding)."""
        return hmac.new(self._mac_key, binding.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, binding: str, given: str | None) -> bool:
        """Whether ``given`` is the CSRF token of ``binding`` (constant time)."""
        return bool(given) and hmac.compare_digest(self.csrf(binding), str(given))


def bearer_binding(token: str) -> str:
    """What a bearer caller's CSRF token is bound to: a hash of the credential, never it."""
    return "bearer:" + hashlib.sha256(token.encode()).hexdigest()


def _key(home: Path) -> bytes:
    path = home / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    tmp = home / f".{KEY_FILE}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(tmp, path)  # the first process to make it wins; the others read its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()
