"""``stackyard token create|list|revoke`` through the real ``stackyard`` process: the token is
printed once, listed never, refused once revoked; only admins may run them; the secret is in
no other output and not in the audit log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _idsupport import ADMIN

from _as_user import cli
from _cli import Result, finished, ok
from stackyard.identity import Authenticator, NotAuthenticated
from stackyard.settings import Settings

pytestmark = pytest.mark.integration

NOT_PERMITTED = 6
INVALID = 2


def _run(settings: Settings, *args: str, user: str = ADMIN) -> Result:
    # Each command in its own process: the harness sets the acting user there (a warm
    # command server would run it as the server's own account).
    done: subprocess.CompletedProcess[str] = cli(
        settings.home, *args, user=user, STACKYARD_DAEMON="0"
    )
    return finished(args, done.returncode, done.stdout, done.stderr)


def test_create_list_revoke(settings: Settings) -> None:
    made = ok(_run(settings, "token", "create", "--user", "ann", "--ttl", "7d", "--output", "json"))
    issued = made.json()
    assert set(issued) >= {"token", "id", "user", "expires_at"}
    assert issued["user"] == "ann" and issued["token"].startswith(f"sy_{issued['id']}_")
    token = issued["token"]
    secret = token.split("_", 2)[2]

    text = ok(_run(settings, "token", "create", "--user", "bob", "--description", "deploy bot"))
    second = text.out.strip()
    assert second.startswith("sy_") and "\n" not in second  # the token alone on stdout
    assert "shown this once" in text.err and second not in text.err

    with Authenticator(settings) as auth:
        assert auth.authenticate(f"Bearer {token}").user == "ann"
        assert auth.authenticate(f"Bearer {second}").user == "bob"

    listed = ok(_run(settings, "token", "list", "--output", "json")).json()["tokens"]
    assert [(t["user"], t["status"]) for t in listed] == [("ann", "active"), ("bob", "active")]
    only_bob = ok(_run(settings, "token", "list", "--user", "bob", "--output", "json")).json()
    assert [t["description"] for t in only_bob["tokens"]] == ["deploy bot"]
    table = ok(_run(settings, "token", "list"))
    assert issued["id"] in table.out and "active" in table.out

    revoked = ok(_run(settings, "token", "revoke", issued["id"], "--output", "json")).json()
    assert (revoked["id"], revoked["status"]) == (issued["id"], "revoked")
    with Authenticator(settings) as auth:
        with pytest.raises(NotAuthenticated):
            auth.authenticate(f"Bearer {token}")
        assert auth.authenticate(f"Bearer {second}").user == "bob"
    statuses = ok(_run(settings, "token", "list", "--output", "json")).json()["tokens"]
    assert [t["status"] for t in statuses] == ["revoked", "active"]
    assert "revoked" in ok(_run(settings, "token", "list")).out

    unknown = _run(settings, "token", "revoke", "0123456789ab")
    assert unknown.code == INVALID and "No token" in unknown.err

    audit = ok(_run(settings, "audit", "--output", "json")).out
    assert issued["id"] in audit
    for hidden in (secret, second.split("_", 2)[2]):
        assert hidden not in audit
        assert hidden not in table.out and hidden not in str(statuses)


def test_only_an_admin_may_manage_tokens(settings: Settings) -> None:
    for args in (
        ("token", "create", "--user", "mallory"),
        ("token", "list"),
        ("token", "revoke", "0123456789ab"),
    ):
        res = _run(settings, *args, user="mallory")
        assert res.code == NOT_PERMITTED, str(res)
        assert "sy_" not in res.out
    assert ok(_run(settings, "token", "list", "--output", "json")).json() == {"tokens": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ttl", "10y"), "Invalid --ttl"),
        (("--ttl", "9999d"), "longer than the longest"),
        (("--user", "not a name"), "Invalid user name"),
    ],
    ids=["bad-ttl", "too-long", "bad-user"],
)
def test_bad_input_is_exit_2(settings: Settings, args: tuple[str, ...], message: str) -> None:
    base = ["token", "create", "--user", "ann"]
    res = _run(settings, *base, *args)
    assert res.code == INVALID and message in res.err, str(res)


def test_no_home_is_a_clear_error(tmp_path: Path) -> None:
    res = finished(
        ("token", "list"), *_plain(cli(tmp_path / "none", "token", "list", STACKYARD_DAEMON="0"))
    )
    assert res.code == INVALID and "stackyard init" in res.err


def _plain(done: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return done.returncode, done.stdout, done.stderr
