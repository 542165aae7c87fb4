"""The ``noop`` provider: ``noop.resource``, the test and benchmark double, and its ledger.

A ``noop.resource`` is a line in a *ledger*: an append-only JSON-lines file that plays "the
real world". Every real create, update and delete appends one line::

    {"ts": "...", "op": "create", "name": "<physical name>", "address": "...",
     "config": {...}, "id": "<uuid>", "pid": 1234}

Each line is written with one ``write`` on an ``O_APPEND`` descriptor while holding
``fcntl.flock(LOCK_EX)`` on the file, so any number of processes can share a ledger. A written
line survives the writer's ``kill -9`` (it is in the kernel's page cache); set
``STACKYARD_NOOP_FSYNC=1`` to also ``fsync`` each line, which only matters for power loss and
costs milliseconds per call.
The decision *and* the append happen under that lock, which makes ``create`` idempotent even
when two processes race: a name that is already live with our address is returned as it is,
and nothing is appended. ``Ledger`` replays the file (``create``/``update`` set a name,
``delete`` removes it); tests use it to count duplicates and orphans and to make drift.

Config. Unknown keys are allowed and echoed back as outputs (``id`` is added). These keys
control the double and are neither echoed nor observed:

- ``latency_ms`` (default 0): sleep this long in each create, update and delete;
- ``observe_latency_ms`` (default 0): sleep this long in each observe;
- ``ledger``: the ledger's path; otherwise ``$STACKYARD_NOOP_LEDGER``; one is required;
- ``fail``: the failure schedule, a mapping of operation (``observe``, ``create``,
  ``update``, ``delete``) to when it fails:

  - ``"never"`` (the default): it succeeds;
  - ``"always"``: every attempt fails;
  - ``N`` (an integer): the first N attempts for this physical name fail, later ones succeed;
  - ``"transient"``: the first attempt fails with a transient error (a blip), later ones
    succeed.

- ``fail_transient`` (default False): scheduled failures raise ``ProviderTransientError``
  instead of ``ProviderPermanentError`` (``"transient"`` is always transient);
- ``fail_after_apply`` (default False): a scheduled failure of create/update/delete happens
  *after* the change is written to the ledger: the change took effect but the caller sees
  an error, like a response lost in a crash. Use it to test intent-journal recovery.

Every failed attempt is itself recorded in the ledger as an ``attempt-failed`` line
(``{"op": "attempt-failed", "name", "address", "attempt": "<op>", ...}``), and "the first N
attempts" counts those lines, so the schedule holds across processes and restarts.

``secret`` is an optional config field flagged ``sensitive``; it is echoed as the output
``secret``, which is listed in ``sensitive_outputs``, so tests can check masking end to end.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from stackyard import __version__
from stackyard.errors import ProviderError, ProviderPermanentError, ProviderTransientError
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    NamingRule,
    Observed,
    ObserveRequest,
    Provider,
    UpdateRequest,
    config_field,
)

LEDGER_ENV = "STACKYARD_NOOP_LEDGER"
CONTROL_KEYS = frozenset(
    {"latency_ms", "observe_latency_ms", "ledger", "fail", "fail_transient", "fail_after_apply"}
)
Operation = Literal["observe", "create", "update", "delete"]
When = Literal["never", "always", "transient"] | Annotated[int, Field(ge=0)]


class NoopConfig(KindConfig):
    """Config of ``noop.resource``; unknown keys are allowed and echoed as outputs."""

    model_config = ConfigDict(extra="allow", frozen=True)

    latency_ms: float = config_field(0.0, ge=0, description="Sleep in create/update/delete.")
    observe_latency_ms: float = config_field(0.0, ge=0, description="Sleep in observe.")
    ledger: str | None = config_field(None, description=f"Ledger path; else ${LEDGER_ENV}.")
    fail: dict[Operation, When] = Field(default_factory=dict)
    fail_transient: bool = config_field(False, description="Fail with transient errors.")
    fail_after_apply: bool = config_field(False, description="Fail after writing the change.")
    secret: str | None = config_field(None, sensitive=True, description="Echoed, sensitive.")


# -- the ledger ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveObject:
    """One live name in the ledger."""

    config: Mapping[str, Any]
    address: str
    id: str


@dataclass(slots=True)
class _Replay:
    """Replayed ledger state, and how far into the file it has read."""

    ino: int = -1
    offset: int = 0
    live: dict[str, LiveObject] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)

    def apply(self, entry: Mapping[str, Any]) -> None:
        op, name = entry.get("op"), str(entry.get("name", ""))
        prior = self.live.get(name)
        if op == "create":
            if prior is not None:
                self.duplicates.append(name)
            self.live[name] = LiveObject(
                dict(entry.get("config") or {}), str(entry.get("address", "")), str(entry["id"])
            )
        elif op == "update" and prior is not None:
            self.live[name] = LiveObject(dict(entry.get("config") or {}), prior.address, prior.id)
        elif op == "drift-update" and prior is not None:
            merged = {**prior.config, **(entry.get("config") or {})}
            self.live[name] = LiveObject(merged, prior.address, prior.id)
        elif op in ("delete", "drift-delete"):
            self.live.pop(name, None)
        elif op == "attempt-failed":
            self.failures[(name, str(entry.get("attempt", "")))] += 1


class Ledger:
    """An append-only JSON-lines file shared by processes; replayed incrementally.

    The replayed state is cached, keyed on the file's inode and the offset read so far; each
    refresh reads only the appended tail (and only whole lines), so observing 10,000 names
    costs one ``stat`` each, not a replay each. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mutex = threading.Lock()
        self._state = _Replay()

    # -- reading --------------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """Every line, parsed, in order (a read of the whole file)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def live(self) -> dict[str, dict[str, Any]]:
        """Name → config of every live object (creates and updates set, deletes remove)."""
        with self._mutex:
            state = self._refresh()
            return {name: dict(obj.config) for name, obj in state.live.items()}

    def get(self, name: str) -> LiveObject | None:
        """The live object called ``name``, or ``None``."""
        with self._mutex:
            return self._refresh().live.get(name)

    def duplicates(self) -> list[str]:
        """Names created while already live, once per such create."""
        with self._mutex:
            return list(self._refresh().duplicates)

    def orphans(self, recorded_names: set[str]) -> list[str]:
        """Live names that ``recorded_names`` (e.g. the state's physical names) does not hold."""
        return sorted(set(self.live()) - set(recorded_names))

    def failed_attempts(self, name: str, op: str) -> int:
        """How many ``attempt-failed`` lines name ``name`` and ``op``."""
        with self._mutex:
            return self._refresh().failures[(name, op)]

    # -- drift, out of band ---------------------------------------------------------------

    def drift_delete(self, name: str) -> None:
        """Delete ``name`` behind stackyard's back (op ``drift-delete``)."""
        with self.transaction() as txn:
            if txn.get(name) is None:
                raise KeyError(f"'{name}' is not live in the ledger {self.path}")
            txn.append("drift-delete", name)

    def drift_change(self, name: str, **config: Any) -> None:
        """Change some of ``name``'s config behind stackyard's back (op ``drift-update``)."""
        with self.transaction() as txn:
            if txn.get(name) is None:
                raise KeyError(f"'{name}' is not live in the ledger {self.path}")
            txn.append("drift-update", name, config=config)

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        """Hold the file's exclusive lock with fresh state: decide and append atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._mutex:
                self._refresh()
            yield _Transaction(self, fd)
        finally:
            os.close(fd)  # closing releases the flock

    def _refresh(self) -> _Replay:
        """Bring the cached replay up to date with the file. Call with ``_mutex`` held."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._state = _Replay()
            return self._state
        state = self._state
        if st.st_ino != state.ino or st.st_size < state.offset:
            state = self._state = _Replay(ino=st.st_ino)  # new or truncated file: replay all
        if st.st_size == state.offset:
            return state
        with self.path.open("rb") as fh:
            fh.seek(state.offset)
            tail = fh.read()
        end = tail.rfind(b"\n") + 1  # a line still being written is read next time
        for raw in tail[:end].splitlines():
            if raw.strip():
                state.apply(json.loads(raw))
        state.offset += end
        return state


class _Transaction:
    """The ledger under its exclusive lock. Reads see every line; appends are durable."""

    def __init__(self, ledger: Ledger, fd: int) -> None:
        self._ledger = ledger
        self._fd = fd

    def get(self, name: str) -> LiveObject | None:
        with self._ledger._mutex:
            return self._ledger._state.live.get(name)

    def failed_attempts(self, name: str, op: str) -> int:
        with self._ledger._mutex:
            return self._ledger._state.failures[(name, op)]

    def append(self, op: str, name: str, **fields: Any) -> None:
        entry = {
            "ts": datetime.now(UTC).isoformat(),
            "op": op,
            "name": name,
            **fields,
            "pid": os.getpid(),
        }
        data = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if os.environ.get("STACKYARD_NOOP_FSYNC") == "1":
            os.fsync(self._fd)
        with self._ledger._mutex:
            self._ledger._refresh()


# -- the kind -----------------------------------------------------------------------------


def _echo(cfg: NoopConfig) -> dict[str, Any]:
    """The config as the "real object" holds it: everything but the control keys."""
    dumped = cfg.model_dump(mode="json")
    return {k: v for k, v in dumped.items() if k not in CONTROL_KEYS}


def _outputs(obj: LiveObject) -> dict[str, Any]:
    return {**obj.config, "id": obj.id}


class Resource:
    """``noop.resource``: an object that exists as lines in a ledger file."""

    name: ClassVar[str] = "noop.resource"
    config_model: ClassVar[type[KindConfig]] = NoopConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"secret"})
    naming: ClassVar[NamingRule] = NamingRule(max_length=128, allowed="a-z0-9", separator="-")

    def __init__(self) -> None:
        # One Ledger per path, so its replay cache is shared by every call in this process.
        self._ledgers: dict[Path, Ledger] = {}
        self._mutex = threading.Lock()

    def ledger(self, cfg: NoopConfig, address: str = "") -> Ledger:
        """The ledger named by ``cfg.ledger`` or ``$STACKYARD_NOOP_LEDGER``."""
        raw = cfg.ledger or os.environ.get(LEDGER_ENV)
        if not raw:
            raise ProviderPermanentError(
                "noop.resource has no ledger: set the config key 'ledger' or the environment "
                f"variable {LEDGER_ENV} to a file path",
                address=address,
                hint=f"For example: export {LEDGER_ENV}=/tmp/noop-ledger.jsonl",
            )
        path = Path(raw).expanduser().absolute()
        with self._mutex:
            if path not in self._ledgers:
                self._ledgers[path] = Ledger(path)
            return self._ledgers[path]

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Replay the ledger (cached) and report the live object called the physical name.

        Writes nothing unless a failure is scheduled for ``observe`` (the failed attempt is
        recorded). An object recorded under another address is reported as unmanaged.
        """
        cfg = NoopConfig.model_validate(dict(req.config))
        _sleep(cfg.observe_latency_ms)
        ledger = self.ledger(cfg, req.meta.address)
        if cfg.fail.get("observe", "never") != "never":
            with ledger.transaction() as txn:
                _maybe_fail(txn, cfg, "observe", req.meta.physical_name, req.meta.address)
        obj = ledger.get(req.meta.physical_name)
        if obj is None:
            return None
        return Observed(
            config=dict(obj.config),
            outputs=_outputs(obj),
            managed=obj.address == req.meta.address,
            detail="" if obj.address == req.meta.address else f"owned by {obj.address}",
        )

    def create(self, req: CreateRequest) -> Applied:
        """Append a ``create`` line, unless the name is already live with our address.

        Safe to repeat: a repeat returns the live object (appending an ``update`` only if its
        config differs). A name live under another address is refused, never taken over.
        """
        cfg = NoopConfig.model_validate(dict(req.config))
        _sleep(cfg.latency_ms)
        name, address, config = req.meta.physical_name, req.meta.address, _echo(cfg)
        with self.ledger(cfg, address).transaction() as txn:
            _maybe_fail(txn, cfg, "create", name, address, before=True)
            live = txn.get(name)
            if live is None:
                txn.append("create", name, address=address, config=config, id=str(uuid.uuid4()))
            elif live.address != address:
                raise ProviderPermanentError(
                    f"noop object '{name}' exists and belongs to {live.address}",
                    address=address,
                )
            elif dict(live.config) != config:
                txn.append("update", name, address=address, config=config)
            _maybe_fail(txn, cfg, "create", name, address, before=False)
            obj = txn.get(name)
        assert obj is not None
        return Applied(outputs=_outputs(obj), physical_id=obj.id)

    def update(self, req: UpdateRequest) -> Applied:
        """Append an ``update`` line when the echoed config differs; safe to repeat.

        A missing object is a permanent error: it was deleted out of band, and a re-plan will
        create it.
        """
        cfg = NoopConfig.model_validate(dict(req.config))
        _sleep(cfg.latency_ms)
        name, address, config = req.meta.physical_name, req.meta.address, _echo(cfg)
        with self.ledger(cfg, address).transaction() as txn:
            _maybe_fail(txn, cfg, "update", name, address, before=True)
            live = txn.get(name)
            if live is None or live.address != address:
                raise ProviderPermanentError(
                    f"noop object '{name}' does not exist"
                    if live is None
                    else f"noop object '{name}' belongs to {live.address}",
                    address=address,
                    hint="Run the plan again: a missing object is planned as a create.",
                )
            if dict(live.config) != config:
                txn.append("update", name, address=address, config=config)
            _maybe_fail(txn, cfg, "update", name, address, before=False)
            obj = txn.get(name)
        assert obj is not None
        return Applied(outputs=_outputs(obj), physical_id=obj.id)

    def delete(self, req: DeleteRequest) -> None:
        """Append a ``delete`` line if the name is live with our address; missing is success.

        An object owned by another address is refused, never deleted.
        """
        cfg = NoopConfig.model_validate(dict(req.config))
        _sleep(cfg.latency_ms)
        name, address = req.meta.physical_name, req.meta.address
        with self.ledger(cfg, address).transaction() as txn:
            _maybe_fail(txn, cfg, "delete", name, address, before=True)
            live = txn.get(name)
            if live is not None and live.address != address:
                raise ProviderPermanentError(
                    f"noop object '{name}' belongs to {live.address}; refusing to delete it",
                    address=address,
                )
            if live is not None:
                txn.append("delete", name, address=address, config=dict(live.config))
            _maybe_fail(txn, cfg, "delete", name, address, before=False)


def _sleep(ms: float) -> None:
    if ms > 0:
        time.sleep(ms / 1000.0)


def _maybe_fail(
    txn: _Transaction,
    cfg: NoopConfig,
    op: Operation,
    name: str,
    address: str,
    *,
    before: bool = True,
) -> None:
    """Raise (recording the attempt) when the schedule says this attempt of ``op`` fails."""
    if op != "observe" and before == cfg.fail_after_apply:
        return  # this is not the phase the schedule fails in
    when = cfg.fail.get(op, "never")
    done = txn.failed_attempts(name, op)
    transient = cfg.fail_transient
    if when == "never":
        return
    if when == "transient":
        transient, when = True, 1
    if when != "always" and done >= int(when):
        return
    txn.append("attempt-failed", name, address=address, attempt=op)
    error: type[ProviderError] = ProviderTransientError if transient else ProviderPermanentError
    raise error(
        f"noop: scheduled failure of {op} for '{name}' (failed attempts so far: {done + 1})",
        address=address,
    )


PROVIDER = Provider(
    name="noop",
    version=__version__,
    kinds=(Resource(),),
    description="A ledger-backed test double with configurable latency and failures.",
)
