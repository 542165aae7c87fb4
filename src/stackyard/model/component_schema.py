"""The structure of ``component.yaml``: its JSON Schema and schema errors as diagnostics.

The schema itself is data (``schemas/component-v1.json``). Two things make its errors
readable: ``x-summary``/``x-detail`` annotations in the schema word the diagnostic, and
every error carries a dotted path such as ``spec.resources.role.kind``. Patterns match the
whole string: a ``$`` never accepts a trailing newline, which Python's ``re`` otherwise does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator

from stackyard.diagnostics import Diagnostic, error
from stackyard.model.schema_errors import (
    describe,
    did_you_mean,
    format_path,
    join,
    json_shape_diagnostics,
    kind,
    prefer,
    schema_diagnostics,
)

__all__ = [
    "StrictValidator",
    "check_inputs_schema",
    "check_structure",
    "did_you_mean",
    "join_path",
    "manifest_schema",
    "schema_error_diagnostics",
]


def _strict_pattern(
    validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    if not _compile(pattern).search(instance):
        yield ValidationError(f"{_clip(json.dumps(instance))} does not match {pattern!r}")


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    # A final unescaped '$' means "end of string", as in ECMA-262; Python's '$' would also
    # match before a trailing newline, letting "name\n" through.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


StrictValidator: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, validators={"pattern": _strict_pattern}
)
"""Draft 2020-12 with whole-string patterns; used for manifests and for params."""


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of ``component.yaml`` (apiVersion ``stackyard.dev/v1``)."""
    entry = resources.files("stackyard.model").joinpath("schemas", "component-v1.json")
    data = json.loads(entry.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def check_structure(data: Any, *, file: str = "") -> list[Diagnostic]:
    """Every way ``data`` (a loaded ``component.yaml``) breaks the manifest's structure."""
    if not isinstance(data, Mapping):
        return [
            error(
                "Not a mapping",
                f"component.yaml must be a mapping with apiVersion, kind, metadata and spec; "
                f"it holds {kind(data)}.",
                file=file,
            )
        ]
    validator = StrictValidator(manifest_schema())
    diags = schema_error_diagnostics(validator, data, file=file)
    spec = data.get("spec")
    inputs = spec.get("inputs") if isinstance(spec, Mapping) else None
    if isinstance(inputs, Mapping):
        diags.extend(check_inputs_schema(inputs, file=file))
    return diags


def check_inputs_schema(inputs: Mapping[str, Any], *, file: str = "") -> list[Diagnostic]:
    """Check ``spec.inputs`` is a usable JSON Schema 2020-12 for a mapping of params."""
    base = "spec.inputs"
    try:
        Draft202012Validator.check_schema(inputs)
    except SchemaError as exc:
        return [
            error(
                "Invalid inputs schema",
                f"spec.inputs is not a valid JSON Schema 2020-12: {_clip(exc.message, 200)}.",
                path=join_path(base, format_path(exc.path)),
                file=file,
            )
        ]
    out: list[Diagnostic] = []
    declared = inputs.get("type")
    if declared is not None and declared != "object":
        out.append(
            error(
                "Invalid inputs schema",
                "Params are a mapping, so spec.inputs must have 'type: object'.",
                path=f"{base}.type",
                file=file,
            )
        )
    for path, node in _walk_schema(inputs, base):
        for key in ("$ref", "$dynamicRef"):
            ref = node.get(key)
            if isinstance(ref, str) and not ref.startswith("#"):
                out.append(
                    error(
                        "Invalid inputs schema",
                        f"'{key}: {_clip(ref)}' points outside the component; only local "
                        "references ('#/$defs/...') are allowed, so validation never fetches.",
                        path=f"{path}.{key}",
                        file=file,
                    )
                )
        if "default" in node:
            sub = {k: v for k, v in node.items() if k != "default"}
            problems = list(StrictValidator(sub).iter_errors(node["default"]))
            if problems:
                out.append(
                    error(
                        "Invalid input default",
                        f"The default at '{path}' does not satisfy its own schema: "
                        f"{_clip(best_match(problems).message, 160)}.",
                        path=f"{path}.default",
                        file=file,
                    )
                )
    return out


@dataclass(frozen=True, slots=True)
class _Note:
    """What a failing schema's annotations say about the diagnostic at its path."""

    summary: str = ""  # x-summary: replaces the generic summary
    hint: str = ""  # x-detail: appended to the detail
    sensitive: bool = False  # writeOnly / x-secret: never echo the value
    plain: str = ""  # replaces a pattern error's detail (the hint explains the rule)


def schema_error_diagnostics(
    validator: Validator, data: Any, *, file: str = "", prefix: str = ""
) -> list[Diagnostic]:
    """Validate ``data``: every error as a diagnostic with a dotted path under ``prefix``.

    Wording comes from ``schema_errors`` (shared with workloads). A schema's ``x-summary``
    and ``x-detail`` annotations then replace the summary and explain the rule (instead of
    printing a regular expression), and a ``writeOnly``/``x-secret`` schema hides the value.
    """
    notes = _annotations(validator, data)
    out: list[Diagnostic] = []
    for diag in prefer(json_shape_diagnostics(data), schema_diagnostics(validator, data)):
        note = notes.get(diag.path, _Note())
        detail, path = note.plain or diag.detail, diag.path
        if note.sensitive:
            detail = f"{describe(path, start=True)} is invalid (its value is sensitive)."
        if prefix:
            path = join_path(prefix, diag.path)
            detail = detail.replace(describe(diag.path, start=True), f"'{path}'")
            detail = detail.replace(describe(diag.path), f"'{path}'")
            detail = detail.replace(describe("", start=True), f"'{prefix}'")
            detail = detail.replace(describe(""), f"'{prefix}'")
        detail = f"{detail} {note.hint}" if note.hint else detail
        out.append(
            replace(
                diag,
                summary=note.summary or diag.summary,
                detail=_printable(detail),
                path=_printable(path, 200),
                file=file,
            )
        )
    return sorted(out, key=lambda d: (d.path, d.summary, d.detail))


def join_path(prefix: str, path: str) -> str:
    """``prefix`` + a dotted path (``params`` + ``a[0]`` -> ``params.a[0]``)."""
    if not path:
        return prefix
    if not prefix:
        return path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def _annotations(validator: Validator, data: Any) -> dict[str, _Note]:
    """Path -> the annotations of the failing schema there, for those that have any."""
    notes: dict[str, _Note] = {}
    pending: list[ValidationError] = list(validator.iter_errors(data))
    while pending:
        err = pending.pop()
        pending.extend(err.context or ())
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        summary, hint = str(schema.get("x-summary", "")), str(schema.get("x-detail", ""))
        sensitive = bool(schema.get("writeOnly") or schema.get("x-secret"))
        if not (summary or hint or sensitive):
            continue
        path = format_path(err.absolute_path)
        plain = ""
        if "propertyNames" in err.absolute_schema_path:
            plain = (
                f"{_clip(json.dumps(str(err.instance)))} is not a valid name in {describe(path)}."
            )
            path = join(path, str(err.instance))
        elif err.validator == "pattern" and hint:
            plain = f"{describe(path, start=True)} is {_clip(json.dumps(err.instance))}."
        notes.setdefault(path, _Note(summary, hint, sensitive, plain if hint else ""))
    return notes


def _walk_schema(node: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not isinstance(node, Mapping):
        return
    yield path, node
    for key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
        sub = node.get(key)
        if isinstance(sub, Mapping):
            for name, child in sub.items():
                yield from _walk_schema(child, join(f"{path}.{key}", str(name)))
    for key in ("items", "additionalProperties", "not", "if", "then", "else", "contains"):
        yield from _walk_schema(node.get(key), f"{path}.{key}")
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        seq = node.get(key)
        if isinstance(seq, list):
            for i, child in enumerate(seq):
                yield from _walk_schema(child, f"{path}.{key}[{i}]")


def _printable(text: str, limit: int = 2000) -> str:
    """Escape control characters (a hostile key must not drive the terminal) and clip."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return _clip(text, limit)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
