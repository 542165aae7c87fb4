"""``stackyard component init``: a new component folder that passes ``publish`` as generated."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from stackyard import library
from stackyard.diagnostics import error
from stackyard.errors import InvalidInputError
from stackyard.model import contracts
from stackyard.model.component import load_component

NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$")


def scaffold(name: str, type_: str, dest: Path, *, owner: str) -> list[str]:
    """Write a component called ``name`` providing ``type_`` into the new folder ``dest``.

    When the built-in library has a component for the type, the scaffold starts from it (so
    it meets the type's contract and passes its test); otherwise it is a minimal component
    whose one resource is a generated id. Returns the files written.
    """
    problems = []
    if not NAME.match(name):
        problems.append(error("Invalid component name", f"'{name}' must match {NAME.pattern}."))
    if not TYPE.match(type_):
        problems.append(
            error("Invalid resource type", f"'{type_}' must be 2-63 letters, digits or '-'.")
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        problems.append(
            error("Folder not empty", f"'{dest}' exists and is not empty; pick a new folder.")
        )
    if problems:
        raise InvalidInputError("Cannot scaffold the component", problems)
    base = _library_for(type_)
    doc, readme, test = base if base else _minimal(type_)
    doc["metadata"].update(
        {"name": name, "version": "0.1.0", "owner": owner, "lifecycle": "experimental"}
    )
    doc["metadata"].setdefault("description", f"A component that provides '{type_}'.")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "tests").mkdir(exist_ok=True)
        (dest / "component.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        (dest / "README.md").write_text(readme.replace("{name}", name), encoding="utf-8")
        (dest / "tests" / "basic.yaml").write_text(test, encoding="utf-8")
    except OSError as exc:  # a folder the user named that cannot be written: their input
        raise InvalidInputError(
            f"Cannot write the component to '{dest}': {exc.strerror or exc}",
            [error("Cannot write folder", f"'{dest}': {exc.strerror or exc}. Pick another --to.")],
        ) from None
    return ["component.yaml", "README.md", "tests/basic.yaml"]


def _library_for(type_: str) -> tuple[dict[str, Any], str, str] | None:
    for lib in library.names():
        folder = library.path(lib)
        if load_component(folder).provides == type_:
            doc = yaml.safe_load((folder / "component.yaml").read_text(encoding="utf-8"))
            readme = f"# {{name}}\n\nProvides `{type_}`. Started from the library's `{lib}`; describe what is different.\n"
            tests = sorted((folder / "tests").glob("*.yaml"))
            return doc, readme, tests[0].read_text(encoding="utf-8")
    return None


def _minimal(type_: str) -> tuple[dict[str, Any], str, str]:
    doc: dict[str, Any] = {
        "apiVersion": "stackyard.dev/v1",
        "kind": "Component",
        "metadata": {"description": f"A component that provides '{type_}'."},
        "spec": {
            "provides": {"type": type_},
            "sla": {"availability": "99.0", "support": "best-effort"},
            "inputs": {"type": "object", "properties": {}, "additionalProperties": False},
            "resources": {"id": {"kind": "random.id", "config": {"length": 12}}},
            "outputs": _outputs(type_),
            "deletion": "delete",
            "cost": {"monthly": "0.00", "currency": "USD"},
            "compliance": [],
        },
    }
    if contracts.secret_outputs(type_):
        doc["spec"]["resources"]["password"] = {"kind": "random.password", "config": {"length": 32}}
    readme = (
        f"# {{name}}\n\nProvides `{type_}`. Replace the generated id with the real resources.\n"
    )
    test = (
        "# A workload that asks for this component's type; the outputs it must get.\n"
        "workload:\n"
        "  apiVersion: score.dev/v1b1\n"
        "  metadata: {name: example}\n"
        "  containers:\n"
        "    main: {image: busybox}\n"
        "  resources:\n"
        f"    thing: {{type: {type_}}}\n"
        "expect:\n"
        f"  outputs: [{', '.join(_outputs(type_))}]\n"
    )
    return doc, readme, test


def _outputs(type_: str) -> dict[str, Any]:
    """Outputs meeting the type's contract (placeholder values), or just ``id``."""
    props = contracts.output_properties(type_)
    if not props:
        return {"id": "${resources.id.value}"}
    secret = set(contracts.secret_outputs(type_))
    out: dict[str, Any] = {}
    for key in contracts.required_outputs(type_):
        spec = props.get(key, {})
        types = spec.get("type", "string")
        types = types if isinstance(types, list) else [types]
        if key in secret:
            out[key] = {"value": "${resources.password.value}", "secret": True}
        elif "string" not in types and ("integer" in types or "number" in types):
            out[key] = int(spec.get("minimum", 1))
        else:
            out[key] = "${resources.id.value}"
    return out
