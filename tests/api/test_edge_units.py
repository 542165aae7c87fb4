"""The edge's pure parts: the log scrubber, the loopback check and the problem mapping."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackyard.api.edge import NoSecrets, scrub
from stackyard.api.problems import problem, status_of
from stackyard.cli.server import is_loopback
from stackyard.diagnostics import error
from stackyard.errors import (
    ApplyFailedError,
    CancelledError,
    InvalidInputError,
    LockHeldError,
    LockLostError,
    PermissionDeniedError,
    PolicyDeniedError,
    StackyardError,
    StalePlanError,
    VerificationFailedError,
)
from stackyard.identity import NotAuthenticated, TooManyAttempts

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: Bearer ***"),
        ("token sy_0123456789ab_s3cr3t-value here", "token *** here"),
        (
            '"GET /api/v1/x?token=abc&limit=2 HTTP/1.1"',
            '"GET /api/v1/x?token=***&limit=2 HTTP/1.1"',
        ),
        ("nothing secret here", "nothing secret here"),
    ],
    ids=["bearer", "stackyard-token", "query-token", "plain"],
)
def test_scrub(text: str, want: str) -> None:
    assert scrub(text) == want


@given(st.text(alphabet=st.sampled_from(list('aBeErRsSyY_tToOkKnNcCdD=&: "x0-.')), max_size=40))
def test_the_fast_path_scrubs_what_the_expression_scrubs(text: str) -> None:
    """The marker check that skips the expression never skips a line it would change."""
    from stackyard.api.edge import _SECRETS

    assert scrub(text) == _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)


def test_the_filter_rewrites_message_and_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s - %s", ("1.2.3.4", "sy_aa_bb"), None
    )
    assert NoSecrets().filter(record)
    assert record.getMessage() == "1.2.3.4 - ***"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.org", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidInputError("bad"), 400),
        (InvalidInputError("bad", [error("Wrong", "Fix it.")]), 422),
        (InvalidInputError("No environment 'x'"), 404),
        (InvalidInputError("No deployment 'x' in 'y'"), 404),
        (StalePlanError("stale"), 409),
        (LockHeldError("e", holder="h", lock_id="l", expires_at="t"), 423),
        (LockLostError("lost"), 409),
        (PolicyDeniedError("denied", decision_id="d1"), 403),
        (PermissionDeniedError("no"), 403),
        (NotAuthenticated(), 401),
        (TooManyAttempts(7), 429),
        (ApplyFailedError("failed", env="e", failed={}), 502),
        (VerificationFailedError("broken"), 409),
        (CancelledError("no"), 409),
        (StackyardError("a bug with a secret s3cr3t"), 500),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_status_of(exc: StackyardError, status: int) -> None:
    assert status_of(exc) == status
    got, body, headers = problem(exc)
    assert got == status == body["status"]
    assert body["exit_code"] == exc.exit_code
    if status == 500:
        assert body["detail"] == "Internal error"
    if status == 429:
        assert headers["Retry-After"] == "7"
    if isinstance(exc, PolicyDeniedError):
        assert body["decision"] == "d1"
