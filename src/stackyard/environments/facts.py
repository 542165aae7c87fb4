"""Reserve: before a deploy resolves, every workload's host ports (kept by the runtime) and
the environment's variables, as the facts the resolver fills marked inputs from
(``resolve.facts``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from stackyard.resolve.facts import Facts, ServicePort, declared

if TYPE_CHECKING:
    from stackyard.environments.target import Target
    from stackyard.model.environment import Environment
    from stackyard.model.workload import Workload
    from stackyard.runtime.local import LocalRuntime


def variables_of(lineage: Sequence[Environment]) -> dict[str, str]:
    """The variables of an environment chain (nearest first): the nearest one wins."""
    out: dict[str, str] = {}
    for env in reversed(lineage):
        out.update(env.variables)
    return out


def reserve(
    runtime: LocalRuntime,
    target: Target,
    *,
    runtime_kind: str,
    lineage: Sequence[Environment],
) -> Facts:
    """Reserve a host port for every service port of every workload of ``target`` (kept in the
    runtime's ``ports.json``), and the facts of its environment."""
    ports: dict[str, tuple[ServicePort, ...]] = {}
    for name in sorted(target.workloads):
        ports_of = declared(target.workloads[name])
        host = runtime.reserve_ports(name, [p.name for p in ports_of]) if ports_of else {}
        ports[name] = tuple(replace(p, host_port=host.get(p.name, 0)) for p in ports_of)
    return Facts(runtime_kind, ports, variables_of(lineage), known=True)


def unreserved(workloads: Sequence[Workload], lineage: Sequence[Environment]) -> Facts:
    """The facts as far as they are known without reserving (``explain``, a release)."""
    return Facts(
        ports={w.name: declared(w) for w in workloads},
        variables=variables_of(lineage),
        known=False,
    )
