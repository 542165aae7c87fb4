"""Problem details (RFC 9457): every error of the API, built from a ``StackyardError``.

The CLI turns an exception into one line, a hint and an exit code (``cli/main.py``); the API
turns the same exception into ``application/problem+json`` with the same message, hint,
diagnostics and exit code, and an HTTP status chosen from the exit code (docs/api.md has the
table). Nothing else leaves the server: an unexpected exception is a 500 with a fixed text,
never its message or traceback (they go to the server's log, which is scrubbed of secrets).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stackyard.errors import InvalidInputError, LockHeldError, PolicyDeniedError, StackyardError

PROBLEM_JSON = "application/problem+json"
#: How the service layer says that a thing a request names does not exist.
_MISSING = re.compile(r"^No (environment|deployment|release|decision|workload|job) '")
#: ``type`` of every problem: a page of the documentation, one anchor per problem kind.
TYPE_BASE = "https://stackyard.dev/problems/"

#: exit code -> (HTTP status, title). 2 is refined below (not found / unprocessable).
_BY_EXIT: dict[int, tuple[int, str]] = {
    1: (500, "Internal error"),
    2: (400, "Invalid input"),
    3: (409, "Stale plan"),
    4: (409, "Environment locked"),
    5: (403, "Denied by policy"),
    6: (403, "Not permitted"),
    7: (502, "A backend failed"),
    8: (409, "Verification failed"),
    9: (409, "Missing attestation"),
    10: (409, "Cancelled"),
}


class Problem(BaseModel):
    """An RFC 9457 problem, with stackyard's extensions (``exit_code``, ``diagnostics``, ``hint``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong, in one sentence.")
    exit_code: int = Field(description="The exit code the CLI ends with for the same failure.")
    diagnostics: list[dict[str, Any]] = Field(
        default_factory=list, description="Each problem of the input, as the CLI reports them."
    )
    hint: str | None = Field(default=None, description="What to do about it.")


def status_of(exc: StackyardError) -> int:
    """The HTTP status of ``exc``: 401 and 429 for authentication, else from its exit code."""
    explicit = getattr(exc, "http_status", None)
    if isinstance(explicit, int):
        return explicit
    if _subclass_named(exc, "TooManyAttempts"):
        return 429
    if _subclass_named(exc, "NotAuthenticated"):
        return 401
    if _subclass_named(exc, "IdentityUnavailableError"):
        return 503
    if isinstance(exc, LockHeldError):
        return 423
    if isinstance(exc, InvalidInputError) and _MISSING.match(exc.message):
        return 404
    if isinstance(exc, InvalidInputError) and exc.diagnostics:
        return 422
    return _BY_EXIT.get(exc.exit_code, (500, ""))[0]


def _subclass_named(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _title(status: int, exc: StackyardError) -> str:
    titles = {
        401: "Not authenticated",
        404: "Not found",
        413: "Request too large",
        422: "Invalid input",
        423: "Environment locked",
        429: "Too many attempts",
        503: "Unavailable",
        504: "Timed out",
    }
    return titles.get(status) or _BY_EXIT.get(exc.exit_code, (500, "Internal error"))[1]


def problem(exc: StackyardError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, body, headers)`` of the problem ``exc`` stands for."""
    status = status_of(exc)
    diagnostics = getattr(exc, "diagnostics", ()) or ()
    body = Problem(
        type=TYPE_BASE + _slug(_title(status, exc)),
        title=_title(status, exc),
        status=status,
        detail=exc.message if exc.exit_code != 1 or status != 500 else "Internal error",
        exit_code=exc.exit_code,
        diagnostics=[d.to_json() for d in diagnostics],
        hint=exc.hint,
    ).model_dump()
    if isinstance(exc, PolicyDeniedError) and exc.decision_id:
        body["decision"] = exc.decision_id
    headers: dict[str, str] = {}
    retry = getattr(exc, "retry_after", None)
    if status == 429:
        headers["Retry-After"] = str(max(1, int(retry or 1)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="stackyard"'
    return status, body, headers


def simple(status: int, title: str, detail: str, *, exit_code: int = 2) -> dict[str, Any]:
    """A problem that no ``StackyardError`` stands for (an unknown route, a bad parameter)."""
    return Problem(
        type=TYPE_BASE + _slug(title),
        title=title,
        status=status,
        detail=detail,
        exit_code=exit_code,
    ).model_dump()


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-")
