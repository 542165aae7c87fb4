"""Releases and promotion: an immutable, content-addressed release (workload specs with their
files inlined, image references, and the component lock) deployed stage by stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackyard.environments import governed
from stackyard.environments.deploy import Confirm, DeployResult, Progress, converge
from stackyard.environments.resolver import Sources, resolve_workloads
from stackyard.environments.target import Target, live_workloads
from stackyard.environments.workloads import load_score, parse_spec
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.model.environment import Environment
from stackyard.model.status import AuditResult, DeploymentStatus, EnvironmentStatus
from stackyard.model.workload import Workload
from stackyard.policy.decision import Decision
from stackyard.policy.rbac import Action
from stackyard.resolve.lock import Pin

FORMAT = "stackyard.dev/release/v1"
IMAGE_REF = "name=ref"


@dataclass(frozen=True, slots=True)
class Release:
    """A stored release."""

    id: str
    created_at: float
    created_by: str
    document: Mapping[str, Any]

    @property
    def short(self) -> str:
        """The first 12 hex digits of the digest."""
        return self.id.removeprefix("sha256:")[:12]

    @property
    def lock(self) -> dict[str, Pin]:
        """The component lock."""
        return {uid: Pin.from_json(p) for uid, p in self.document.get("lock", {}).items()}

    def workload_names(self) -> list[str]:
        """The names of the release's workloads."""
        return [str(w["metadata"]["name"]) for w in self.document.get("workloads", [])]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "id": self.id,
            "short": self.short,
            "created_at": self.created_at,
            "created_by": self.created_by,
            **dict(self.document),
        }


def release_id(document: Mapping[str, Any]) -> str:
    """The content address of a release document (checked again on every read)."""
    from stackyard.state.records import release_digest  # SQLAlchemy stays out of imports

    return release_digest(document)


def parse_images(values: Sequence[str]) -> dict[str, str]:
    """``--image name=ref`` flags → ``{container: ref}``."""
    out = {}
    for v in values:
        name, sep, ref = v.partition("=")
        if not sep or not name or not ref:
            raise InvalidInputError(
                f"Invalid --image '{v}'",
                hint="Use --image <container>=<image ref>, e.g. web=ghcr.io/acme/web@sha256:….",
            )
        out[name] = ref
    return out


def create_release(
    ws: Workspace,
    paths: Sequence[Path],
    *,
    env: str | None = None,
    images: Mapping[str, str] | None = None,
) -> tuple[Release, bool]:
    """Resolve the workloads in ``env`` (default: the first stage of a promotion path) and store
    the release. Returns ``(release, created)``; an identical release already stored is reused."""
    specs = [load_score(p) for p in paths]
    workloads = [parse_spec(s, file=str(p)) for s, p in zip(specs, paths, strict=True)]
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise InvalidInputError(
            "Two Score files define the same workload", hint=f"Workloads: {', '.join(names)}."
        )
    images = dict(images or {})
    containers = {c for w in workloads for c in w.containers}
    unknown = sorted(set(images) - containers)
    if unknown:
        raise InvalidInputError(
            f"--image names unknown container(s): {', '.join(unknown)}",
            hint=f"Containers: {', '.join(sorted(containers))}.",
        )
    platform = ws.platform()
    if env is None:
        first = next(iter(platform.paths.values()), None)
        if first is None:
            raise InvalidInputError(
                "No environment to resolve the release in",
                hint="Pass --env, or define a PromotionPath.",
            )
        env = first.stages[0]
    target = ws.environment(env)
    with ws.access.act(Action.RELEASE_CREATE, env=env, detail={"workloads": names}) as audit:
        rel, created = _store_release(ws, target, specs, workloads, images)
        audit.update(release=rel.id, created=created)
        return rel, created


def _store_release(
    ws: Workspace,
    target: Environment,
    specs: list[dict[str, Any]],
    workloads: list[Workload],
    images: Mapping[str, str],
) -> tuple[Release, bool]:
    env = target.name
    sources = Sources(ws.platform(), ws.records, ws.catalog, ws.store.installation_id())
    _, res = resolve_workloads(target, workloads, sources)
    if res.diagnostics:
        raise InvalidInputError(f"Cannot resolve the release in '{env}'", res.diagnostics)
    lock = {
        uid: pin.to_json()
        for uid, pin in sorted(res.lock.items())
        if uid not in {str(u) for u in res.core}
    }
    document = {
        "format": FORMAT,
        "workloads": sorted(specs, key=lambda s: str(s["metadata"]["name"])),
        "images": {k: images[k] for k in sorted(images)},
        "lock": lock,
    }
    rid = release_id(document)
    created = ws.records.put_release(rid, document, actor=ws.settings.actor)
    return get_release(ws, rid), created


def get_release(ws: Workspace, ident: str) -> Release:
    """A release by id or unique prefix (with or without ``sha256:``)."""
    key = ident if ident.startswith("sha256:") else f"sha256:{ident}"
    if len(key) < len("sha256:") + 6:
        raise InvalidInputError(
            f"Release id '{ident}' is too short", hint="Give at least 6 hex digits."
        )
    found = ws.records.release(key)
    if found is None:
        raise InvalidInputError(
            f"No release '{ident}' (or the prefix is ambiguous)",
            hint="'stackyard release list' shows the releases.",
        )
    return Release(*found)


def deploy_release(
    ws: Workspace,
    ident: str,
    env_name: str,
    *,
    kind: str = "deploy",
    plan_only: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
    earlier: Decision | None = None,
) -> DeployResult:
    """Deploy a release's pinned builds to ``env_name``; a pin the target's bindings do not
    allow is refused."""
    rel = get_release(ws, ident)
    env = ws.environment(env_name)
    action = Action.PROMOTE if kind == "promote" else Action.DEPLOY
    with ws.access.act(action, env=env_name, detail={"release": rel.id}) as audit:
        result = _deploy_release(
            ws,
            rel,
            env,
            kind=kind,
            plan_only=plan_only,
            confirm=confirm,
            progress=progress,
            earlier=earlier,
        )
        audit.update(result.deployment.audit_detail())
        return result


def _deploy_release(
    ws: Workspace,
    rel: Release,
    env: Environment,
    *,
    kind: str,
    plan_only: bool,
    confirm: Confirm | None,
    progress: Progress | None,
    earlier: Decision | None,
) -> DeployResult:
    env_name = env.name
    if env.status is not EnvironmentStatus.READY:
        raise InvalidInputError(
            f"Environment '{env_name}' is {env.status}", hint="Deploy to a ready environment."
        )
    workloads = live_workloads(ws.records, env_name)
    mine = {}
    for spec in rel.document.get("workloads", []):
        wl = parse_spec(spec, file=str(spec["metadata"]["name"]))
        mine[wl.name] = wl
    workloads.update(mine)
    target = Target(
        env, workloads, set(mine), release_id=rel.id, release_pins=rel.lock, strict_pins=True
    )
    return converge(
        ws,
        target,
        kind=kind,
        plan_only=plan_only,
        confirm=confirm,
        progress=progress,
        earlier=earlier,
    )


def promote(
    ws: Workspace,
    ident: str,
    to_env: str,
    *,
    plan_only: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
) -> DeployResult:
    """Deploy a release to the next stage, only after it succeeded in the previous one."""
    rel = get_release(ws, ident)
    found = ws.platform().path_of(to_env)
    if found is None:
        raise InvalidInputError(
            f"'{to_env}' is on no promotion path",
            hint="Add it to a PromotionPath, or deploy the release directly with 'stackyard deploy --release'.",
        )
    path, index = found
    if index == 0:
        raise InvalidInputError(
            f"'{to_env}' is the first stage of path '{path.name}'",
            hint=f"Deploy to it: stackyard deploy --release {rel.short} --env {to_env}.",
        )
    previous = path.stages[index - 1]
    ok = [
        d
        for d in ws.records.deployments(previous, release_id=rel.id, limit=200)
        if d.status is DeploymentStatus.SUCCEEDED
    ]
    if not ok:
        raise InvalidInputError(
            f"Release {rel.short} has not succeeded in '{previous}', the stage before '{to_env}'",
            hint=f"Promote along the path {' → '.join(path.stages)}: "
            + (
                f"stackyard deploy --release {rel.short} --env {previous}."
                if index == 1
                else f"stackyard promote {rel.short} --to {previous}."
            ),
        )
    env = ws.environment(to_env)
    ws.access.authorize(Action.PROMOTE, env=to_env, audit=True)
    decision = _decide_promotion(ws.governor, rel, env, previous)
    # An approval it asks for is carried to the plan's gate (``earlier``), which parks.
    governed.verdict(
        decision,
        f"Promotion of {rel.short} to '{to_env}'",
        waits=True,
        denied=lambda: ws.access.audit(
            Action.PROMOTE.value,
            f"env:{to_env}",
            AuditResult.DENIED,
            {"release": rel.id, "decision": decision.id},
        ),
    )
    return deploy_release(
        ws,
        rel.id,
        to_env,
        kind="promote",
        plan_only=plan_only,
        confirm=confirm,
        progress=progress,
        earlier=decision,
    )


def _decide_promotion(
    gov: governed.Governor, rel: Release, env: Environment, previous: str
) -> Decision:
    """The ``promote`` stage: the release, its pinned builds' facts, and the target."""
    from stackyard.policy import inputs

    lock, attestations = governed.release_facts(gov.catalog, rel.lock)
    doc = inputs.document(
        "promote",
        actor=gov.actor_input(env.name, env.type),
        environment=governed.environment_input(gov, env),
        workload={str(w["metadata"]["name"]): w for w in rel.document.get("workloads", [])},
        release={
            "id": rel.id,
            "from": previous,
            "images": dict(rel.document.get("images", {})),
            "lock": lock,
        },
        attestations=attestations,
        secrets=gov.access.known_secrets(env.name),
    )
    return gov.decide("promote", doc, env=env.name, env_type=env.type, subject=rel.id)
