"""The governed road: what a plan, an environment change, a destroy or a promotion looks like
to the policies (DESIGN §6's document), and the one gate every applied plan passes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from stackyard.model.environment import Deployment, Environment, InstanceRecord
from stackyard.policy import inputs
from stackyard.policy.cost import plan_cost

if TYPE_CHECKING:
    from stackyard.components.attest import StageResult
    from stackyard.components.pipeline import Govern
    from stackyard.diagnostics import Diagnostic
    from stackyard.engine.plan import Plan
    from stackyard.environments.resolver import Resolution
    from stackyard.environments.workspace import Workspace
    from stackyard.model.component import ComponentManifest
    from stackyard.model.workload import Workload
    from stackyard.policy.decision import Decision

Progress = Callable[[str], None]
PARKED = "awaiting-approval"


def environment_input(ws: Workspace, env: Environment) -> dict[str, Any]:
    """The ``environment`` part."""
    etype = ws.platform().types.get(env.type)
    return inputs.environment_doc(
        name=env.name,
        type=env.type,
        owner=env.owner,
        ephemeral=bool(etype and etype.ephemeral),
        expires_at=env.expires_at,
        labels=env.labels,
        parent=env.parent,
    )


def component_facts(ws: Workspace, name: str, version: str, digest: str) -> dict[str, Any]:
    """Lifecycle, deprecation and attestation of a published build (cached per workspace)."""
    from stackyard.components import catalog
    from stackyard.components.attest import AttestationError
    from stackyard.components.keys import Keyring
    from stackyard.errors import StackyardError

    key = (name, version)
    hit = ws.component_facts.get(key)
    if hit is not None:
        return hit
    manifest, _ = ws.manifest(name, version)
    try:
        notice = catalog.deprecation(ws.registry, name, version)
    except StackyardError:
        notice = None
    try:
        catalog.verify(ws.registry, Keyring(ws.settings.home), name, version)
        verified, reason = True, "signature verified by a trusted key"
    except AttestationError as exc:
        verified, reason = False, exc.message
    except StackyardError as exc:
        verified, reason = False, exc.message
    facts = {
        "component": name,
        "version": version,
        "digest": digest,
        "lifecycle": manifest.lifecycle,
        "deprecated": notice is not None,
        "deprecation": (notice or {}).get("reason"),
        "owner": manifest.owner,
        "verified": verified,
        "attestation": reason,
    }
    ws.component_facts[key] = facts  # a racing thread computes the same facts: harmless
    return facts


def secret_params(res: Resolution) -> list[str]:
    """Values of params whose component input is marked secret (``writeOnly`` or ``x-secret``)."""
    out = []
    for uid, inst in res.instances.items():
        props = (inst.component.inputs or {}).get("properties") or {}
        for key, schema in props.items():
            if isinstance(schema, Mapping) and (schema.get("writeOnly") or schema.get("x-secret")):
                value = res.params.get(uid, {}).get(key)
                if isinstance(value, str):
                    out.append(value)
    return out


def costs(ws: Workspace, res: Resolution, env: str) -> dict[str, Any]:
    """``cost``: the plan's monthly total after apply, its delta and the cost per instance."""
    desired = {}
    for uid, inst in res.instances.items():
        c = inst.component.cost
        desired[str(uid)] = (c.monthly, c.currency) if c else (Decimal(0), "USD")
    current = {uid: _recorded(rec) for uid, rec in ws.records.instances(env).items()}
    return plan_cost(desired, current)


def _recorded(rec: InstanceRecord) -> tuple[Decimal, str]:
    return (Decimal(rec.monthly_cost or "0"), rec.currency or "USD")


def plan_input(
    ws: Workspace,
    env: Environment,
    *,
    stage: str,
    planned: Plan,
    res: Resolution | None,
    workloads: Mapping[str, Workload],
    release_id: str | None,
    cost: Mapping[str, Any] | None,
    extra_secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """The input of a ``plan`` (or ``destroy``) decision."""
    target = ws.target(env.name, env.type)
    lock = {}
    attestations = {}
    if res is not None:
        for uid, pin in sorted(res.lock.items()):
            facts = component_facts(ws, pin.component, pin.version, pin.digest)
            lock[uid] = {
                k: facts[k]
                for k in ("component", "version", "digest", "lifecycle", "deprecated", "owner")
            }
            attestations[uid] = {
                k: facts[k] for k in ("component", "version", "digest", "verified", "attestation")
            }
    changes = [
        {k: c[k] for k in ("address", "kind", "action", "before", "after")}
        for c in planned.to_json()["changes"]
    ]
    # a destroy's strays (labelled, never recorded) are deletes like any other
    changes += [
        {"address": s.address, "kind": s.kind, "action": "delete", "before": None, "after": None}
        for s in planned.strays
    ]
    secrets = [*ws.known_secrets(env.name), *(secret_params(res) if res else []), *extra_secrets]
    return inputs.document(
        stage,
        actor=ws.actor_doc(target),
        environment=environment_input(ws, env),
        workload={name: dict(w.raw) for name, w in sorted(workloads.items())},
        release={"id": release_id, "lock": lock},
        plan={"changes": changes, "summary": planned.summary()},
        cost=dict(cost) if cost is not None else None,
        attestations=attestations,
        secrets=secrets,
    )


def decide_environment(ws: Workspace, env: Environment, *, subject: str) -> Any:
    """The ``environment`` stage: creating, changing or extending ``env`` (as it would be).

    Deny refuses; an approval result refuses too (environment changes are not parked), with
    the policy's message.
    """
    from stackyard.errors import PolicyDeniedError
    from stackyard.policy.decision import diagnostics, raise_if_denied

    doc = inputs.document(
        "environment",
        actor=ws.actor_doc(ws.target(env.name, env.type)),
        environment=environment_input(ws, env),
        secrets=ws.known_secrets(env.name) if ws.records.environment(env.name) else (),
    )
    decision = ws.decide("environment", doc, env=env.name, env_type=env.type, subject=subject)
    raise_if_denied(decision, f"{subject.capitalize()}")
    if decision.outcome == "approval":
        raise PolicyDeniedError(
            f"{subject.capitalize()} needs an approval, which environment changes do not take",
            diagnostics(decision, "approval"),
            decision_id=decision.id,
            hint="Ask a platform engineer to make the change, or change the policy.",
        )
    return decision


def publish_governor(ws: Workspace) -> Govern:
    """The ``publish`` stage for the component pipeline: a deny, or an approval (which a
    publish cannot wait for), stops it; warnings are passed on."""
    from stackyard.diagnostics import error
    from stackyard.policy.decision import diagnostics

    def govern(manifest: ComponentManifest, stages: list[StageResult]) -> list[Diagnostic]:
        cost = manifest.cost
        component = {
            "name": manifest.name,
            "version": manifest.version,
            "owner": manifest.owner,
            "description": manifest.description,
            "lifecycle": manifest.lifecycle,
            "provides": manifest.provides,
            "labels": dict(manifest.labels),
            "compliance": list(manifest.compliance),
            "sla": dict(manifest.sla),
            "cost": {"monthly": str(cost.monthly), "currency": cost.currency} if cost else None,
        }
        doc = inputs.document(
            "publish",
            actor=ws.actor_doc(ws.target()),
            component=component,
            attestations={s.name: {"passed": s.ok, "detail": s.detail} for s in stages},
        )
        decision = ws.decide("publish", doc, env=None, env_type=None, subject=manifest.ref)
        waits = [
            error(d.summary, f"{d.detail} A publish cannot wait for an approval.")
            for d in diagnostics(decision, "approval")
        ]
        return [*diagnostics(decision, "deny"), *waits, *diagnostics(decision, "warn")]

    return govern


@dataclass(frozen=True)
class Gated:
    """What the gate decided about one plan.

    ``deployment`` carries the decision's id, and is ``awaiting-approval`` (already saved)
    when ``parked``. ``diagnostics`` are the decision's warnings and approval reasons.
    """

    decision: Decision
    deployment: Deployment
    parked: bool
    diagnostics: tuple[Diagnostic, ...]


def same_changes(planned: Plan, approved: Mapping[str, Any] | None) -> bool:
    """Whether a fresh plan makes exactly the changes of the approved one (no-ops aside)."""
    if approved is None:
        return False
    fresh = {(c.address, c.action.value) for c in planned.changes if c.action.value != "noop"}
    fresh |= {(f"stray:{s.kind}:{s.physical_name}", "delete") for s in planned.strays}
    before = {
        (c["address"], c["action"]) for c in approved.get("changes", []) if c["action"] != "noop"
    }
    before |= {
        (f"stray:{s['kind']}:{s['physical_name']}", "delete") for s in approved.get("strays", [])
    }
    return fresh == before


def gate(
    ws: Workspace,
    env: Environment,
    dep: Deployment,
    planned: Plan,
    *,
    stage: str,
    what: str,
    res: Resolution | None = None,
    workloads: Mapping[str, Workload] | None = None,
    cost: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
    request: Mapping[str, Any] | None = None,
    approved: Mapping[str, Any] | None = None,
    earlier: Decision | None = None,
    enforce: bool = True,
    say: Progress | None = None,
) -> Gated:
    """The one gate between a plan and its apply, for deploy, remove, destroy, reap, promote
    and approve alike: every plan that is applied, first or re-planned, passes it once.

    It asks the ``stage`` policies (``plan`` or ``destroy``) about ``planned`` and writes the
    decision to the decision log. A deny saves ``dep`` as ``denied`` and raises
    ``PolicyDeniedError`` ("<what> denied by policy"). An approval result (or one in
    ``earlier``, a decision taken before planning, as promote's) parks ``dep`` as
    ``awaiting-approval`` with ``request`` (what ``approve`` needs to plan again), unless
    ``approved`` (the plan an approver approved) makes the same changes. ``enforce=False``
    (a plan-only run) decides and records without stopping anything.
    """
    from stackyard.policy.decision import diagnostics, raise_if_denied

    doc = plan_input(
        ws,
        env,
        stage=stage,
        planned=planned,
        res=res,
        workloads=workloads or {},
        release_id=dep.release_id,
        cost=cost,
    )
    decision = ws.decide(stage, doc, env=env.name, env_type=env.type, subject=dep.id)
    diags = (*diagnostics(decision, "warn"), *diagnostics(decision, "approval"))
    shown = dict(summary) if summary is not None else planned.summary()
    dep = replace(dep, decision_id=decision.id)
    if not enforce:
        return Gated(decision, dep, False, diags)
    if decision.outcome == "deny":
        ws.records.put_deployment(
            dep.finished("denied", summary=shown, plan=planned.to_json(), error="denied by policy")
        )
        raise_if_denied(decision, what)
    wants = decision.outcome == "approval" or (
        earlier is not None and earlier.outcome == "approval"
    )
    if not wants or same_changes(planned, approved):
        return Gated(decision, dep, False, diags)
    tell = say or (lambda _m: None)
    if approved is not None:
        tell("the plan changed since it was approved: it needs a new approval")
    dep = replace(
        dep, status=PARKED, summary=shown, plan=planned.to_json(), request=dict(request or {})
    )
    ws.records.put_deployment(dep)
    tell(f"{what} awaits approval: stackyard approve {dep.id}")
    return Gated(decision, dep, True, diags)
