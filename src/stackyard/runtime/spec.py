"""What a runtime is asked to run (``WorkloadSpec``) and what it reports (``WorkloadStatus``).

Plain frozen values without I/O. The deploy service builds a ``WorkloadSpec`` once every
placeholder is substituted; a runtime turns it into processes. Variable values, file
contents and arguments may hold secrets: nothing here prints them, and ``WorkloadStatus``
never carries them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackyard.canonical import canonical_bytes
from stackyard.model.status import WORKLOAD, WorkloadState

__all__ = [
    "STATES",
    "ContainerSpec",
    "ExecProbe",
    "FileSpec",
    "HttpProbe",
    "PortSpec",
    "VolumeSpec",
    "WorkloadSpec",
    "WorkloadStatus",
]

#: The states of a workload and of each of its containers (``WorkloadState``'s values).
STATES = tuple(WorkloadState)


@dataclass(frozen=True)
class HttpProbe:
    """A Score ``httpGet`` probe; ``port`` is the container port the Score file named."""

    port: int
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ExecProbe:
    """A Score ``exec`` probe: ``argv`` runs inside the container; exit 0 passes."""

    argv: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class FileSpec:
    """A file to write under the workload root; ``mode`` defaults to ``0o600``."""

    target: str
    content: bytes = field(repr=False)
    mode: int | None = None


@dataclass(frozen=True)
class VolumeSpec:
    """A host directory made visible at ``target`` under the workload root."""

    target: str
    source: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """One container, already substituted. ``argv`` and ``variables`` may hold secrets.

    ``argv`` is Score's ``command`` followed by its ``args``; ``entrypoint`` is the
    ``command`` part alone (None: the image's entrypoint applies), which only a runtime that
    runs images needs. ``image``, ``cpu`` and ``memory`` (Score's limits, as written) are
    likewise ignored by the ``local`` runtime.
    """

    name: str
    argv: tuple[str, ...] = field(repr=False)
    variables: Mapping[str, str] = field(repr=False)
    files: tuple[FileSpec, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    readiness: HttpProbe | ExecProbe | None = None
    liveness: HttpProbe | ExecProbe | None = None
    image: str = ""
    entrypoint: tuple[str, ...] | None = field(default=None, repr=False)
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class PortSpec:
    """A service port: ``port`` is the published one, ``target_port`` the container's."""

    name: str
    port: int
    target_port: int


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload of one environment, ready to run."""

    env: str
    name: str
    containers: tuple[ContainerSpec, ...]
    ports: tuple[PortSpec, ...] = ()

    def digest(self) -> str:
        """The sha256 (hex) of a canonical JSON of everything: equal digests, equal workloads."""
        return hashlib.sha256(canonical_bytes(_canonical(self), ascii_only=True)).hexdigest()


def _canonical(spec: WorkloadSpec) -> dict[str, Any]:
    def probe(p: HttpProbe | ExecProbe | None) -> dict[str, Any] | None:
        if p is None:
            return None
        if isinstance(p, ExecProbe):
            return {"exec": list(p.argv)}
        return {
            "port": p.port,
            "path": p.path,
            "scheme": p.scheme,
            "headers": [list(h) for h in p.headers],
        }

    def image_fields(c: ContainerSpec) -> dict[str, Any]:
        # Only when set: the digests of specs without them (the local runtime's) stay as
        # they were, so no running workload restarts for an upgrade.
        out: dict[str, Any] = {}
        if c.image:
            out["image"] = c.image
        if c.entrypoint is not None:
            out["entrypoint"] = list(c.entrypoint)
        if c.cpu is not None:
            out["cpu"] = c.cpu
        if c.memory is not None:
            out["memory"] = c.memory
        return out

    return {
        "env": spec.env,
        "name": spec.name,
        "ports": [[p.name, p.port, p.target_port] for p in spec.ports],
        "containers": [
            {
                **image_fields(c),
                "name": c.name,
                "argv": list(c.argv),
                "variables": dict(sorted(c.variables.items())),
                "files": [
                    [f.target, base64.b64encode(f.content).decode(), f.mode] for f in c.files
                ],
                "volumes": [[v.target, v.source, v.read_only] for v in c.volumes],
                "readiness": probe(c.readiness),
                "liveness": probe(c.liveness),
            }
            for c in spec.containers
        ],
    }


@dataclass(frozen=True)
class WorkloadStatus:
    """What a runtime observes of a workload. Never holds secrets.

    ``state`` is a ``WorkloadState``. ``containers`` maps each container to ``pid``, ``state``,
    ``restarts``, ``ready`` (and, from the local runtime, ``exits``, ``exit_code``,
    ``started_at``).
    """

    name: str
    state: WorkloadState
    endpoints: Mapping[str, str]
    restarts: int
    containers: Mapping[str, Mapping[str, Any]]
    digest: str
    started_at: float | None

    @classmethod
    def stopped(cls, name: str) -> WorkloadStatus:
        """The status of a workload that does not run."""
        return cls(name, WorkloadState.STOPPED, {}, 0, {}, "", None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of ``from_json``)."""
        return {
            "name": self.name,
            "state": self.state,
            "endpoints": dict(self.endpoints),
            "restarts": self.restarts,
            "containers": {k: dict(v) for k, v in self.containers.items()},
            "digest": self.digest,
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkloadStatus:
        """Read what ``to_json`` wrote; raises ``KeyError``/``TypeError``/``ValueError``, and
        ``InvalidStatusError`` for a state that is no ``WorkloadState``."""
        state = WORKLOAD.parse(data["state"], subject=f"workload '{data.get('name')}'")
        started = data.get("started_at")
        return cls(
            name=str(data["name"]),
            state=state,
            endpoints={str(k): str(v) for k, v in dict(data.get("endpoints", {})).items()},
            restarts=int(data.get("restarts", 0)),
            containers={str(k): dict(v) for k, v in dict(data.get("containers", {})).items()},
            digest=str(data.get("digest", "")),
            started_at=float(started) if started is not None else None,
        )
