"""The governed road: the applied policies asked at each stage (``Governor``), what a plan, an
environment change, a destroy, a promotion or a publish looks like to them (DESIGN §6's
document), and the one verdict every decision gets (``verdict``): a deny stops, an approval
parks what can wait and refuses what cannot. ``gate`` is that verdict for a plan."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from stackyard.errors import PolicyDeniedError
from stackyard.model.environment import Deployment, Environment, InstanceRecord
from stackyard.model.status import DecisionOutcome, DeploymentStatus
from stackyard.policy import inputs
from stackyard.policy.cost import plan_cost
from stackyard.policy.decision import Decision, PolicySet, diagnostics, raise_if_denied
from stackyard.state import events

if TYPE_CHECKING:
    from stackyard.components.attest import StageResult
    from stackyard.components.pipeline import Govern
    from stackyard.diagnostics import Diagnostic
    from stackyard.engine.plan import Plan
    from stackyard.environments.access import Access
    from stackyard.environments.catalog import Catalog
    from stackyard.environments.platform import Platform
    from stackyard.environments.resolver import Resolution
    from stackyard.model.component import ComponentManifest
    from stackyard.model.workload import Workload
    from stackyard.policy.sandbox import Limits
    from stackyard.resolve.lock import Pin
    from stackyard.state.governance import Governance
    from stackyard.state.records import Records

Progress = Callable[[str], None]


class Governor:
    """The policies of the applied platform configuration, asked on behalf of ``access``'s
    actor; every decision is written to the decision log. Building a decision's document
    reads the ``catalog`` (facts of builds) and the ``records`` (secrets to scrub, deployments
    to save as denied or parked)."""

    def __init__(
        self,
        *,
        platform: Callable[[], Platform],
        access: Access,
        catalog: Catalog,
        governance: Governance,
        records: Records,
        clock: Callable[[], float],
        limits: Limits,
    ) -> None:
        self.platform = platform
        self.access = access
        self.catalog = catalog
        self.records = records
        self._governance = governance
        self._clock = clock
        self._limits = limits
        self._compiled: tuple[Platform, PolicySet] | None = None
        #: what ``warm`` prepared already: of which policy set, each stage and environment
        self._warmed: tuple[PolicySet | None, set[tuple[str, str | None, str | None]]] = (
            None,
            set(),
        )

    @property
    def policies(self) -> PolicySet:
        """The applied policies (compiled lazily, per selection; again after a platform apply
        changed the configuration)."""
        platform = self.platform()
        if self._compiled is None or self._compiled[0] is not platform:
            compiled = PolicySet(list(platform.policies.values()), limits=self._limits)
            self._compiled = (platform, compiled)
        return self._compiled[1]

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
            document = {**document, "now": inputs.timestamp(self._clock())}
        decision = self.policies.evaluate(
            stage, document, env=env, env_type=env_type, actor=self.access.actor, subject=subject
        )
        self._governance.record_decision(decision)
        return decision

    def warm(self, stage: str, *, env: str | None, env_type: str | None) -> None:
        """Start the policy worker when ``stage`` has policies to ask here, and have it
        compile them (in a thread of this process, which waits on the worker): both happen
        while the caller builds the decision's document, rather than after it. Safe to call
        again (the worker and the loaded policies are kept)."""
        from stackyard.policy.sandbox import shared

        policies = self.policies
        if self._warmed[0] is not policies:  # a platform apply changed them: none warmed
            self._warmed = (policies, set())
        if (stage, env, env_type) in self._warmed[1]:
            return
        if policies.applicable(stage, env, env_type):
            self._warmed[1].add((stage, env, env_type))
            shared(self._limits).start()
            threading.Thread(
                target=policies.prepare,
                args=(stage, env, env_type),
                name="stackyard-policy-warm",
                daemon=True,
            ).start()

    def actor_input(self, env: str | None = None, env_type: str | None = None) -> dict[str, Any]:
        """The ``actor`` part: who acts, their teams, and their roles on the target."""
        return self.access.actor_doc(self.access.target(env, env_type))


def environment_input(gov: Governor, env: Environment) -> dict[str, Any]:
    """The ``environment`` part."""
    etype = gov.platform().types.get(env.type)
    return inputs.environment_doc(
        name=env.name,
        type=env.type,
        owner=env.owner,
        ephemeral=bool(etype and etype.ephemeral),
        expires_at=env.expires_at,
        labels=env.labels,
        parent=env.parent,
    )


def release_facts(
    catalog: Catalog, pins: Mapping[str, Pin]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``release.lock`` and ``attestations`` parts for pinned builds, by uid."""
    lock, attestations = {}, {}
    for uid, pin in sorted(pins.items()):
        facts = catalog.facts(pin.component, pin.version, pin.digest)
        lock[uid] = {
            k: facts[k]
            for k in ("component", "version", "digest", "lifecycle", "deprecated", "owner")
        }
        attestations[uid] = {
            k: facts[k] for k in ("component", "version", "digest", "verified", "attestation")
        }
    return lock, attestations


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


def costs(records: Records, res: Resolution, env: str) -> dict[str, Any]:
    """``cost``: the plan's monthly total after apply, its delta and the cost per instance."""
    desired = {}
    for uid, inst in res.instances.items():
        c = inst.component.cost
        desired[str(uid)] = (c.monthly, c.currency) if c else (Decimal(0), "USD")
    current = {uid: _recorded(rec) for uid, rec in records.instances(env).items()}
    return plan_cost(desired, current)


def _recorded(rec: InstanceRecord) -> tuple[Decimal, str]:
    return (Decimal(rec.monthly_cost or "0"), rec.currency or "USD")


def plan_input(
    gov: Governor,
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
    lock, attestations = release_facts(gov.catalog, res.lock) if res is not None else ({}, {})
    changes = [
        {k: c[k] for k in ("address", "kind", "action", "before", "after")}
        for c in planned.to_json()["changes"]
    ]
    # a destroy's strays (labelled, never recorded) are deletes like any other
    changes += [
        {"address": s.address, "kind": s.kind, "action": "delete", "before": None, "after": None}
        for s in planned.strays
    ]
    secrets = [
        *gov.access.known_secrets(env.name),
        *(secret_params(res) if res else []),
        *extra_secrets,
    ]
    return inputs.document(
        stage,
        actor=gov.actor_input(env.name, env.type),
        environment=environment_input(gov, env),
        workload={name: dict(w.raw) for name, w in sorted(workloads.items())},
        release={"id": release_id, "lock": lock},
        plan={"changes": changes, "summary": planned.summary()},
        cost=dict(cost) if cost is not None else None,
        attestations=attestations,
        secrets=secrets,
    )


def verdict(
    decision: Decision,
    what: str,
    *,
    waits: bool,
    earlier: Decision | None = None,
    denied: Callable[[], None] | None = None,
) -> bool:
    """The one verdict on a decision, whatever the stage; True when it must wait for approval.

    A deny calls ``denied`` (to record the refusal where the caller keeps it) and raises
    ``PolicyDeniedError`` ("<what> denied by policy"). An approval result, in ``decision`` or
    in ``earlier`` (a decision taken before this one, as promote's before its plan), returns
    True when the action can be parked (``waits``), and raises ``PolicyDeniedError`` when it
    cannot (an environment change happens now or not at all).
    """
    if decision.outcome is DecisionOutcome.DENY:
        if denied is not None:
            denied()
        raise_if_denied(decision, what)
    wants = decision.outcome is DecisionOutcome.APPROVAL or (
        earlier is not None and earlier.outcome is DecisionOutcome.APPROVAL
    )
    if wants and not waits:
        raise PolicyDeniedError(
            f"{what} needs an approval, which environment changes do not take",
            diagnostics(decision, "approval"),
            decision_id=decision.id,
            hint="Ask a platform engineer to make the change, or change the policy.",
        )
    return wants


def approvals_asked(decision: Decision | None) -> list[str]:
    """What the policies of ``decision`` asked an approval for (``message (policy 'p')``);
    empty when it asked for none."""
    if decision is None or decision.outcome is not DecisionOutcome.APPROVAL:
        return []
    return [f"{r.message} (policy '{r.policy}')" for r in decision.of("approval")]


def decide_environment(gov: Governor, env: Environment, *, subject: str) -> Decision:
    """The ``environment`` stage: creating, changing or extending ``env`` (as it would be).

    Deny refuses; an approval result refuses too (environment changes are not parked), with
    the policy's message.
    """
    doc = inputs.document(
        "environment",
        actor=gov.actor_input(env.name, env.type),
        environment=environment_input(gov, env),
        secrets=gov.access.known_secrets(env.name) if gov.records.environment(env.name) else (),
    )
    decision = gov.decide("environment", doc, env=env.name, env_type=env.type, subject=subject)
    verdict(decision, subject.capitalize(), waits=False)
    return decision


def publish_governor(gov: Governor) -> Govern:
    """The ``publish`` stage for the component pipeline: a deny, or an approval (which a
    publish cannot wait for), stops it; warnings are passed on."""
    from stackyard.diagnostics import error

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
            actor=gov.actor_input(),
            component=component,
            attestations={s.name: {"passed": s.ok, "detail": s.detail} for s in stages},
        )
        decision = gov.decide("publish", doc, env=None, env_type=None, subject=manifest.ref)
        # A publish reports every result at once (the pipeline's diagnostics), never raises.
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
    gov: Governor,
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
    decision to the decision log, then gives it the one verdict (``verdict``): a deny saves
    ``dep`` as ``denied`` and raises ``PolicyDeniedError`` ("<what> denied by policy"). An
    approval result (or one in ``earlier``) parks ``dep`` as ``awaiting-approval`` with
    ``request`` (what ``approve`` needs to plan again), unless ``approved`` (the plan an
    approver approved) makes the same changes. ``enforce=False`` (a plan-only run) decides and
    records without stopping anything.
    """
    gov.warm(stage, env=env.name, env_type=env.type)
    doc = plan_input(
        gov,
        env,
        stage=stage,
        planned=planned,
        res=res,
        workloads=workloads or {},
        release_id=dep.release_id,
        cost=cost,
    )
    decision = gov.decide(stage, doc, env=env.name, env_type=env.type, subject=dep.id)
    diags = (*diagnostics(decision, "warn"), *diagnostics(decision, "approval"))
    shown = dict(summary) if summary is not None else planned.summary()
    dep = replace(dep, decision_id=decision.id)
    if not enforce:
        return Gated(decision, dep, False, diags)

    def denied() -> None:
        gov.records.put_deployment(
            dep.finished(
                DeploymentStatus.DENIED,
                summary=shown,
                plan=planned.to_json(),
                error="denied by policy",
            )
        )

    wants = verdict(decision, what, waits=True, earlier=earlier, denied=denied)
    if not wants or same_changes(planned, approved):
        return Gated(decision, dep, False, diags)
    tell = say or (lambda _m: None)
    if approved is not None:
        tell("the plan changed since it was approved: it needs a new approval")
    dep = replace(
        dep,
        status=DeploymentStatus.AWAITING_APPROVAL,
        summary=shown,
        plan=planned.to_json(),
        request=dict(request or {}),
    )
    gov.records.put_deployment(dep)
    events.notify_deployment(
        gov.records.store,
        "approval.requested",
        env,
        dep,
        decision=decision.id,
        reasons=[r.message[:200] for r in decision.of("approval")][:10],
    )
    tell(f"{what} awaits approval: stackyard approve {dep.id}")
    return Gated(decision, dep, True, diags)
