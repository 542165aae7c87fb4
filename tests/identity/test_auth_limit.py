"""The failed-authentication limit: ten failures a minute per client, then 429 with how long to
wait, even for a good credential; other clients are not affected; the window slides."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stackyard.environments.workspace import Workspace
from stackyard.identity import Authenticator, NotAuthenticated, TooManyAttempts
from stackyard.identity import tokens as api_tokens
from stackyard.identity.limiter import FailureLimiter
from stackyard.settings import Settings

BAD = "Bearer sy_0123456789ab_" + "a" * 43


class Tick:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.integration
def test_failures_are_limited_per_client(
    settings: Settings, open_as: Callable[..., Workspace]
) -> None:
    good = "Bearer " + api_tokens.create(open_as(settings), user="ann").token
    tick = Tick()
    with Authenticator(settings, limiter=FailureLimiter(clock=tick)) as auth:
        for _ in range(10):
            tick.now += 1
            with pytest.raises(NotAuthenticated) as err:
                auth.authenticate(BAD, client="203.0.113.9")
            assert not isinstance(err.value, TooManyAttempts)
        # the eleventh attempt is refused unread, even with a good token
        with pytest.raises(TooManyAttempts) as limited:
            auth.authenticate(good, client="203.0.113.9")
        assert limited.value.retry_after == 51  # the first failure (t=1001) leaves at 1061
        # another client is not affected
        assert auth.authenticate(good, client="198.51.100.7").user == "ann"
        # once the oldest failure leaves the window, one more attempt is looked at
        tick.now = 1061
        assert auth.authenticate(good, client="203.0.113.9").user == "ann"
        with pytest.raises(NotAuthenticated):
            auth.authenticate(BAD, client="203.0.113.9")
        with pytest.raises(TooManyAttempts):
            auth.authenticate(good, client="203.0.113.9")


@pytest.mark.unit
def test_the_limiter_forgets_old_clients_and_stays_bounded() -> None:
    tick = Tick()
    limiter = FailureLimiter(limit=2, window_s=10, max_clients=3, clock=tick)
    for client in ("a", "b", "c", "d"):
        limiter.fail(client)
        limiter.fail(client)
    # "a" was forgotten to keep three clients; the others are at the limit
    limiter.check("a")
    for client in ("b", "c", "d"):
        with pytest.raises(TooManyAttempts) as err:
            limiter.check(client)
        assert err.value.retry_after == 10
    tick.now += 10
    for client in ("b", "c", "d"):
        limiter.check(client)
