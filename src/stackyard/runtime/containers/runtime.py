"""The ``containers`` runtime: each container of a workload as an OCI container run by podman.

It keeps the ``local`` runtime's road and files (``runtime.layout``): a detached supervisor per
workload (``runtime.supervisor``), which here runs each container as a foreground
``podman run`` and so restarts, probes and logs it exactly as it does a process. What differs
is the plan (``containers.plan``), the environment's network (made on the first start,
removed by ``stop_all``) and the clean-up: a stop also removes every container labelled with
the workload, so a killed supervisor or a crash never leaves one running. Loopback servers
that resources name are reached through the environment's relay (``reachable``,
``containers.reach``). See ``docs/runtime-containers.md``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stackyard.errors import WorkloadFailedError
from stackyard.host import supervise
from stackyard.runtime.containers.engine import Engine, detect, find_podman, last_line
from stackyard.runtime.containers.plan import (
    LABEL_SCOPE,
    LABEL_WORKLOAD,
    Names,
    build_plan,
    file_mounts,
)
from stackyard.runtime.containers.reach import Reach, endpoints, rewrite
from stackyard.runtime.layout import WorkloadPaths, read_ports, read_status, write_private
from stackyard.runtime.local import LocalRuntime, _redactable
from stackyard.runtime.plan import allocate_ports, check_spec
from stackyard.runtime.spec import WorkloadSpec, WorkloadStatus
from stackyard.runtime.supervisor import Limits

__all__ = ["ContainersRuntime"]


class ContainersRuntime(LocalRuntime):
    """Runs workloads as podman containers; state under ``root`` (``<home>/envs/<env>/containers``).

    The same methods and guarantees as ``LocalRuntime`` (``start``, ``wait_ready``, ``status``,
    ``names``, ``stop``, ``stop_all``, ``logs``, ``isolation``).
    """

    def __init__(
        self,
        root: Path,
        *,
        home: Path,
        env: str,
        installation: str = "",
        limits: Limits | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``home`` keeps the engine's cached quirks; ``environ`` (default ``os.environ``)
        may force them (``STACKYARD_PODMAN_*``)."""
        super().__init__(root, limits=limits)
        self.home = Path(home)
        self.names_of = Names(self.home, env, installation)
        self._environ = environ
        self._engine: Engine | None = None
        self._reach = Reach(self.root)

    @property
    def engine(self) -> Engine:
        """Podman with this host's quirks (detected once, cached in the home)."""
        if self._engine is None:
            self._engine = detect(self.home, self._environ)
        return self._engine

    def isolation(self) -> dict[str, Any]:
        """Containers are confined by their namespaces; say how."""
        rootless = os.geteuid() != 0
        return {
            "isolated": True,
            "user": "the image's user, in a rootless user namespace"
            if rootless
            else "the image's user (rootful podman: no user namespace)",
            "detail": "each container runs from its image in its own mount, pid, ipc, uts and "
            "network namespaces, on the environment's own network, with podman's default "
            "capabilities; only its files and volumes are mounted, never the stackyard home",
        }

    def reachable(
        self, workload: str, outputs: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """``outputs`` (resource name → outputs) as ``workload``'s containers reach them: every
        loopback endpoint (``host``/``port`` or a URL on 127.0.0.1, ``localhost`` or ``::1``)
        pointed at the environment's relay on the network's gateway address. Call it before
        rendering the workload; the relay (started if needed) listens before this returns.
        Rootless podman: unchanged (its network is not on the host; see the docs)."""
        needed = endpoints(outputs)
        plain = {k: dict(v) for k, v in outputs.items()}
        if os.geteuid() != 0:
            return plain
        with self._locked():
            if not needed:
                self._reach.forget(workload)
                return plain
            self._ensure_network()
            gateway, subnet = self._network_address()
            ports = self._reach.routes(workload, needed, gateway=gateway, subnet=subnet)
        return rewrite(outputs, gateway, ports)

    # -- lifecycle -----------------------------------------------------------------------

    def prepare(self, names: Iterable[str]) -> list[str]:
        """No spare supervisors: a container's start is podman's, not a Python interpreter's."""
        return []

    def start(self, spec: WorkloadSpec) -> tuple[WorkloadStatus, bool]:
        """Run ``spec``'s containers; returns the status and whether anything changed.

        Same digest and a live supervisor: nothing happens. Otherwise the old containers are
        stopped and removed, the files are written, the environment's network is made if it
        is missing, and a new supervisor runs each container. The spec and its images are
        checked before a running version is touched.
        """
        check_spec(spec)
        digest = spec.digest()
        self._redact[spec.name] = _redactable(spec)
        paths = self._paths(spec.name)
        engine = self.engine
        # A dry run checks names, probes, limits and mounts before anything is stopped.
        build_plan(
            spec,
            paths,
            {p.name: 0 for p in spec.ports},
            digest,
            self._limits,
            engine=engine,
            names=self.names_of,
        )
        for c in spec.containers:
            self._ensure_image(spec.name, c.image)
        with self._locked():
            if supervise.running(paths.pidfile) is not None:
                current = read_status(paths)
                if current is not None and current.digest == digest:
                    return self.status(spec.name), False
            previous = read_ports(paths.ports)
            self._halt(paths)
            ports = allocate_ports(spec, previous)
            plan = build_plan(
                spec, paths, ports, digest, self._limits, engine=engine, names=self.names_of
            )
            for d in (paths.dir, paths.logs):
                d.mkdir(mode=0o700, exist_ok=True)
            write_private(paths.ports, json.dumps(ports).encode())
            _write_files(spec, paths)
            self._ensure_network()
            self._launch(plan, paths)
        return self.status(spec.name), True

    def stop(self, name: str) -> bool:
        """Stop the workload (as ``LocalRuntime.stop``) and close the relay's listeners that
        only it needed."""
        stopped = super().stop(name)
        if self.root.is_dir():
            with self._locked():
                self._reach.forget(name)
        return stopped

    def stop_all(self) -> list[str]:
        """Stop every workload and the environment's relay, remove any container still
        labelled with the environment (a crash's leftovers) and the environment's network."""
        stopped = [n for n in self.names() if self.stop(n)]
        if self.root.is_dir():
            with self._locked():
                self._reach.stop()
        if find_podman() is None:
            return stopped  # nothing can have been made without podman
        self._remove_containers(LABEL_SCOPE, self.names_of.scope)
        network = self.names_of.network
        if self.engine.call("network", "exists", network, check=False).returncode == 0:
            self.engine.call("network", "rm", "-f", network, what="")
        return stopped

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes podman still has with this environment's label."""
        scope = f"label={LABEL_SCOPE}={self.names_of.scope}"
        out: dict[str, list[str]] = {}
        for what, args in (
            ("containers", ("ps", "-a", "--format", "{{.Names}}", "--filter", scope)),
            ("networks", ("network", "ls", "--format", "{{.Name}}", "--filter", scope)),
            ("volumes", ("volume", "ls", "--format", "{{.Name}}", "--filter", scope)),
        ):
            done = self.engine.call(*args)
            out[what] = [line for line in done.stdout.split() if line]
        return out

    # -- internals -----------------------------------------------------------------------

    def _halt(self, paths: WorkloadPaths) -> None:
        """Stop the supervisor, then remove every container of the workload it left."""
        super()._halt(paths)
        if find_podman() is not None and (paths.dir.exists() or self.root.exists()):
            self._remove_containers(LABEL_WORKLOAD, paths.dir.name, scoped=True)

    def _remove_containers(self, label: str, value: str, *, scoped: bool = False) -> None:
        filters = ["--filter", f"label={label}={value}"]
        if scoped:
            filters += ["--filter", f"label={LABEL_SCOPE}={self.names_of.scope}"]
        done = self.engine.call("ps", "-aq", *filters)
        ids = done.stdout.split()
        if ids:
            self.engine.call("rm", "-f", "-t", "0", *ids)

    def _ensure_network(self) -> None:
        network = self.names_of.network
        if self.engine.call("network", "exists", network, check=False).returncode == 0:
            return
        labels = [a for k, v in self.names_of.labels().items() for a in ("--label", f"{k}={v}")]
        made = self.engine.call("network", "create", *labels, network, check=False)
        if (
            made.returncode != 0
            and self.engine.call("network", "exists", network, check=False).returncode != 0
        ):  # not a twin's race: a real failure
            self.engine.call("network", "create", *labels, network)

    def _network_address(self) -> tuple[str, str]:
        """The environment network's gateway address and subnet (its first IPv4 one)."""
        done = self.engine.call("network", "inspect", self.names_of.network, what="")
        try:
            subnets = json.loads(done.stdout)[0]["subnets"]
            found = [s for s in subnets if ":" not in s.get("gateway", ":")] or subnets
            return str(found[0]["gateway"]), str(found[0]["subnet"])
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise WorkloadFailedError(
                f"The network {self.names_of.network} has no gateway address",
                workload="",
                hint="Check 'podman network inspect'; a destroy and a new deploy recreate it.",
            ) from exc

    def _ensure_image(self, workload: str, image: str) -> None:
        """The image in local storage, pulled once if it is not (registries may be out of reach)."""
        if self.engine.call("image", "exists", image, check=False).returncode == 0:
            return
        pulled = self.engine.call("pull", "-q", image, check=False, timeout=300)
        if pulled.returncode != 0:
            raise WorkloadFailedError(
                f"Image '{image}' of workload '{workload}' is not in local storage and could "
                f"not be pulled: {last_line(pulled.stderr)}",
                workload=workload,
                hint="Build or import it first (podman build / podman import / podman load), "
                "or make its registry reachable.",
            )


def _write_files(spec: WorkloadSpec, paths: WorkloadPaths) -> None:
    """Recreate ``root/<container>/`` with each container's files (mode ``0644`` unless set:
    the container's user is the image's, not ours; the folders stay ``0700`` on the host)."""
    if paths.root.exists():
        shutil.rmtree(paths.root)
    paths.root.mkdir(mode=0o700)
    for c in spec.containers:
        # file_mounts lists the files first, in order, then the volumes.
        for f, (host, _target, _ro) in zip(c.files, file_mounts(spec, c, paths), strict=False):
            dest = Path(host)
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(f.content)
                os.fchmod(out.fileno(), f.mode if f.mode is not None else 0o644)
