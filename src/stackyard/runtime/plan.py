"""The supervisor plan of a local workload: a ``WorkloadSpec`` checked and mapped to processes.

Mapping starts no process and writes nothing: ``LocalRuntime.start`` builds a plan once on
placeholder ports to check the spec before it stops a running version, and again on the
ports ``allocate_ports`` picked. The plan carries the variables; only the supervisor's stdin
sees it.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from stackyard.errors import InvalidInputError
from stackyard.host import supervise
from stackyard.host.accounts import Account
from stackyard.runtime.capabilities import probe_target, runnable
from stackyard.runtime.isolation import Confinement, python_for
from stackyard.runtime.layout import WorkloadPaths, check_name
from stackyard.runtime.spec import ContainerSpec, ExecProbe, HttpProbe, WorkloadSpec
from stackyard.runtime.supervisor import Limits, ProbePlan, ProcessPlan, SupervisorPlan

__all__ = ["allocate_ports", "build_plan", "check_spec"]


def check_spec(spec: WorkloadSpec) -> None:
    """Raise ``InvalidInputError`` for a bad name, a duplicate, or a variable no environment
    holds (what the Score file said that the local runtime cannot do)."""
    check_name(spec.name, "workload")
    if not spec.containers:
        raise InvalidInputError(f"Workload '{spec.name}' has no containers")
    seen: set[str] = set()
    for c in spec.containers:
        check_name(c.name, "container")
        if c.name in seen:
            raise InvalidInputError(f"Workload '{spec.name}' has two containers named '{c.name}'")
        seen.add(c.name)
        for key, value in c.variables.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise InvalidInputError(
                    f"Container '{c.name}' of workload '{spec.name}' has variable {key!r} "
                    "with a name or value an environment cannot hold ('=' or NUL)"
                )
    if len({p.name for p in spec.ports}) != len(spec.ports):
        raise InvalidInputError(f"Workload '{spec.name}' has two service ports with the same name")


def allocate_ports(spec: WorkloadSpec, previous: dict[str, int]) -> dict[str, int]:
    """A host port per service port: the previous one if it is free, else a new one."""
    out: dict[str, int] = {}
    for p in spec.ports:
        port = previous.get(p.name)
        if port is None or port in out.values() or not _bindable(port):
            port = supervise.free_port()
            while port in out.values():
                port = supervise.free_port()
        out[p.name] = port
    return out


def _bindable(port: int) -> bool:
    # SO_REUSEADDR: a port in TIME_WAIT after our old process is free for a server, which
    # sets the option too; a listening socket still makes bind fail.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def build_plan(
    spec: WorkloadSpec,
    paths: WorkloadPaths,
    ports: dict[str, int],
    digest: str,
    limits: Limits,
    *,
    confinement: Confinement | None = None,
) -> SupervisorPlan:
    """The supervisor's plan for ``spec`` on ``ports``, run as ``confinement``'s account.

    Raises ``InvalidInputError`` for a probe on an undeclared port or with another scheme than
    HTTP(S), and for a container without a command or whose command is not found.
    """
    processes = []
    account = confinement.account if confinement else None
    root = confinement.files_root(spec.name) if confinement else paths.root
    for c in spec.containers:
        env = _environment(spec, c, ports, root, account)
        processes.append(
            ProcessPlan(
                name=c.name,
                executable=_resolve(spec, c, env),
                argv=c.argv,
                env=env,
                readiness=_probe(spec, c, c.readiness, ports, "readiness"),
                liveness=_probe(spec, c, c.liveness, ports, "liveness"),
            )
        )
    return SupervisorPlan(
        workload=spec.name,
        digest=digest,
        workdir=str(paths.dir),
        endpoints={p.name: f"http://127.0.0.1:{ports[p.name]}" for p in spec.ports},
        tcp_ports=tuple(ports[p.name] for p in spec.ports),
        processes=tuple(processes),
        limits=limits,
        uid=account.uid if account else None,
        gid=account.gid if account else None,
    )


def _port_var(name: str) -> str:
    return "PORT_" + name.upper().replace("-", "_").replace(".", "_")


def _environment(
    spec: WorkloadSpec,
    c: ContainerSpec,
    ports: dict[str, int],
    root: Path,
    account: Account | None,
) -> dict[str, str]:
    """A minimal base (PATH with a Python with our packages first, HOME, LANG, TZ), then the
    variables, then the PORT variables and STACKYARD_ROOT, which the runtime owns. A confined
    workload's HOME is its root: it cannot reach ours."""
    extra, exe_dir = python_for(account)
    env = {"PATH": os.pathsep.join([exe_dir, os.environ.get("PATH", os.defpath)]), **extra}
    for key in ("HOME", "LANG", "TZ"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.setdefault("HOME", str(Path.home()))
    if account is not None:
        env["HOME"] = str(root)
    env.update(c.variables)
    for name, port in ports.items():
        env[_port_var(name)] = str(port)
    if len(ports) == 1:
        env["PORT"] = str(next(iter(ports.values())))
    env["STACKYARD_ROOT"] = str(root)
    return env


def _resolve(spec: WorkloadSpec, c: ContainerSpec, env: dict[str, str]) -> str:
    if not runnable(c.argv):
        raise InvalidInputError(
            f"Container '{c.name}' of workload '{spec.name}' has no command",
            hint="The local runtime runs host commands, not images: set 'command' in the "
            "Score file (for example ['python', 'app.py']).",
        )
    cmd = c.argv[0]
    if "/" in cmd:
        return cmd  # relative ones are relative to the workload root, the process's cwd
    found = shutil.which(cmd, path=env.get("PATH", ""))
    if found is None:
        raise InvalidInputError(
            f"The command '{cmd}' of container '{c.name}' in workload '{spec.name}' "
            "was not found on PATH",
            hint="Install it, or give its full path in the Score file's 'command'.",
        )
    return found


def _probe(
    spec: WorkloadSpec,
    c: ContainerSpec,
    probe: HttpProbe | ExecProbe | None,
    ports: dict[str, int],
    what: str,
) -> ProbePlan | None:
    if probe is None:
        return None
    if isinstance(probe, ExecProbe):
        raise InvalidInputError(
            f"The {what} probe of container '{c.name}' in workload '{spec.name}' is an exec "
            "probe; the local runtime honours httpGet probes only"
        )
    port = probe_target(probe.port, spec.ports)
    if port is None:
        declared = ", ".join(f"{p.name} ({p.port}->{p.target_port})" for p in spec.ports)
        raise InvalidInputError(
            f"The {what} probe of container '{c.name}' in workload '{spec.name}' uses port "
            f"{probe.port}, which is neither the port nor the targetPort of a service port "
            f"(declared: {declared or 'none'}); the local runtime can only probe those"
        )
    scheme = probe.scheme.upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise InvalidInputError(f"The {what} probe of container '{c.name}' has scheme {scheme!r}")
    path = probe.path if probe.path.startswith("/") else "/" + probe.path
    return ProbePlan(f"{scheme.lower()}://127.0.0.1:{ports[port.name]}{path}", probe.headers)
