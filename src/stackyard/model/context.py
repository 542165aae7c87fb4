"""The placeholder roots of component templates and the keys of ``context`` and ``each``.

One table, read by the static lint (``model.lint``), by expansion (``resolve.graph``) and by
whoever builds an instance's context, so a placeholder the lint accepts is one expansion can
resolve, and the reverse (DESIGN §3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

#: Every root a component template may use.
TEMPLATE_ROOTS = ("inputs", "context", "requires", "resources", "each")
#: The roots known before apply: what ``for_each`` may iterate over.
STATIC_ROOTS = ("inputs", "context", "requires")


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What ``${context.<key>}`` offers a component instance; every value is a string."""

    env: str  # the environment's name
    env_type: str  # its environment type
    workload: str  # the workload that requested the instance ("" for core and shared ones)
    uid: str  # the instance's resource uid, ``type.class#id``
    name: str  # the instance's deterministic name base (``resolve.naming.instance_name``)
    region: str = ""  # the environment's region; empty until regions exist
    owner: str = ""  # the team that owns the environment; empty when it has none

    def as_mapping(self) -> dict[str, str]:
        """The keys and values, as expansion looks them up."""
        return asdict(self)


#: The keys of ``${context.*}``, in the order the docs list them.
CONTEXT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Context))
#: The keys of ``${each.*}`` inside a resource that has ``for_each``.
EACH_KEYS = ("key", "value")


def each_scope(key: str, value: Any) -> dict[str, Any]:
    """The ``each`` scope of one ``for_each`` entry."""
    return dict(zip(EACH_KEYS, (key, value), strict=True))
