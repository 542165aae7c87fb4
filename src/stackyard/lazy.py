"""A module imported when first used: the drivers of a provider stay out of a command that
loads the provider only to name, plan or check its resources.

A provider module is imported whenever a plan touches one of its kinds (the naming rules and
config models live there), but its driver (psycopg with ssl, redis) is needed only when it
talks to the server. Such a module writes, once::

    if TYPE_CHECKING:
        import psycopg
    else:
        psycopg = lazy("psycopg")

and uses ``psycopg.connect(...)`` / ``except psycopg.Error`` as usual: the first attribute
read imports the module (``import_module``, so a missing driver fails there, with Python's
own error), every later one is a plain ``getattr`` on the cached module. Nothing may read an
attribute at import time (a module-level ``sql.SQL(...)`` would defeat the point).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "lazy"]


class LazyModule:
    """Stands for the module ``name`` until an attribute is read."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy(name: str) -> Any:
    """A stand-in for ``import name`` that imports on first use (typed ``Any``: modules that
    use it import the real one under ``TYPE_CHECKING``)."""
    return LazyModule(name)
