"""API tokens: their format (``sy_<id>_<secret>``), their hash, and creating, listing and
revoking them as a service (admins only, audited).

Only the sha256 of a token's secret is stored; the token itself is shown once, when it is
made. Creating, listing and revoking need ``access.manage`` (the admin role) and creating and
revoking are written to the audit log (the token's id, never its secret). A revoked token is
refused at once by the servers of the process that revoked it, and by other servers sharing
the store within their authenticator's cache time (``authenticator.DEFAULT_CACHE_S``, 5 s).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackyard.errors import InvalidInputError
from stackyard.model.status import AuditResult
from stackyard.policy.rbac import Action
from stackyard.settings import parse_ttl
from stackyard.state.tokens import TokenRecord, Tokens, TokenStatus

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

__all__ = [
    "DEFAULT_TTL_S",
    "PREFIX",
    "Issued",
    "Listing",
    "create",
    "digest",
    "list_tokens",
    "parse",
    "revoke",
    "verify",
]

#: What every stackyard token starts with (an OIDC JWT never does).
PREFIX = "sy_"
#: A new token's lifetime unless ``--ttl`` says otherwise.
DEFAULT_TTL_S = 30 * 86400.0
_ID = re.compile(r"^[0-9a-f]{12}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")  # token_urlsafe(32)
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
_DESCRIPTION_MAX = 500


def digest(secret: str) -> str:
    """The hex sha256 of a token's secret: what the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed stackyard token, else None."""
    if not token.startswith(PREFIX):
        return None
    token_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not _ID.match(token_id) or not _SECRET.match(secret):
        return None
    return token_id, secret


def verify(tokens: Tokens, token: str, *, now: float) -> TokenRecord | None:
    """The active token record ``token`` proves, else None (malformed, unknown, wrong secret,
    expired or revoked: the caller cannot tell which). The hash is compared in constant time."""
    parsed = parse(token)
    if parsed is None:
        return None
    token_id, secret = parsed
    record = tokens.get(token_id)
    # Hash and compare even for an unknown id, so timing does not tell ids apart.
    stored = record.secret_hash if record is not None else digest("")
    matches = hmac.compare_digest(stored, digest(secret))
    if record is None or not matches or record.status(now) is not TokenStatus.ACTIVE:
        return None
    return record


# -- the service -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    """A token just made: ``token`` is its only copy, shown once."""

    token: str
    record: TokenRecord

    def to_json(self) -> dict[str, Any]:
        """``{"token", "id", "user", "expires_at"}`` (and the description)."""
        return {
            "token": self.token,
            "id": self.record.id,
            "user": self.record.user,
            "expires_at": self.record.expires_at,
            "description": self.record.description,
        }


@dataclass(frozen=True, slots=True)
class Listing:
    """Tokens without their secrets, with their status at ``now``."""

    tokens: Sequence[TokenRecord]
    now: float

    def to_json(self) -> dict[str, Any]:
        """``{"tokens": [...]}``: id, user, description, status and times of each."""
        return {"tokens": [t.to_json(self.now) for t in self.tokens]}


def create(
    ws: Workspace,
    *,
    user: str,
    ttl: str | None = None,
    description: str = "",
    clock: Callable[[], float] = time.time,
) -> Issued:
    """Make a token for ``user`` that lives ``ttl`` (default 30 days, at most
    ``Settings.token_max_ttl_s``); the caller must be an admin."""
    check_user(user)
    max_ttl = ws.settings.token_max_ttl_s
    ttl_s = DEFAULT_TTL_S if ttl is None else parse_ttl(ttl, "--ttl")
    if ttl is None:
        ttl_s = min(ttl_s, max_ttl)
    elif ttl_s > max_ttl:
        raise InvalidInputError(
            f"--ttl {ttl} is longer than the longest token lifetime ({_days(max_ttl)})",
            hint="Give a shorter --ttl, or raise STACKYARD_TOKEN_MAX_TTL on the server.",
        )
    if len(description) > _DESCRIPTION_MAX:
        raise InvalidInputError(
            f"The description is longer than {_DESCRIPTION_MAX} characters",
            hint="Shorten --description.",
        )
    tokens = Tokens(ws.store)
    with ws.access.act(Action.ACCESS_MANAGE, target=f"user:{user}") as audit:
        now = clock()
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = TokenRecord(
            id=token_id,
            user=user,
            secret_hash=digest(secret),
            description=description,
            created_at=now,
            created_by=ws.access.actor,
            expires_at=now + ttl_s,
        )
        audit.update(token={"create": token_id, "expires_at": record.expires_at})
        tokens.add(record)
    return Issued(f"{PREFIX}{token_id}_{secret}", record)


def list_tokens(
    ws: Workspace, *, user: str | None = None, clock: Callable[[], float] = time.time
) -> Listing:
    """Every token (of ``user`` when given) with its status; the caller must be an admin."""
    ws.access.authorize(Action.ACCESS_MANAGE)
    return Listing(Tokens(ws.store).list(user=user), clock())


def revoke(ws: Workspace, token_id: str, *, clock: Callable[[], float] = time.time) -> TokenRecord:
    """Revoke a token (``unchanged`` in the audit log when it was revoked already); the caller
    must be an admin. ``InvalidInputError`` for an unknown id. A whole token pasted instead of
    its id is taken for its id; no other part of it is kept or shown."""
    raw = token_id.strip()
    if raw.startswith(PREFIX):
        raw = raw[len(PREFIX) :].partition("_")[0]
    if not _ID.match(raw):
        raise InvalidInputError(
            "That is not a token id",
            hint="Ids are 12 hex digits: 'stackyard token list' shows them.",
        )
    tokens = Tokens(ws.store)
    with ws.access.act(Action.ACCESS_MANAGE, target=f"token:{raw}") as audit:
        audit.update(token={"revoke": raw})
        record = tokens.get(raw)
        if record is None:
            raise InvalidInputError(
                f"No token '{raw}'", hint="'stackyard token list' shows the tokens."
            )
        changed = tokens.revoke(raw, by=ws.access.actor, at=clock())
        from stackyard.identity.authenticator import forget_token

        forget_token(raw)  # this process's servers refuse it from now on
        audit.update(user=record.user, result=AuditResult.OK if changed else AuditResult.UNCHANGED)
        return tokens.get(raw) or record


def check_user(user: str) -> None:
    """``InvalidInputError`` unless ``user`` is a plausible user name."""
    if not _USER.match(user):
        raise InvalidInputError(
            f"Invalid user name {user[:60]!r}",
            hint="Give a user name of letters, digits and . _ @ + - (at most 200 characters).",
        )


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:g} days" if days >= 1 else f"{seconds:g} s"
