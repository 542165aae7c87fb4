"""Schema diagnostics: JSON Schema errors as ``Diagnostic`` values with dotted paths.

Used for every file stackyard validates against a JSON Schema (Score workloads,
``component.yaml``). Summaries are fixed text (the constants below); details are sentences
that say what was found and what is expected. All errors are returned together.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from stackyard.diagnostics import Diagnostic, Severity, error

INVALID_VALUE = "Invalid value"
MISSING_FIELD = "Missing field"
UNKNOWN_FIELD = "Unknown field"
WRONG_TYPE = "Wrong type"
INVALID_NAME = "Invalid name"
CONFLICTING_FIELDS = "Conflicting fields"
UNSUPPORTED_VALUE = "Unsupported value"

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}

# Plain-language readings of the patterns that Score and stackyard schemas use.
_PATTERNS = {
    "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$": (
        "2-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
    ),
    "^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$": (
        "2-63 letters, digits or '-', starting and ending with a letter or digit"
    ),
    "^[a-z0-9]+(?:-+[a-z0-9]+)*(?:\\.[a-z0-9]+(?:-+[a-z0-9]+)*)*$": (
        "lower-case letters, digits and '-' in '.'-separated labels, such as 'shared-db'"
    ),
    "^(0\\.\\d+|[1-9]\\d*(\\.\\d+)?)(K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$": (
        "a number of bytes with an optional unit, such as '128M' or '1.5Gi'"
    ),
    "^\\d+(?:m|\\.\\d+)?$": "whole or fractional CPUs, such as '2', '0.5' or '125m'",
    "^0?[0-7]{3}$": "an octal file mode written as a string, such as '0600'",
    "^[A-Za-z0-9_-]+$": "letters, digits, '_' or '-'",
    "^[^=]+$": "any characters except '='",
}


def schema_diagnostics(validator: Validator, data: Any, *, file: str = "") -> list[Diagnostic]:
    """Every error ``validator`` finds in ``data``, as diagnostics located in ``file``."""
    out: list[Diagnostic] = []
    for err in validator.iter_errors(data):
        out.extend(_convert(err))
    return [d.with_file(file) for d in unique(out)]


def json_shape_diagnostics(data: Any, *, file: str = "") -> list[Diagnostic]:
    """Values YAML can hold but JSON cannot: non-string keys, timestamps, binary, sets, NaN."""
    out: list[Diagnostic] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        at = describe(path, start=True)
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    out.append(
                        error(
                            WRONG_TYPE,
                            f"{at} has the key {key!r} ({kind(key)}); keys must be strings. "
                            f"Quote it, for example '\"{key}\"'.",
                            path=join(path, str(key)),
                            file=file,
                        )
                    )
                stack.append((join(path, str(key)), item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(
                error(
                    UNSUPPORTED_VALUE,
                    f"{at} is {value}, which JSON cannot hold. Use a finite number or a string.",
                    path=path,
                    file=file,
                )
            )
        elif value is not None and not isinstance(value, str | int | float):
            out.append(
                error(
                    UNSUPPORTED_VALUE,
                    f"{at} is {kind(value)}, which JSON cannot hold. Quote it to make it a string.",
                    path=path,
                    file=file,
                )
            )
    return sorted(out, key=lambda d: d.path)


def format_path(parts: Iterable[str | int]) -> str:
    r"""``["containers", "web", "image"]`` → ``containers.web.image``; ints become ``[0]``.

    A ``.`` inside a key is written ``\.``, as in placeholders.
    """
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out = join(out, str(part))
    return out


def join(path: str, key: str) -> str:
    """Append one mapping key to a dotted path."""
    key = key.replace(".", "\\.")
    return f"{path}.{key}" if path else key


def describe(path: str, *, start: bool = False) -> str:
    """How a detail sentence names a location (``start``: at the start of a sentence)."""
    if path:
        return f"'{path}'"
    return "The document" if start else "the document"


def kind(value: Any) -> str:
    """A value's JSON kind in words (``a mapping``, ``an integer``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for types, name in (
        (Mapping, "a mapping"),
        (str, "a string"),
        (int, "an integer"),
        (float, "a number"),
        (list | tuple, "a list"),
        (bytes, "binary data"),
        (set | frozenset, "a set"),
    ):
        if isinstance(value, types):
            return name
    if hasattr(value, "isoformat"):
        return "a timestamp"
    return f"a {type(value).__name__}"


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` when a close match exists, else an empty string."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" Did you mean '{close[0]}'?" if close else ""


def prefer(primary: Sequence[Diagnostic], secondary: Sequence[Diagnostic]) -> list[Diagnostic]:
    """``primary`` plus those of ``secondary`` at a path no error in ``primary`` covers."""
    covered = {d.path for d in primary if d.severity is Severity.ERROR}
    return [*primary, *(d for d in secondary if d.path not in covered)]


def unique(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Drop exact repeats, keeping the first of each."""
    seen: set[tuple[str, str, str, str]] = set()
    out: list[Diagnostic] = []
    for d in diags:
        key = (d.file, d.path, d.summary, d.detail)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _convert(err: ValidationError) -> Iterator[Diagnostic]:
    path = format_path(err.absolute_path)
    where, subject = describe(path), describe(path, start=True)
    value, inst = _value(err), err.instance
    match err.validator:
        case "oneOf" | "anyOf":
            yield from _composite(err, path)
        case _ if "propertyNames" in err.absolute_schema_path:
            name = str(inst)
            yield error(
                INVALID_NAME,
                f"'{name}' is not a valid name in {where}: {_rule(err)}.",
                path=join(path, name),
            )
        case "required":
            for field in value:
                if isinstance(inst, Mapping) and field not in inst:
                    yield error(
                        MISSING_FIELD,
                        f"{subject} needs the field '{field}'.",
                        path=join(path, field),
                    )
        case "additionalProperties":
            allowed = list(_schema(err).get("properties", {}))
            for extra in _extras(err):
                listed = ", ".join(allowed) if allowed else "none"
                yield error(
                    UNKNOWN_FIELD,
                    f"'{extra}' is not a field of {where}.{did_you_mean(extra, allowed)} "
                    f"Allowed fields: {listed}.",
                    path=join(path, extra),
                )
        case "type":
            expected = " or ".join(_TYPE_NAMES.get(t, t) for t in _as_list(value))
            hint = ""
            if "string" in _as_list(value) and isinstance(inst, int | float):
                hint = f" Quote the value, for example '\"{json.dumps(inst)}\"'."
            yield error(
                WRONG_TYPE, f"{subject} must be {expected}, not {kind(inst)}.{hint}", path=path
            )
        case "enum" | "const":
            options = _as_list(value) if err.validator == "enum" else [value]
            listed = ", ".join(json.dumps(o) for o in options)
            mean = did_you_mean(str(inst), [str(o) for o in options])
            yield error(
                INVALID_VALUE,
                f"{subject} is {_show(inst)}; expected one of: {listed}.{mean}",
                path=path,
            )
        case "pattern" | "minLength" | "maxLength":
            yield error(
                INVALID_VALUE, f"{subject} is {_show(inst)}; expected {_rule(err)}.", path=path
            )
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            words = {
                "minimum": "at least",
                "maximum": "at most",
                "exclusiveMinimum": "more than",
                "exclusiveMaximum": "less than",
            }[err.validator]
            yield error(
                INVALID_VALUE, f"{subject} is {inst}; it must be {words} {value}.", path=path
            )
        case "minProperties" | "minItems":
            yield error(
                INVALID_VALUE, f"{subject} must have at least {value} entr{_ies(value)}.", path=path
            )
        case "maxProperties" | "maxItems":
            yield error(
                INVALID_VALUE, f"{subject} may have at most {value} entr{_ies(value)}.", path=path
            )
        case "not" if isinstance(value, Mapping) and len(value.get("required", [])) == 1:
            field = value["required"][0]
            yield error(
                UNKNOWN_FIELD,
                f"'{field}' is not allowed in {where}; in this form the key already says it.",
                path=join(path, field),
            )
        case _:
            yield error(INVALID_VALUE, f"{subject} is invalid: {err.message}.", path=path)


def _composite(err: ValidationError, path: str) -> Iterator[Diagnostic]:
    """``oneOf``/``anyOf``: report the branch the user most plausibly meant."""
    subject = describe(path, start=True)
    inst = err.instance
    context = list(err.context or [])
    if not context:  # oneOf matched more than one branch
        fields = [
            s["required"][0]
            for s in _value(err)
            if isinstance(s, Mapping) and len(s.get("required", [])) == 1
        ]
        given = [f for f in fields if isinstance(inst, Mapping) and f in inst]
        if len(given) > 1:
            yield error(
                CONFLICTING_FIELDS,
                f"{subject} gives {_either(given, 'and')}; give only one.",
                path=path,
            )
        else:
            yield error(INVALID_VALUE, f"{subject} matches more than one allowed form.", path=path)
        return
    here = list(err.absolute_path)
    if all(e.validator == "required" and list(e.absolute_path) == here for e in context):
        options = list(dict.fromkeys(f for e in context for f in _value(e)))
        yield error(
            MISSING_FIELD, f"{subject} needs one of the fields {_either(options)}.", path=path
        )
        return
    branches: dict[int, list[ValidationError]] = {}
    for e in context:
        branches.setdefault(int(e.relative_schema_path[0]), []).append(e)
    viable = {
        i: errs
        for i, errs in branches.items()
        if not any(e.validator == "type" and list(e.absolute_path) == here for e in errs)
    }
    if not viable:
        types = dict.fromkeys(
            _TYPE_NAMES.get(t, t)
            for e in context
            if e.validator == "type"
            for t in _as_list(_value(e))
        )
        yield error(
            WRONG_TYPE, f"{subject} must be {' or '.join(types)}, not {kind(inst)}.", path=path
        )
        return
    if len(viable) > 1:
        best = best_match(e for errs in viable.values() for e in errs)
        chosen = viable[int(best.relative_schema_path[0])] if best else next(iter(viable.values()))
    else:
        chosen = next(iter(viable.values()))
    for e in chosen:
        yield from _convert(e)


def _extras(err: ValidationError) -> list[str]:
    inst = err.instance
    if not isinstance(inst, Mapping):
        return []
    props = _schema(err).get("properties", {})
    patterns = list(_schema(err).get("patternProperties", {}))
    return [
        str(k) for k in inst if k not in props and not any(re.search(p, str(k)) for p in patterns)
    ]


def _rule(err: ValidationError) -> str:
    value = _value(err)
    match err.validator:
        case "pattern":
            return _PATTERNS.get(str(value), f"a value matching the pattern {value}")
        case "minLength":
            return f"at least {value} character{'s' if value != 1 else ''}"
        case "maxLength":
            return f"at most {value} characters"
        case _:
            return err.message


def _value(err: ValidationError) -> Any:
    value: Any = err.validator_value
    return value


def _schema(err: ValidationError) -> Mapping[str, Any]:
    return err.schema if isinstance(err.schema, Mapping) else {}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool) else kind(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _either(names: Sequence[str], word: str = "or") -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {word} {quoted[-1]}"


def _ies(n: Any) -> str:
    return "y" if n == 1 else "ies"
