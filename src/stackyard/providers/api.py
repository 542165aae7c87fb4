"""The provider SDK: kinds, their config models, and the request/response contract.

A *provider* is a named family of *kinds* (``postgres.role``, ``redis.acl_user``...). A kind
owns one sort of real object and implements four methods, each idempotent:

- ``observe(ObserveRequest) -> Observed | None``: read reality. ``None`` means *missing*.
- ``create(CreateRequest) -> Applied``: make the object exist with this config.
- ``update(UpdateRequest) -> Applied``: change an existing object in place.
- ``delete(DeleteRequest) -> None``: make the object not exist.

The engine promises: config has been validated by the kind's ``config_model``; secrets are
revealed (plain values); the physical name is deterministic, so a repeated call after a crash
addresses the same object. The kind promises: a repeated call converges and never duplicates;
third-party exceptions are translated to ``ProviderError`` subclasses at one boundary.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import pydantic

from stackyard.errors import ProviderPermanentError

REPLACE_KEY = "x-replace-on-change"
SENSITIVE_KEY = "x-sensitive"


def config_field(
    default: Any = ...,
    *,
    replace_on_change: bool = False,
    sensitive: bool = False,
    description: str = "",
    **kwargs: Any,
) -> Any:
    """A config model field with stackyard's flags.

    ``replace_on_change``: a changed value cannot be updated in place; the object is replaced.
    ``sensitive``: the value is masked in every rendering and encrypted at rest.
    """
    extra: dict[str, Any] = {REPLACE_KEY: replace_on_change, SENSITIVE_KEY: sensitive}
    return pydantic.Field(
        default,
        description=description or None,
        json_schema_extra=extra,
        **kwargs,
    )


class KindConfig(pydantic.BaseModel):
    """Base class for a kind's config model. Unknown keys are refused unless a kind allows them."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@functools.cache
def _flag(model: type[pydantic.BaseModel], key: str) -> frozenset[str]:
    out = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(key):
            out.add(name)
    return frozenset(out)


def replace_fields(model: type[pydantic.BaseModel]) -> frozenset[str]:
    """The names of fields flagged ``replace_on_change``."""
    return _flag(model, REPLACE_KEY)


def sensitive_fields(model: type[pydantic.BaseModel]) -> frozenset[str]:
    """The names of fields flagged ``sensitive``."""
    return _flag(model, SENSITIVE_KEY)


@dataclass(frozen=True, slots=True)
class NamingRule:
    """How a kind's physical names must look: a length limit, a charset and a separator."""

    max_length: int = 63
    allowed: str = "a-z0-9"
    separator: str = "-"

    def pattern(self) -> re.Pattern[str]:
        """The regex of characters that are *not* allowed."""
        return re.compile(f"[^{self.allowed}]+")


def label_prefix(installation: str, env: str) -> str:
    """The start of every ownership label of one environment: ``stackyard:<inst>:<env>:``."""
    return f"stackyard:{installation}:{env}:"


@dataclass(frozen=True, slots=True)
class ResourceMeta:
    """What the engine tells a kind about the object, besides its config.

    ``installation`` is the id of the state store the engine runs on (see
    ``StateStore.installation_id``). ``resuming`` is True only when the engine's own journal
    shows an interrupted create of this very object: an *unlabelled* object at the physical
    name is then the one that create made (a crash between CREATE DATABASE and its COMMENT)
    and may be claimed. Otherwise an unlabelled object is never ours.
    """

    address: str
    kind: str
    env: str
    physical_name: str
    installation: str = ""
    resuming: bool = False

    @property
    def label(self) -> str:
        """The ownership label every real object carries: ``stackyard:<inst>:<env>:<address>``."""
        return label_prefix(self.installation, self.env) + self.address


@dataclass(frozen=True, slots=True)
class ObserveRequest:
    """Read the object.

    ``config`` is the desired config (secrets revealed), or the recorded one when reconciling a
    journal intent; it lets a kind compare secrets by hash. ``outputs`` are the outputs recorded
    at the last apply, if any.
    """

    meta: ResourceMeta
    config: Mapping[str, Any]
    outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observed:
    """The object exists.

    ``config`` holds the observed values of the fields a kind can read (only those are compared
    for drift); ``outputs`` what consumers would get; ``health`` is ``ok``, ``degraded`` or
    ``stopped``; ``managed`` is False when the object exists but carries another owner's label
    (it is then never adopted or deleted).
    """

    config: Mapping[str, Any]
    outputs: Mapping[str, Any] = field(default_factory=dict)
    health: str = "ok"
    managed: bool = True
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Make the object exist with ``config``.

    An object with this physical name and our label may already exist (a crash after the call):
    converge to it.
    """

    meta: ResourceMeta
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """Change the object in place from ``prior_config`` to ``config``.

    ``changed`` names the fields that differ. ``prior_outputs`` are the recorded outputs;
    stable values such as a generated password must be kept.
    """

    meta: ResourceMeta
    config: Mapping[str, Any]
    prior_config: Mapping[str, Any]
    prior_outputs: Mapping[str, Any]
    changed: frozenset[str]


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Make the object not exist. Deleting a missing object succeeds."""

    meta: ResourceMeta
    config: Mapping[str, Any]
    outputs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of a create or update: the object's outputs and its physical id."""

    outputs: Mapping[str, Any]
    physical_id: str = ""


@runtime_checkable
class Kind(Protocol):
    """One kind of real object. See the module docstring for the contract."""

    name: ClassVar[str]
    config_model: ClassVar[type[KindConfig]]
    sensitive_outputs: ClassVar[frozenset[str]]
    naming: ClassVar[NamingRule]

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read reality; ``None`` when the object does not exist. No writes."""
        ...

    def create(self, req: CreateRequest) -> Applied:
        """Create the object (or converge to an existing one that carries our label)."""
        ...

    def update(self, req: UpdateRequest) -> Applied:
        """Update the object in place; safe to repeat."""
        ...

    def delete(self, req: DeleteRequest) -> None:
        """Delete the object; a missing object is success."""
        ...


@dataclass(frozen=True, slots=True)
class Labelled:
    """An object found by its label.

    ``config`` addresses it for ``delete`` (together with ``physical_name``); the address it
    was made for is the label's tail after the environment's ``label_prefix``.
    """

    physical_name: str
    label: str
    config: Mapping[str, Any]


@runtime_checkable
class Sweepable(Protocol):
    """An optional kind capability: list objects by label, so destroy finds unrecorded ones."""

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The backend ``config`` addresses (a server URL, a folder); listed once per scope."""
        ...

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """Objects on the backend ``config`` names whose label starts with ``prefix``.

        Read only; at most ``limit`` objects. ``config`` is a recorded config of this kind (its
        server and credentials); the objects returned are deleted with ``delete``.
        """
        ...


@runtime_checkable
class Checkable(Protocol):
    """An optional kind capability: read-only checks of a config against its backend, made
    before the first provider call of a deploy (and by ``workload validate --env``)."""

    def check(self, config: Mapping[str, Any]) -> list[str]:
        """Problems that would make a create with ``config`` fail (one sentence each, naming
        fields, never secret values); empty when none. Reads only; ``ProviderError`` when the
        backend cannot be asked (the deploy then reports it in its plan, as today)."""
        ...


@dataclass(frozen=True)
class Provider:
    """A provider: a name, a version and its kinds.

    Entry points in ``stackyard.providers`` point at an instance of this class (usually a
    module-level ``PROVIDER``).
    """

    name: str
    version: str
    kinds: tuple[Kind, ...]
    description: str = ""
    parallelism: int | None = None  # per-provider cap on concurrent calls

    def kind(self, name: str) -> Kind:
        """The kind called ``name``."""
        for k in self.kinds:
            if k.name == name:
                return k
        raise ProviderPermanentError(f"Provider '{self.name}' has no kind '{name}'")


def validate_config(kind: Kind, config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``config`` with the kind's model; returns the normalised dict (defaults filled).

    Raises ``ProviderPermanentError`` naming every bad field; values are never echoed, since
    any of them may be a secret.
    """
    try:
        model = kind.config_model.model_validate(dict(config))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ProviderPermanentError(f"Invalid config for {kind.name}: {problems}") from None
    return model.model_dump(mode="json")
