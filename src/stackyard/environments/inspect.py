"""Read-only views of an environment: explain, status and outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stackyard.engine.observe import observe_all
from stackyard.environments.resolver import Sources, core_requests, resolve_workloads
from stackyard.environments.runner import runtime_for, runtime_kind
from stackyard.environments.target import chain as lineage
from stackyard.environments.workloads import load_score, parse_spec
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.model.environment import Environment
from stackyard.model.status import AuditResult
from stackyard.policy.rbac import Action
from stackyard.providers.api import Observed
from stackyard.runtime.local import LocalRuntime
from stackyard.state import driftlog

#: Secret outputs that grant a server's superuser: revealed to platform roles only (and so
#: is every secret output of a core resource).
ADMIN_OUTPUTS = frozenset({"admin_url"})


def explain(ws: Workspace, paths: Sequence[Path], env_name: str) -> dict[str, Any]:
    """For every resource request (and requirement): each candidate binding, why it matched or
    not, the winner and the build it picks."""
    env = ws.environment(env_name)
    ws.access.authorize(Action.VIEW, env=env_name)
    workloads = [parse_spec(load_score(p), file=str(p)) for p in paths]
    sources = Sources(ws.platform(), ws.records, ws.catalog, ws.store.installation_id())
    requests, res = resolve_workloads(env, workloads, sources)
    rows = []
    by_uid = {r.uid: r for r in requests}
    for uid, m in res.matches.items():
        req = by_uid.get(uid)
        pin = res.lock.get(str(uid))
        rows.append(
            {
                "uid": str(uid),
                "requested_by": req.location if req else "a component requirement",
                "candidates": [c.to_json() for c in m.candidates],
                "winner": m.winner.to_json() if m.winner else None,
                "component": pin.to_json() if pin else None,
            }
        )
    for uid, owner in res.external.items():
        rows.append(
            {
                "uid": str(uid),
                "requested_by": "a component requirement",
                "candidates": [],
                "winner": None,
                "component": None,
                "from_parent": owner,
            }
        )
    return {
        "env": env.name,
        "type": env.type,
        "requests": rows,
        "diagnostics": [d.to_json() for d in res.diagnostics],
    }


def status(ws: Workspace, env_name: str, *, observe: bool = True) -> dict[str, Any]:
    """Resources with observed health, workloads with readiness and endpoints, last deployments."""
    with ws.store.read_session():  # every read in one transaction, before observing
        env = ws.environment(env_name)
        ws.access.authorize(Action.VIEW, env=env_name)
        snap = ws.store.snapshot(env_name)
        records = ws.records.workloads(env_name)
        deps = [d.to_json() for d in ws.records.deployments(env_name, limit=5)]
        last_scan = driftlog.last(ws.store, env_name)
        runtime = _runtime(ws, env)
    observed: dict[str, Any] = {}
    if observe and snap.resources:
        observed, _ = observe_all(
            env_name,
            snap.resources.values(),
            ws.kinds,
            parallelism=10,
            installation=ws.store.installation_id(),
        )
    resources = []
    for address, rec in sorted(snap.resources.items()):
        health, detail = _health(observed, address) if observe else ("unknown", "")
        resources.append(
            {
                "address": address,
                "kind": rec.kind,
                "physical_name": rec.physical_name,
                "uid": rec.uid,
                "component": rec.component,
                "health": health,
                **({"detail": detail} if detail else {}),
            }
        )
    workloads = {}
    for w in records:
        st = runtime.status(w.name)
        workloads[w.name] = {
            **st.to_json(),
            "deployment": w.deployment_id,
            "release": w.release_id,
            "resources": list(w.uids),
        }
    return {
        "environment": env.to_json(),
        "resources": resources,
        "workloads": workloads,
        "isolation": runtime.isolation(),
        "deployments": deps,
        # the last drift scan (scheduled or asked for), without its findings' detail
        "drift": last_scan.to_json(with_findings=False) if last_scan is not None else None,
    }


def _runtime(ws: Workspace, env: Environment) -> LocalRuntime:
    """``ws.runtime(env.name)`` from the record already read (not read again)."""
    kind = runtime_kind(ws.platform(), env)
    installation = ws.store.installation_id() if kind != "local" else ""
    return runtime_for(ws.settings.home, env.name, kind=kind, installation=installation)


def _health(observed: Mapping[str, Observed | None], address: str) -> tuple[str, str]:
    """What an observation says of a resource: ``ok``, ``degraded``, ``stopped``, ``missing``,
    ``unmanaged`` (another owner's) or ``unobservable`` (it could not be read), and why."""
    if address not in observed:
        return "unobservable", "it could not be read"
    obs = observed[address]
    if obs is None:
        return "missing", ""
    if not obs.managed:
        return "unmanaged", obs.detail
    return obs.health, obs.detail if obs.health != "ok" else ""


def outputs(
    ws: Workspace, env_name: str, workload: str | None = None, *, reveal: bool = False
) -> dict[str, Any]:
    """Outputs per resource (by workload resource name, or by uid), secrets masked unless revealed."""
    env = ws.environment(env_name)
    ws.access.authorize(
        Action.OUTPUTS_REVEAL if reveal else Action.VIEW, env=env_name, audit=reveal
    )
    if reveal:
        ws.access.audit(
            Action.OUTPUTS_REVEAL.value, f"env:{env_name}", AuditResult.OK, {"workload": workload}
        )
    instances = ws.records.instances(env_name)
    chain = lineage(ws.records, env)
    # A core server's superuser credentials (``admin_url``, its password) run code as the
    # server's account (COPY ... FROM PROGRAM) and reach every tenant: only platform roles
    # see them, whoever may reveal the rest. A consumer gets its own resource's credentials.
    admin = reveal and ws.access.allowed(Action.OUTPUTS_REVEAL_ADMIN, ws.access.target(env_name))
    core = {str(r.uid) for e in chain for r in core_requests(ws.platform(), e)}

    def shown(uid: str, rec_outputs: dict[str, Any], secret_keys: Sequence[str]) -> dict[str, Any]:
        def hidden(key: str) -> bool:
            if key not in secret_keys:
                return False
            return not reveal or (not admin and (uid in core or key in ADMIN_OUTPUTS))

        return {k: ("(secret)" if hidden(k) else v) for k, v in rec_outputs.items()}

    def find(uid: str) -> Any:
        if uid in instances:
            return instances[uid]
        for anc in chain[1:]:
            found = ws.records.instances(anc.name).get(uid)
            if found is not None:
                return found
        return None

    if workload is None:
        return {
            uid: {"component": r.component, "outputs": shown(uid, dict(r.outputs), r.secret_keys)}
            for uid, r in sorted(instances.items())
        }
    records = {w.name: w for w in ws.records.workloads(env_name)}
    if workload not in records:
        raise InvalidInputError(
            f"No workload '{workload}' in '{env_name}'",
            hint=f"Workloads: {', '.join(sorted(records)) or 'none'}.",
        )
    wl = parse_spec(records[workload].spec, file=workload)
    out = {}
    for r in wl.resources.values():
        rec = find(str(r.uid))
        out[r.name] = {
            "uid": str(r.uid),
            "component": rec.component if rec else None,
            "outputs": shown(str(r.uid), dict(rec.outputs), rec.secret_keys) if rec else {},
        }
    return out
