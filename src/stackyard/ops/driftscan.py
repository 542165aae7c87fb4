"""Drift scans on a schedule, and the history of every scan.

An EnvironmentType sets ``drift: {every: 6h}``; the workers' ticker (``ops.ticker``, step
``drift.schedule``) scans each environment of such a type whose last scan is older than
that, as the platform itself (``ACTOR``: like the TTL reaper, it needs no user's grant). Each
scan, scheduled or asked for with ``stackyard drift``, leaves a row in ``drift_scans`` with
what it found (the masked JSON of its findings), and publishes ``drift.found`` when it found
drift. The history itself is ``state.driftlog``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from stackyard.ops import ticker
from stackyard.state.driftlog import Scan, last, record

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

__all__ = ["ACTOR", "TICK_S", "due", "scan_due"]

log = logging.getLogger("stackyard.ops")

#: Who scheduled scans are recorded as.
ACTOR = "stackyard:drift-schedule"
#: How often the ticker looks for environments due a scan (seconds).
TICK_S = float(os.environ.get("STACKYARD_DRIFT_TICK_S", "30"))


def due(ws: Workspace, *, now: float | None = None) -> list[str]:
    """The environments whose type scans on a schedule and whose last scan is that old."""
    from stackyard.model.status import EnvironmentStatus

    now = time.time() if now is None else now
    platform = ws.platform()
    names: list[str] = []
    for env in ws.records.environments():
        if env.status is not EnvironmentStatus.READY:  # not while it is made or destroyed
            continue
        kind = platform.types.get(env.type)
        every = kind.drift_every_s if kind is not None else None
        if not every:
            continue
        previous = last(ws.store, env.name)
        if previous is None or now - previous.at >= every:
            names.append(env.name)
    return names


def scan_due(ws: Workspace, *, now: float | None = None) -> list[Scan]:
    """Scan every environment ``due`` names, one after the other; what was recorded."""
    from stackyard.environments import drift

    done: list[Scan] = []
    installation = ws.store.installation_id()
    for name in due(ws, now=now):
        try:
            found = drift.scan_snapshot(
                ws.store.snapshot(name), ws.kinds, installation=installation
            )
        except Exception as exc:  # one environment's failure never stops the others
            log.warning("the scheduled drift scan of %s failed: %s", name, type(exc).__name__)
            done.append(
                record(
                    ws.store,
                    env=name,
                    trigger="schedule",
                    actor=ACTOR,
                    error=f"{type(exc).__name__}: the scan could not finish",
                )
            )
            continue
        done.append(drift.remember(ws, found, trigger="schedule", actor=ACTOR))
        drift.announce(ws, found, actor=ACTOR)
    return done


ticker.register("drift.schedule", TICK_S, scan_due)
