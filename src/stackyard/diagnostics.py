"""Diagnostics: user mistakes, collected and returned together so they can be fixed in one pass."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


class Severity(enum.StrEnum):
    """How bad a diagnostic is. Only errors make an input invalid."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem with the user's input.

    ``summary`` is fixed text, suitable for grouping and golden tests. ``detail`` is full
    sentences that say what was found and what to do. ``file`` and ``path`` locate it
    (``path`` is dotted, e.g. ``containers.web.image``); ``subject`` names the object it is
    about (a uid, an address, a component) when that is not a file.
    """

    severity: Severity
    summary: str
    detail: str = ""
    file: str = ""
    path: str = ""
    subject: str = ""

    def with_file(self, file: str) -> Diagnostic:
        """Return a copy located in ``file``."""
        return replace(self, file=file)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape used by every ``--output json`` rendering."""
        out: dict[str, Any] = {
            "severity": self.severity.value,
            "summary": self.summary,
            "detail": self.detail,
            "file": self.file,
            "path": self.path,
        }
        if self.subject:
            out["subject"] = self.subject
        return out


def error(
    summary: str, detail: str = "", *, path: str = "", file: str = "", subject: str = ""
) -> Diagnostic:
    """Build an error diagnostic."""
    return Diagnostic(Severity.ERROR, summary, detail, file=file, path=path, subject=subject)


def warning(
    summary: str, detail: str = "", *, path: str = "", file: str = "", subject: str = ""
) -> Diagnostic:
    """Build a warning diagnostic."""
    return Diagnostic(Severity.WARNING, summary, detail, file=file, path=path, subject=subject)


def has_errors(diags: Iterable[Diagnostic]) -> bool:
    """True when any diagnostic is an error."""
    return any(d.severity is Severity.ERROR for d in diags)


@dataclass
class DiagnosticBag:
    """A mutable collector used while validating; hand out ``.items`` when done."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        """Add one diagnostic."""
        self.items.append(diag)

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        """Add several diagnostics."""
        self.items.extend(diags)

    def error(self, summary: str, detail: str = "", *, path: str = "", subject: str = "") -> None:
        """Add an error."""
        self.items.append(error(summary, detail, path=path, subject=subject))

    def warning(self, summary: str, detail: str = "", *, path: str = "", subject: str = "") -> None:
        """Add a warning."""
        self.items.append(warning(summary, detail, path=path, subject=subject))

    @property
    def has_errors(self) -> bool:
        """True when any collected diagnostic is an error."""
        return has_errors(self.items)


def sort_key(d: Diagnostic) -> tuple[str, str, str]:
    """A stable order for rendering: by file, then path, then summary."""
    return (d.file, d.path, d.summary)


def to_json(diags: Sequence[Diagnostic]) -> list[dict[str, Any]]:
    """Render diagnostics as a JSON-ready list."""
    return [d.to_json() for d in diags]
