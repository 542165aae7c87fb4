"""Why a caller was not let in: not authenticated, too many failed attempts, or no OIDC keys."""

from __future__ import annotations

from stackyard.errors import StackyardError

__all__ = ["IdentityUnavailableError", "NotAuthenticated", "TooManyAttempts"]

#: The one message every refused credential gets: it never says which part failed.
MESSAGE = "Not authenticated"
HINT = (
    "Send 'Authorization: Bearer <token>' with a valid stackyard token ('stackyard token "
    "create' on the server) or an OIDC token from the configured issuer."
)


class NotAuthenticated(StackyardError):
    """No valid credential: missing, malformed, unknown, expired, revoked, or a JWT that does
    not verify. The message is the same for every case (HTTP 401)."""

    exit_code = 6

    def __init__(self, message: str = MESSAGE, *, hint: str | None = HINT) -> None:
        super().__init__(message, hint=hint)


class TooManyAttempts(NotAuthenticated):
    """Too many failed attempts from one client in the window; ``retry_after`` is how many
    whole seconds until the next attempt is looked at (HTTP 429 with ``Retry-After``)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many failed authentication attempts",
            hint=f"Wait {retry_after} s before trying again.",
        )
        self.retry_after = retry_after


class IdentityUnavailableError(StackyardError):
    """The OIDC issuer's keys (JWKS) cannot be read: a server-side failure, not the caller's
    (HTTP 503); nothing is let in meanwhile."""

    exit_code = 7
