"""Type contracts: the JSON Schema of the outputs each resource type promises its consumers.

The contracts are data (``contracts/<type>.json``, packaged with stackyard) and follow
Score's conventions, e.g. ``postgres`` gives host, port, name, database, username and
password. A property marked ``"x-secret": true`` must be declared ``secret: true`` by every
component that provides the type.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

SECRET_KEYWORD = "x-secret"  # noqa: S105 (a schema keyword, not a password)
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}\Z")


def known_types() -> list[str]:
    """The resource types that have a contract, sorted."""
    return list(_index())


def contract_for(type_: str) -> Mapping[str, Any] | None:
    """The output contract of ``type_`` (a JSON Schema 2020-12 document), or ``None``.

    The result is a private copy; changing it changes nothing else.
    """
    schema = _load(type_)
    return copy.deepcopy(schema) if schema is not None else None


def required_outputs(type_: str) -> list[str]:
    """The outputs a provider of ``type_`` must supply (empty when it has no contract)."""
    schema = _load(type_)
    return list(schema.get("required", ())) if schema is not None else []


def secret_outputs(type_: str) -> list[str]:
    """The outputs of ``type_`` that are secrets and must be declared ``secret: true``."""
    return [name for name, prop in output_properties(type_).items() if prop.get(SECRET_KEYWORD)]


def output_properties(type_: str) -> dict[str, Mapping[str, Any]]:
    """The declared outputs of ``type_``, name to property schema (empty without contract)."""
    schema = _load(type_)
    if schema is None:
        return {}
    props = schema.get("properties", {})
    return {str(k): copy.deepcopy(v) for k, v in props.items() if isinstance(v, Mapping)}


@lru_cache(maxsize=1)
def _index() -> tuple[str, ...]:
    folder = resources.files("stackyard.model").joinpath("contracts")
    names = (
        entry.name.removesuffix(".json")
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith(".json")
    )
    return tuple(sorted(n for n in names if _TYPE_NAME.match(n)))


@lru_cache(maxsize=64)
def _load(type_: str) -> dict[str, Any] | None:
    # Only names from the packaged index are read: a type name never becomes a path.
    if type_ not in _index():
        return None
    entry = resources.files("stackyard.model").joinpath("contracts", f"{type_}.json")
    data = json.loads(entry.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"contract for '{type_}' is not a JSON object")
    return data
