"""Identity: ``ResourceUid``, the one way a resource request is named (``type.class#id``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stackyard.diagnostics import Diagnostic, error

# Score's patterns (score-v1b1.json, $defs/resource).
TYPE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$")
CLASS_PATTERN = TYPE_PATTERN
ID_PATTERN = re.compile(r"^[a-z0-9]+(?:-+[a-z0-9]+)*(?:\.[a-z0-9]+(?:-+[a-z0-9]+)*)*$")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")
ID_MAX_LENGTH = 253
DEFAULT_CLASS = "default"


@dataclass(frozen=True, slots=True, order=True)
class ResourceUid:
    """A resource request's identity, with Score's semantics.

    ``class`` defaults to ``default``; ``id`` defaults to ``<workload>.<resource-name>``.
    Two requests with the same uid in one environment are one shared resource.
    """

    type: str
    klass: str
    id: str

    def __str__(self) -> str:
        return f"{self.type}.{self.klass}#{self.id}"

    @classmethod
    def for_request(
        cls,
        *,
        workload: str,
        resource: str,
        type: str,
        klass: str | None = None,
        id: str | None = None,
    ) -> ResourceUid:
        """The uid of a workload's resource request, applying Score's defaults."""
        return cls(type, klass or DEFAULT_CLASS, id or f"{workload}.{resource}")

    @classmethod
    def parse(cls, text: str) -> ResourceUid:
        """Parse ``type.class#id``; raises ``ValueError`` naming what is wrong."""
        head, sep, rid = text.partition("#")
        type_, dot, klass = head.partition(".")
        if not sep or not dot or not type_ or not klass or not rid:
            raise ValueError(f"'{text}' is not a resource uid of the form type.class#id")
        uid = cls(type_, klass, rid)
        problems = uid.validate()
        if problems:
            raise ValueError(problems[0].detail)
        return uid

    def validate(self, path: str = "") -> list[Diagnostic]:
        """Check each part against Score's patterns."""
        out: list[Diagnostic] = []
        if not TYPE_PATTERN.match(self.type):
            out.append(
                error(
                    "Invalid resource type",
                    f"Resource type '{self.type}' must be 2-63 letters, digits or '-', "
                    "starting and ending with a letter or digit.",
                    path=f"{path}.type" if path else "type",
                )
            )
        if not CLASS_PATTERN.match(self.klass):
            out.append(
                error(
                    "Invalid resource class",
                    f"Resource class '{self.klass}' must be 2-63 letters, digits or '-', "
                    "starting and ending with a letter or digit.",
                    path=f"{path}.class" if path else "class",
                )
            )
        if len(self.id) > ID_MAX_LENGTH or not ID_PATTERN.match(self.id):
            out.append(
                error(
                    "Invalid resource id",
                    f"Resource id '{self.id[:80]}' must be lower-case letters, digits, '-' and "
                    "'.'-separated segments (for example 'shared-db' or 'checkout.db'), "
                    f"at most {ID_MAX_LENGTH} characters.",
                    path=f"{path}.id" if path else "id",
                )
            )
        return out
