"""Workloads on their way to a runtime: load Score files (file sources inlined), check
placeholders against component outputs, and render the runtime spec once outputs are known.
What the runtime can honour is the runtime's to say (``runtime/capabilities.py``)."""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stackyard.diagnostics import Diagnostic, error
from stackyard.errors import InvalidInputError, PlaceholderError
from stackyard.model.component import ComponentManifest
from stackyard.model.placeholders import Reference, find_references, lookup, substitute
from stackyard.model.source import load_yaml
from stackyard.model.values import reveal
from stackyard.model.workload import Workload, check_workload
from stackyard.runtime.spec import (
    ContainerSpec,
    ExecProbe,
    FileSpec,
    HttpProbe,
    PortSpec,
    VolumeSpec,
    WorkloadSpec,
)

MAX_SOURCE_BYTES = 1024 * 1024


def load_score(path: Path) -> dict[str, Any]:
    """Read a Score file and inline every ``files[].source`` (read relative to the file).

    The result is self-contained (what a release stores). A source outside the Score file's
    folder, missing or larger than 1 MiB is a diagnostic.
    """
    path = Path(path)
    data = load_yaml(path, what="Score file")
    workload, diags = check_workload(data, file=str(path))
    if workload is None:
        raise InvalidInputError(f"{path} is not a valid Score workload", diags)
    data = copy.deepcopy(data)
    base = path.resolve().parent
    problems: list[Diagnostic] = []
    for cname, container in (data.get("containers") or {}).items():
        files = container.get("files")
        entries = files.items() if isinstance(files, Mapping) else enumerate(files or [])
        for key, entry in entries:
            if not isinstance(entry, dict) or "source" not in entry:
                continue
            where = (
                f"containers.{cname}.files.{key}.source"
                if isinstance(files, Mapping)
                else f"containers.{cname}.files[{key}].source"
            )
            src = (base / str(entry["source"])).resolve()
            if not src.is_relative_to(base):
                problems.append(
                    error(
                        "File source outside the workload folder",
                        f"'{entry['source']}' resolves outside {base}; keep file sources beside the Score file.",
                        file=str(path),
                        path=where,
                    )
                )
                continue
            try:
                if src.stat().st_size > MAX_SOURCE_BYTES:
                    problems.append(
                        error(
                            "File source too large",
                            f"'{entry['source']}' is larger than 1 MiB.",
                            file=str(path),
                            path=where,
                        )
                    )
                    continue
                raw = src.read_bytes()
            except OSError as exc:
                problems.append(
                    error(
                        "File source unreadable",
                        f"Cannot read '{entry['source']}': {exc.strerror}.",
                        file=str(path),
                        path=where,
                    )
                )
                continue
            del entry["source"]
            try:
                entry["content"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                entry["binaryContent"] = base64.b64encode(raw).decode()
    if problems:
        raise InvalidInputError(f"{path}: file sources cannot be read", problems)
    return dict(data)


def parse_spec(spec: Mapping[str, Any], *, file: str) -> Workload:
    """A stored (inlined) Score spec as a ``Workload``."""
    workload, diags = check_workload(dict(spec), file=file)
    if workload is None:
        raise InvalidInputError(f"{file} is not a valid Score workload", diags)
    return workload


def placeholder_diagnostics(
    workload: Workload, components: Mapping[str, ComponentManifest]
) -> list[Diagnostic]:
    """``${resources.<name>.<key>}`` references to outputs the bound component does not have.

    ``components`` maps each resource name of the workload to the component serving it.
    """
    out: list[Diagnostic] = []
    for cname, c in workload.containers.items():
        texts: dict[str, Any] = {
            "command": list(c.command or ()),
            "args": list(c.args or ()),
            "variables": dict(c.variables),
            "files": {
                k: f.content
                for k, f in c.files.items()
                if f.content is not None and not f.no_expand
            },
            "volumes": {k: v.source for k, v in c.volumes.items()},
        }
        try:
            refs = find_references(texts, location=f"containers.{cname}")
        except PlaceholderError:
            continue  # Score validation reported it
        for ref in refs:
            out.extend(_check_ref(workload, ref, components))
    return out


def _check_ref(
    workload: Workload, ref: Reference, components: Mapping[str, ComponentManifest]
) -> list[Diagnostic]:
    if ref.root != "resources" or len(ref.parts) < 3:
        return []
    name, key = ref.parts[1], ref.parts[2]
    comp = components.get(name)
    if comp is None or key in comp.outputs:
        return []
    have = ", ".join(sorted(comp.outputs)) or "none"
    return [
        error(
            "Unknown output",
            f"{ref} names output '{key}' of resource '{name}', but {comp.ref} (serving type '{comp.provides}') has no such output. Its outputs are: {have}.",
            file=workload.file,
            path=ref.location,
        )
    ]


def render(
    workload: Workload, *, env: str, outputs: Mapping[str, Mapping[str, Any]]
) -> WorkloadSpec:
    """The runtime spec: every placeholder filled from ``outputs`` (resource name → outputs)."""
    data = {
        "metadata": workload.metadata.to_dict(),
        "resources": {k: reveal(dict(v)) for k, v in outputs.items()},
    }

    def resolve(ref: Reference) -> Any:
        if ref.root == "resources" and len(ref.parts) == 2:
            res = data["resources"].get(ref.parts[1], {})
            return res.get("path") or res.get("source") or ""  # ${resources.vol} → the directory
        return lookup(data, ref)

    def sub(value: Any, where: str) -> Any:
        return substitute(value, resolve, location=where)

    containers = []
    for cname, c in workload.containers.items():
        base = f"containers.{cname}"
        argv = tuple(str(x) for x in sub([*(c.command or ()), *(c.args or ())], f"{base}.command"))
        variables = {k: str(v) for k, v in sub(dict(c.variables), f"{base}.variables").items()}
        files = []
        for key, f in c.files.items():
            if f.binary_content is not None:
                content = base64.b64decode(f.binary_content)
            else:
                text = f.content or ""
                content = (text if f.no_expand else str(sub(text, f"{base}.files.{key}"))).encode()
            files.append(FileSpec(f.target, content, int(f.mode, 8) if f.mode else None))
        volumes = [
            VolumeSpec(v.target, str(sub(v.source, f"{base}.volumes.{k}")), v.read_only)
            for k, v in c.volumes.items()
        ]
        limits = c.resources.limits if c.resources is not None else None
        containers.append(
            ContainerSpec(
                name=cname,
                argv=argv,
                variables=variables,
                files=tuple(files),
                volumes=tuple(volumes),
                readiness=_probe(c.readiness_probe),
                liveness=_probe(c.liveness_probe),
                image=c.image,
                entrypoint=argv[: len(c.command)] if c.command is not None else None,
                cpu=limits.cpu if limits is not None else None,
                memory=limits.memory if limits is not None else None,
            )
        )
    ports = tuple(PortSpec(n, p.port, p.target_port) for n, p in workload.service.ports.items())
    return WorkloadSpec(env=env, name=workload.name, containers=tuple(containers), ports=ports)


def _probe(probe: Any) -> HttpProbe | ExecProbe | None:
    if probe is None:
        return None
    if probe.http_get is None:
        return ExecProbe(tuple(probe.exec_command)) if probe.exec_command else None
    hp = probe.http_get
    return HttpProbe(port=hp.port, path=hp.path or "/", scheme=hp.scheme, headers=tuple(hp.headers))


def score_paths(paths: list[str]) -> list[Path]:
    """Check the given Score paths exist, with one clear error naming the missing ones."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InvalidInputError(
            f"Score file not found: {', '.join(missing)}", hint="Give paths to score.yaml files."
        )
    return [Path(p) for p in paths]
