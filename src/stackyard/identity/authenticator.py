"""The authenticator: from an ``Authorization`` header to an ``Identity``, or a refusal.

A request carries ``Bearer <token>``: a stackyard API token (``sy_...``) checked against the
token table, or an OIDC JWT checked against the configured issuer. Every refusal is the same
``NotAuthenticated`` (it never says which part failed), and a client with too many recent
refusals is turned away before its credential is looked at (``TooManyAttempts``).

A verified stackyard token is remembered for ``cache_s`` seconds (default 5): requests in that
window are not read from the store again (only the sha256 of the credential is kept, in
memory). Its expiry is still checked on every request; a revocation takes effect at once in
the process that revoked it (``tokens.revoke`` tells every authenticator of the process), and
on other servers sharing the store within ``cache_s``. A failed check is never remembered.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stackyard.identity import tokens as api_tokens
from stackyard.identity.errors import NotAuthenticated, TooManyAttempts
from stackyard.identity.limiter import FailureLimiter
from stackyard.identity.oidc import OidcConfig, OidcVerifier
from stackyard.settings import Settings
from stackyard.state.tokens import TokenRecord, Tokens, TokenStatus

if TYPE_CHECKING:
    from stackyard.state.sql import SqlStateStore

__all__ = ["DEFAULT_CACHE_S", "Authenticator", "Identity", "forget_token"]

log = logging.getLogger("stackyard.identity")

#: A token's last use is written at most this often (seconds).
TOUCH_EVERY_S = 60.0
#: Longer headers are refused unread.
_MAX_HEADER = 8192
#: How long a verified token is trusted without reading the store again (seconds): the
#: longest a revocation made on another server takes to be seen here.
DEFAULT_CACHE_S = 5.0
#: Verified tokens remembered at once (the least recently verified are forgotten first).
_CACHE_MAX = 10_000
#: Every open authenticator of this process, so a revocation reaches their caches at once.
_LIVE: weakref.WeakSet[Authenticator] = weakref.WeakSet()
_LIVE_MUTEX = threading.Lock()


def forget_token(token_id: str) -> None:
    """Drop ``token_id`` from the cache of every authenticator of this process (it was
    revoked: its next use is checked against the store)."""
    with _LIVE_MUTEX:
        live = list(_LIVE)
    for auth in live:
        auth.forget(token_id)


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

    It reads the token table of ``store`` (which stays the caller's to close), or of a store
    of ``settings`` it opens and closes itself, and, when an issuer is configured, uses an
    OIDC verifier. ``clock`` (epoch seconds) dates token expiry and use; ``limiter`` counts
    failures per client; ``cache_s`` is how long a verified token is remembered (0: never).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        limiter: FailureLimiter | None = None,
        store: SqlStateStore | None = None,
        cache_s: float = DEFAULT_CACHE_S,
    ) -> None:
        from stackyard.state import open_store

        config = OidcConfig.from_settings(settings)  # refuses an incomplete one first
        self._owns_store = store is None
        self._store = open_store(settings) if store is None else store
        self._tokens = Tokens(self._store)
        self._oidc = None if config is None else OidcVerifier(config)
        self._clock = clock
        self.limiter = limiter or FailureLimiter()
        self._touched: dict[str, float] = {}
        self._mutex = threading.Lock()
        self._cache_s = cache_s
        #: sha256 of a verified credential -> (monotonic time verified, its record)
        self._verified: OrderedDict[str, tuple[float, TokenRecord]] = OrderedDict()
        #: token id -> monotonic time it was forgotten (a check begun before is not kept)
        self._forgotten: dict[str, float] = {}
        with _LIVE_MUTEX:
            _LIVE.add(self)

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

    def remembered(self, authorization: str | None, *, client: str = "") -> Identity | None:
        """The identity of a stackyard token verified less than ``cache_s`` ago and still
        active, from memory alone: no store read, no write, no failure counted. The API's
        read cache answers with it without leaving the event loop; None means "ask
        ``authenticate``" (a token not remembered, an OIDC token, a client at its failure
        limit, no credential)."""
        credential = _bearer(authorization)
        if credential is None or not credential.startswith(api_tokens.PREFIX):
            return None
        try:
            self.limiter.check(client)
        except TooManyAttempts:
            return None
        key = hashlib.sha256(credential.encode("utf-8")).hexdigest()
        record = self._cached(key, self._clock())
        if record is None:
            return None
        return Identity(record.user, (), "token", record.id)

    def forget(self, token_id: str) -> None:
        """Forget every verified credential of ``token_id`` (revoked)."""
        with self._mutex:
            now = time.monotonic()
            self._forgotten = {
                t: at for t, at in self._forgotten.items() if now - at < self._cache_s
            }
            self._forgotten[token_id] = now
            for key in [k for k, (_, r) in self._verified.items() if r.id == token_id]:
                del self._verified[key]

    def close(self) -> None:
        """Release the store (when it opened it) and the HTTP client of the JWKS."""
        with _LIVE_MUTEX:
            _LIVE.discard(self)
        with self._mutex:
            self._verified.clear()
        try:
            if self._oidc is not None:
                self._oidc.close()
        finally:
            if self._owns_store:
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
        key = hashlib.sha256(credential.encode("utf-8")).hexdigest()
        record = self._cached(key, now)
        if record is None:
            started = time.monotonic()
            record = api_tokens.verify(self._tokens, credential, now=now)
            if record is None:
                return None
            self._remember(key, record, started)
        self._touch(record.id, now)
        return Identity(record.user, (), "token", record.id)

    def _cached(self, key: str, now: float) -> TokenRecord | None:
        """The record of a credential verified less than ``cache_s`` ago and still active at
        ``now`` (not expired since), else None."""
        if self._cache_s <= 0:
            return None
        with self._mutex:
            hit = self._verified.get(key)
            if hit is None:
                return None
            verified_at, record = hit
            if (
                time.monotonic() - verified_at >= self._cache_s
                or record.status(now) is not TokenStatus.ACTIVE
            ):
                del self._verified[key]
                return None
            return record

    def _remember(self, key: str, record: TokenRecord, started: float) -> None:
        """Remember a record read at ``started``, unless its token was forgotten since (a
        revocation that raced the read)."""
        if self._cache_s <= 0:
            return
        with self._mutex:
            if self._forgotten.get(record.id, float("-inf")) >= started:
                return
            self._verified[key] = (started, record)
            self._verified.move_to_end(key)
            while len(self._verified) > _CACHE_MAX:
                self._verified.popitem(last=False)

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
