"""OIDC: verify a JWT (ID or access token) from the configured issuer and read who it names.

The issuer's public keys (JWKS) come from a URL (fetched with httpx, cached for
``JWKS_TTL_S``, fetched again at most every ``REFRESH_MIN_S`` when a token names a key not
in the cache, as after a key rotation) or from a file (read again when it changes). Only
asymmetric signatures are accepted (RS*, PS*, ES*): ``none`` and HMAC (``HS*``) never are,
so a public key cannot be used as a shared secret. ``exp``, ``iss`` and ``aud`` are
required; clocks may differ by ``LEEWAY_S``. ``verify_id_token`` checks an ID token the
portal's sign-in received the same way, for the portal's client id and the sign-in's nonce.

PyJWT (the ``server`` extra) is imported when a token is first verified.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stackyard.errors import InvalidInputError
from stackyard.identity.errors import IdentityUnavailableError

if TYPE_CHECKING:
    from stackyard.settings import Settings

__all__ = ["OidcClaims", "OidcConfig", "OidcVerifier"]

log = logging.getLogger("stackyard.identity")

#: Signature algorithms accepted, by the key type each needs.
ALGORITHMS: Mapping[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
}
LEEWAY_S = 30.0
JWKS_TTL_S = 300.0
REFRESH_MIN_S = 30.0
FETCH_TIMEOUT_S = 5.0
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
#: The claims tried for the user name when none is configured: ``sub`` only, the one claim an
#: issuer keeps unique and stable. ``preferred_username`` is often chosen by the user (who
#: could then name themselves after a privileged stackyard user): configure it only for an
#: issuer that guarantees it unique and immutable.
DEFAULT_USER_CLAIMS = ("sub",)
#: The ``teams`` map key that makes every group a team of its own name (an explicit opt-in).
EVERY_GROUP = "*"


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """The issuer stackyard trusts, and how its tokens name users and teams."""

    issuer: str
    audience: tuple[str, ...]
    jwks: str  # an https:// URL (http:// on loopback only) or a file path
    user_claim: str | None = None
    groups_claim: str = "groups"
    #: group -> team; ``"*"`` maps every group to the team of its name; empty: no teams
    teams: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The configuration in ``settings`` (None when no issuer is set);
        ``InvalidInputError`` when it is incomplete."""
        if not settings.oidc_issuer:
            return None
        # The portal's client id is an audience too: its session re-checks the ID token.
        client = (settings.oidc_client_id,) if settings.oidc_client_id else ()
        audience = tuple(dict.fromkeys((*settings.oidc_audience, *client)))
        missing = [
            var
            for var, value in (
                ("STACKYARD_OIDC_AUDIENCE", audience),
                ("STACKYARD_OIDC_JWKS", settings.oidc_jwks),
            )
            if not value
        ]
        if missing:
            raise InvalidInputError(
                f"STACKYARD_OIDC_ISSUER is set but {' and '.join(missing)} is not",
                hint="Set the audience (the client id tokens are issued for) and the JWKS URL "
                "or file of the issuer; see docs/identity.md.",
            )
        assert settings.oidc_jwks is not None
        config = cls(
            issuer=settings.oidc_issuer,
            audience=audience,
            jwks=settings.oidc_jwks,
            user_claim=settings.oidc_user_claim,
            groups_claim=settings.oidc_groups_claim,
            teams=dict(settings.oidc_teams),
        )
        if config.is_url:
            _check_url(config.jwks)
        return config

    @property
    def is_url(self) -> bool:
        """Whether the JWKS is fetched (else read from a file)."""
        return self.jwks.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class OidcClaims:
    """Who a verified token names: the user, the teams its groups map to, and when the token
    expires (epoch seconds)."""

    user: str
    teams: tuple[str, ...]
    expires: float | None = None


class OidcVerifier:
    """Verifies tokens against one issuer; ``verify`` returns None for any token that does not
    verify, and raises ``IdentityUnavailableError`` only when no keys can be had at all."""

    def __init__(self, config: OidcConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._mutex = threading.Lock()
        self._keys: list[dict[str, Any]] | None = None
        self._loaded_at = -math.inf
        self._failed_at = -math.inf
        self._file_stamp: tuple[float, int] | None = None
        self._client: Any = None  # an httpx.Client, made on the first fetch

    def verify(self, token: str) -> OidcClaims | None:
        """The claims of a token that verifies, else None."""
        claims = self._verified(token, self.config.audience)
        return None if claims is None else self._identity(claims)

    def verify_id_token(self, token: str, *, client_id: str, nonce: str) -> OidcClaims | None:
        """The claims of an ID token issued to ``client_id`` for the sign-in that sent
        ``nonce`` (signature, ``iss``, ``aud``, ``exp`` as ``verify``; ``nonce`` equal; when
        ``aud`` names other clients too, ``azp`` is ``client_id``), else None."""
        claims = self._verified(token, (client_id,))
        if claims is None:
            return None
        given = claims.get("nonce")
        if not isinstance(given, str) or not hmac.compare_digest(given, nonce):
            return None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
            return None
        return self._identity(claims)

    def _verified(self, token: str, audience: Sequence[str]) -> dict[str, Any] | None:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            return None  # none, HS*, or anything we do not accept
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        candidates = self._candidates(alg, kid)
        if not candidates and kid is not None and self._refresh_for_unknown_kid():
            candidates = self._candidates(alg, kid)
        for jwk in candidates:
            claims = self._decode(token, jwk, alg, audience)
            if claims is not None:
                return claims
        return None

    def close(self) -> None:
        """Close the HTTP client, if one was made."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- keys --------------------------------------------------------------------------------

    def _candidates(self, alg: str, kid: str | None) -> list[dict[str, Any]]:
        """The keys that may have signed a token with this header."""
        out = []
        for key in self._current_keys():
            if key.get("kty") != ALGORITHMS[alg]:
                continue
            if key.get("alg") not in (None, alg) or key.get("use") not in (None, "sig"):
                continue
            if kid is not None and key.get("kid") not in (None, kid):
                continue
            out.append(key)
        # A key named by its kid first; keys without one after.
        return sorted(out, key=lambda k: k.get("kid") != kid)

    def _current_keys(self) -> list[dict[str, Any]]:
        with self._mutex:
            now = self._clock()
            if self.config.is_url:
                due = self._keys is None or now - self._loaded_at >= JWKS_TTL_S
                if due and now - self._failed_at >= REFRESH_MIN_S:
                    self._load(now)
            else:
                self._reload_file_if_changed(now)
            if self._keys is None:
                raise IdentityUnavailableError(
                    "The OIDC issuer's keys (JWKS) cannot be read",
                    hint="Check STACKYARD_OIDC_JWKS and that the issuer is reachable; the "
                    "server log says why.",
                )
            return list(self._keys)

    def _refresh_for_unknown_kid(self) -> bool:
        """Fetch the JWKS again (a key rotation), at most every ``REFRESH_MIN_S``."""
        if not self.config.is_url:
            return False
        with self._mutex:
            now = self._clock()
            if now - max(self._loaded_at, self._failed_at) < REFRESH_MIN_S:
                return False
            self._load(now)
            return True

    def _reload_file_if_changed(self, now: float) -> None:
        path = Path(self.config.jwks)
        try:
            st = path.stat()
        except OSError as exc:
            self._failed(f"cannot read the JWKS file {path}: {exc.strerror}", now)
            return
        stamp = (st.st_mtime, st.st_size)
        if (stamp != self._file_stamp or self._keys is None) and self._load(now):
            self._file_stamp = stamp

    def _load(self, now: float) -> bool:
        """Read the JWKS; on failure keep the keys held before (if any), log why, and
        return False."""
        try:
            text = self._fetch() if self.config.is_url else Path(self.config.jwks).read_text()
            keys = _parse_jwks(text)
        except (OSError, ValueError) as exc:
            self._failed(str(exc), now)
            return False
        self._keys = keys
        self._loaded_at = now
        return True

    def _fetch(self) -> str:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        try:
            response = self._client.get(self.config.jwks, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OSError(f"cannot fetch the JWKS from {self.config.jwks}: {exc}") from exc
        if response.status_code != 200:
            raise OSError(
                f"cannot fetch the JWKS from {self.config.jwks}: HTTP {response.status_code}"
            )
        return str(response.text)

    def _failed(self, why: str, now: float) -> None:
        self._failed_at = now
        if self._keys is not None:
            log.warning("%s; keeping the keys read before", why)
        else:
            log.error("%s", why)

    # -- tokens ------------------------------------------------------------------------------

    def _decode(
        self, token: str, jwk: Mapping[str, Any], alg: str, audience: Sequence[str]
    ) -> dict[str, Any] | None:
        import jwt

        try:
            key = jwt.PyJWK(dict(jwk), algorithm=alg).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=list(audience),
                issuer=self.config.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        return claims

    def _identity(self, claims: Mapping[str, Any]) -> OidcClaims | None:
        names = (self.config.user_claim,) if self.config.user_claim else DEFAULT_USER_CLAIMS
        user = next((v for n in names if _is_name(v := claims.get(n))), None)
        if not isinstance(user, str):
            return None
        exp = claims.get("exp")
        expires = float(exp) if isinstance(exp, int | float) else None
        return OidcClaims(user, self._teams(claims.get(self.config.groups_claim)), expires)

    def _teams(self, groups: object) -> tuple[str, ...]:
        listed: Sequence[object] = (
            [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
        )
        names = [g for g in listed if isinstance(g, str) and _is_name(g)]
        # Deny by default: only the groups the map names are teams, unless it maps '*' (every
        # group is the team of its name). A self-service group named after a privileged team
        # must not get that team's grants.
        every = EVERY_GROUP in self.config.teams
        names = [
            self.config.teams.get(g, g)
            for g in names
            if g in self.config.teams or (every and g != EVERY_GROUP)
        ]
        return tuple(dict.fromkeys(names))


def _is_name(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 200
        and value.isprintable()
        and value == value.strip()
    )


def _parse_jwks(text: str) -> list[dict[str, Any]]:
    """The asymmetric signing keys of a JWKS document (``ValueError`` when it is none)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JWKS is not JSON: {exc.msg}") from exc
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise ValueError("the JWKS has no 'keys' list")
    usable = [k for k in keys if isinstance(k, dict) and k.get("kty") in ("RSA", "EC")]
    if not usable:
        raise ValueError("the JWKS holds no RSA or EC key")
    return usable


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return
    raise InvalidInputError(
        f"STACKYARD_OIDC_JWKS {url!r} is not an https:// URL",
        hint="Keys fetched over plain HTTP could be swapped on the way; use https:// (http:// "
        "is accepted for 127.0.0.1 and localhost only), or a file.",
    )
