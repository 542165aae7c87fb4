"""The workspace: what every environment operation works with, opened once per command.

It bundles the settings, the state store and its records, the component registry (read
through a per-workspace cache, since published builds are immutable), the provider kinds,
the applied platform configuration and the local runtime of each environment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from stackyard.environments.platform import Platform, stored_platform
from stackyard.errors import InvalidInputError, PermissionDeniedError
from stackyard.model.component import ComponentManifest, manifest_from_data
from stackyard.model.environment import Environment
from stackyard.policy import inputs
from stackyard.policy.decision import Decision, PolicySet
from stackyard.policy.rbac import Action, Role, Target, permits, roles_of
from stackyard.settings import Settings

if TYPE_CHECKING:
    from stackyard.components.registry import Registry
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.runtime.local import LocalRuntime
    from stackyard.state.governance import Governance
    from stackyard.state.records import Records
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
        from stackyard.state.records import Records

        self.settings = settings
        self.store = store
        self.records: Records = Records(store)
        self.registry = registry
        self.kinds = kinds
        self._platform: Platform | None = None
        self._manifests: dict[tuple[str, str], tuple[ComponentManifest, str]] = {}
        #: lifecycle, deprecation and attestation of published builds (see ``governed``)
        self.component_facts: dict[tuple[str, str], dict[str, Any]] = {}
        self._versions: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        #: how long a writer waits for a busy environment's lock (``--lock-timeout``)
        self.lock_wait_s: float = settings.lock_timeout_s

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
            registry = open_registry(settings.registry, home=settings.home)
        except BaseException:
            store.close()
            raise
        ws = cls(settings, store, registry, ProviderRegistry.discover())
        ws.bootstrap()
        return ws

    def bootstrap(self) -> None:
        """A home with no grants at all (new, or made before RBAC) makes its first user admin."""
        if self.governance.bootstrap(self.actor):
            self.governance.append(
                actor=self.actor,
                action="access.manage",
                target=f"user:{self.actor}",
                result="ok",
                detail={"grant": {"role": "admin", "scope": "org"}, "bootstrap": True},
            )

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

    # -- platform and environments --------------------------------------------------------

    def platform(self) -> Platform:
        """The applied platform configuration (read once per workspace; ``platform_changed``
        drops it after an apply)."""
        if self._platform is None:
            self._platform = stored_platform(self.records.documents())
        return self._platform

    def platform_changed(self) -> None:
        """Forget the platform configuration and the policies compiled from it."""
        self._platform = None
        self.__dict__.pop("policies", None)

    def environment(self, name: str) -> Environment:
        """A live (or declared) environment, or ``InvalidInputError`` with the known names."""
        env = self.records.environment(name)
        if env is None or env.status == "destroyed":
            names = [e.name for e in self.records.environments()]
            raise InvalidInputError(
                f"No environment '{name}'",
                hint=f"Known environments: {', '.join(names) or 'none'}. Create one with 'stackyard env create'.",
            )
        return env

    def chain(self, env: Environment) -> list[Environment]:
        """``env`` and its ancestors, nearest first."""
        out = [env]
        seen = {env.name}
        while out[-1].parent:
            parent = self.records.environment(out[-1].parent)
            if parent is None or parent.name in seen:
                break
            seen.add(parent.name)
            out.append(parent)
        return out

    def env_dir(self, env: str) -> Path:
        """The environment's folder under the home (runtime files, logs)."""
        return self.settings.home / "envs" / env

    def runtime(self, env: str) -> LocalRuntime:
        """The environment's local runtime."""
        from stackyard.runtime.isolation import env_purpose
        from stackyard.runtime.local import LocalRuntime

        return LocalRuntime(
            self.env_dir(env) / "workloads", account_for=env_purpose(self.settings.home, env)
        )

    # -- governance: who acts, may they, what do policies say, and the audit trail --------

    @cached_property
    def governance(self) -> Governance:
        """Grants, decisions, audit events and approvals."""
        from stackyard.state.governance import Governance

        return Governance(self.store, home=self.settings.home)

    @cached_property
    def policies(self) -> PolicySet:
        """The applied policies (compiled lazily, per selection)."""
        from stackyard.policy.sandbox import Limits

        limits = Limits(self.settings.policy_timeout_s, self.settings.policy_memory_mb)
        return PolicySet(list(self.platform().policies.values()), limits=limits)

    @property
    def actor(self) -> str:
        """Who is acting: the operating-system account (``Settings.actor``)."""
        return self.settings.actor

    def teams(self) -> list[str]:
        """The actor's teams, from the ``Team`` documents."""
        return self.platform().teams_of(self.actor)

    def target(self, env: str | None = None, env_type: str | None = None) -> Target:
        """The RBAC target of an environment (its type and owner looked up when it exists)."""
        if env is not None:
            rec = self.records.environment(env)
            if rec is not None:
                return Target(env, env_type or rec.type, rec.owner)
        return Target(env, env_type)

    def roles(self, target: Target) -> set[tuple[Role, str]]:
        """The ``(role, scope)`` pairs the actor holds on ``target``."""
        teams = self.teams()
        subjects = [f"user:{self.actor}", *(f"team:{t}" for t in teams)]
        return roles_of(subjects, self.governance.grants(), target, teams=teams)

    def allowed(self, action: Action, target: Target) -> bool:
        """Whether the actor may perform ``action`` on ``target``."""
        return permits(action, self.roles(target))

    def authorize(
        self,
        action: Action,
        *,
        env: str | None = None,
        env_type: str | None = None,
        audit: bool = False,
    ) -> Target:
        """Refuse (``PermissionDeniedError``) unless the actor may perform ``action``.

        A refused mutating action (``audit``) is written to the audit log too.
        """
        target = self.target(env, env_type)
        if self.allowed(action, target):
            return target
        where = (
            f"environment '{env}'"
            if env
            else f"environment type '{env_type}'"
            if env_type
            else "the organisation"
        )
        if audit:
            self.audit(action.value, _describe(target), "denied", {"reason": "no role allows it"})
        raise PermissionDeniedError(
            f"{self.actor} may not {action.value} in {where}",
            action=action.value,
            hint="Ask an admin for a role that allows it ('stackyard access grant'); 'stackyard access list' shows the grants.",
        )

    @contextmanager
    def act(
        self,
        action: Action,
        *,
        env: str | None = None,
        env_type: str | None = None,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Authorize a mutating action, run it, and write its audit event (ok or failed).

        The yielded dict may be filled with more (non-secret) detail for the event.
        """
        resolved = self.authorize(action, env=env, env_type=env_type, audit=True)
        extra: dict[str, Any] = dict(detail or {})
        name = target or _describe(resolved)
        try:
            yield extra
        except BaseException as exc:
            extra["error"] = getattr(exc, "message", type(exc).__name__)
            result = "denied" if type(exc).__name__ == "PolicyDeniedError" else "failed"
            self.audit(action.value, name, result, extra)
            raise
        self.audit(action.value, name, extra.pop("result", "ok"), extra)

    def audit(self, action: str, target: str, result: str, detail: Mapping[str, Any]) -> None:
        """Append an audit event, its detail scrubbed of the known secrets (those of the target
        environment, or of every environment for other targets)."""
        env = target.removeprefix("env:") if target.startswith("env:") else None
        clean = inputs.scrub(dict(detail), self.known_secrets(env)) if detail else {}
        self.governance.append(
            actor=self.actor, action=action, target=target, result=result, detail=clean
        )

    def known_secrets(self, env: str | None = None) -> list[str]:
        """Secret values recorded for ``env`` (or every environment): scrubbed from decision
        inputs and audit details wherever they appear."""
        envs = [env] if env else [e.name for e in self.records.environments()]
        out: list[str] = []
        for name in envs:
            for rec in self.records.instances(name).values():
                out.extend(str(rec.outputs[k]) for k in rec.secret_keys if rec.outputs.get(k))
        return out

    def actor_doc(self, target: Target) -> dict[str, Any]:
        """The ``actor`` part of a policy input."""
        roles = {(role.value, scope) for role, scope in self.roles(target)}
        return inputs.actor_doc(self.actor, self.teams(), roles)

    def decide(
        self,
        stage: str,
        document: Mapping[str, Any],
        *,
        env: str | None,
        env_type: str | None,
        subject: str = "",
    ) -> Decision:
        """Evaluate the policies at ``stage`` and write the decision to the decision log.

        The document gains ``now``: the state store's clock (RFC 3339, UTC), which policies
        use instead of ``time.now_ns()`` (the client's clock, which a skewed machine gets
        wrong).
        """
        if "now" not in document:
            document = {**document, "now": inputs.timestamp(self.store.now())}
        decision = self.policies.evaluate(
            stage, document, env=env, env_type=env_type, actor=self.actor, subject=subject
        )
        self.governance.record_decision(decision)
        return decision

    # -- components -----------------------------------------------------------------------

    def versions(self, name: str) -> list[str]:
        """Published versions of a component (cached for the workspace's life)."""
        from stackyard.components.catalog import versions

        with self._lock:
            cached = self._versions.get(name)
        if cached is None:
            cached = versions(self.registry, name)
            with self._lock:
                self._versions[name] = cached
        return cached

    def manifest(self, name: str, version: str) -> tuple[ComponentManifest, str]:
        """A published component build's manifest and digest (cached: builds are immutable)."""
        from stackyard.components.catalog import config

        key = (name, version)
        with self._lock:
            hit = self._manifests.get(key)
        if hit is None:
            digest, _, doc = config(self.registry, name, version)
            hit = (manifest_from_data(doc), digest)
            with self._lock:
                self._manifests[key] = hit
        return hit


def _describe(target: Target) -> str:
    if target.env:
        return f"env:{target.env}"
    if target.env_type:
        return f"type:{target.env_type}"
    return "org"
