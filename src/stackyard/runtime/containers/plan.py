"""A containers workload's supervisor plan: each container as a foreground ``podman run``.

Names and labels come from here too, so that a start, a stop, a destroy and a sweep agree on
them. Everything stackyard makes in podman carries ``dev.stackyard.scope`` (a hash of the
home and the environment), ``dev.stackyard.env`` and ``dev.stackyard.owner``
(``stackyard:<installation>:<env>:workload.<name>``); containers also carry
``dev.stackyard.workload``.

Mapping starts nothing and writes nothing. Variable values travel in the supervisor's plan
(over its stdin) as the ``podman run`` process's environment, and reach the container as
``--env NAME`` (value taken from that environment), never in an argv: only the few names that
podman itself reads from its environment are passed as ``--env NAME=value``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath

from stackyard.errors import InvalidInputError
from stackyard.runtime.capabilities import probe_target
from stackyard.runtime.containers.engine import Engine, _podman_env
from stackyard.runtime.layout import WorkloadPaths, check_name
from stackyard.runtime.spec import ContainerSpec, ExecProbe, HttpProbe, WorkloadSpec
from stackyard.runtime.supervisor import Limits, ProbePlan, ProcessPlan, SupervisorPlan

__all__ = [
    "LABEL_ENV",
    "LABEL_OWNER",
    "LABEL_SCOPE",
    "LABEL_WORKLOAD",
    "Names",
    "build_plan",
    "file_mounts",
    "parse_cpu",
    "parse_memory",
]

LABEL_SCOPE = "dev.stackyard.scope"
LABEL_ENV = "dev.stackyard.env"
LABEL_WORKLOAD = "dev.stackyard.workload"
LABEL_OWNER = "dev.stackyard.owner"
#: Variables podman reads from its own environment: passing them by name would change podman.
_PODMAN_READS = re.compile(
    r"(PATH|HOME|LANG|LC_.*|TZ|TMPDIR|XDG_.*|CONTAINERS_.*|STORAGE_.*|REGISTRY_AUTH_FILE|"
    r"DOCKER_.*|BUILDAH_.*|PODMAN_.*|CONTAINER_HOST|CONTAINER_CONNECTION|NOTIFY_SOCKET|"
    r"LISTEN_.*|(?i:[a-z_]*_proxy)|GODEBUG|GOMAXPROCS|TERM)"
)


@dataclass(frozen=True)
class Names:
    """The podman names and labels of one environment's workloads."""

    home: Path
    env: str
    installation: str = ""

    @property
    def scope(self) -> str:
        """12 hex of the home and the environment: unique per environment and home."""
        raw = f"{self.home.absolute()}\0{self.env}".encode()
        return hashlib.sha256(raw).hexdigest()[:12]

    @property
    def network(self) -> str:
        """The environment's network."""
        return f"stackyard-{self.scope}"

    def container(self, workload: str, container: str) -> str:
        """The podman name of a container."""
        return f"sy-{self.scope}-{workload}-{container}"

    def labels(self, workload: str | None = None) -> dict[str, str]:
        """The labels of the network (no workload) or of a workload's containers."""
        owner = (
            self.installation or hashlib.sha256(str(self.home.absolute()).encode()).hexdigest()[:16]
        )
        out = {
            LABEL_SCOPE: self.scope,
            LABEL_ENV: self.env,
            LABEL_OWNER: f"stackyard:{owner}:{self.env}:"
            + (f"workload.{workload}" if workload else "network"),
        }
        if workload is not None:
            out[LABEL_WORKLOAD] = workload
        return out


def build_plan(
    spec: WorkloadSpec,
    paths: WorkloadPaths,
    ports: dict[str, int],
    digest: str,
    limits: Limits,
    *,
    engine: Engine,
    names: Names,
) -> SupervisorPlan:
    """The supervisor's plan: one ``podman run`` per container, on the env's network.

    Raises ``InvalidInputError`` for a container with neither image nor command, for an
    httpGet probe on an undeclared port, for a bad limit, and for bad names.
    """
    check_name(spec.name, "workload")
    processes = []
    for i, c in enumerate(spec.containers):
        check_name(c.name, "container")
        if not c.image:
            raise InvalidInputError(
                f"Container '{c.name}' of workload '{spec.name}' has no image",
                hint="The containers runtime runs images: set 'image' in the Score file.",
            )
        argv, env = _run_argv(spec, c, paths, ports if i == 0 else {}, engine, names)
        name = names.container(spec.name, c.name)
        processes.append(
            ProcessPlan(
                name=c.name,
                executable=engine.podman,
                argv=tuple(argv),
                env=env,
                readiness=_probe(spec, c, c.readiness, ports, "readiness", engine, name),
                liveness=_probe(spec, c, c.liveness, ports, "liveness", engine, name),
            )
        )
    return SupervisorPlan(
        workload=spec.name,
        digest=digest,
        workdir=str(paths.dir),
        endpoints={p.name: f"http://127.0.0.1:{ports[p.name]}" for p in spec.ports},
        tcp_ports=tuple(ports[p.name] for p in spec.ports if p.name in ports),
        processes=tuple(processes),
        # The supervisor's process is podman's client, which sits idle while the container
        # starts: idleness says nothing of the container (``Limits.quiet``), the settle does.
        limits=replace(limits, quiet=0.0),
    )


def _run_argv(
    spec: WorkloadSpec,
    c: ContainerSpec,
    paths: WorkloadPaths,
    ports: Mapping[str, int],
    engine: Engine,
    names: Names,
) -> tuple[list[str], dict[str, str]]:
    """``podman run`` for one container (in the foreground, attached) and its environment."""
    argv = engine.cmd(
        "run",
        "--rm",
        "--replace",
        "--name",
        names.container(spec.name, c.name),
        "--network",
        names.network,
        "--network-alias",
        spec.name,
        "--network-alias",
        f"{spec.name}-{c.name}",
        "--hostname",
        spec.name,
        "--pull",
        "never",
        "--image-volume",
        "tmpfs",
        "--http-proxy=false",
        "--log-driver",
        "none",
        "--stop-timeout",
        "5",
    )
    argv += engine.run_flags()
    for key, value in {**names.labels(spec.name), "dev.stackyard.container": c.name}.items():
        argv += ["--label", f"{key}={value}"]
    for p in spec.ports:
        if p.name in ports:
            argv += ["--publish", f"127.0.0.1:{ports[p.name]}:{p.target_port}"]
    env = _podman_env()
    for key, value in c.variables.items():
        if _PODMAN_READS.fullmatch(key):
            argv += ["--env", f"{key}={value}"]
        else:
            argv += ["--env", key]
            env[key] = value
    for host, target, ro in file_mounts(spec, c, paths):
        argv += ["--mount", _bind(host, target, ro)]
    if c.memory is not None:
        argv += ["--memory", f"{parse_memory(c.memory, spec, c)}b"]
    if c.cpu is not None:
        argv += ["--cpus", parse_cpu(c.cpu, spec, c)]
    if c.entrypoint is not None:
        argv += ["--entrypoint", json.dumps(list(c.entrypoint))]
        args = c.argv[len(c.entrypoint) :]
    else:
        args = c.argv
    argv += [c.image, *args]
    return argv, env


def _bind(host: str, target: str, read_only: bool) -> str:
    for text in (host, target):
        if "," in text or "\n" in text:
            raise InvalidInputError(
                f"The path {text!r} cannot be mounted: podman's --mount does not take ','",
                hint="Use a path without commas.",
            )
    return f"type=bind,source={host},destination={target}" + (",ro=true" if read_only else "")


def files_dir(paths: WorkloadPaths, container: str) -> Path:
    """Where a container's files are written on the host (one file bind-mounted per target)."""
    return paths.root / container


def file_mounts(
    spec: WorkloadSpec, c: ContainerSpec, paths: WorkloadPaths
) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) of every file and volume of ``c``, checked."""
    out: list[tuple[str, str, bool]] = []
    seen: set[str] = set()
    for f in c.files:
        target = _absolute(spec, c, f.target, "file")
        out.append((str(files_dir(paths, c.name) / target.relative_to("/")), str(target), False))
        seen.add(str(target))
    for v in c.volumes:
        target = _absolute(spec, c, v.target, "volume")
        source = Path(v.source).absolute()
        if not source.is_dir():
            raise InvalidInputError(
                f"The source of volume '{v.target}' of container '{c.name}' in workload "
                f"'{spec.name}' is not a directory: {source}",
            )
        if str(target) in seen:
            raise InvalidInputError(
                f"Container '{c.name}' of workload '{spec.name}' mounts two things at '{target}'"
            )
        seen.add(str(target))
        out.append((str(source), str(target), v.read_only))
    return out


def _absolute(spec: WorkloadSpec, c: ContainerSpec, target: str, what: str) -> PurePosixPath:
    """A file or volume target as an absolute path in the container (relative: under ``/``)."""
    parts = [p for p in PurePosixPath(target).parts if p != "/"]
    if not parts or ".." in parts or any("\0" in p for p in parts):
        raise InvalidInputError(
            f"The {what} target '{target}' of container '{c.name}' in workload '{spec.name}' "
            "is not a path in the container",
            hint="Use an absolute path without '..' components.",
        )
    return PurePosixPath("/", *parts)


_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(|k|M|G|T|Ki|Mi|Gi|Ti|m)")
_MEMORY_UNIT = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_memory(text: str, spec: WorkloadSpec, c: ContainerSpec) -> int:
    """Bytes of a Kubernetes memory quantity (``128Mi``, ``1.5G``, ``1048576``)."""
    m = _MEMORY.fullmatch(text.strip())
    if m is None or m.group(2) == "m":
        raise InvalidInputError(
            f"The memory limit {text!r} of container '{c.name}' in workload '{spec.name}' "
            "is not a quantity",
            hint="Write it as Kubernetes does: 128Mi, 1Gi, 500M.",
        )
    return int(Decimal(m.group(1)) * _MEMORY_UNIT[m.group(2)])


def parse_cpu(text: str, spec: WorkloadSpec, c: ContainerSpec) -> str:
    """Podman's ``--cpus`` for a Kubernetes CPU quantity (``2``, ``0.5``, ``250m``)."""
    raw = text.strip()
    try:
        value = Decimal(raw[:-1]) / 1000 if raw.endswith("m") else Decimal(raw)
    except InvalidOperation:
        value = Decimal(-1)
    if value <= 0:
        raise InvalidInputError(
            f"The cpu limit {text!r} of container '{c.name}' in workload '{spec.name}' "
            "is not a quantity",
            hint="Write it as Kubernetes does: 2, 0.5, 250m.",
        )
    return format(value.normalize(), "f")


def _probe(
    spec: WorkloadSpec,
    c: ContainerSpec,
    probe: HttpProbe | ExecProbe | None,
    ports: dict[str, int],
    what: str,
    engine: Engine,
    name: str,
) -> ProbePlan | None:
    if probe is None:
        return None
    if isinstance(probe, ExecProbe):
        if not probe.argv:
            raise InvalidInputError(f"The {what} probe of container '{c.name}' has no command")
        return ProbePlan("", (), tuple(engine.cmd("exec", name, *probe.argv)))
    port = probe_target(probe.port, spec.ports)
    if port is None:
        declared = ", ".join(f"{p.name} ({p.port}->{p.target_port})" for p in spec.ports)
        raise InvalidInputError(
            f"The {what} probe of container '{c.name}' in workload '{spec.name}' uses port "
            f"{probe.port}, which is neither the port nor the targetPort of a service port "
            f"(declared: {declared or 'none'}); the containers runtime probes published ports"
        )
    scheme = probe.scheme.upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise InvalidInputError(f"The {what} probe of container '{c.name}' has scheme {scheme!r}")
    path = probe.path if probe.path.startswith("/") else "/" + probe.path
    return ProbePlan(f"{scheme.lower()}://127.0.0.1:{ports[port.name]}{path}", probe.headers)
