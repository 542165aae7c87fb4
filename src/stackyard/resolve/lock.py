"""The component lock: each resource uid pinned to a component name, version and digest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Pin:
    """One uid's pinned component build."""

    component: str
    version: str
    digest: str

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.component}@{self.version}"

    def to_json(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {"component": self.component, "version": self.version, "digest": self.digest}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pin:
        """The inverse of ``to_json``."""
        return cls(str(data["component"]), str(data["version"]), str(data["digest"]))


Lock = Mapping[str, Pin]  # str(uid) -> Pin
