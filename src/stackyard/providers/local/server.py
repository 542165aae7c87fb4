"""The shared life cycle of a supervised local server (PostgreSQL, Redis): one kind, many hooks.

``SupervisedServer`` implements observe/create/update/delete once; a concrete kind supplies
the server-specific steps (initialise a data dir, the command line, a readiness probe, a
password change). Create and update are the same convergence: claim the directory, initialise
it if needed, start the server if it is stopped, and bring the admin password in line.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.host import accounts, supervise
from stackyard.host.supervise import ServerUser
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    NamingRule,
    Observed,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    config_field,
)
from stackyard.providers.local import layout
from stackyard.providers.random import generate_password

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0


class ServerConfig(KindConfig):
    """Fields every local server has."""

    name: str = config_field(
        "",
        replace_on_change=True,
        pattern=r"^$|" + layout.NAME_PATTERN,
        description="Directory name under <home>/servers; empty means the physical name.",
    )
    port: int = config_field(
        0,
        replace_on_change=True,
        ge=0,
        le=65535,
        description="TCP port on 127.0.0.1; 0 picks a free port at create and keeps it.",
    )
    password: str = config_field(
        "",
        sensitive=True,
        description="Admin password; empty generates one at create and keeps it.",
    )
    home: str = config_field(
        "",
        replace_on_change=True,
        description="The stackyard home; empty means $STACKYARD_HOME or ~/.stackyard.",
    )


@dataclass(frozen=True, slots=True)
class ServerState:
    """What ``server.json`` records: fixed at first create, read on every later call."""

    port: int
    requested_port: int
    data_dir: str
    binary: str
    user: str | None


@dataclass(frozen=True, slots=True)
class ServerPaths:
    """The files of one server under the home."""

    root: Path

    @property
    def state(self) -> Path:
        """``server.json``."""
        return self.root / "server.json"

    @property
    def secret(self) -> Path:
        """The admin password file (0600)."""
        return self.root / "secret"

    @property
    def log(self) -> Path:
        """The server's output."""
        return self.root / "server.log"

    @property
    def pid(self) -> Path:
        """The pidfile."""
        return self.root / "server.pid"

    @property
    def data(self) -> Path:
        """The data dir, or a symlink to it."""
        return self.root / "data"

    def read_state(self) -> ServerState | None:
        """The recorded state, or ``None`` before the first create got that far."""
        try:
            return ServerState(**json.loads(self.state.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write_state(self, state: ServerState) -> None:
        """Record ``state`` atomically."""
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state)

    def read_secret(self) -> str:
        """The current admin password, or ``""``."""
        try:
            return self.secret.read_text().strip()
        except OSError:
            return ""

    def write_secret(self, value: str) -> None:
        """Record the admin password (0600) atomically."""
        tmp = self.secret.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        tmp.replace(self.secret)


class SupervisedServer(ABC):
    """Base of ``local.postgres_server`` and ``local.redis_server``."""

    name: ClassVar[str]
    config_model: ClassVar[type[KindConfig]]
    sensitive_outputs: ClassVar[frozenset[str]]
    naming: ClassVar[NamingRule] = NamingRule(max_length=63)
    stop_signal: ClassVar[int]

    # -- hooks -------------------------------------------------------------------------------

    @abstractmethod
    def find_binary(self, address: str) -> str:
        """The executable (or bin dir) to use for a new server; permanent error when none."""

    @abstractmethod
    def initialised(self, data_dir: Path) -> bool:
        """Whether ``data_dir`` holds a complete, initialised server."""

    @abstractmethod
    def initialise(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Make an empty ``data_dir`` into a server's data dir, with ``password`` as admin's."""

    @abstractmethod
    def prepare_start(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Fix up anything a killed server left behind, just before a start."""

    @abstractmethod
    def command(self, data_dir: Path, state: ServerState, config: KindConfig) -> list[str]:
        """The server's argv. No secrets: argv is world-readable in /proc."""

    @abstractmethod
    def answering(self, port: int, password: str) -> bool:
        """Whether the server accepts sessions (a refused password still counts)."""

    @abstractmethod
    def change_password(self, port: int, old: str, new: str, data_dir: Path) -> None:
        """Make ``new`` the admin password of the running server (which may already have it)."""

    @abstractmethod
    def outputs(self, paths: ServerPaths, state: ServerState, password: str) -> dict[str, Any]:
        """The outputs consumers get."""

    def environment(self) -> dict[str, str]:
        """The server's environment: minimal and locale-neutral."""
        return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}

    # -- paths and state --------------------------------------------------------------------

    def config(self, raw: Mapping[str, Any]) -> KindConfig:
        """The validated config model."""
        return self.config_model.model_validate(dict(raw))

    def paths(self, meta: ResourceMeta, cfg: KindConfig) -> ServerPaths:
        """Where this server's files live."""
        assert isinstance(cfg, ServerConfig)
        name = layout.checked_name(cfg.name or meta.physical_name, address=meta.address)
        return ServerPaths(layout.home_dir(cfg.home) / "servers" / name)

    def _new_state(
        self, paths: ServerPaths, cfg: ServerConfig, user: ServerUser | None, address: str
    ) -> ServerState:
        if user is None or supervise.reachable_by(paths.root, user):
            data_dir = paths.data
        else:
            data_dir = layout.external_data_dir(paths.root)
        return ServerState(
            port=cfg.port or supervise.free_port(HOST),
            requested_port=cfg.port,
            data_dir=str(data_dir),
            binary=self.find_binary(address),
            user=user.name if user else None,
        )

    def _prepare_data_dir(
        self, paths: ServerPaths, state: ServerState, user: ServerUser | None, meta: ResourceMeta
    ) -> Path:
        data_dir = Path(state.data_dir)
        if data_dir != paths.data:
            layout.claim(data_dir, meta.label, address=meta.address)
            if not paths.data.is_symlink():
                paths.data.symlink_to(data_dir)
        else:
            data_dir.mkdir(mode=0o700, exist_ok=True)
        supervise.give(data_dir, user, 0o700)
        return data_dir

    # -- the contract -----------------------------------------------------------------------

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the server's directory and process. No writes; safe to repeat.

        Missing directory: ``None``. Foreign marker: unmanaged. Otherwise health is ``ok``
        (running and listening), ``stopped`` (not running) or ``degraded`` (half created, or
        running but not listening).
        """
        cfg = self.config(req.config)
        with layout.provider_errors(req.meta.address):
            paths = self.paths(req.meta, cfg)
            owner = layout.ownership(paths.root, req.meta.label)
            if owner is layout.Ownership.MISSING:
                return None
            if owner is layout.Ownership.FOREIGN:
                return Observed(
                    config={},
                    managed=False,
                    detail=f"{paths.root} belongs to {layout.owner_of(paths.root)}",
                )
            state = paths.read_state()
            password = paths.read_secret()
            observed: dict[str, Any] = {"name": paths.root.name}
            if state is None or not password or not self.initialised(Path(state.data_dir)):
                return Observed(config=observed, health="degraded", detail="not initialised")
            assert isinstance(cfg, ServerConfig)
            observed["port"] = state.requested_port
            observed["password"] = password if cfg.password else ""
            outputs = self.outputs(paths, state, password)
            if supervise.running(paths.pid) is None:
                return Observed(observed, outputs, health="stopped", detail="not running")
            if not supervise.port_open(state.port, HOST):
                return Observed(observed, outputs, health="degraded", detail="not listening")
            return Observed(observed, outputs)

    def create(self, req: CreateRequest) -> Applied:
        """Initialise and start the server; converges on a half-made or stopped one of ours.

        A directory with another owner's marker is refused. Safe to repeat.
        """
        return self._converge(req.meta, self.config(req.config))

    def update(self, req: UpdateRequest) -> Applied:
        """Start a stopped server and apply a changed password. Safe to repeat."""
        return self._converge(req.meta, self.config(req.config))

    def delete(self, req: DeleteRequest) -> None:
        """Stop the server and remove its directories if they carry our marker.

        A missing server is success; a foreign one is refused. Safe to repeat.
        """
        cfg = self.config(req.config)
        address, label = req.meta.address, req.meta.label
        with layout.provider_errors(address):
            paths = self.paths(req.meta, cfg)
            owner = layout.ownership(paths.root, label)
            if owner is layout.Ownership.MISSING:
                return
            if owner is layout.Ownership.FOREIGN:
                layout.remove(paths.root, label, address=address)  # raises with the reason
            supervise.stop(paths.pid, sig=self.stop_signal)
            state = paths.read_state()
            external = layout.external_data_dir(paths.root)
            if (state and Path(state.data_dir) == external) or external.exists():
                layout.remove(external, label, address=address)
            layout.remove(paths.root, label, address=address)
            if state and state.user == accounts.account_name(f"server:{paths.root}"):
                accounts.remove(f"server:{paths.root}")  # its files are gone: so is it
            accounts.reap_orphans()  # accounts left by creates killed before their first file

    def _converge(self, meta: ResourceMeta, cfg: KindConfig) -> Applied:
        assert isinstance(cfg, ServerConfig)
        with layout.provider_errors(meta.address):
            paths = self.paths(meta, cfg)
            layout.claim(paths.root, meta.label, address=meta.address, mode=0o711)
            paths.root.chmod(0o711)  # the server user may need to pass through to data/
            user = supervise.server_user(f"server:{paths.root}")
            state = paths.read_state()
            if state is None:
                state = self._new_state(paths, cfg, user, meta.address)
                paths.write_state(state)
            elif user is not None and (
                state.user != user.name or not supervise.reachable_by(Path(state.data_dir), user)
            ):
                state = self._move_to(paths, state, user, meta)
            current = paths.read_secret()
            if not current:
                current = cfg.password or generate_password(32, symbols=False)
                paths.write_secret(current)
            data_dir = self._prepare_data_dir(paths, state, user, meta)
            if not self.initialised(data_dir):
                supervise.stop(paths.pid, sig=self.stop_signal)
                _empty(data_dir)
                self.initialise(data_dir, state, current, user)
            if supervise.running(paths.pid) is None:
                self._start(paths, state, data_dir, cfg, current, user, meta.address)
            if cfg.password and cfg.password != current:
                self.change_password(state.port, current, cfg.password, data_dir)
                paths.write_secret(cfg.password)
                current = cfg.password
            return Applied(self.outputs(paths, state, current), physical_id=str(paths.root))

    def _move_to(
        self, paths: ServerPaths, state: ServerState, user: ServerUser, meta: ResourceMeta
    ) -> ServerState:
        """Hand a server made under another account (the shared ``stackyard`` of older
        versions) to its own, and move a data dir its account cannot reach (in a home that
        is now 0700) out to ``layout.external_data_dir``. Stops the server; safe to repeat."""
        supervise.stop(paths.pid, sig=self.stop_signal)
        data_dir = Path(state.data_dir)
        if data_dir == paths.data and not supervise.reachable_by(paths.root, user):
            external = layout.external_data_dir(paths.root)
            layout.claim(external, meta.label, address=meta.address)
            for entry in data_dir.iterdir():
                shutil.move(entry, external / entry.name)
            data_dir.rmdir()
            paths.data.symlink_to(external)
            data_dir = external
        if data_dir.is_dir():
            supervise.give_tree(data_dir, user)
            data_dir.chmod(0o700)
        state = replace(state, user=user.name, data_dir=str(data_dir))
        paths.write_state(state)
        return state

    def _start(
        self,
        paths: ServerPaths,
        state: ServerState,
        data_dir: Path,
        cfg: KindConfig,
        password: str,
        user: ServerUser | None,
        address: str,
    ) -> None:
        old = supervise.read_pidfile(paths.pid)
        if old is not None:
            supervise.reap_group(old)  # children of a killed server may linger
        self.prepare_start(data_dir, state, password, user)
        proc = supervise.launch(
            self.command(data_dir, state, cfg),
            pidfile=paths.pid,
            logfile=paths.log,
            cwd=data_dir,
            env=self.environment(),
            user=user,
        )
        if not supervise.wait_ready(
            proc, lambda: self.answering(state.port, password), timeout=READY_TIMEOUT
        ):
            tail = supervise.log_tail(paths.log)
            supervise.stop(paths.pid, sig=self.stop_signal, timeout=5)
            raise ProviderTransientError(
                f"{self.name} on port {state.port} did not become ready: {tail or 'no output'}",
                address=address,
                hint=f"See {paths.log}.",
            )


def _empty(directory: Path) -> None:
    """Remove everything inside ``directory`` except our marker (a half-made data dir)."""
    for entry in directory.iterdir():
        if entry.name == layout.MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def missing_binary(kind: str, what: str, extra: str, address: str) -> ProviderPermanentError:
    """The error for a machine with no usable server binary."""
    return ProviderPermanentError(
        f"{kind}: no {what} found on this machine",
        address=address,
        hint=f"Install {what} from your system's packages, or `pip install 'stackyard[local]'` "
        f"({extra}).",
    )
