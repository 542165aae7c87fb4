"""Compiled SQL shared by a process's SQLite stores, and made ahead by the command server.

SQLAlchemy compiles a statement (its SQL text, bind and result processing) once per engine,
and a ``stackyard`` command opens a new engine: each command compiled the same 30-odd
statements again, about 25 ms of a deploy. ``SHARED`` is one statement cache for every
SQLite engine of the process (``SqlStateStore`` passes it as the engine's
``compiled_cache``). SQLAlchemy keys a compiled statement by the dialect *instance* that
compiled it; ``SHARED`` keys it by what the dialect compiles with instead (its class and its
plain settings, such as the SQLite version, read when it first connected), so a statement
compiled for one store is reused by the next one of the same configuration.

``warm`` opens a throwaway store and runs the reads and writes of the everyday commands
once: the command server calls it before it forks, so its children find those statements
compiled (``tests/cli/test_cmdserver_preload.py`` checks how few a deploy still compiles).
It is an optimisation only: a statement it missed is compiled by the child, as before.
"""

from __future__ import annotations

import tempfile
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.util import LRUCache

__all__ = ["SHARED", "warm"]

#: Statements kept (SQLAlchemy's own default per engine is 500).
CAPACITY = 1000

_PLAIN = (bool, int, float, str, bytes, type(None))


def _fingerprint(dialect: Dialect) -> tuple[Any, ...]:
    """What a dialect compiles with: its class and its plain-valued settings (paramstyle,
    server version, feature flags). Objects (the identifier preparer, the DB-API module,
    serializers) are left out: every engine ``SHARED`` serves is made with the same ones."""
    settings = []
    for name, value in vars(dialect).items():
        if isinstance(value, _PLAIN) or (
            isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value)
        ):
            settings.append((name, value))
    return (type(dialect), tuple(sorted(settings)))


class SharedCompiledCache(LRUCache):  # type: ignore[type-arg]
    """SQLAlchemy's LRU statement cache, keyed by a dialect's fingerprint rather than the
    dialect object (the first part of the keys SQLAlchemy uses)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(capacity)
        self._prints: weakref.WeakKeyDictionary[Dialect, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )

    def _key(self, key: Any) -> Any:
        if type(key) is tuple and key and isinstance(key[0], Dialect):
            dialect = key[0]
            found = self._prints.get(dialect)
            if found is None:
                found = self._prints[dialect] = _fingerprint(dialect)
            return (found, *key[1:])
        return key

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(self._key(key), default)

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self._key(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(self._key(key), value)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._key(key))


SHARED = SharedCompiledCache()


def warm() -> int:
    """Compile the everyday commands' statements into ``SHARED``, on a throwaway SQLite store
    (a temporary directory, removed after): the number of statements now cached. Best
    effort: a step that fails is skipped."""
    import contextlib

    from stackyard.state.secrets import SecretBox
    from stackyard.state.sql import SqlStateStore

    with tempfile.TemporaryDirectory(prefix="stackyard-warm-") as directory:
        store = SqlStateStore(
            f"sqlite:///{directory}/state.db",
            SecretBox(SecretBox.generate_key()),
            notify=lambda _line: None,
        )
        try:
            for step in _steps(store, Path(directory)):
                with contextlib.suppress(Exception):
                    step()
        finally:
            store.close()
    return len(SHARED)


def _steps(store: Any, home: Path) -> list[Any]:
    """The reads and writes of a deploy, a removal, a status and a listing, on made-up
    rows."""
    from stackyard.model.environment import (
        Deployment,
        DeploymentEvent,
        InstanceRecord,
        WorkloadRecord,
    )
    from stackyard.model.status import AuditResult
    from stackyard.policy.decision import Decision
    from stackyard.state import driftlog, events
    from stackyard.state.governance import Governance
    from stackyard.state.records import Records

    env = "warm"
    records = Records(store)
    governance = Governance(store, home=home)  # its audit key is made in the temporary home
    dep = Deployment.start(env=env, kind="deploy", actor="warm", release_id=None, workloads=())
    lease: list[Any] = []

    def lock() -> None:
        lease.append(store.acquire(env, holder="warm", ttl_s=30.0))

    workload = WorkloadRecord(env=env, name="w", deployment_id=dep.id, spec={}, uids=("u",))
    instance = InstanceRecord(
        env=env,
        uid="u",
        component="c@1.0.0",
        digest="sha256:0",
        core=False,
        params={},
        requires={},
        outputs={"name": "n", "password": "p"},
        secret_keys=("password",),
    )
    decision = Decision(
        id="warm", at=0.0, stage="plan", env=env, actor="warm", input_hash="", revision=""
    )
    progress = [
        DeploymentEvent(seq=n, at=0.0, kind="planned", address="a", message="warm") for n in (1, 2)
    ]

    return [
        store.now,
        store.installation_id,
        store.environments,
        lambda: store.snapshot(env),
        lambda: store.intents(env),
        lambda: store.was_applied(env, "warm"),
        lambda: store.lock_info(env),
        lock,
        lambda: store.check_fence(lease[0]),
        lambda: store.mark_applied(lease[0], "warm"),
        # one row, and several (an executemany: compiled apart)
        lambda: records.record_deploy(
            env, put_workloads=[workload], put_instances=[instance], lease=lease[0]
        ),
        lambda: records.record_deploy(
            env,
            put_workloads=[workload, replace(workload, name="v")],
            put_instances=[instance, replace(instance, uid="v")],
            lease=lease[0],
        ),
        lambda: records.record_deploy(  # a removal
            env,
            put_workloads=[],
            drop_workloads=["v"],
            put_instances=[],
            drop_instances=["v"],
            lease=lease[0],
        ),
        lambda: store.heartbeat(lease[0], ttl_s=30.0),
        lambda: store.release(lease[0]),
        lambda: governance.bootstrap("warm"),
        governance.grants,
        lambda: governance.append(
            actor="warm", action="deploy", target=f"env:{env}", result=AuditResult.OK, detail={}
        ),
        records.documents,
        lambda: records.environment(env),
        records.environments,
        lambda: records.put_deployment(dep),
        lambda: records.interrupt_running(env),
        lambda: records.add_events(dep.id, progress[:1]),
        lambda: records.add_events(dep.id, progress),
        lambda: governance.record_decision(decision),
        lambda: events.publish(store, "deployment.started", f"deployment {dep.id}", env=env),
        lambda: records.deployments(env),
        lambda: records.workloads(env),
        lambda: records.instances(env),
        lambda: driftlog.last(store, env),
    ]
