"""Score workloads: ``score.dev/v1b1`` files as frozen, typed values, checked with diagnostics.

Structure is checked with the official Score JSON Schema (vendored in ``schemas/``); the
rest is checked here: resource uids, placeholders, the deprecated list forms and ``before``.
Every problem found comes back together; a file is never half-loaded.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources as package_files
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from stackyard.diagnostics import Diagnostic, error, has_errors, warning
from stackyard.errors import InvalidInputError, PlaceholderError
from stackyard.model import placeholders
from stackyard.model.ids import ResourceUid
from stackyard.model.schema_errors import (
    INVALID_VALUE,
    MISSING_FIELD,
    WRONG_TYPE,
    did_you_mean,
    join,
    json_shape_diagnostics,
    kind,
    prefer,
    schema_diagnostics,
    unique,
)
from stackyard.model.source import load_yaml

API_VERSION = "score.dev/v1b1"
ROOTS = ("metadata", "resources")
SCHEMA_FILE = "score-v1b1.json"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A named port the workload publishes. ``target_port`` defaults to ``port``."""

    name: str
    port: int
    target_port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Service:
    """The workload's service: its named ports."""

    ports: Mapping[str, ServicePort] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ContainerFile:
    """A file mounted at ``target``: from ``source``, ``content`` or ``binary_content``."""

    target: str
    mode: str | None = None
    source: str | None = None
    content: str | None = None
    binary_content: str | None = None
    no_expand: bool = False


@dataclass(frozen=True, slots=True)
class ContainerVolume:
    """A volume mounted at ``target``; ``source`` is usually ``${resources.<name>}``."""

    target: str
    source: str
    path: str | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """CPU (``2``, ``125m``) and memory (``128M``, ``1.5Gi``), as Score writes them."""

    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerResources:
    """A container's compute ``requests`` and ``limits``."""

    requests: ResourceLimits | None = None
    limits: ResourceLimits | None = None


@dataclass(frozen=True, slots=True)
class HttpProbe:
    """An HTTP GET health check; ``headers`` are ``(name, value)`` pairs in order."""

    port: int
    path: str
    host: str | None = None
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Probe:
    """A liveness or readiness probe: an HTTP GET, a command, or both."""

    http_get: HttpProbe | None = None
    exec_command: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """One container. ``command``/``args`` are ``None`` when the image's defaults apply.

    ``files`` and ``volumes`` are keyed by target path, whichever form the file used.
    ``before`` maps a container that must start first to the state it must reach.
    """

    name: str
    image: str
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    files: Mapping[str, ContainerFile] = field(default_factory=lambda: MappingProxyType({}))
    volumes: Mapping[str, ContainerVolume] = field(default_factory=lambda: MappingProxyType({}))
    resources: ContainerResources | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    before: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ResourceRequest:
    """One entry of ``resources``. ``klass``/``id`` are as written (``None`` if absent).

    ``uid`` applies Score's defaults: class ``default``, id ``<workload>.<name>``.
    ``params`` and ``metadata`` are private copies of the file's JSON values; treat them as
    read-only.
    """

    name: str
    uid: ResourceUid
    type: str
    klass: str | None = None
    id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkloadMetadata:
    """``metadata``: the name, annotations, and any other keys (kept in ``extra``)."""

    name: str
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The metadata as written (what ``${metadata...}`` placeholders resolve against)."""
        out: dict[str, Any] = {"name": self.name, **copy.deepcopy(dict(self.extra))}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class Workload:
    """A valid Score workload. ``raw`` is a private copy of the document as loaded."""

    metadata: WorkloadMetadata
    containers: Mapping[str, Container]
    resources: Mapping[str, ResourceRequest]
    service: Service
    raw: Mapping[str, Any]
    file: str = ""

    @property
    def name(self) -> str:
        """The workload's name (``metadata.name``)."""
        return self.metadata.name


def load_workload(path: Path | str) -> Workload:
    """Load a Score file. Raises ``InvalidInputError`` carrying every diagnostic."""
    workload, diags = validate_workload_file(path)
    if workload is None:
        raise InvalidInputError(f"{os.fspath(path)}: invalid Score workload", diags)
    return workload


def parse_workload(data: Any, *, file: str = "<input>") -> Workload:
    """Check already-loaded data as a Score workload. Raises ``InvalidInputError``."""
    workload, diags = check_workload(data, file=file)
    if workload is None:
        raise InvalidInputError(f"{file}: invalid Score workload", diags)
    return workload


def validate_workload_file(path: Path | str) -> tuple[Workload | None, list[Diagnostic]]:
    """Load and check a Score file: the workload (``None`` if any error) and all diagnostics."""
    file = os.fspath(path)
    try:
        data = load_yaml(Path(path), what="Score workload")
    except InvalidInputError as exc:
        return None, [d if d.file else d.with_file(file) for d in exc.diagnostics]
    return check_workload(data, file=file)


def check_workload(data: Any, *, file: str = "<input>") -> tuple[Workload | None, list[Diagnostic]]:
    """Check data as a Score workload: the workload (``None`` if any error) and diagnostics."""
    diags = [d.with_file(file) for d in _diagnose(data, file)]
    if has_errors(diags):
        return None, diags
    return _build(data, file), diags


@functools.cache
def schema_validator() -> Validator:
    """The validator for the vendored Score schema (the dialect is the one it declares).

    The schema itself is checked against its metaschema by the unit tests, not on every run.
    """
    text = package_files.files("stackyard.model").joinpath("schemas", SCHEMA_FILE).read_text()
    schema = json.loads(text)
    validator: Validator = validator_for(schema)(schema)
    return validator


def _diagnose(data: Any, file: str) -> list[Diagnostic]:
    if not isinstance(data, Mapping):
        return [
            error(
                WRONG_TYPE,
                f"A Score workload is a mapping with 'apiVersion', 'metadata' and 'containers'; "
                f"'{file}' holds {kind(data)}.",
            )
        ]
    version = data.get("apiVersion")
    if isinstance(version, str) and version != API_VERSION:
        # Another version or another format: the rest of the document cannot be read as Score.
        return [
            error(
                "Unsupported apiVersion",
                f"apiVersion '{version[:80]}' is not supported; stackyard reads Score workloads "
                f"with apiVersion '{API_VERSION}'.",
                path="apiVersion",
            )
        ]
    shape = json_shape_diagnostics(data)
    semantic = _semantic_diagnostics(data)
    structure = schema_diagnostics(schema_validator(), data)
    return unique(prefer([*shape, *semantic], structure))


def _semantic_diagnostics(data: Mapping[str, Any]) -> list[Diagnostic]:
    """What the schema cannot see; written defensively, as the structure may be wrong too."""
    out: list[Diagnostic] = []
    metadata = data.get("metadata")
    workload = _mapping(metadata).get("name")
    resources = _mapping(data.get("resources"))
    owner = workload if isinstance(workload, str) else "workload"
    for name, value in resources.items():
        res = _mapping(value)
        type_, klass, id_ = (res.get("type"), res.get("class"), res.get("id"))
        if isinstance(type_, str) and all(p is None or isinstance(p, str) for p in (klass, id_)):
            uid = ResourceUid.for_request(
                workload=owner, resource=str(name), type=type_, klass=klass, id=id_
            )
            # A missing id defaults from names the schema checks; report only written parts.
            found = uid.validate(join("resources", str(name)))
            out.extend(d for d in found if id_ or not d.path.endswith(".id"))
    containers = _mapping(data.get("containers"))
    for cname, value in containers.items():
        base, container = join("containers", str(cname)), _mapping(value)
        for location, text in _expandable(container, base):
            out.extend(_check_placeholders(text, location, _mapping(metadata), resources))
        for key in ("files", "volumes"):
            out.extend(_list_form(container.get(key), join(base, key)))
            out.extend(_target_diagnostics(container.get(key), join(base, key)))
        for other in _mapping(container.get("before")):
            path = join(join(base, "before"), str(other))
            if other == cname:
                out.append(
                    error(INVALID_VALUE, f"Container '{cname}' cannot wait for itself.", path=path)
                )
            elif other not in containers:
                names = [str(c) for c in containers]
                hint = f"{did_you_mean(str(other), names)} Containers: {', '.join(names)}."
                detail = f"'{other}' is not a container of this workload.{hint}"
                out.append(error("Unknown container", detail, path=path))
    return out


def _expandable(container: Mapping[str, Any], base: str) -> Iterator[tuple[str, str]]:
    """The strings in which Score expands placeholders, with their locations."""
    for key in ("command", "args", "variables"):
        for location, value in _entries(container.get(key), join(base, key)):
            if isinstance(value, str):
                yield location, value
    for key, field_ in (("files", "content"), ("volumes", "source")):
        for location, entry in _entries(container.get(key), join(base, key)):
            text = _mapping(entry).get(field_)
            if isinstance(text, str) and _mapping(entry).get("noExpand") is not True:
                yield join(location, field_), text


def _entries(value: Any, base: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        yield from ((join(base, str(k)), v) for k, v in value.items())
    elif isinstance(value, list):
        yield from ((f"{base}[{i}]", v) for i, v in enumerate(value))


def _check_placeholders(
    text: str, location: str, metadata: Mapping[Any, Any], resources: Mapping[Any, Any]
) -> list[Diagnostic]:
    if "$" not in text:
        return []
    try:
        segments = placeholders.parse(text, location=location)
    except PlaceholderError as exc:
        detail = f"{exc.message}. {_GRAMMAR}"
        return [error("Invalid placeholder", detail, path=location)]
    refs = [s for s in segments if isinstance(s, placeholders.Reference)]
    found = (_check_reference(ref, location, metadata, resources) for ref in refs)
    return [d for d in found if d is not None]


_GRAMMAR = (
    "Write placeholders as ${metadata.name} or ${resources.<name>.<key>}, and '$$' for a "
    "literal '$'."
)


def _check_reference(
    ref: placeholders.Reference,
    location: str,
    metadata: Mapping[Any, Any],
    resources: Mapping[Any, Any],
) -> Diagnostic | None:
    at = f"{ref} at '{location}'"
    if ref.root == "metadata":
        try:
            placeholders.lookup({"metadata": metadata}, ref)
        except PlaceholderError as exc:
            return error("Unknown placeholder key", f"{exc.message}.", path=location)
        return None
    if ref.root != "resources":
        detail = (
            f"{at} starts with '{ref.root}'; a workload can only reference 'metadata' and "
            f"'resources'.{did_you_mean(ref.root, ROOTS)}"
        )
        return error("Unknown placeholder root", detail, path=location)
    if len(ref.parts) < 2:
        detail = f"{at} must name a resource, for example ${{resources.db.host}}."
        return error("Invalid placeholder", detail, path=location)
    if ref.parts[1] in resources:
        return None
    declared = [str(k) for k in resources]
    known = (
        f"Declared resources: {', '.join(declared)}."
        if declared
        else "This workload declares no resources; add it under 'resources'."
    )
    detail = (
        f"{at} refers to resource '{ref.parts[1]}', which this workload does not declare."
        f"{did_you_mean(ref.parts[1], declared)} {known}"
    )
    return error("Unknown resource", detail, path=location)


def _target_diagnostics(value: Any, path: str) -> list[Diagnostic]:
    """File and volume targets with a NUL or a '..' part: no runtime may place them."""
    if isinstance(value, Mapping):
        targets = [(str(k), join(path, str(k).replace("\0", "\\0"))) for k in value]
    elif isinstance(value, list):
        targets = [
            (t, f"{path}[{i}].target")
            for i, e in enumerate(value)
            if isinstance(t := _mapping(e).get("target"), str)
        ]
    else:
        return []
    out: list[Diagnostic] = []
    for target, where in targets:
        shown = target.replace("\0", "\\0")[:120]
        if "\0" in target:
            detail = f"The target '{shown}' holds a NUL character, which no path can hold."
            out.append(error("Invalid target", detail, path=where))
        elif ".." in target.replace("\\", "/").split("/"):
            detail = (
                f"The target '{shown}' has a '..' part; a target names a place inside the "
                "container, so write it without '..'."
            )
            out.append(error("Invalid target", detail, path=where))
    return out


def _list_form(value: Any, path: str) -> list[Diagnostic]:
    """The deprecated list form of ``files``/``volumes``: each entry needs a unique target."""
    if not isinstance(value, list):
        return []
    detail = f"The list form of '{path}' is deprecated; map each target path to its details."
    out = [warning("Deprecated form", detail, path=path)]
    seen: set[str] = set()
    for i, entry in enumerate(value):
        target, where = _mapping(entry).get("target"), f"{path}[{i}]"
        if isinstance(entry, Mapping) and not isinstance(target, str):
            detail = f"'{where}' needs the field 'target', the path inside the container."
            out.append(error(MISSING_FIELD, detail, path=f"{where}.target"))
        elif isinstance(target, str) and target in seen:
            detail = f"'{target}' is mounted more than once in '{path}'; keep one."
            out.append(error("Duplicate target", detail, path=f"{where}.target"))
        elif isinstance(target, str):
            seen.add(target)
    return out


def _mapping(value: Any) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


def _build(data: Mapping[str, Any], file: str) -> Workload:
    """Build the typed workload from data that passed every check."""
    raw: dict[str, Any] = copy.deepcopy(dict(data))
    meta = raw["metadata"]
    extra = {k: v for k, v in copy.deepcopy(meta).items() if k not in ("name", "annotations")}
    metadata = WorkloadMetadata(meta["name"], _frozen(meta.get("annotations")), extra)
    ports = {
        name: ServicePort(
            name, int(p["port"]), int(p.get("targetPort", p["port"])), p.get("protocol", "TCP")
        )
        for name, p in raw.get("service", {}).get("ports", {}).items()
    }
    resources = {}
    for name, r in raw.get("resources", {}).items():
        type_, klass, id_ = r["type"], r.get("class"), r.get("id")
        uid = ResourceUid.for_request(
            workload=metadata.name, resource=name, type=type_, klass=klass, id=id_
        )
        params, res_meta = copy.deepcopy(r.get("params", {})), copy.deepcopy(r.get("metadata", {}))
        resources[name] = ResourceRequest(name, uid, type_, klass, id_, params, res_meta)
    containers = {name: _container(name, c) for name, c in raw["containers"].items()}
    return Workload(
        metadata,
        MappingProxyType(containers),
        MappingProxyType(resources),
        Service(MappingProxyType(ports)),
        raw,
        file,
    )


def _container(name: str, c: Mapping[str, Any]) -> Container:
    files = {
        target: ContainerFile(
            target,
            f.get("mode"),
            f.get("source"),
            f.get("content"),
            f.get("binaryContent"),
            f.get("noExpand") is True,
        )
        for target, f in _by_target(c.get("files"))
    }
    volumes = {
        target: ContainerVolume(target, v["source"], v.get("path"), v.get("readOnly") is True)
        for target, v in _by_target(c.get("volumes"))
    }
    res = c.get("resources")
    limits = None
    if res is not None:
        limits = ContainerResources(_limits(res.get("requests")), _limits(res.get("limits")))
    return Container(
        name=name,
        image=c["image"],
        command=tuple(c["command"]) if "command" in c else None,
        args=tuple(c["args"]) if "args" in c else None,
        variables=_frozen(c.get("variables")),
        files=MappingProxyType(files),
        volumes=MappingProxyType(volumes),
        resources=limits,
        liveness_probe=_probe(c.get("livenessProbe")),
        readiness_probe=_probe(c.get("readinessProbe")),
        before=MappingProxyType({k: v["ready"] for k, v in c.get("before", {}).items()}),
    )


def _frozen(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


def _by_target(value: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(value, Mapping):
        yield from value.items()
    elif isinstance(value, list):
        yield from ((entry["target"], entry) for entry in value)


def _limits(value: Mapping[str, Any] | None) -> ResourceLimits | None:
    return None if value is None else ResourceLimits(value.get("cpu"), value.get("memory"))


def _probe(value: Mapping[str, Any] | None) -> Probe | None:
    if value is None:
        return None
    http, exec_ = value.get("httpGet"), value.get("exec")
    get = None
    if http is not None:
        headers = tuple((h["name"], h["value"]) for h in http.get("httpHeaders", []))
        get = HttpProbe(
            int(http["port"]), http["path"], http.get("host"), http.get("scheme", "HTTP"), headers
        )
    return Probe(get, None if exec_ is None else tuple(exec_["command"]))
