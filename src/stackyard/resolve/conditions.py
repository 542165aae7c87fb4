"""``when:`` conditions: a boolean, one placeholder that yields a boolean, or a CEL expression."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackyard.errors import PlaceholderError
from stackyard.model.placeholders import Reference, lookup, parse, substitute
from stackyard.model.values import Secret, Unknown

MAX_EXPRESSION_LENGTH = 2048


def evaluate(when: Any, scope: Mapping[str, Any], *, location: str) -> bool:
    """Evaluate a condition against known values (inputs, context, each).

    Raises ``PlaceholderError`` (naming ``location``) for anything that does not give a boolean.
    """
    if isinstance(when, bool):
        return when
    if not isinstance(when, str):
        raise PlaceholderError(
            f"'{location}' must be a boolean, a placeholder or a CEL expression, "
            f"not {type(when).__name__}",
            path=location,
        )
    segments = parse(when, location=location)
    if len(segments) == 1 and isinstance(segments[0], Reference):
        value = substitute(when, lambda ref: lookup(scope, ref), location=location)
        return _as_bool(value, location)
    return _cel(when, scope, location)


def _as_bool(value: Any, location: str) -> bool:
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, Unknown):
        raise PlaceholderError(
            f"'{location}' depends on a value known only after apply", path=location
        )
    if not isinstance(value, bool):
        raise PlaceholderError(
            f"'{location}' must evaluate to true or false, not {type(value).__name__}",
            path=location,
        )
    return value


def _cel(expression: str, scope: Mapping[str, Any], location: str) -> bool:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise PlaceholderError(
            f"'{location}' is longer than {MAX_EXPRESSION_LENGTH} characters", path=location
        )
    import celpy  # CEL is only needed for conditions that are more than a path
    from celpy.adapter import json_to_cel

    env = celpy.Environment()
    try:
        program = env.program(env.compile(expression))
        activation = {k: json_to_cel(_plain(v)) for k, v in scope.items()}
        result = program.evaluate(activation)
    except Exception as exc:  # celpy raises its own tree; translate at this one boundary
        raise PlaceholderError(
            f"'{location}' is not a valid CEL condition: {str(exc).splitlines()[0][:200]}",
            path=location,
            expression=expression,
        ) from None
    if isinstance(result, Exception):
        raise PlaceholderError(f"'{location}' failed to evaluate: {result}", path=location)
    if type(result).__name__ != "BoolType" and not isinstance(result, bool):
        raise PlaceholderError(f"'{location}' must evaluate to true or false", path=location)
    return bool(result)


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return _plain(value.value)
    if isinstance(value, Unknown):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
