"""TTL notices: the ticker step ``environments.expiry`` warns before an environment expires
and says when it has expired, each once.

- ``environment.expiring``: once per environment and expiry, when ``expires_at - now`` is
  within the warning window (the ``ops_marks`` key ``expiring:<env>:<expires_at>``; an
  ``env extend`` moves ``expires_at``, so the next window warns again). The window is
  ``STACKYARD_TTL_WARNING_S`` (default 3600 s), or, when ``Webhook`` documents that take
  ``environment.expiring`` for the environment set ``expiring_before``, the longest of
  those.
- ``environment.expired``: once per environment and expiry (``events.announce_expired``,
  shared with the reaper, which says it too when it claims one first).

Reaping stays with ``stackyard env reap``; ``STACKYARD_AUTO_REAP=1`` makes the step run it
too (as the worker's user, who then needs ``env.reap``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stackyard.model.platform import Webhook
from stackyard.model.status import EnvironmentStatus
from stackyard.ops import events, ticker

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace
    from stackyard.model.environment import Environment

__all__ = ["AUTO_REAP_ENV", "WARN_ENV", "check", "warn_before_s", "window_s"]

log = logging.getLogger("stackyard.ops")

WARN_ENV = "STACKYARD_TTL_WARNING_S"
AUTO_REAP_ENV = "STACKYARD_AUTO_REAP"
#: How often the step runs (seconds).
EVERY_S = 30.0


def warn_before_s() -> float:
    """The default warning window: ``STACKYARD_TTL_WARNING_S`` seconds (3600)."""
    raw = os.environ.get(WARN_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else 3600.0
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using 3600", WARN_ENV, raw[:40])
        return 3600.0


def window_s(env: Environment, hooks: Mapping[str, Webhook], default: float) -> float:
    """How long before its expiry ``env`` is announced as expiring: the longest
    ``expiring_before`` of the webhooks that would receive the event, else ``default``."""
    chosen = [
        float(h.expiring_before_s)
        for h in hooks.values()
        if h.expiring_before_s is not None
        and h.wants("environment.expiring", env=env.name, env_type=env.type, team=env.owner)
    ]
    return max(chosen) if chosen else default


def check(ws: Workspace, *, now: float | None = None) -> dict[str, Any]:
    """Publish the due ``environment.expiring`` and ``environment.expired`` notices (each
    once); with ``STACKYARD_AUTO_REAP=1``, reap the expired environments too."""
    from stackyard.ops.webhooks import webhooks

    store = ws.store
    now = store.now() if now is None else now
    hooks = webhooks(store)
    default = warn_before_s()
    expiring: list[str] = []
    expired: list[str] = []
    for env in ws.records.environments():
        if env.expires_at is None or not env.status.is_live:
            continue
        left = env.expires_at - now
        if left <= 0:
            if events.announce_expired(store, env) is not None:
                expired.append(env.name)
            continue
        if env.status is not EnvironmentStatus.READY:
            continue
        window = window_s(env, hooks, default)
        if left > window:
            continue
        if not events.once(store, f"expiring:{env.name}:{env.expires_at:.3f}"):
            continue
        events.notify(
            store,
            "environment.expiring",
            f"environment {env.name}",
            **events.about(env),
            data={
                "expires_at": env.expires_at,
                "seconds_left": int(left),
                "warn_before_s": int(window),
                "created_by": env.created_by,
            },
        )
        expiring.append(env.name)
    out: dict[str, Any] = {"expiring": expiring, "expired": expired}
    if os.environ.get(AUTO_REAP_ENV, "").strip() == "1":
        from stackyard.environments import lifecycle

        out["reaped"] = lifecycle.reap(ws, now=now)
    return out


ticker.register("environments.expiry", EVERY_S, check)
