"""Publishing and deprecating components under the home's governance: RBAC, the ``publish``
policies and the audit log, when there is a home (a bare registry has none of them)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.components.keys import Keyring
from stackyard.components.pipeline import Progress, PublishResult
from stackyard.components.registry import Registry
from stackyard.diagnostics import error
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.policy.rbac import Action
from stackyard.settings import Settings

if TYPE_CHECKING:
    from stackyard.environments.adoption import Use


def governed_workspace(settings: Settings) -> Workspace | None:
    """The home's workspace when there is one (RBAC, publish policies and audit apply);
    None for a bare registry without a stackyard home."""
    if settings.database_url.startswith("sqlite") and not (settings.home / "state.db").exists():
        return None
    return Workspace.open(settings)


def signing_keyring(home: Path) -> tuple[Keyring, str | None]:
    """The home's keyring, and the id of the signing key made now when it had none."""
    ring = Keyring(home)
    if ring.has_signing_key():
        return ring, None
    ring.generate()
    return ring, ring.key_id()


def _acting(
    ws: Workspace | None, action: Action, target: str, detail: dict[str, Any] | None = None
) -> AbstractContextManager[dict[str, Any]]:
    return ws.access.act(action, target=target, detail=detail) if ws else nullcontext({})


def publish(
    settings: Settings,
    path: Path,
    *,
    registry: Registry,
    keyring: Keyring,
    progress: Progress | None = None,
) -> PublishResult:
    """Run the component pipeline on ``path`` and publish to ``registry``: with a home, as
    ``component.publish`` (audited) through its ``publish`` policies."""
    from stackyard.components.pipeline import publish as run
    from stackyard.environments.governed import publish_governor
    from stackyard.providers.registry import ProviderRegistry

    ws = governed_workspace(settings)
    try:
        with _acting(ws, Action.COMPONENT_PUBLISH, f"component:{path.name}") as audit:
            result = run(
                path,
                registry=registry,
                keyring=keyring,
                kinds=ProviderRegistry.discover(),
                progress=progress,
                govern=publish_governor(ws.governor) if ws else None,
            )
            audit.update(component=f"{result.name}@{result.version}", digest=result.digest)
    finally:
        if ws is not None:
            ws.close()
    return result


@dataclass(frozen=True, slots=True)
class Deprecation:
    """A deprecation notice attached to a published build."""

    name: str
    version: str
    notice: str  # the notice's digest
    #: The instances of the build in the environments the actor may view (``adoption``):
    #: who the deprecation hits. Empty for a bare registry without a home.
    affected: tuple[Use, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "deprecated": True,
            "notice": self.notice,
            "affected": [u.to_json() for u in self.affected],
        }


def deprecate(
    settings: Settings, name: str, version: str, *, reason: str, registry: Registry
) -> Deprecation:
    """Mark ``name@version`` deprecated, saying why: with a home, as
    ``component.deprecate`` (audited), and with the instances it hits."""
    from stackyard.components.catalog import deprecate as attach
    from stackyard.environments.adoption import affected

    if not reason.strip():
        raise InvalidInputError(
            "A reason is required", [error("Missing reason", "Say why with --reason.")]
        )
    ws = governed_workspace(settings)
    try:
        target = f"component:{name}@{version}"
        with _acting(ws, Action.COMPONENT_DEPRECATE, target, {"reason": reason}):
            digest = attach(registry, name, version, reason=reason, actor=settings.actor)
        hit = affected(ws, name, version) if ws is not None else ()
        if ws is not None:
            _announce_deprecation(ws, name, version, reason, digest, hit)
    finally:
        if ws is not None:
            ws.close()
    return Deprecation(name, version, digest, hit)


def _announce_deprecation(
    ws: Workspace, name: str, version: str, reason: str, digest: str, hit: tuple[Use, ...]
) -> None:
    """Publish ``component.deprecated``: once per environment running the build (so that
    webhooks filtered by environment type or team hear of it), or once without an
    environment when none does."""
    from stackyard.state import events

    data = {
        "component": name,
        "version": version,
        "reason": reason[:500],
        "notice": digest,
        "actor": ws.access.actor,
    }
    subject = f"component {name}@{version}"
    envs: dict[str, Use] = {}
    for use in hit:
        envs.setdefault(use.env, use)
    if not envs:
        events.notify(ws.store, "component.deprecated", subject, data=data)
    for env, use in sorted(envs.items()):
        instances = [u.uid for u in hit if u.env == env]
        events.notify(
            ws.store,
            "component.deprecated",
            subject,
            env=env,
            env_type=use.env_type,
            team=use.owner,
            data={**data, "instances": instances[:50]},
        )
