"""What the local runtime can honour of a Score workload: the one check of a workload's needs.

``runtime_diagnostics`` reads the Score workload before a deploy plans anything, so every
unsupported feature is a diagnostic (exit 2) pointing into the Score file. The runtime applies
the same rules again to the spec it is handed (``runtime/plan.py``, through ``probe_target``
and ``runnable``), so a spec that skipped the check is refused before anything stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from stackyard.diagnostics import Diagnostic, error, warning
from stackyard.model.workload import Workload
from stackyard.runtime.spec import PortSpec

__all__ = [
    "IGNORED",
    "UNHONOURED",
    "container_diagnostics",
    "probe_target",
    "runnable",
    "runtime_diagnostics",
]

UNHONOURED = "Not supported by the local runtime"
IGNORED = "Ignored by the local runtime"
#: The only probe hosts: the runtime probes each process on the loopback interface.
PROBE_HOSTS = (None, "", "localhost", "127.0.0.1")


def runnable(argv: Sequence[str] | None) -> bool:
    """Whether a container names a command to run: the local runtime runs host processes and
    pulls no image, so an image's default command cannot stand in."""
    return argv is not None and len(argv) > 0 and bool(argv[0])


def probe_target(port: int, ports: Iterable[PortSpec]) -> PortSpec | None:
    """The service port a probe of ``port`` reaches (by its port or its targetPort), or None.

    The local runtime gives each service port a host port, so it can probe no other port.
    """
    return next((p for p in ports if port in (p.port, p.target_port)), None)


def runtime_diagnostics(workload: Workload, runtime: str = "local") -> list[Diagnostic]:
    """What ``runtime`` (an environment type's) cannot honour (errors) or ignores (warnings)."""
    if runtime == "containers":
        return container_diagnostics(workload)
    out: list[Diagnostic] = []

    def unhonoured(detail: str, path: str) -> None:
        out.append(error(UNHONOURED, detail, file=workload.file, path=path))

    ports = [PortSpec(n, p.port, p.target_port) for n, p in workload.service.ports.items()]
    for pname, port in workload.service.ports.items():
        if port.protocol.upper() != "TCP":
            unhonoured(
                f"Service port '{pname}' uses {port.protocol}; the local runtime serves TCP only.",
                f"service.ports.{pname}.protocol",
            )
    for cname, c in workload.containers.items():
        base = f"containers.{cname}"
        if not runnable(c.command):
            unhonoured(
                f"Container '{cname}' has no command: the local runtime runs host processes and does not pull image '{c.image}'. Give 'command' (and 'args'), or deploy to an environment whose type has runtime 'containers' ('stackyard doctor' says whether this machine can run containers).",
                f"{base}.command",
            )
        if c.resources is not None:
            out.append(
                warning(
                    IGNORED,
                    f"Container '{cname}' sets resource requests/limits; local processes run unconstrained.",
                    file=workload.file,
                    path=f"{base}.resources",
                )
            )
        for label, probe in (
            ("readinessProbe", c.readiness_probe),
            ("livenessProbe", c.liveness_probe),
        ):
            if probe is None:
                continue
            if probe.exec_command is not None:
                unhonoured(
                    f"Container '{cname}' has an exec {label}; the local runtime honours httpGet probes only.",
                    f"{base}.{label}.exec",
                )
            hp = probe.http_get
            if hp is not None and hp.host not in PROBE_HOSTS:
                unhonoured(
                    f"The {label} of '{cname}' targets host '{hp.host}'; local probes go to 127.0.0.1.",
                    f"{base}.{label}.httpGet.host",
                )
            if hp is not None and probe_target(hp.port, ports) is None:
                unhonoured(
                    f"The {label} of '{cname}' probes port {hp.port}, which no service port declares; the local runtime assigns host ports per service port.",
                    f"{base}.{label}.httpGet.port",
                )
        for vname, vol in c.volumes.items():
            if vol.path:
                unhonoured(
                    f"Volume '{vname}' of '{cname}' mounts a sub-path; the local runtime links whole directories.",
                    f"{base}.volumes.{vname}.path",
                )
    return out


def container_diagnostics(workload: Workload) -> list[Diagnostic]:
    """What the ``containers`` runtime cannot honour: a port that is not TCP, probes of
    another host or of a port no service port publishes (it probes through the published
    port), volume sub-paths, and ``before`` (containers start together)."""
    out: list[Diagnostic] = []
    unsupported = "Not supported by the containers runtime"
    ports = [PortSpec(n, p.port, p.target_port) for n, p in workload.service.ports.items()]
    for pname, port in workload.service.ports.items():
        if port.protocol.upper() != "TCP":  # it publishes TCP only: never a silent TCP port
            out.append(
                error(
                    unsupported,
                    f"Service port '{pname}' uses {port.protocol}; the containers runtime "
                    "publishes TCP ports only.",
                    file=workload.file,
                    path=f"service.ports.{pname}.protocol",
                )
            )
    for cname, c in workload.containers.items():
        base = f"containers.{cname}"
        for label, probe in (
            ("readinessProbe", c.readiness_probe),
            ("livenessProbe", c.liveness_probe),
        ):
            hp = probe.http_get if probe is not None else None
            if hp is not None and hp.host not in PROBE_HOSTS:
                out.append(
                    error(
                        unsupported,
                        f"The {label} of '{cname}' targets host '{hp.host}'; probes go to the workload's published port on 127.0.0.1.",
                        file=workload.file,
                        path=f"{base}.{label}.httpGet.host",
                    )
                )
            if hp is not None and probe_target(hp.port, ports) is None:
                out.append(
                    error(
                        unsupported,
                        f"The {label} of '{cname}' probes port {hp.port}, which no service port declares; the containers runtime probes a workload through its published service ports (or use an exec probe).",
                        file=workload.file,
                        path=f"{base}.{label}.httpGet.port",
                    )
                )
        for vname, vol in c.volumes.items():
            if vol.path:
                out.append(
                    error(
                        unsupported,
                        f"Volume '{vname}' of '{cname}' mounts a sub-path; mount the whole volume (a sub-path is not supported yet).",
                        file=workload.file,
                        path=f"{base}.volumes.{vname}.path",
                    )
                )
        if c.before:
            out.append(
                warning(
                    "Ignored by the containers runtime",
                    f"Container '{cname}' sets 'before'; the containers of a workload start together.",
                    file=workload.file,
                    path=f"{base}.before",
                )
            )
    return out
