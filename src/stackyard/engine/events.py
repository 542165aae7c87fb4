"""Engine events: the engine never prints; it emits events to hooks, which render or store them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackyard.model.values import mask

#: Where a failing hook is reported (a child of the ``stackyard`` logger).
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened: ``type`` is planned, started, finished, failed, skipped,
    retrying, recovered, drift, locked or unlocked. ``detail`` is always masked."""

    type: str
    address: str = ""
    action: str = ""
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "type": self.type,
            "address": self.address,
            "action": self.action,
            "message": self.message,
            "detail": self.detail,
            "ts": self.ts,
        }


Hook = Callable[[Event], None]


class Events:
    """Fan-out of events to hooks. Thread-safe; a failing hook never breaks the engine.

    A hook that raises is not silent either: the failure is logged (a warning, the traceback
    at debug level) and counted in ``lost``, so that whoever persists the events (the
    deployment's event log is such a hook) can record that some are missing.
    """

    def __init__(self, *hooks: Hook) -> None:
        self._hooks = list(hooks)
        self._lock = threading.Lock()
        self._lost = 0

    @property
    def lost(self) -> int:
        """How many times a hook raised instead of taking an event (0: none was lost)."""
        with self._lock:
            return self._lost

    def add(self, hook: Hook) -> None:
        """Register another hook."""
        with self._lock:
            self._hooks.append(hook)

    def emit(
        self,
        type: str,
        address: str = "",
        *,
        action: str = "",
        message: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Emit an event; ``detail`` is masked before any hook sees it."""
        event = Event(type, address, action, message, mask(detail or {}))
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(event)
            except Exception as exc:  # a renderer's bug must not stop an apply
                with self._lock:
                    self._lost += 1
                where = f" of {event.address}" if event.address else ""
                logger.warning(
                    "An event hook failed on the '%s' event%s; the event is lost to it: %s: %s",
                    event.type,
                    where,
                    exc.__class__.__name__,  # ``type`` is the event's type in here
                    exc,
                )
                logger.debug("The event hook's traceback", exc_info=True)
