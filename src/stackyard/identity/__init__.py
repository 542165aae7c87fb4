"""Identities: who calls the server, from a stackyard API token or an OIDC token.

``Authenticator.authenticate`` turns an ``Authorization: Bearer ...`` header into an
``Identity`` (a user and the teams its OIDC groups map to), or refuses it with
``NotAuthenticated`` (``TooManyAttempts`` after too many failures from one client). The
server then opens a workspace as that user: ``Settings(actor=identity.user,
teams=identity.teams)``. Tokens are made, listed and revoked by ``identity.tokens``.
"""

from __future__ import annotations

from stackyard.identity.authenticator import Authenticator, Identity
from stackyard.identity.errors import IdentityUnavailableError, NotAuthenticated, TooManyAttempts

__all__ = [
    "Authenticator",
    "Identity",
    "IdentityUnavailableError",
    "NotAuthenticated",
    "TooManyAttempts",
]
