"""API tokens on SQLite and on PostgreSQL: made once, stored as a hash only, listed without the
secret, refused once expired or revoked, managed by admins only, audited without the secret."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from _idsupport import ADMIN

from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError, PermissionDeniedError
from stackyard.identity import Authenticator, NotAuthenticated
from stackyard.identity import tokens as api_tokens
from stackyard.settings import Settings

pytestmark = pytest.mark.integration

DAY = 86400.0


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rows(settings: Settings) -> list[dict[str, object]]:
    """Every row of the token table, read straight from the database."""
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM api_tokens"))]
    finally:
        engine.dispose()


def test_token_lifecycle(store_settings: Settings, open_as: Callable[..., Workspace]) -> None:
    clock = Clock()
    ws = open_as(store_settings)
    issued = api_tokens.create(ws, user="ann", ttl="2d", description="ci", clock=clock)
    token = issued.token
    assert token.startswith(f"sy_{issued.record.id}_")
    assert issued.to_json()["expires_at"] == clock.now + 2 * DAY
    assert issued.to_json()["user"] == "ann"

    with Authenticator(store_settings, clock=clock) as auth:
        who = auth.authenticate(f"Bearer {token}", client="10.0.0.1")
        assert (who.user, who.teams, who.via, who.token_id) == (
            "ann",
            (),
            "token",
            issued.record.id,
        )
        # the scheme is case-insensitive; anything but Bearer is not
        assert auth.authenticate(f"bearer {token}").user == "ann"
        for header in (token, f"Basic {token}", f"Bearer {token}x", f"Bearer {token[:-1]}", None):
            with pytest.raises(NotAuthenticated) as err:
                auth.authenticate(header)
            assert err.value.message == "Not authenticated"

        listed = api_tokens.list_tokens(ws, clock=clock).to_json()["tokens"]
        assert [(t["id"], t["user"], t["status"]) for t in listed] == [
            (issued.record.id, "ann", "active")
        ]
        assert token not in json.dumps(listed) and issued.record.secret_hash not in json.dumps(
            listed
        )

        # expiry: refused once the clock passes expires_at, listed as expired
        clock.now += 2 * DAY
        with pytest.raises(NotAuthenticated):
            auth.authenticate(f"Bearer {token}")
        assert api_tokens.list_tokens(ws, clock=clock).tokens[0].status(clock.now) == "expired"

        # revocation: a second token works until revoked, then never again
        clock.now -= 2 * DAY
        second = api_tokens.create(ws, user="ann", clock=clock)
        assert auth.authenticate(f"Bearer {second.token}").token_id == second.record.id
        revoked = api_tokens.revoke(ws, second.record.id, clock=clock)
        assert revoked.revoked_at == clock.now and revoked.revoked_by == ADMIN
        with pytest.raises(NotAuthenticated):
            auth.authenticate(f"Bearer {second.token}")
        statuses = {t.id: t.status(clock.now) for t in api_tokens.list_tokens(ws).tokens}
        assert statuses == {issued.record.id: "active", second.record.id: "revoked"}
        # revoking again changes nothing; an unknown id is an input error
        assert api_tokens.revoke(ws, second.record.id).revoked_at == revoked.revoked_at
        with pytest.raises(InvalidInputError, match="No token"):
            api_tokens.revoke(ws, "0123456789ab")

    by_user = api_tokens.list_tokens(ws, user="bob").tokens
    assert by_user == []


def test_only_the_hash_is_stored(
    store_settings: Settings, open_as: Callable[..., Workspace]
) -> None:
    ws = open_as(store_settings)
    issued = api_tokens.create(ws, user="ann")
    secret = issued.token.split("_", 2)[2]
    rows = _rows(store_settings)
    assert len(rows) == 1
    dumped = json.dumps(rows, default=str)
    assert secret not in dumped and issued.token not in dumped
    assert rows[0]["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()

    # A token whose stored hash is another's is refused: the hash is what is checked.
    engine = sa.create_engine(store_settings.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_tokens SET secret_hash = :h"), {"h": "0" * 64})
    engine.dispose()
    with Authenticator(store_settings) as auth, pytest.raises(NotAuthenticated):
        auth.authenticate(f"Bearer {issued.token}")


def test_last_use_is_written_at_most_once_a_minute(
    settings: Settings, open_as: Callable[..., Workspace]
) -> None:
    clock = Clock()
    issued = api_tokens.create(open_as(settings), user="ann", clock=clock)
    with Authenticator(settings, clock=clock) as auth:
        auth.authenticate(f"Bearer {issued.token}")
        assert _rows(settings)[0]["last_used_at"] == clock.now
        first = clock.now
        clock.now += 59
        auth.authenticate(f"Bearer {issued.token}")
        assert _rows(settings)[0]["last_used_at"] == first
        clock.now += 1
        auth.authenticate(f"Bearer {issued.token}")
        assert _rows(settings)[0]["last_used_at"] == first + 60
    # Another server sharing the store does not write within the minute either.
    clock.now += 30
    with Authenticator(settings, clock=clock) as other:
        other.authenticate(f"Bearer {issued.token}")
    assert _rows(settings)[0]["last_used_at"] == first + 60


def test_ttl_default_and_limit(settings: Settings, open_as: Callable[..., Workspace]) -> None:
    clock = Clock()
    ws = open_as(settings)
    assert api_tokens.create(ws, user="ann", clock=clock).record.expires_at == clock.now + 30 * DAY
    with pytest.raises(InvalidInputError, match="longer than the longest"):
        api_tokens.create(ws, user="ann", ttl="400d")
    for bad in ("0", "-1d", "soon", ""):
        with pytest.raises(InvalidInputError):
            api_tokens.create(ws, user="ann", ttl=bad)
    short = open_as(dataclasses.replace(settings, token_max_ttl_s=7 * DAY))
    # the default is capped by a shorter maximum; a longer --ttl is refused
    assert (
        api_tokens.create(short, user="ann", clock=clock).record.expires_at == clock.now + 7 * DAY
    )
    with pytest.raises(InvalidInputError):
        api_tokens.create(short, user="ann", ttl="8d")
    with pytest.raises(InvalidInputError, match="Invalid user name"):
        api_tokens.create(ws, user="bad user")


def test_only_admins_manage_tokens_and_it_is_audited(
    settings: Settings, open_as: Callable[..., Workspace]
) -> None:
    admin = open_as(settings)
    issued = api_tokens.create(admin, user="ann")
    mallory = open_as(settings, "mallory")
    with pytest.raises(PermissionDeniedError):
        api_tokens.create(mallory, user="mallory")
    with pytest.raises(PermissionDeniedError):
        api_tokens.list_tokens(mallory)
    with pytest.raises(PermissionDeniedError):
        api_tokens.revoke(mallory, issued.record.id)
    api_tokens.revoke(admin, issued.record.id)

    events = [
        (e.actor, e.target, e.result)
        for e in admin.governance.audit()
        if "bootstrap" not in e.detail
    ]
    assert events == [
        (ADMIN, "user:ann", "ok"),
        ("mallory", "org", "denied"),
        ("mallory", "org", "denied"),
        (ADMIN, f"token:{issued.record.id}", "ok"),
    ]
    audit = json.dumps([dataclasses.asdict(e) for e in admin.governance.audit()], default=str)
    assert issued.record.id in audit
    assert issued.token.split("_", 2)[2] not in audit


def test_a_pasted_token_is_revoked_by_its_id_and_never_echoed(
    settings: Settings, open_as: Callable[..., Workspace]
) -> None:
    ws = open_as(settings)
    issued = api_tokens.create(ws, user="ann")
    secret = issued.token.split("_", 2)[2]
    assert api_tokens.revoke(ws, issued.token).id == issued.record.id
    with pytest.raises(InvalidInputError) as err:
        api_tokens.revoke(ws, secret)
    assert secret not in f"{err.value.message} {err.value.hint}"


@pytest.mark.parametrize(
    "text",
    [
        "sy_",
        "sy_0123456789ab",
        "sy_0123456789ab_",
        "sy_0123456789AB_" + "a" * 43,
        "sy_0123456789ab_" + "a" * 42,
        "sy_0123456789ab_" + "a" * 43 + "!",
        "xy_0123456789ab_" + "a" * 43,
    ],
    ids=["prefix", "no-secret", "empty-secret", "upper-id", "short", "bad-char", "wrong-prefix"],
)
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert api_tokens.parse(text) is None


def test_a_well_formed_token_parses() -> None:
    secret = "a_b-" + "c" * 39
    assert api_tokens.parse(f"sy_0123456789ab_{secret}") == ("0123456789ab", secret)
