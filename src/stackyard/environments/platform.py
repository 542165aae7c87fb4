"""The platform configuration: load a folder of documents, diff it against what is applied,
apply it, and read the applied configuration back (``Platform``, through ``Applied``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard import canonical
from stackyard.diagnostics import Diagnostic, error
from stackyard.errors import InvalidInputError
from stackyard.model.environment import Environment
from stackyard.model.platform import (
    Document,
    EnvironmentDecl,
    EnvironmentType,
    Policy,
    PromotionPath,
    Team,
    Webhook,
    binding_ties,
    parse_document,
)
from stackyard.model.source import MAX_FILE_BYTES, files_under, parse_yaml, read_text
from stackyard.model.status import AuditResult, EnvironmentStatus

if TYPE_CHECKING:
    from stackyard.environments.access import Access
    from stackyard.state.records import Records

MAX_DOCUMENTS = 500


@dataclass(frozen=True, slots=True)
class Platform:
    """The applied platform configuration."""

    types: Mapping[str, EnvironmentType] = field(default_factory=dict)
    environments: Mapping[str, EnvironmentDecl] = field(default_factory=dict)
    teams: Mapping[str, Team] = field(default_factory=dict)
    paths: Mapping[str, PromotionPath] = field(default_factory=dict)
    policies: Mapping[str, Policy] = field(default_factory=dict)
    webhooks: Mapping[str, Webhook] = field(default_factory=dict)

    def type(self, name: str) -> EnvironmentType:
        """An environment type, or ``InvalidInputError`` naming the known ones."""
        found = self.types.get(name)
        if found is None:
            known = ", ".join(sorted(self.types)) or "none: run 'stackyard platform apply DIR'"
            raise InvalidInputError(
                f"Unknown environment type '{name}'", hint=f"Known types: {known}."
            )
        return found

    def path_of(self, env: str) -> tuple[PromotionPath, int] | None:
        """The promotion path holding ``env`` and its position on it."""
        for path in self.paths.values():
            if env in path.stages:
                return path, path.stages.index(env)
        return None

    def teams_of(self, user: str) -> list[str]:
        """The teams ``user`` is a member of."""
        return sorted(t.name for t in self.teams.values() if user in t.members)


class Applied:
    """The platform configuration applied in a home, as one workspace sees it: read from the
    records on first use, and read again after ``apply_dir`` changed it. Calling it returns
    the current ``Platform``."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self._current: Platform | None = None

    def __call__(self) -> Platform:
        """The applied configuration (read once; again after ``forget``)."""
        if self._current is None:
            self._current = stored_platform(self.records.documents())
        return self._current

    def forget(self) -> None:
        """Drop the configuration read (after an apply): the next call reads it again, and
        whatever was compiled from it (the policies) is compiled again."""
        self._current = None


@dataclass(frozen=True, slots=True)
class Change:
    """One document-level change of a platform apply."""

    action: str  # create | update | delete | unchanged
    kind: str
    name: str
    fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "fields": list(self.fields),
        }


def digest(spec: Mapping[str, Any]) -> str:
    """A stable digest of a document spec."""
    return canonical.digest(spec, ascii_only=True, default=str)


def load_dir(directory: Path) -> list[Document]:
    """Parse every ``*.yaml``/``*.yml`` file under ``directory`` (not ``policies/``' Rego).

    Raises ``InvalidInputError`` with every diagnostic, including cross-document ones:
    duplicate names, unknown types, parents or owners, and binding ties.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInputError(
            f"'{directory}' is not a directory",
            hint="Give the folder holding the platform documents.",
        )
    diags: list[Diagnostic] = []
    docs: list[Document] = []
    files = files_under(directory, (".yaml", ".yml"))
    if not files:
        raise InvalidInputError(f"No YAML documents in '{directory}'", hint="Add *.yaml files.")
    for path in files:
        rel = str(path.relative_to(directory))
        try:
            text = read_text(path, limit=MAX_FILE_BYTES)
            chunks = _split(text)
        except InvalidInputError as exc:
            diags.extend(exc.diagnostics or [error("Unreadable file", exc.message, file=rel)])
            continue
        for i, chunk in enumerate(chunks):
            try:
                data = parse_yaml(chunk, file=rel, what="platform document")
            except InvalidInputError as exc:
                diags.extend(exc.diagnostics or [error("Invalid YAML", exc.message, file=rel)])
                continue
            if data is None:
                continue
            if isinstance(data, dict) and data.get("kind") == "Policy":
                data = _with_sources(data, path, directory, rel, diags)
            doc, problems = parse_document(data, file=rel, index=i)
            diags.extend(problems)
            if doc is not None:
                docs.append(doc)
    if len(docs) > MAX_DOCUMENTS:
        diags.append(error("Too many documents", f"At most {MAX_DOCUMENTS} documents are allowed."))
    diags.extend(_cross_check(docs))
    if diags:
        raise InvalidInputError(f"The platform configuration in '{directory}' is invalid", diags)
    return docs


def _with_sources(
    data: dict[str, Any], path: Path, root: Path, rel: str, diags: list[Diagnostic]
) -> dict[str, Any]:
    """Read a ``Policy``'s ``modules`` (paths relative to its file, inside the folder) into
    ``spec.sources``, and check that each compiles."""
    from stackyard.policy.rego import (
        MAX_MODULE_BYTES,
        ROOT_PACKAGE,
        Module,
        check_module,
        package_of,
    )

    spec = data.get("spec")
    if not isinstance(spec, dict):
        return data
    sources: dict[str, str] = {}
    modules = spec.get("modules") or []
    if not isinstance(modules, list):
        diags.append(
            error(
                "Wrong type",
                "'modules' must be a list of .rego paths.",
                file=rel,
                path="spec.modules",
            )
        )
        modules = []
    for i, entry in enumerate(modules):
        where = f"spec.modules[{i}]"
        target = (path.parent / str(entry)).resolve()
        if not target.is_relative_to(root.resolve()) or target.suffix != ".rego":
            diags.append(
                error(
                    "Invalid module path",
                    f"'{entry}' must be a .rego file inside {root}.",
                    file=rel,
                    path=where,
                )
            )
            continue
        try:
            text = read_text(target, limit=MAX_MODULE_BYTES)
        except InvalidInputError as exc:
            diags.append(
                error("Unreadable module", f"'{entry}': {exc.message}", file=rel, path=where)
            )
            continue
        sources[str(target.relative_to(root.resolve()))] = text
    if isinstance(spec.get("rego"), str):
        sources["inline.rego"] = spec["rego"]
    for name, text in sources.items():
        problem = check_module(Module(name, text))
        if problem:
            diags.append(
                error("Rego does not compile", f"{name}: {problem}", file=rel, path="spec.modules")
            )
    if sources and not any(package_of(t) == ROOT_PACKAGE for t in sources.values()):
        diags.append(
            error(
                "No policy rules",
                f"None of the modules is in package '{ROOT_PACKAGE}', where deny, warn and approval are read.",
                file=rel,
                path="spec.modules",
            )
        )
    return {**data, "spec": {**{k: v for k, v in spec.items() if k != "rego"}, "sources": sources}}


def _split(text: str) -> list[str]:
    """Split a multi-document YAML stream on ``---`` lines (each part is parsed safely)."""
    parts: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.rstrip() == "---":
            parts.append("".join(current))
            current = []
        else:
            current.append(line)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _cross_check(docs: Sequence[Document]) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    seen: dict[tuple[str, str], str] = {}
    for d in docs:
        key = (d.kind, d.name)
        if key in seen:
            diags.append(
                error(
                    "Duplicate document",
                    f"{d.kind} '{d.name}' is also defined in {seen[key]}.",
                    file=d.file,
                )
            )
        seen[key] = d.file
    types = {d.name for d in docs if d.kind == "EnvironmentType"}
    teams = {d.name for d in docs if d.kind == "Team"}
    envs = {d.name: d for d in docs if d.kind == "Environment"}
    for d in docs:
        value = d.value
        if isinstance(value, EnvironmentType | EnvironmentDecl):
            for a, b in binding_ties(value.bindings):
                diags.append(
                    error(
                        "Binding tie",
                        f"{d.kind} '{d.name}' binds '{a.selector}' twice ({a.component}@{a.range} and {b.component}@{b.range}); neither would be more specific. Keep one.",
                        file=d.file,
                        path="spec.bindings",
                    )
                )
        if (
            isinstance(value, Policy)
            and value.layer == "environment-type"
            and value.target not in types
        ):
            diags.append(
                error(
                    "Unknown environment type",
                    f"Policy '{d.name}' targets type '{value.target}', which no EnvironmentType in this folder defines.",
                    file=d.file,
                    path="spec.target",
                )
            )
        if isinstance(value, EnvironmentDecl):
            if value.type not in types:
                diags.append(
                    error(
                        "Unknown environment type",
                        f"Environment '{d.name}' has type '{value.type}', which no EnvironmentType in this folder defines.",
                        file=d.file,
                        path="spec.type",
                    )
                )
            if value.owner and teams and value.owner not in teams:
                diags.append(
                    error(
                        "Unknown team",
                        f"Environment '{d.name}' is owned by '{value.owner}', which no Team document defines.",
                        file=d.file,
                        path="spec.owner",
                    )
                )
            if value.parent and value.parent not in envs:
                diags.append(
                    error(
                        "Unknown parent",
                        f"Environment '{d.name}' has parent '{value.parent}', which is not declared here.",
                        file=d.file,
                        path="spec.parent",
                    )
                )
    return diags


def platform_from(docs: Sequence[Document]) -> Platform:
    """The ``Platform`` of parsed documents."""
    out: dict[str, dict[str, Any]] = {
        k: {}
        for k in ("EnvironmentType", "Environment", "Team", "PromotionPath", "Policy", "Webhook")
    }
    for d in docs:
        out[d.kind][d.name] = d.value
    return Platform(
        out["EnvironmentType"],
        out["Environment"],
        out["Team"],
        out["PromotionPath"],
        out["Policy"],
        out["Webhook"],
    )


def stored_platform(stored: Sequence[tuple[str, str, Mapping[str, Any], str]]) -> Platform:
    """Rebuild the ``Platform`` from stored specs (they were valid when applied)."""
    docs = []
    for kind, name, spec, _ in stored:
        doc, _problems = parse_document(
            {
                "apiVersion": "stackyard.dev/v1",
                "kind": kind,
                "metadata": {"name": name},
                "spec": spec,
            },
            file="<state>",
        )
        if doc is not None:
            docs.append(doc)
    return platform_from(docs)


def diff(
    current: Sequence[tuple[str, str, Mapping[str, Any], str]], wanted: Sequence[Document]
) -> list[Change]:
    """Document-level changes from ``current`` (stored) to ``wanted``, by kind and name."""
    have = {(k, n): (spec, dg) for k, n, spec, dg in current}
    changes = []
    for d in sorted(wanted, key=lambda d: (d.kind, d.name)):
        old = have.pop((d.kind, d.name), None)
        if old is None:
            changes.append(Change("create", d.kind, d.name))
        elif old[1] != digest(d.spec):
            fields = sorted(k for k in {*old[0], *d.spec} if old[0].get(k) != d.spec.get(k))
            changes.append(Change("update", d.kind, d.name, tuple(fields)))
        else:
            changes.append(Change("unchanged", d.kind, d.name))
    for kind, name in sorted(have):
        changes.append(Change("delete", kind, name))
    return changes


def declared_environment(decl: EnvironmentDecl, existing: Environment | None) -> Environment:
    """The environment row for a declaration; a live environment keeps its lifecycle fields."""
    if existing is not None and existing.status.is_live:
        return Environment(
            name=decl.name,
            type=existing.type,
            status=existing.status,
            parent=existing.parent,
            owner=decl.owner or existing.owner,
            declared=True,
            created_at=existing.created_at,
            created_by=existing.created_by,
            expires_at=existing.expires_at,
            claimed_at=existing.claimed_at,
            variables=decl.variables,
            labels=decl.labels,
            bindings=decl.bindings,
        )
    return Environment(
        name=decl.name,
        type=decl.type,
        status=EnvironmentStatus.DECLARED,
        parent=decl.parent,
        owner=decl.owner,
        declared=True,
        variables=decl.variables,
        labels=decl.labels,
        bindings=decl.bindings,
    )


def apply_dir(
    platform: Applied,
    access: Access,
    directory: Path,
    *,
    confirm: Callable[[str], bool],
    show: Callable[[list[Change]], None] | None = None,
) -> dict[str, Any]:
    """Load ``directory``, show the diff, confirm, and apply it in one transaction.

    Removing a document that a live environment depends on (its type or its declaration) is
    refused. Declared environments are recorded (status ``declared`` until created). The
    ``platform`` read so far is forgotten after an apply; ``access`` authorizes and audits it.
    """
    from stackyard.policy.rbac import Action

    access.authorize(Action.PLATFORM_APPLY, audit=True)
    records = platform.records
    docs = load_dir(directory)
    current = records.documents()
    changes = diff(current, docs)
    real = [c for c in changes if c.action != "unchanged"]
    counts = {
        a: sum(1 for c in changes if c.action == a)
        for a in ("create", "update", "delete", "unchanged")
    }
    if show is not None:
        show(changes)
    result: dict[str, Any] = {
        "changes": [c.to_json() for c in changes],
        "counts": counts,
        "changed": bool(real),
        "applied": False,
    }
    if not real:
        return result
    wanted = platform_from(docs)
    live = [e for e in records.environments() if e.status is not EnvironmentStatus.DECLARED]
    problems = []
    for e in live:
        if e.type not in wanted.types:
            problems.append(
                error(
                    "Type in use",
                    f"Environment '{e.name}' ({e.status}) has type '{e.type}', which this configuration removes. Destroy it first or keep the type.",
                )
            )
    if problems:
        raise InvalidInputError("The platform change would orphan live environments", problems)
    if not confirm(f"Apply {len(real)} platform change(s)?"):
        return result
    envs = [
        declared_environment(decl, records.environment(decl.name))
        for decl in wanted.environments.values()
    ]
    removed = [(c.kind, c.name) for c in real if c.action == "delete"]
    records.write_documents(
        [
            (d.kind, d.name, d.spec, digest(d.spec), d.file)
            for d in docs
            if any(c.kind == d.kind and c.name == d.name for c in real)
        ],
        removed,
        actor=access.actor,
        environments_from=envs,
    )
    for kind, name in removed:
        if kind == "Environment":
            existing = records.environment(name)
            if existing is not None and existing.status is EnvironmentStatus.DECLARED:
                records.set_status(name, EnvironmentStatus.DESTROYED, declared=False)
            elif existing is not None:
                records.set_status(name, existing.status, declared=False)
    result["applied"] = True
    platform.forget()
    access.audit(
        Action.PLATFORM_APPLY.value, "org", AuditResult.OK, {"changes": [c.to_json() for c in real]}
    )
    return result
