"""The authenticator: from an ``Authorization`` header to an ``Identity``, or a refusal.

A request carries ``Bearer <token>``: a stackyard API token (``sy_...``) checked against the
token table, or an OIDC JWT checked against the configured issuer. Every refusal is the same
``NotAuthenticated`` (it never says which part failed), and a client with too many recent
refusals is turned away before its credential is looked at (``TooManyAttempts``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stackyard.identity import tokens as api_tokens
from stackyard.identity.errors import NotAuthenticated
from stackyard.identity.limiter import FailureLimiter
from stackyard.identity.oidc import OidcConfig, OidcVerifier
from stackyard.settings import Settings
from stackyard.state.tokens import Tokens

__all__ = ["Authenticator", "Identity"]

log = logging.getLogger("stackyard.identity")

#: A token's last use is written at most this often (seconds).
TOUCH_EVERY_S = 60.0
#: Longer headers are refused unread.
_MAX_HEADER = 8192


@dataclass(frozen=True)
class Identity:
    """Who a request comes from.

    ``user`` is the stackyard user name (the token's user, or the OIDC user claim); ``teams``
    are the teams the OIDC groups map to (() for tokens); ``via`` is ``token`` or ``oidc``.
    """

    user: str
    teams: tuple[str, ...]
    via: str
    token_id: str | None = None


class Authenticator:
    """Authenticates requests for one server; thread-safe. Close it when done.

    It opens the state store of ``settings`` (the token table) and, when an issuer is
    configured, an OIDC verifier. ``clock`` (epoch seconds) dates token expiry and use;
    ``limiter`` counts failures per client.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        limiter: FailureLimiter | None = None,
    ) -> None:
        from stackyard.state import open_store

        config = OidcConfig.from_settings(settings)  # refuses an incomplete one first
        self._store = open_store(settings)
        self._tokens = Tokens(self._store)
        self._oidc = None if config is None else OidcVerifier(config)
        self._clock = clock
        self.limiter = limiter or FailureLimiter()
        self._touched: dict[str, float] = {}
        self._mutex = threading.Lock()

    def authenticate(self, authorization: str | None, *, client: str = "") -> Identity:
        """The identity a ``Bearer`` credential proves.

        Raises ``NotAuthenticated`` (one message for every failure), ``TooManyAttempts``
        when ``client`` failed too often lately, and ``IdentityUnavailableError`` when the
        OIDC keys cannot be read.
        """
        self.limiter.check(client)
        identity = self._identify(authorization)
        if identity is None:
            self.limiter.fail(client)
            log.info("authentication failed for client %s", client or "-")
            raise NotAuthenticated()
        return identity

    def close(self) -> None:
        """Release the store and the HTTP client of the JWKS."""
        try:
            if self._oidc is not None:
                self._oidc.close()
        finally:
            self._store.close()

    def __enter__(self) -> Authenticator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _identify(self, authorization: str | None) -> Identity | None:
        credential = _bearer(authorization)
        if credential is None:
            return None
        if credential.startswith(api_tokens.PREFIX):
            return self._token(credential)
        if self._oidc is None:
            return None
        claims = self._oidc.verify(credential)
        if claims is None:
            return None
        return Identity(claims.user, claims.teams, "oidc")

    def _token(self, credential: str) -> Identity | None:
        now = self._clock()
        record = api_tokens.verify(self._tokens, credential, now=now)
        if record is None:
            return None
        self._touch(record.id, now)
        return Identity(record.user, (), "token", record.id)

    def _touch(self, token_id: str, now: float) -> None:
        """Write the token's last use at most once per ``TOUCH_EVERY_S`` (per process here,
        and across servers by the store's conditional update)."""
        with self._mutex:
            last = self._touched.get(token_id)
            if last is not None and now - last < TOUCH_EVERY_S:
                return
            self._touched[token_id] = now
            if len(self._touched) > 10_000:  # forget the oldest half
                for key in list(self._touched)[:5_000]:
                    del self._touched[key]
        self._tokens.touch(token_id, at=now, every_s=TOUCH_EVERY_S)


def _bearer(authorization: str | None) -> str | None:
    """The credential of ``Bearer <credential>`` (the scheme in any case), else None."""
    if not authorization or len(authorization) > _MAX_HEADER:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        return None
    return credential
