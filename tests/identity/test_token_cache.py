"""The authenticator's cache of verified tokens: a request within ``cache_s`` of a check is not
read from the store again, a revocation through the service is refused at once, one made
elsewhere (another server) once the cache time has passed, and expiry is checked every time."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from stackyard.environments.workspace import Workspace
from stackyard.identity import Authenticator, NotAuthenticated
from stackyard.identity import tokens as api_tokens
from stackyard.settings import Settings
from stackyard.state.tokens import Tokens

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingTokens(Tokens):
    """The token table, counting reads of a token."""

    reads = 0

    def get(self, token_id: str):  # type: ignore[no-untyped-def]
        CountingTokens.reads += 1
        return super().get(token_id)


def _revoke_behind_its_back(settings: Settings, token_id: str) -> None:
    """Revoke as another server would: straight in the shared store."""
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE api_tokens SET revoked_at = 1, revoked_by = 'x' WHERE id = :i"),
                {"i": token_id},
            )
    finally:
        engine.dispose()


def test_a_verified_token_is_remembered_for_cache_s(
    store_settings: Settings,
    open_as: Callable[..., Workspace],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import stackyard.identity.authenticator as authenticator

    monkeypatch.setattr(authenticator, "Tokens", CountingTokens)
    CountingTokens.reads = 0
    ws = open_as(store_settings)
    issued = api_tokens.create(ws, user="ann")
    with Authenticator(store_settings, cache_s=0.5) as auth:
        for _ in range(5):
            assert auth.authenticate(f"Bearer {issued.token}").user == "ann"
        assert CountingTokens.reads == 1
        # a wrong secret of the same id is never taken for the remembered one
        wrong = issued.token[:-2] + ("AA" if not issued.token.endswith("AA") else "BB")
        with pytest.raises(NotAuthenticated):
            auth.authenticate(f"Bearer {wrong}")

        # revoked by another server: refused once the cache time has passed
        _revoke_behind_its_back(store_settings, issued.record.id)
        time.sleep(0.6)
        with pytest.raises(NotAuthenticated):
            auth.authenticate(f"Bearer {issued.token}")

    with Authenticator(store_settings, cache_s=0) as uncached:
        second = api_tokens.create(ws, user="bob")
        before = CountingTokens.reads
        for _ in range(3):
            assert uncached.authenticate(f"Bearer {second.token}").user == "bob"
        assert CountingTokens.reads == before + 3


def test_revocation_through_the_service_and_expiry_are_immediate(
    store_settings: Settings, open_as: Callable[..., Workspace]
) -> None:
    clock = Clock()
    ws = open_as(store_settings)
    revoked = api_tokens.create(ws, user="ann", clock=clock)
    expiring = api_tokens.create(ws, user="bob", ttl="1h", clock=clock)
    # a long cache: only the revocation hook and the expiry check can refuse in this test
    with Authenticator(store_settings, clock=clock, cache_s=3600) as auth:
        assert auth.authenticate(f"Bearer {revoked.token}").user == "ann"
        assert auth.authenticate(f"Bearer {expiring.token}").user == "bob"
        api_tokens.revoke(ws, revoked.record.id, clock=clock)
        with pytest.raises(NotAuthenticated):
            auth.authenticate(f"Bearer {revoked.token}")
        clock.now += 3600
        with pytest.raises(NotAuthenticated):
            auth.authenticate(f"Bearer {expiring.token}")
