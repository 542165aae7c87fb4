"""The platform's event log, as the day 2 operations read it: ``stackyard.state.events``
(where the service layer publishes from), re-exported.

Types (``TYPES``) are dotted, past tense or state: ``deployment.started``,
``deployment.succeeded``, ``deployment.failed``, ``approval.requested``, ``approval.decided``,
``environment.expiring``, ``environment.expired``, ``environment.destroyed``,
``drift.found``, ``component.deprecated``. ``data`` is JSON and never holds a secret.
"""

from __future__ import annotations

from stackyard.state.events import (
    TYPES,
    Event,
    about,
    announce_expired,
    latest_seq,
    notify,
    notify_deployment,
    once,
    publish,
    read,
)

__all__ = [
    "TYPES",
    "Event",
    "about",
    "announce_expired",
    "latest_seq",
    "notify",
    "notify_deployment",
    "once",
    "publish",
    "read",
]
