"""Outputs: after an apply, each instance's component outputs (from the recorded state), the
instances recorded with them, and what each workload's ``${resources.<name>.<key>}`` reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stackyard.model.environment import Deployment, InstanceRecord, WorkloadRecord
from stackyard.model.values import Secret, reveal

if TYPE_CHECKING:
    from stackyard.engine.engine import Engine
    from stackyard.environments.resolver import Resolution
    from stackyard.environments.target import Target
    from stackyard.resolve.graph import Graph
    from stackyard.state.api import Lease
    from stackyard.state.records import Records

#: instance uid -> output name -> value (secrets wrapped in ``Secret``)
Outputs = dict[str, dict[str, Any]]


def instance_outputs(engine: Engine, env: str, graph: Graph, res: Resolution) -> Outputs:
    """Every resolved instance's component outputs, as the engine reads them from the state."""
    return {str(uid): engine.outputs(env, graph, uid) for uid in res.instances}


def workload_outputs(
    target: Target, res: Resolution, outputs: Mapping[str, Mapping[str, Any]], records: Records
) -> dict[str, dict[str, Mapping[str, Any]]]:
    """For each workload this converge (re)deploys, its resources' outputs by resource name:
    an instance of this environment's, or an ancestor's (read-only, as it recorded them)."""

    def of(uid: Any) -> Mapping[str, Any]:
        found = outputs.get(str(uid))
        if found:
            return found
        owner = res.external.get(uid)
        if owner is None:
            return {}
        rec = records.instances(owner).get(str(uid))
        return dict(rec.outputs) if rec else {}

    return {
        name: {r.name: of(r.uid) for r in target.workloads[name].resources.values()}
        for name in sorted(target.changed)
    }


def record(
    records: Records,
    target: Target,
    dep: Deployment,
    res: Resolution,
    outputs: Mapping[str, Mapping[str, Any]],
    *,
    lease: Lease,
) -> None:
    """Record the converge: every instance with its build, params and outputs (secret keys
    noted), the instances no longer wanted dropped, and the changed (and removed) workloads;
    in one write fenced by ``lease``."""
    env = target.env
    existing = records.instances(env.name)
    put_instances = []
    for uid, inst in res.instances.items():
        outs = outputs.get(str(uid), {})
        secret_keys = tuple(sorted(k for k, v in outs.items() if isinstance(v, Secret)))
        put_instances.append(
            InstanceRecord(
                env=env.name,
                uid=str(uid),
                component=inst.component.ref,
                digest=inst.digest,
                core=uid in res.core,
                params=res.params.get(uid, {}),
                requires=res.requires.get(uid, {}),
                outputs={k: reveal(v) for k, v in outs.items()},
                secret_keys=secret_keys,
                monthly_cost=str(inst.component.cost.monthly) if inst.component.cost else None,
                currency=inst.component.cost.currency if inst.component.cost else None,
            )
        )
    wanted = {str(u) for u in res.instances}
    drop = [uid for uid in existing if uid not in wanted]
    put_workloads = [
        WorkloadRecord(
            env.name,
            name,
            dep.id,
            dict(target.workloads[name].raw),
            tuple(str(r.uid) for r in target.workloads[name].resources.values()),
            target.release_id,
        )
        for name in sorted(target.changed)
    ]
    records.record_deploy(
        env.name,
        put_workloads=put_workloads,
        put_instances=put_instances,
        drop_instances=drop,
        drop_workloads=[target.removed] if target.removed else [],
        lease=lease,
    )
