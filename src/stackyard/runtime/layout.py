"""The directory of a local workload: its files, and the files and volumes mapped under its root.

A workload lives in ``<root>/<workload>/``::

    root/            the workload's filesystem root and its processes' cwd (recreated on start)
    status.json      written by the supervisor; no secrets
    supervisor.pid   pid and start time of the supervisor (``host.supervise`` format)
    supervisor.log   the supervisor's own errors
    ports.json       {"<port name>": <host port>}, reused by the next start
    logs/<c>.log     stdout and stderr of container <c> (rotated to ``<c>.log.1``)

Workload and container names become directory and file names, so ``check_name`` limits them.
Every container of a workload shares ``root/``: ``map_root`` checks that the spec's file and
volume targets stay inside it and do not overlap, and ``materialise`` writes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from stackyard.errors import InvalidInputError, InvalidStatusError
from stackyard.runtime.spec import ContainerSpec, FileSpec, WorkloadSpec, WorkloadStatus

__all__ = [
    "NAME",
    "RootLayout",
    "WorkloadPaths",
    "check_name",
    "map_root",
    "materialise",
    "raw_containers",
    "read_json",
    "read_ports",
    "read_status",
    "write_private",
]

#: A valid workload or container name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_name(name: str, what: str) -> None:
    """Raise ``InvalidInputError`` unless ``name`` (of a workload or container) matches ``NAME``."""
    if not NAME.fullmatch(name):
        raise InvalidInputError(
            f"Invalid {what} name {name!r}: the local runtime needs 1-63 letters, digits, "
            "'-', '_' or '.', starting with a letter or digit"
        )


@dataclass(frozen=True)
class WorkloadPaths:
    """The files of one workload."""

    dir: Path

    @property
    def root(self) -> Path:
        """The workload's filesystem root and its processes' cwd (recreated on start)."""
        return self.dir / "root"

    @property
    def status(self) -> Path:
        """Written by the supervisor on every change; no secrets."""
        return self.dir / "status.json"

    @property
    def pidfile(self) -> Path:
        """Pid and start time of the supervisor (``host.supervise`` format)."""
        return self.dir / "supervisor.pid"

    @property
    def ports(self) -> Path:
        """``{"<port name>": <host port>}``, reused by the next start."""
        return self.dir / "ports.json"

    @property
    def logs(self) -> Path:
        """``<container>.log`` per container, rotated to ``<container>.log.1``."""
        return self.dir / "logs"

    @property
    def supervisor_log(self) -> Path:
        """The supervisor's own errors."""
        return self.dir / "supervisor.log"


# -- files and volumes under root/ ---------------------------------------------------------


@dataclass(frozen=True)
class RootLayout:
    """Where files and volumes go under ``root/``, checked."""

    files: tuple[tuple[PurePosixPath, FileSpec], ...]
    volumes: tuple[tuple[PurePosixPath, Path], ...]


def _target(spec: WorkloadSpec, c: ContainerSpec, target: str, what: str) -> PurePosixPath:
    parts = [p for p in PurePosixPath(target).parts if not p.startswith("/")]
    if not parts or ".." in parts:
        raise InvalidInputError(
            f"The {what} target '{target}' of container '{c.name}' in workload '{spec.name}' "
            "is not inside the workload's root",
            hint="Use a path without '..' components that names a file or directory.",
        )
    return PurePosixPath(*parts)


def map_root(spec: WorkloadSpec) -> RootLayout:
    """Map the files and volumes of every container under ``root/``; nothing is written."""
    files: dict[PurePosixPath, FileSpec] = {}
    volumes: dict[PurePosixPath, Path] = {}
    owner: dict[PurePosixPath, str] = {}

    def claim(rel: PurePosixPath, c: ContainerSpec, what: str) -> None:
        clash = next((o for o in owner if o == rel or o in rel.parents or rel in o.parents), None)
        if clash is not None:
            raise InvalidInputError(
                f"The {what} target '/{rel}' of container '{c.name}' in workload "
                f"'{spec.name}' overlaps '/{clash}' of container '{owner[clash]}'",
                hint="On the local runtime all containers of a workload share one "
                "filesystem root; give each file and volume its own path.",
            )
        owner[rel] = c.name

    for c in spec.containers:
        for f in c.files:
            rel = _target(spec, c, f.target, "file")
            if rel in files and files[rel] == f:
                continue
            claim(rel, c, "file")
            files[rel] = f
    for c in spec.containers:
        for v in c.volumes:
            rel = _target(spec, c, v.target, "volume")
            source = Path(v.source).absolute()
            if not source.is_dir():
                raise InvalidInputError(
                    f"The source of volume '{v.target}' of container '{c.name}' in workload "
                    f"'{spec.name}' is not a directory: {source}",
                )
            if volumes.get(rel) == source:
                continue
            claim(rel, c, "volume")
            volumes[rel] = source
    return RootLayout(tuple(files.items()), tuple(volumes.items()))


def materialise(layout: RootLayout, root: Path) -> None:
    """Recreate ``root`` with the files (0600 unless set) and the volume symlinks."""
    if root.exists():
        shutil.rmtree(root)  # does not follow the volume symlinks
    root.mkdir(mode=0o700)
    for rel, f in layout.files:
        dest = _mkparents(root, rel)
        mode = f.mode if f.mode is not None else 0o600
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(f.content)
            os.fchmod(out.fileno(), mode)
    for rel, source in layout.volumes:
        _mkparents(root, rel).symlink_to(source, target_is_directory=True)


def _mkparents(root: Path, rel: PurePosixPath) -> Path:
    path = root
    for part in rel.parts[:-1]:
        path = path / part
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        if path.is_symlink() or not path.is_dir():
            raise InvalidInputError(
                f"Cannot create '/{rel}' in the workload root: '{part}' is taken"
            )
    return path / rel.parts[-1]


# -- files of a workload directory ---------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_status(paths: WorkloadPaths) -> WorkloadStatus | None:
    """What the supervisor last wrote to ``status.json``; None when there is nothing valid."""
    data = read_json(paths.status)
    if not isinstance(data, dict):
        return None
    try:
        return WorkloadStatus.from_json(data)
    except (KeyError, TypeError, ValueError, InvalidStatusError):
        return None


def raw_containers(paths: WorkloadPaths) -> list[dict[str, Any]]:
    """The container entries of ``status.json`` as written, without validating the rest."""
    data = read_json(paths.status)
    containers = data.get("containers") if isinstance(data, dict) else None
    return (
        [v for v in containers.values() if isinstance(v, dict)]
        if isinstance(containers, dict)
        else []
    )


def read_ports(path: Path) -> dict[str, int]:
    """The host ports kept in ``ports.json``; empty when there are none (or none valid)."""
    data = read_json(path)
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int) and 0 < v < 65536}
