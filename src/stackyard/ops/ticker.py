"""Periodic day 2 steps (webhook deliveries, TTL warnings, SLO probes...) run by the workers.

A step is registered with ``register(name, every_s, fn)``; ``fn(ws)`` gets a workspace on
the worker's settings. Every worker runs a ``Ticker`` thread, and a step's turn is claimed
through its ``ops_marks`` row (``tick:<name>``) with one conditional update, so that across N
workers on one PostgreSQL a step runs once per interval, not N times. A failing step is
logged and tried again at its next turn; it never stops the others or the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from stackyard.state.tables import ops_marks, upsert

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings
    from stackyard.state.sql import SqlStateStore

__all__ = ["Step", "Ticker", "claim_turn", "register", "run_due", "steps"]

log = logging.getLogger("stackyard.ops")

#: How often the ticker thread wakes to look for due steps (seconds).
WAKE_S = 1.0


@dataclass(frozen=True)
class Step:
    """A periodic step: ``fn(ws)`` every ``every_s`` seconds."""

    name: str
    every_s: float
    fn: Callable[[Workspace], object]


_STEPS: dict[str, Step] = {}


def register(name: str, every_s: float, fn: Callable[[Workspace], object]) -> None:
    """Register (or replace) the periodic step ``name``."""
    _STEPS[name] = Step(name, float(every_s), fn)


def steps() -> list[Step]:
    """The registered steps, after importing the modules that register the built-in ones."""
    _load_builtin()
    return list(_STEPS.values())


def _load_builtin() -> None:
    import importlib

    for module in _BUILTIN:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a module not written yet, or an extra missing
            if err.name != module:
                raise


#: Modules whose import registers their steps.
_BUILTIN: tuple[str, ...] = (
    "stackyard.ops.webhooks",
    "stackyard.ops.driftscan",
    "stackyard.ops.expiry",
    "stackyard.ops.slo",
)


def claim_turn(
    store: SqlStateStore, name: str, every_s: float, *, now: float | None = None
) -> bool:
    """True when this caller won step ``name``'s turn (its last run is ``every_s`` old or
    more); the row is moved to ``now`` in the same statement, so one caller wins."""
    now = time.time() if now is None else now
    key = f"tick:{name}"
    with store.writing() as conn:
        won = conn.execute(
            sa.update(ops_marks)
            .where(ops_marks.c.key == key, ops_marks.c.at <= now - every_s)
            .values(at=now)
        ).rowcount
        if won:
            return True
        # The first turn: whoever inserts the row wins it (two first callers race here).
        inserted = conn.execute(
            upsert(conn, ops_marks)
            .values(key=key, at=now, value={})
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(ops_marks.c.key)  # an INSERT's rowcount is -1 on psycopg
        ).first()
        return inserted is not None


def run_due(ws: Workspace, *, only: set[str] | None = None) -> list[str]:
    """Run every step whose turn has come (all of ``only`` when given, due or not); the
    names of the steps run."""
    ran: list[str] = []
    for step in steps():
        if only is not None:
            if step.name not in only:
                continue
        elif not claim_turn(ws.store, step.name, step.every_s):
            continue
        try:
            step.fn(ws)
        except Exception:
            log.exception("the periodic step %s failed; it runs again at its next turn", step.name)
        ran.append(step.name)
    return ran


class Ticker:
    """The worker's thread running ``run_due`` until stopped."""

    def __init__(self, settings: Settings, *, wake_s: float = WAKE_S) -> None:
        self.settings = settings
        self.wake_s = wake_s

    def run(self, stop: threading.Event) -> None:
        """Run due steps every ``wake_s`` until ``stop`` is set."""
        from stackyard.environments.workspace import Workspace

        ws: Workspace | None = None
        try:
            while not stop.wait(self.wake_s):
                try:
                    if ws is None:
                        ws = Workspace.open(self.settings)
                    run_due(ws)
                except Exception:
                    log.exception("the ticker failed; it tries again")
                    if ws is not None:
                        ws.close()
                        ws = None
        finally:
            if ws is not None:
                ws.close()

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(
            target=self.run, args=(stop,), name="stackyard-ticker", daemon=True
        )
        thread.start()
        return thread
