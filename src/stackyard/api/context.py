"""The server's context: its settings and limits, the authenticator and the job queue, and the
one way a route runs a service call (as the authenticated identity, in a worker thread, within
the request timeout).

A route never opens a workspace itself: ``Yard.call`` makes one for the identity, in the
thread that runs the call, on the store, registry and provider kinds the server opened once
(a call that outlives its request's timeout, whose client got a 504, holds nothing of its
own to close). The authenticator, the job queue and every workspace share one state store,
so one connection pool per server process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from stackyard.settings import Settings

if TYPE_CHECKING:
    from stackyard.components.registry import Registry
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import Authenticator, Identity
    from stackyard.jobs import Jobs
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.state.changes import Generation
    from stackyard.state.sql import SqlStateStore

T = TypeVar("T")

#: The largest request body accepted (bytes): Score files and platform folders are small.
DEFAULT_BODY_LIMIT = 1024 * 1024
#: How long a synchronous route may take (seconds); long operations are jobs.
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The edge's limits: request body size, synchronous request timeout, CORS origins (none:
    no CORS headers at all), failed authentications allowed per client and minute (None: the
    authenticator's default), the poll interval of the event streams, and how long a
    verified token is trusted before the store is read again (``token_cache_s``; 0: every
    request reads it), and the read cache (``read_cache``, ``status_max_age_s``)."""

    body_limit: int = DEFAULT_BODY_LIMIT
    timeout_s: float = DEFAULT_TIMEOUT_S
    cors_origins: tuple[str, ...] = ()
    auth_failures: int | None = None
    poll_s: float = 0.2
    heartbeat_s: float = 15.0
    token_cache_s: float = 5.0
    #: the read cache (``stackyard.api.readcache``): on, and how old a cached status may be
    read_cache: bool = True
    status_max_age_s: float = 1.0


def acting(settings: Settings, who: Identity) -> Settings:
    """``settings`` for a request by ``who``: their user and extra teams; nothing the request
    itself says (no header or variable) names the actor."""
    return dataclasses.replace(settings, actor=who.user, teams=tuple(who.teams))


class Yard:
    """What every request of one server shares (``app.state.yard``)."""

    def __init__(self, settings: Settings, config: ApiConfig) -> None:
        self.settings = settings
        self.config = config
        self._authenticator: Authenticator | None = None
        self._jobs: Jobs | None = None
        self._store: SqlStateStore | None = None
        self._parts: tuple[SqlStateStore, Registry, ProviderRegistry] | None = None
        self._generation: Generation | None = None
        self._mutex = threading.Lock()

    # -- opened at startup, closed at shutdown ------------------------------------------------

    def start(self) -> None:
        """Open the state store, the authenticator and the job queue on it."""
        from stackyard.identity import Authenticator
        from stackyard.identity.limiter import FailureLimiter
        from stackyard.jobs import open_jobs

        store = self.store()
        limit = self.config.auth_failures
        self._authenticator = Authenticator(
            self.settings,
            limiter=None if limit is None else FailureLimiter(limit=limit),
            store=store,
            cache_s=self.config.token_cache_s,
        )
        self._jobs = open_jobs(self.settings, store=store)
        if self.config.read_cache and self._generation is None:
            from stackyard.state.changes import generation_for

            self._generation = generation_for(self.settings.database_url)

    def store(self) -> SqlStateStore:
        """The one state store of this server process (opened on first use)."""
        with self._mutex:
            if self._store is None:
                from stackyard.state import open_store

                self._store = open_store(self.settings)
            return self._store

    def stop(self) -> None:
        """Close what ``start`` (and the first request) opened."""
        parts, self._parts = self._parts, None
        store, self._store = self._store, None
        generation, self._generation = self._generation, None
        if generation is not None:
            generation.close()
        try:
            if self._jobs is not None:
                self._jobs.close()
        finally:
            if self._authenticator is not None:
                self._authenticator.close()
            self._jobs = self._authenticator = None
            try:
                if parts is not None:
                    parts[1].close()
            finally:
                if store is not None:
                    store.close()

    @property
    def authenticator(self) -> Authenticator:
        """The authenticator (opened at startup)."""
        if self._authenticator is None:
            self.start()
        assert self._authenticator is not None
        return self._authenticator

    def generation(self) -> Generation | None:
        """The store's change generation for the read cache (None: off, or not started)."""
        return self._generation

    def changed(self) -> None:
        """Tell the read cache that the store may have changed in a way this process has not
        seen yet (a client was just told that a job ended: its next read must show what
        the job did, even before the change notification arrives)."""
        generation = self._generation
        if generation is not None:
            generation.bump()

    @property
    def jobs(self) -> Jobs:
        """The job queue (opened at startup)."""
        if self._jobs is None:
            self.start()
        assert self._jobs is not None
        return self._jobs

    # -- running service calls ------------------------------------------------------------------

    async def call(self, who: Identity, fn: Callable[[Workspace], T]) -> T:
        """``fn(workspace)`` for ``who``, in a worker thread, within the request timeout."""
        settings = acting(self.settings, who)

        def run() -> T:
            from stackyard.environments.workspace import Workspace

            store, registry, kinds = self.parts()
            ws = Workspace(settings, store, registry, kinds)
            # No bootstrap here: a server never makes a caller admin (``stackyard init``
            # made the OS account that created the home its first admin).
            return fn(ws)

        return await self.bounded(run)

    def parts(self) -> tuple[SqlStateStore, Registry, ProviderRegistry]:
        """The state store, the registry and the provider kinds, opened once and shared by
        every request (each gets its own workspace on them, as its own actor): opening them
        is most of what a read costs."""
        if self._parts is not None:
            return self._parts
        from stackyard.components.registry import open_registry
        from stackyard.environments.workspace import Workspace
        from stackyard.home import enforce_private
        from stackyard.providers.registry import ProviderRegistry

        if not (self.settings.home / "state.db").exists() and (
            self.settings.database_url.startswith("sqlite")
        ):
            Workspace.open(self.settings).close()  # raises: no home here
        store = self.store()
        with self._mutex:
            if self._parts is None:
                enforce_private(self.settings.home)
                registry = open_registry(
                    self.settings.registry,
                    home=self.settings.home,
                    plain_http=self.settings.registry_plain_http,
                )
                self._parts = (store, registry, ProviderRegistry.discover())
            return self._parts

    async def bounded(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread; a 504 problem past the request timeout (the call goes
        on in its thread and closes what it opened; its result is dropped)."""
        try:
            return await asyncio.wait_for(run_in_threadpool(fn), self.config.timeout_s)
        except TimeoutError:
            raise HTTPException(
                504, f"The request took longer than {self.config.timeout_s:g} s"
            ) from None
