"""The workspace: the composition root of one command, which opens the stores and builds the parts.

It opens the state store (and its ``records`` and ``governance``), the component registry
and the provider kinds named by the settings, and builds from them the parts that the steps
of the road receive: ``platform`` (the applied configuration), ``access`` (who acts, RBAC,
audit), ``catalog`` (published builds) and ``governor`` (policies and decisions). A step
never receives the workspace itself, only the parts it needs.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from stackyard.environments.access import Access
from stackyard.environments.catalog import Catalog
from stackyard.environments.governed import Governor
from stackyard.environments.platform import Applied
from stackyard.environments.runner import runtime_for, runtime_kind
from stackyard.environments.target import environment
from stackyard.errors import InvalidInputError
from stackyard.settings import Settings

if TYPE_CHECKING:
    from stackyard.components.registry import Registry
    from stackyard.model.environment import Environment
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.runtime.local import LocalRuntime
    from stackyard.state.sql import SqlStateStore


class Workspace:
    """Opened with ``Workspace.open(settings)``; close it (or use ``with``)."""

    def __init__(
        self,
        settings: Settings,
        store: SqlStateStore,
        registry: Registry,
        kinds: ProviderRegistry,
    ) -> None:
        from stackyard.policy.sandbox import Limits
        from stackyard.state.governance import Governance
        from stackyard.state.records import Records

        self.settings = settings
        self.store = store
        self.records = Records(store)
        #: grants, decisions, audit events and approvals
        self.governance = Governance(store, home=settings.home)
        self.registry = registry
        self.kinds = kinds
        #: how long a writer waits for a busy environment's lock (``--lock-timeout``)
        self.lock_wait_s: float = settings.lock_timeout_s
        self.platform = Applied(self.records)
        self.access = Access(
            actor=settings.actor,
            governance=self.governance,
            records=self.records,
            teams_of=lambda user: self.platform().teams_of(user),
            extra_teams=settings.teams,
        )
        self.catalog = Catalog(registry, home=settings.home)
        self.governor = Governor(
            platform=self.platform,
            access=self.access,
            catalog=self.catalog,
            governance=self.governance,
            records=self.records,
            clock=store.now,
            limits=Limits(settings.policy_timeout_s, settings.policy_memory_mb),
        )

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        """Open the store, the registry and the provider kinds named by ``settings``."""
        from stackyard.components.registry import open_registry
        from stackyard.home import enforce_private
        from stackyard.providers.registry import ProviderRegistry
        from stackyard.state import open_store

        if not (settings.home / "state.db").exists() and settings.database_url.startswith("sqlite"):
            raise InvalidInputError(
                f"No stackyard home at {settings.home}",
                hint="Run 'stackyard init' (or 'stackyard quickstart') first.",
            )
        enforce_private(settings.home)
        store = open_store(settings)
        try:
            registry = open_registry(
                settings.registry, home=settings.home, plain_http=settings.registry_plain_http
            )
        except BaseException:
            store.close()
            raise
        ws = cls(settings, store, registry, ProviderRegistry.discover())
        ws.access.bootstrap()
        return ws

    def close(self) -> None:
        """Release the store and the registry."""
        try:
            self.registry.close()
        finally:
            self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- what a command looks up first ----------------------------------------------------

    def environment(self, name: str) -> Environment:
        """A live (or declared) environment, or ``InvalidInputError`` with the known names."""
        return environment(self.records, name)

    def runtime(self, env: str) -> LocalRuntime:
        """The environment's runtime: its type's (``local`` or ``containers``)."""
        kind = runtime_kind(self.platform(), self.records.environment(env))
        installation = self.store.installation_id() if kind != "local" else ""
        return runtime_for(self.settings.home, env, kind=kind, installation=installation)
