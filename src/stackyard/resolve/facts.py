"""Facts: what the platform itself knows about an environment before anything is applied, and
hands to components through inputs marked ``x-stackyard-fact``.

Three resource types are answered by the environment rather than by a backend: a route's
upstream is the host port its workload's service port is published on, a ``service-port`` is
where another workload of the environment listens, and ``environment`` is the environment's
variables. None of these can be a component template alone (a template reads fixed paths,
and these depend on a request's params and on other workloads), and none needs a provider
(nothing is created). So the deploy reserves every workload's host ports first
(``environments.facts.reserve``), and the resolver fills each marked input of an instance
from these facts after checking its params (``Facts.fill``):

``host-port``
    The host port on 127.0.0.1 that the requesting workload's service port ``inputs.port``
    (its ``port``, ``targetPort`` or name) is published on; any other port as it is.
``service-hostname`` / ``service-port``
    Where workload ``inputs.workload``'s service port ``inputs.port`` is reached by the
    environment's workloads: ``127.0.0.1`` and its host port on the ``local`` runtime, the
    workload's name and its ``targetPort`` on the environment's network (``containers``).
    The requester then starts after that workload is ready (``Facts.after``).
``variables``
    The environment's variables (its ancestors' first). An input marked also
    ``x-stackyard-outputs: true`` makes each entry an output of the instance (``spread``):
    outputs whose names are data, which a component manifest cannot declare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from stackyard.cycles import find_cycles
from stackyard.diagnostics import Diagnostic, error
from stackyard.model.component import ComponentManifest, OutputTemplate
from stackyard.model.workload import Workload

FACT = "x-stackyard-fact"
SPREAD = "x-stackyard-outputs"
FACTS = ("host-port", "service-hostname", "service-port", "variables")


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One service port of a workload, and the host port it is published on (0: unknown)."""

    name: str
    port: int
    target_port: int
    host_port: int = 0

    def named(self, wanted: Any) -> bool:
        """Whether ``wanted`` (a param: a port number or a name) names this port."""
        if isinstance(wanted, bool):
            return False
        if isinstance(wanted, int):
            return wanted in (self.port, self.target_port)
        return str(wanted) == self.name or str(wanted) in (str(self.port), str(self.target_port))


@dataclass
class Facts:
    """An environment's facts (see the module docstring). ``known`` is False where nothing
    was reserved (``explain``, ``release create``): marked inputs are then filled with
    placeholders and nothing is checked."""

    runtime: str = "local"
    ports: Mapping[str, Sequence[ServicePort]] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    known: bool = False
    #: workload -> the workloads it must start after (filled as ``service-port``s resolve)
    after: dict[str, set[str]] = field(default_factory=dict)

    def fill(
        self,
        manifest: ComponentManifest,
        inputs: Mapping[str, Any],
        *,
        workload: str,
        where: str,
    ) -> tuple[dict[str, Any], list[Diagnostic]]:
        """``inputs`` with every ``x-stackyard-fact`` input of ``manifest`` set (whatever a
        binding gave), and the problems found (a missing workload or port)."""
        out = dict(inputs)
        problems: list[Diagnostic] = []
        for key, fact in marked(manifest).items():
            value, problem = self._value(fact, out, workload, where)
            out[key] = value
            if problem is not None:
                problems.append(problem)
        return out, problems

    def _value(
        self, fact: str, inputs: Mapping[str, Any], workload: str, where: str
    ) -> tuple[Any, Diagnostic | None]:
        if fact == "variables":
            return dict(self.variables), None
        if fact == "host-port":
            found = self._port(workload, inputs.get("port"))
            if found is not None and found.host_port:
                return found.host_port, None
            port = inputs.get("port")
            return (port if isinstance(port, int) else 0), None
        target = str(inputs.get("workload") or "")
        if not self.known:
            return ("127.0.0.1" if fact == "service-hostname" else 0), None
        found, problem = self._service(target, inputs.get("port"), where)
        if found is None:
            return ("" if fact == "service-hostname" else 0), problem
        if workload and target != workload:
            self.after.setdefault(workload, set()).add(target)
        if fact == "service-hostname":
            return (target if self.runtime == "containers" else "127.0.0.1"), None
        return (found.target_port if self.runtime == "containers" else found.host_port), None

    def _port(self, workload: str, wanted: Any) -> ServicePort | None:
        return next((p for p in self.ports.get(workload, ()) if p.named(wanted)), None)

    def _service(
        self, target: str, wanted: Any, where: str
    ) -> tuple[ServicePort | None, Diagnostic | None]:
        if target not in self.ports:
            have = ", ".join(sorted(self.ports)) or "none"
            return None, error(
                "Unknown workload",
                f"{where} asks for a port of workload '{target}', which is not deployed in "
                f"this environment nor deployed with it. Its workloads are: {have}. Deploy "
                "that workload first, or in the same command.",
            )
        found = self._port(target, wanted)
        if found is None:
            declared = ", ".join(f"{p.name} ({p.port})" for p in self.ports[target]) or "none"
            return None, error(
                "Unknown service port",
                f"{where} asks for port '{wanted}' of workload '{target}', which declares no "
                f"such service port (declared: {declared}). Name a service port's port, "
                "targetPort or name.",
            )
        return found, None

    def cycles(self) -> list[Diagnostic]:
        """Workloads that wait for each other (through ``service-port``), as errors."""
        graph = {w: tuple(sorted(d)) for w, d in self.after.items()}
        return [
            error(
                "Workloads wait for each other",
                "These workloads each need another one ready first (through service-port): "
                + " -> ".join([*cycle, cycle[0]])
                + ". One of them must reach the other without waiting for it.",
                subject=cycle[0],
            )
            for cycle in find_cycles(graph)
        ]

    def order(self, names: Sequence[str]) -> list[str]:
        """``names`` in start order: each after the workloads it waits for (ties by name).
        Assumes no cycle (``cycles`` reported them before anything was applied)."""
        pending = sorted(names)
        done: list[str] = []
        while pending:
            ready = [n for n in pending if not (self.after.get(n, set()) & set(pending))]
            nxt = ready[0] if ready else pending[0]
            done.append(nxt)
            pending.remove(nxt)
        return done


def marked(manifest: ComponentManifest) -> dict[str, str]:
    """The inputs of ``manifest`` marked ``x-stackyard-fact``: input name → fact."""
    props = manifest.inputs.get("properties")
    if not isinstance(props, Mapping):
        return {}
    return {
        str(k): str(v[FACT])
        for k, v in props.items()
        if isinstance(v, Mapping) and v.get(FACT) in FACTS
    }


def spread(manifest: ComponentManifest, inputs: Mapping[str, Any]) -> ComponentManifest:
    """``manifest`` with one more output per entry of each input marked ``x-stackyard-outputs``
    (the ``environment`` type's variables); values are literal (``$`` escaped)."""
    props = manifest.inputs.get("properties")
    if not isinstance(props, Mapping):
        return manifest
    extra: dict[str, OutputTemplate] = {}
    for key, spec in props.items():
        if not (isinstance(spec, Mapping) and spec.get(SPREAD)):
            continue
        value = inputs.get(str(key))
        if isinstance(value, Mapping):
            for name, item in value.items():
                extra[str(name)] = OutputTemplate(str(name), str(item).replace("$", "$$"))
    if not extra:
        return manifest
    return replace(manifest, outputs={**extra, **manifest.outputs})


def declared(workload: Workload) -> tuple[ServicePort, ...]:
    """A workload's service ports, none of them published yet."""
    return tuple(
        ServicePort(n, p.port, p.target_port or p.port) for n, p in workload.service.ports.items()
    )
