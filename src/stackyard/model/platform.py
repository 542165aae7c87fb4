"""Platform documents: ``EnvironmentType``, ``Environment``, ``Team``, ``PromotionPath``,
``Policy`` and ``Webhook``.

A platform configuration is a folder of YAML files (several documents per file allowed),
each document ``{apiVersion: stackyard.dev/v1, kind, metadata: {name}, spec}``. Parsing is
pure: ``parse_documents`` returns the documents and every problem found, as diagnostics with
the file and path, so a platform engineer fixes them all in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackyard.diagnostics import Diagnostic, error
from stackyard.model.versions import Range

API_VERSION = "stackyard.dev/v1"
KINDS = ("EnvironmentType", "Environment", "Team", "PromotionPath", "Policy", "Webhook")
LAYERS = ("organisation", "environment-type", "environment")
STAGES = ("publish", "environment", "plan", "promote", "destroy")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
TYPE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
RUNTIMES = ("local", "containers")
#: ``required`` (the default): resolution picks only builds a trusted key attested;
#: ``optional``: any published build, attested or not (an explicit opt-out).
ATTESTATION = ("required", "optional")


def parse_duration(text: str) -> int:
    """``4h``, ``90m``, ``2d``, ``1d12h`` → seconds; ``ValueError`` when malformed or zero."""
    m = DURATION.match(text.strip()) if isinstance(text, str) else None
    if not m or not any(m.groups()):
        raise ValueError(f"'{text}' is not a duration (use forms like 30m, 4h, 2d or 1d12h)")
    days, hours, minutes = (int(g or 0) for g in m.groups())
    seconds = days * 86400 + hours * 3600 + minutes * 60
    if seconds <= 0:
        raise ValueError(f"'{text}' is not a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds → ``1d2h3m`` (rounded down to minutes; ``0m`` for less than a minute)."""
    total = max(0, int(seconds)) // 60
    days, rest = divmod(total, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    return "".join(parts) or "0m"


@dataclass(frozen=True, slots=True)
class Binding:
    """Which component serves requests for ``type`` (optionally narrowed by class and id)."""

    type: str
    component: str
    range: str
    klass: str | None = None
    id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def selector(self) -> str:
        """``type``, ``type.class`` or ``type.class#id`` (``*`` for an open class)."""
        text = self.type
        if self.klass is not None or self.id is not None:
            text += f".{self.klass or '*'}"
        if self.id is not None:
            text += f"#{self.id}"
        return text

    @property
    def specificity(self) -> tuple[int, int]:
        """``(has id, has class)``: a higher tuple is a more specific binding."""
        return (self.id is not None, self.klass is not None)

    def to_json(self) -> dict[str, Any]:
        """The document form."""
        out: dict[str, Any] = {"type": self.type}
        if self.klass is not None:
            out["class"] = self.klass
        if self.id is not None:
            out["id"] = self.id
        out["component"] = f"{self.component}@{self.range}"
        if self.params:
            out["params"] = dict(self.params)
        return out


@dataclass(frozen=True, slots=True)
class CoreResource:
    """A resource deployed when an environment of the type is created."""

    type: str
    klass: str = "default"
    id: str = "core"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EnvironmentType:
    """A template for environments. ``attestation`` is ``required`` unless the type opts out
    with ``optional`` (see ``ATTESTATION``)."""

    name: str
    runtime: str = "local"
    bindings: tuple[Binding, ...] = ()
    core: tuple[CoreResource, ...] = ()
    ttl_default_s: int | None = None
    ttl_max_s: int | None = None
    ephemeral: bool = False
    description: str = ""
    attestation: str = "required"
    #: how often the workers scan this type's environments for drift (``drift.every``)
    drift_every_s: int | None = None


@dataclass(frozen=True, slots=True)
class EnvironmentDecl:
    """An environment declared in the platform configuration."""

    name: str
    type: str
    owner: str | None = None
    parent: str | None = None
    bindings: tuple[Binding, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Team:
    """A team: members (user names) and what it owns."""

    name: str
    members: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class PromotionPath:
    """The ordered stages a release moves through (environment names)."""

    name: str
    stages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """Rego modules evaluated at some stages, for a layer and its target.

    ``target`` is empty for the organisation layer, an environment type's name for the
    environment-type layer and an environment's name for the environment layer. ``sources``
    maps each module's file name to its text (read at apply time, stored with the document).
    """

    name: str
    layer: str
    stages: tuple[str, ...]
    sources: Mapping[str, str]
    target: str = ""
    description: str = ""

    def applies(self, stage: str, env: str | None, env_type: str | None) -> bool:
        """Whether the policy takes part in a decision at ``stage`` for this environment."""
        if stage not in self.stages:
            return False
        if self.layer == "organisation":
            return True
        if self.layer == "environment-type":
            return env_type == self.target
        return env == self.target


#: The platform events a ``Webhook`` may subscribe to (``stackyard.ops.events.TYPES``).
EVENT_TYPES: tuple[str, ...] = (
    "deployment.started",
    "deployment.succeeded",
    "deployment.failed",
    "approval.requested",
    "approval.decided",
    "environment.expiring",
    "environment.expired",
    "environment.destroyed",
    "drift.found",
    "component.deprecated",
)
#: The name of an environment variable of the server (``Webhook.secret_env``).
ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
#: A webhook's URL: http or https, a host, no credentials (those go in ``secret_env``).
URL = re.compile(r"^https?://[^\s/@?#]+(?:[/?#]\S*)?\Z", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where platform events are POSTed, signed with the secret in the server's environment
    variable ``secret_env`` (never stored): the events of ``events`` (``*``: all), narrowed
    by the filters (empty: no narrowing). ``expiring_before_s`` moves the
    ``environment.expiring`` warning earlier or later for this webhook's environments."""

    name: str
    url: str
    events: tuple[str, ...]
    secret_env: str
    env_types: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    expiring_before_s: int | None = None
    description: str = ""

    def wants(self, type: str, *, env: str | None, env_type: str | None, team: str | None) -> bool:
        """Whether an event of ``type`` about ``env`` (of ``env_type``, owned by ``team``)
        goes to this webhook. An event without an environment (``component.deprecated``)
        passes the environment filters; one without a team fails a team filter."""
        if "*" not in self.events and type not in self.events:
            return False
        if self.envs and env is not None and env not in self.envs:
            return False
        if self.env_types and env is not None and env_type not in self.env_types:
            return False
        return not self.teams or team in self.teams


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed platform document, with where it came from."""

    kind: str
    name: str
    spec: Mapping[str, Any]  # the normalised spec, as stored
    file: str
    value: EnvironmentType | EnvironmentDecl | Team | PromotionPath | Policy | Webhook


class _Reader:
    """Collects diagnostics while reading one document."""

    def __init__(self, file: str, base: str) -> None:
        self.file, self.base = file, base
        self.diags: list[Diagnostic] = []

    def bad(self, path: str, summary: str, detail: str) -> None:
        self.diags.append(error(summary, detail, file=self.file, path=f"{self.base}{path}"))

    def text(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.bad(f"{path}.{key}", "Missing field", f"'{key}' is required here.")
            return None
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            hint = f" It must match {pattern.pattern}." if pattern is not None else ""
            self.bad(f"{path}.{key}", "Invalid value", f"'{key}' must be a string.{hint}")
            return None
        return value

    def mapping(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.bad(f"{path}.{key}", "Wrong type", f"'{key}' must be a mapping.")
            return {}
        return dict(value)

    def strings(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        out = self.mapping(data, key, path)
        for k, v in out.items():
            if not isinstance(v, str | int | float | bool):
                self.bad(f"{path}.{key}.{k}", "Wrong type", "Values here must be strings.")
        return {str(k): str(v) for k, v in out.items()}

    def only(self, data: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                self.bad(
                    f"{path}.{key}",
                    "Unknown field",
                    f"'{key}' is not a field here; allowed: {', '.join(allowed)}.",
                )

    def bindings(self, data: Mapping[str, Any], path: str) -> tuple[Binding, ...]:
        raw = data.get("bindings")
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.bad(f"{path}.bindings", "Wrong type", "'bindings' must be a list.")
            return ()
        out = []
        for i, item in enumerate(raw):
            where = f"{path}.bindings[{i}]"
            if not isinstance(item, Mapping):
                self.bad(where, "Wrong type", "A binding must be a mapping.")
                continue
            self.only(item, ("type", "class", "id", "component", "params"), where)
            type_ = self.text(item, "type", where, required=True, pattern=TYPE_NAME)
            klass = self.text(item, "class", where)
            id_ = self.text(item, "id", where)
            ref = self.text(item, "component", where, required=True)
            params = self.mapping(item, "params", where)
            if ref is None or type_ is None:
                continue
            name, _, rng = ref.partition("@")
            rng = rng or "*"
            try:
                Range.parse(rng)
            except ValueError as exc:
                self.bad(
                    f"{where}.component",
                    "Invalid version range",
                    f"{exc}. Use name@^1.2, name@~1.2.3 or name@>=1,<2.",
                )
                continue
            if not NAME.match(name):
                self.bad(
                    f"{where}.component",
                    "Invalid component name",
                    f"'{name}' is not a component name.",
                )
                continue
            out.append(Binding(type_, name, rng, klass, id_, params))
        return tuple(out)


def parse_document(
    data: Any, *, file: str, index: int = 0
) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one document; ``(None, diagnostics)`` when it has errors."""
    r = _Reader(f"{file} (document {index + 1})" if index else file, "")
    if not isinstance(data, Mapping):
        r.bad(
            "",
            "Invalid document",
            "A platform document must be a mapping with apiVersion, kind, metadata and spec.",
        )
        return None, r.diags
    r.only(data, ("apiVersion", "kind", "metadata", "spec"), "")
    if data.get("apiVersion") != API_VERSION:
        r.bad("apiVersion", "Unsupported apiVersion", f"Use apiVersion: {API_VERSION}.")
    kind = data.get("kind")
    if kind not in KINDS:
        r.bad(
            "kind",
            "Unknown kind",
            f"'{kind}' is not a platform kind; use one of {', '.join(KINDS)}.",
        )
        return None, r.diags
    meta = data.get("metadata")
    name = (
        r.text(meta, "name", "metadata", required=True, pattern=NAME)
        if isinstance(meta, Mapping)
        else None
    )
    if not isinstance(meta, Mapping):
        r.bad("metadata", "Missing field", "'metadata.name' is required.")
    spec = data.get("spec") or {}
    if not isinstance(spec, Mapping):
        r.bad("spec", "Wrong type", "'spec' must be a mapping.")
        spec = {}
    value: Any = None
    if kind == "EnvironmentType":
        value = _environment_type(r, name or "", spec)
    elif kind == "Environment":
        value = _environment(r, name or "", spec)
    elif kind == "Team":
        r.only(spec, ("members", "description"), "spec")
        members = spec.get("members") or []
        if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
            r.bad("spec.members", "Wrong type", "'members' must be a list of user names.")
            members = []
        value = Team(name or "", tuple(members), str(spec.get("description") or ""))
    elif kind == "Policy":
        value = _policy(r, name or "", spec)
    elif kind == "Webhook":
        value = _webhook(r, name or "", spec)
    else:
        r.only(spec, ("stages",), "spec")
        stages = spec.get("stages")
        if (
            not isinstance(stages, list)
            or len(stages) < 2
            or not all(isinstance(s, str) and NAME.match(s) for s in stages)
        ):
            r.bad(
                "spec.stages",
                "Invalid value",
                "'stages' must list at least two environment names, in order.",
            )
            stages = []
        elif len(set(stages)) != len(stages):
            r.bad("spec.stages", "Invalid value", "A stage may appear only once on a path.")
        value = PromotionPath(name or "", tuple(stages))
    if r.diags or name is None:
        return None, r.diags
    return Document(str(kind), name, dict(spec), file, value), []


def _environment_type(r: _Reader, name: str, spec: Mapping[str, Any]) -> EnvironmentType:
    r.only(
        spec,
        ("runtime", "bindings", "core", "ttl", "ephemeral", "description", "attestation", "drift"),
        "spec",
    )
    runtime = r.text(spec, "runtime", "spec") or "local"
    if runtime not in RUNTIMES:
        r.bad(
            "spec.runtime",
            "Unknown runtime",
            f"'{runtime}' is not a runtime; use one of {', '.join(RUNTIMES)}.",
        )
    core: list[CoreResource] = []
    raw_core = spec.get("core") or []
    if not isinstance(raw_core, list):
        r.bad("spec.core", "Wrong type", "'core' must be a list of {type, class?, id?, params?}.")
        raw_core = []
    for i, item in enumerate(raw_core):
        where = f"spec.core[{i}]"
        if not isinstance(item, Mapping):
            r.bad(where, "Wrong type", "A core entry must be a mapping.")
            continue
        r.only(item, ("type", "class", "id", "params"), where)
        type_ = r.text(item, "type", where, required=True, pattern=TYPE_NAME)
        if type_:
            core.append(
                CoreResource(
                    type_,
                    r.text(item, "class", where) or "default",
                    r.text(item, "id", where) or "core",
                    r.mapping(item, "params", where),
                )
            )
    ttl = r.mapping(spec, "ttl", "spec")
    r.only(ttl, ("default", "maximum"), "spec.ttl")
    limits: dict[str, int | None] = {"default": None, "maximum": None}
    for key in limits:
        if ttl.get(key) is not None:
            try:
                limits[key] = parse_duration(str(ttl[key]))
            except ValueError as exc:
                r.bad(f"spec.ttl.{key}", "Invalid duration", str(exc))
    if limits["default"] and limits["maximum"] and limits["default"] > limits["maximum"]:
        r.bad("spec.ttl", "Invalid value", "The default TTL is longer than the maximum.")
    ephemeral = spec.get("ephemeral", False)
    if not isinstance(ephemeral, bool):
        r.bad("spec.ephemeral", "Wrong type", "'ephemeral' must be true or false.")
    attestation = spec.get("attestation", "required")
    if attestation not in ATTESTATION:
        r.bad(
            "spec.attestation",
            "Invalid value",
            f"'attestation' must be one of {', '.join(ATTESTATION)}, not {attestation!r}: "
            "'required' resolves only builds a trusted key attested, 'optional' any build.",
        )
    drift = r.mapping(spec, "drift", "spec")
    r.only(drift, ("every",), "spec.drift")
    drift_every: int | None = None
    if drift.get("every") is not None:
        try:
            drift_every = parse_duration(str(drift["every"]))
        except ValueError as exc:  # minutes at least: the duration forms have no seconds
            r.bad("spec.drift.every", "Invalid duration", str(exc))
    return EnvironmentType(
        name,
        runtime,
        r.bindings(spec, "spec"),
        tuple(core),
        limits["default"],
        limits["maximum"],
        bool(ephemeral),
        str(spec.get("description") or ""),
        attestation if attestation in ATTESTATION else "required",
        drift_every,
    )


def _policy(r: _Reader, name: str, spec: Mapping[str, Any]) -> Policy:
    r.only(spec, ("layer", "target", "stages", "description", "modules", "rego", "sources"), "spec")
    layer = r.text(spec, "layer", "spec", required=True) or ""
    if layer and layer not in LAYERS:
        r.bad(
            "spec.layer",
            "Unknown layer",
            f"'{layer}' is not a layer; use one of {', '.join(LAYERS)}.",
        )
    target = r.text(spec, "target", "spec", pattern=NAME) or ""
    if layer in ("environment-type", "environment") and not target:
        r.bad(
            "spec.target",
            "Missing field",
            f"A {layer} policy needs a target: the {layer.replace('-', ' ')}'s name.",
        )
    if layer == "organisation" and target:
        r.bad(
            "spec.target",
            "Invalid value",
            "An organisation policy applies everywhere; remove 'target'.",
        )
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages or not all(s in STAGES for s in stages):
        r.bad(
            "spec.stages",
            "Invalid value",
            f"'stages' must list one or more of {', '.join(STAGES)}.",
        )
        stages = []
    sources: dict[str, str] = {}
    raw = spec.get("sources")
    if isinstance(raw, Mapping):
        sources = {str(k): str(v) for k, v in raw.items()}
    if isinstance(spec.get("rego"), str):
        sources["inline.rego"] = spec["rego"]
    if not sources and not spec.get("modules"):
        r.bad(
            "spec",
            "Missing field",
            "A policy needs 'modules' (paths of .rego files beside this document) or inline 'rego'.",
        )
    return Policy(name, layer, tuple(stages), sources, target, str(spec.get("description") or ""))


def _webhook(r: _Reader, name: str, spec: Mapping[str, Any]) -> Webhook:
    allowed = ("url", "events", "secret_env", "filters", "expiring_before", "description")
    if "secret" in spec:
        r.bad(
            "spec.secret",
            "Secret in a document",
            "A webhook's secret is never written in a platform document: put it in an "
            "environment variable of the server and name that variable in 'secret_env'.",
        )
    r.only({k: v for k, v in spec.items() if k != "secret"}, allowed, "spec")
    url = r.text(spec, "url", "spec", required=True) or ""
    if url and not URL.match(url):
        r.bad(
            "spec.url",
            "Invalid URL",
            "'url' must be an http:// or https:// URL with a host and no user or password "
            "in it (the receiver authenticates the signature made with 'secret_env').",
        )
    events: list[str] = []
    raw = spec.get("events")
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        r.bad(
            "spec.events",
            "Invalid value",
            f"'events' must list event types ({', '.join(EVENT_TYPES)}) or '*' for all.",
        )
    else:
        for i, e in enumerate(raw):
            if e != "*" and e not in EVENT_TYPES:
                r.bad(
                    f"spec.events[{i}]",
                    "Unknown event type",
                    f"'{e}' is not an event type; use one of {', '.join(EVENT_TYPES)} or '*'.",
                )
        events = list(dict.fromkeys(raw))
    secret_env = r.text(spec, "secret_env", "spec", required=True) or ""
    if secret_env and not ENV_VAR.match(secret_env):
        r.bad(
            "spec.secret_env",
            "Invalid variable name",
            "'secret_env' names an environment variable of the server (letters, digits and "
            "'_', not starting with a digit), never the secret itself.",
        )
    filters = r.mapping(spec, "filters", "spec")
    r.only(filters, ("env_types", "teams", "envs"), "spec.filters")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("env_types", "teams", "envs"):
        value = filters.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, str) and NAME.match(v) for v in value
        ):
            r.bad(
                f"spec.filters.{key}",
                "Invalid value",
                f"'{key}' must be a list of names (lower-case letters, digits and '-').",
            )
            value = []
        lists[key] = tuple(value)
    before: int | None = None
    if spec.get("expiring_before") is not None:
        try:
            before = parse_duration(str(spec["expiring_before"]))
        except ValueError as exc:
            r.bad("spec.expiring_before", "Invalid duration", str(exc))
    return Webhook(
        name,
        url,
        tuple(events),
        secret_env,
        lists["env_types"],
        lists["teams"],
        lists["envs"],
        before,
        str(spec.get("description") or ""),
    )


def _environment(r: _Reader, name: str, spec: Mapping[str, Any]) -> EnvironmentDecl:
    r.only(spec, ("type", "owner", "parent", "bindings", "variables", "labels"), "spec")
    return EnvironmentDecl(
        name,
        r.text(spec, "type", "spec", required=True, pattern=NAME) or "",
        r.text(spec, "owner", "spec", pattern=NAME),
        r.text(spec, "parent", "spec", pattern=NAME),
        r.bindings(spec, "spec"),
        _variables(r, spec),
        r.strings(spec, "labels", "spec"),
    )


#: An environment variable's name: what the ``environment`` type offers as an output.
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


def _variables(r: _Reader, spec: Mapping[str, Any]) -> dict[str, str]:
    """``spec.variables``: string values under identifier names (each becomes an output of
    the ``environment`` type, ``${resources.<name>.<variable>}``)."""
    out = r.strings(spec, "variables", "spec")
    for key in out:
        if not VARIABLE.match(key):
            r.bad(
                f"spec.variables.{key[:80]}",
                "Invalid variable name",
                f"'{key[:80]}' is not an identifier: use letters, digits and '_', not starting "
                "with a digit (at most 128 characters), as environment variables are named.",
            )
    return out


def binding_ties(bindings: Sequence[Binding]) -> list[tuple[Binding, Binding]]:
    """Pairs of bindings at one level that would tie: the same type, class and id."""
    seen: dict[tuple[str, str | None, str | None], Binding] = {}
    ties = []
    for b in bindings:
        key = (b.type, b.klass, b.id)
        if key in seen:
            ties.append((seen[key], b))
        else:
            seen[key] = b
    return ties
