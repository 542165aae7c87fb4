"""Engine events: the engine never prints; it emits events to hooks, which render or store them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackyard.model.values import mask


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
    """Fan-out of events to hooks. Thread-safe; a failing hook never breaks the engine."""

    def __init__(self, *hooks: Hook) -> None:
        self._hooks = list(hooks)
        self._lock = threading.Lock()

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
            except Exception:  # noqa: S112 - a renderer's bug must not stop an apply
                continue
