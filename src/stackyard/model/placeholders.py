r"""Placeholders: Score's ``${a.b.c}`` grammar, reference discovery and substitution.

The grammar, as in Score:

- ``${a.b.c}`` is a reference; ``.`` separates keys, and ``\\.`` is a literal dot in a key.
- ``$$`` is a literal ``$``. A ``$`` followed by anything else is kept as it is.
- A string that is exactly one reference keeps the referenced value's type; a reference
  embedded in a longer string is rendered, with non-strings JSON-encoded.

``Unknown`` and ``Secret`` values (see ``values.py``) propagate: a string that embeds an
unknown is unknown, and one that embeds a secret is a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackyard.canonical import canonical_json
from stackyard.errors import PlaceholderError
from stackyard.model.values import Secret, Unknown, contains

MAX_PLACEHOLDER_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``${...}`` found in a value: its parsed key path and where it was found."""

    parts: tuple[str, ...]
    expression: str
    location: str = ""

    @property
    def root(self) -> str:
        """The first key (``resources``, ``inputs``, ``metadata``...)."""
        return self.parts[0]

    def __str__(self) -> str:
        return "${" + self.expression + "}"


Segment = str | Reference


def parse(text: str, *, location: str = "") -> list[Segment]:
    """Split a string into literal text and references. Raises ``PlaceholderError``."""
    out: list[Segment] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$":
            buf.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt == "$":
            buf.append("$")
            i += 2
            continue
        if nxt != "{":
            buf.append("$")
            i += 1
            continue
        end = text.find("}", i + 2)
        if end < 0:
            raise PlaceholderError(
                f"Unterminated placeholder at {_where(location)}: "
                f"'{_clip(text[i:])}' has no closing '}}'",
                path=location,
                expression=text[i + 2 :],
            )
        expr = text[i + 2 : end]
        if buf:
            out.append("".join(buf))
            buf = []
        out.append(Reference(split_path(expr, location=location), expr, location))
        i = end + 1
    if buf:
        out.append("".join(buf))
    return out


def split_path(expr: str, *, location: str = "") -> tuple[str, ...]:
    r"""Split ``a.b\\.c`` into ``("a", "b.c")``, refusing empty keys and nested ``${``."""
    if len(expr) > MAX_PLACEHOLDER_LENGTH:
        raise PlaceholderError(
            f"Placeholder at {_where(location)} is longer than {MAX_PLACEHOLDER_LENGTH} characters",
            path=location,
            expression=expr[:80],
        )
    if "${" in expr or ("$" in expr and "{" in expr):
        raise PlaceholderError(
            f"Nested placeholder at {_where(location)}: '${{{_clip(expr)}}}' cannot contain '${{'",
            path=location,
            expression=expr,
        )
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == "\\" and i + 1 < len(expr) and expr[i + 1] == ".":
            cur.append(".")
            i += 2
            continue
        if ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    if any(p.strip() == "" for p in parts):
        raise PlaceholderError(
            f"Invalid placeholder at {_where(location)}: '${{{_clip(expr)}}}' has an empty key; "
            "write it as ${a.b.c}",
            path=location,
            expression=expr,
        )
    return tuple(parts)


def walk(value: Any, location: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(location, string)`` for every string inside a nested value (keys excluded)."""
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from walk(
                v, f"{location}.{_escape_key(str(k))}" if location else _escape_key(str(k))
            )
    elif isinstance(value, list | tuple):
        for idx, v in enumerate(value):
            yield from walk(v, f"{location}[{idx}]")


def find_references(value: Any, *, location: str = "") -> list[Reference]:
    """Every reference inside a nested value, in document order. Raises ``PlaceholderError``."""
    refs: list[Reference] = []
    for loc, text in walk(value, location):
        if "$" in text:
            refs.extend(seg for seg in parse(text, location=loc) if isinstance(seg, Reference))
    return refs


Resolver = Callable[[Reference], Any]


def substitute(value: Any, resolve: Resolver, *, location: str = "") -> Any:
    """Return ``value`` with every reference replaced by ``resolve(ref)``.

    A string that is one reference keeps the resolved value's type. Embedded references are
    rendered with ``render``. Mapping keys are not substituted.
    """
    if isinstance(value, str):
        return _substitute_string(value, resolve, location)
    if isinstance(value, Mapping):
        return {
            k: substitute(
                v, resolve, location=f"{location}.{_escape_key(str(k))}" if location else str(k)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [substitute(v, resolve, location=f"{location}[{i}]") for i, v in enumerate(value)]
    return value


def _substitute_string(text: str, resolve: Resolver, location: str) -> Any:
    if "$" not in text:
        return text
    segments = parse(text, location=location)
    if len(segments) == 1 and isinstance(segments[0], Reference):
        return resolve(segments[0])
    # Resolve every reference first: a secret or unknown anywhere (also nested inside an
    # embedded mapping or list) marks the whole string, whatever the order of the pieces.
    values = [seg if isinstance(seg, str) else resolve(seg) for seg in segments]
    try:
        secret = any(contains(v, Secret) for v in values)
        unknown = next((u for v in values if (u := _first_unknown(v)) is not None), None)
    except RecursionError:  # a circular structure
        raise PlaceholderError(
            f"Value at {_where(location)} cannot be rendered into a string: it refers to itself",
            path=location,
        ) from None
    if unknown is not None:
        return Secret(unknown) if secret else unknown
    joined = "".join(render(v.value if isinstance(v, Secret) else v) for v in values)
    return Secret(joined) if secret else joined


def _first_unknown(value: Any) -> Unknown | None:
    if isinstance(value, Unknown):
        return value
    if isinstance(value, Secret):
        return _first_unknown(value.value)
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return next((u for v in value if (u := _first_unknown(v)) is not None), None)
    return None


def render(value: Any) -> str:
    """Render a value embedded in a string: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return canonical_json(value, ascii_only=True, default=_unrenderable)
    except (TypeError, ValueError) as exc:  # circular structures, mixed key types
        raise PlaceholderError(f"Value cannot be rendered into a string: {exc}") from None


def _unrenderable(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return obj.value
    raise PlaceholderError(f"Value of type {type(obj).__name__} cannot be rendered into a string")


def lookup(data: Mapping[str, Any], ref: Reference, *, roots: Sequence[str] | None = None) -> Any:
    """Resolve a reference by walking nested mappings (and list indexes) from ``data``.

    Unknown roots and keys raise ``PlaceholderError`` naming the path and what exists.
    ``Unknown`` values stop the walk and are returned as they are (known after apply).
    """
    allowed = list(roots) if roots is not None else sorted(str(k) for k in data)
    if ref.root not in data or (roots is not None and ref.root not in roots):
        raise PlaceholderError(
            f"Unknown placeholder root '{ref.root}' in {ref} at {_where(ref.location)}; "
            f"expected one of: {', '.join(allowed) or '(none)'}",
            path=ref.location,
            expression=ref.expression,
        )
    cur: Any = data[ref.root]
    for depth, key in enumerate(ref.parts[1:], start=1):
        secret = isinstance(cur, Secret)
        inner = cur.value if secret else cur
        if isinstance(inner, Unknown):
            return cur
        if isinstance(inner, Mapping) and key in inner:
            cur = inner[key]
        elif isinstance(inner, list) and key.isascii() and key.isdigit() and int(key) < len(inner):
            cur = inner[int(key)]
        else:
            where = ".".join(_escape_key(p) for p in ref.parts[:depth])
            if isinstance(inner, Mapping):
                known = ", ".join(sorted(str(k) for k in inner)) or "(no keys)"
                hint = f"'{where}' has: {known}"
            else:
                hint = f"'{where}' is a {type(inner).__name__}, not a mapping"
            raise PlaceholderError(
                f"Unknown key '{key}' in {ref} at {_where(ref.location)}; {hint}",
                path=ref.location,
                expression=ref.expression,
            )
        if secret and not isinstance(cur, Secret):
            cur = Secret(cur)
    return cur


def _escape_key(key: str) -> str:
    return key.replace(".", "\\.") if "." in key else key


def _where(location: str) -> str:
    return f"'{location}'" if location else "the top level"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
