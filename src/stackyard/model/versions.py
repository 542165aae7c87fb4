"""Versions: SemVer 2.0 parsing and precedence, ranges, and the rules a new version must obey.

Ranges use the familiar operators: ``1.4.2`` (exact), ``>=1.2 <2``, ``^1.4`` (compatible:
same major, or same minor below 1.0), ``~1.4`` (same minor), ``1.x``/``1.*`` and ``*``.
Pre-releases only match a range that names a pre-release of the same ``major.minor.patch``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackyard.diagnostics import Diagnostic, error

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@dataclass(frozen=True, slots=True)
class Version:
    """A SemVer 2.0 version. Ordering is SemVer precedence (build metadata is ignored)."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: str = ""
    _k: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The precedence key, computed once: ranges compare every published version.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        object.__setattr__(
            self, "_k", (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)
        )

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``text``; ``ValueError`` naming what is expected."""
        m = SEMVER.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(
                f"'{text}' is not a SemVer 2.0 version (MAJOR.MINOR.PATCH, e.g. 1.4.2)"
            )
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, m.group(5) or "")

    # A release sorts after all of its pre-releases; numeric identifiers sort before
    # alphanumeric ones, and numerically among themselves (the key built in __post_init__).

    def __lt__(self, other: object) -> bool:
        return self._k < other._k if isinstance(other, Version) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self._k <= other._k if isinstance(other, Version) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self._k > other._k if isinstance(other, Version) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self._k >= other._k if isinstance(other, Version) else NotImplemented

    def __eq__(self, other: object) -> bool:
        return self._k == other._k if isinstance(other, Version) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._k)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(self.pre)
        if self.build:
            text += "+" + self.build
        return text

    @property
    def core(self) -> tuple[int, int, int]:
        """``(major, minor, patch)``."""
        return (self.major, self.minor, self.patch)


_OP = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*(.+)$")


@dataclass(frozen=True, slots=True)
class Range:
    """A version range: a conjunction of comparators (see the module docstring)."""

    text: str
    comparators: tuple[tuple[str, Version], ...]
    pre_cores: frozenset[tuple[int, int, int]]

    @classmethod
    def parse(cls, text: str) -> Range:
        """Parse a range; ``ValueError`` naming the bad part."""
        parts = text.replace(",", " ").split()
        if not parts:
            raise ValueError("an empty version range; write for example '^1.4' or '>=1.2 <2'")
        comps: list[tuple[str, Version]] = []
        for part in parts:
            comps.extend(_comparators(part))
        pres = frozenset(v.core for _, v in comps if v.pre)
        return cls(text, tuple(comps), pres)

    def matches(self, version: Version) -> bool:
        """True when ``version`` satisfies every comparator."""
        if version.pre and version.core not in self.pre_cores:
            return False
        return all(_compare(version, op, bound) for op, bound in self.comparators)

    def best(self, versions: Iterable[Version]) -> Version | None:
        """The highest matching version, or None."""
        return max((v for v in versions if self.matches(v)), default=None)


def _partial(text: str) -> tuple[Version, int]:
    """``1``, ``1.4``, ``1.4.2``, ``1.x``: the version and how many parts were given."""
    if SEMVER.match(text):
        return Version.parse(text), 3
    pieces = text.split(".")
    nums: list[int] = []
    for p in pieces:
        if p in ("x", "X", "*"):
            break
        if not p.isdigit():
            raise ValueError(f"'{text}' is not a version or a partial version (1, 1.4, 1.x)")
        nums.append(int(p))
    if len(nums) > 3 or not pieces:
        raise ValueError(f"'{text}' is not a version")
    given = len(nums)
    nums += [0] * (3 - len(nums))
    return Version(nums[0], nums[1], nums[2]), given


def _comparators(part: str) -> list[tuple[str, Version]]:
    if part in ("*", "x", "X"):
        return []
    m = _OP.match(part)
    if m is None:
        raise ValueError(f"'{part}' is not a version comparator")
    op, rest = m.group(1) or "=", m.group(2)
    base, given = _partial(rest)
    if op == "^":
        if base.major > 0 or given == 1:
            upper = Version(base.major + 1, 0, 0)
        elif base.minor > 0 or given == 2:
            upper = Version(0, base.minor + 1, 0)
        else:
            upper = Version(0, 0, base.patch + 1)
        return [(">=", base), ("<", _floor(upper))]
    if op == "~":
        upper = (
            Version(base.major + 1, 0, 0) if given == 1 else Version(base.major, base.minor + 1, 0)
        )
        return [(">=", base), ("<", _floor(upper))]
    if op == "=" and given < 3:
        upper = (
            Version(base.major + 1, 0, 0) if given == 1 else Version(base.major, base.minor + 1, 0)
        )
        return [(">=", base), ("<", _floor(upper))]
    return [(op, base)]


def _floor(v: Version) -> Version:
    # "<2.0.0" must exclude 2.0.0-rc.1 too: compare against the lowest pre-release.
    return Version(v.major, v.minor, v.patch, ("0",))


def _compare(v: Version, op: str, bound: Version) -> bool:
    if op == ">=":
        return v >= bound
    if op == ">":
        return v > bound
    if op == "<=":
        return v <= bound
    if op == "<":
        return v < bound
    return v == bound


# -- the rules a new version of a component must obey -----------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    """What the version rules need to know about one published version."""

    version: Version
    provides: str
    required_inputs: frozenset[str]
    outputs: frozenset[str]


def required_inputs(inputs_schema: Mapping[str, Any]) -> frozenset[str]:
    """Top-level inputs a caller must give: required and without a default."""
    props = inputs_schema.get("properties", {}) if isinstance(inputs_schema, Mapping) else {}
    required = inputs_schema.get("required", []) if isinstance(inputs_schema, Mapping) else []
    return frozenset(
        str(r)
        for r in required
        if not (isinstance(props.get(r), Mapping) and "default" in props[r])
    )


def check_new_version(
    name: str, new: Published, published: Sequence[Published]
) -> list[Diagnostic]:
    """The version rules: semver greater than every published version; a published version is
    immutable; a minor or patch release adds no required input, removes no output and changes
    no provided type (a major release may)."""
    out: list[Diagnostic] = []
    if any(p.version == new.version for p in published):
        return [
            error(
                "Version already published",
                f"{name}@{new.version} is already published and published versions are immutable. "
                "Bump the version in component.yaml.",
                path="metadata.version",
            )
        ]
    latest = max(published, key=lambda p: p.version, default=None)
    if latest is None:
        return out
    if new.version < latest.version:
        out.append(
            error(
                "Version not greater than published",
                f"{name}@{new.version} is lower than the latest published version {latest.version}. "
                f"Publish a version above {latest.version}.",
                path="metadata.version",
            )
        )
        return out
    if new.version.major != latest.version.major:
        return out  # a major release may break anything
    kind = "minor" if new.version.minor != latest.version.minor else "patch"
    added = sorted(new.required_inputs - latest.required_inputs)
    removed = sorted(latest.outputs - new.outputs)
    if added:
        out.append(
            error(
                "Breaking change in a non-major release",
                f"This {kind} release of {name} adds required input(s) {', '.join(added)} that "
                f"{latest.version} did not require. Give them defaults, or release "
                f"{latest.version.major + 1}.0.0.",
                path="spec.inputs",
            )
        )
    if removed:
        out.append(
            error(
                "Breaking change in a non-major release",
                f"This {kind} release of {name} removes output(s) {', '.join(removed)} that "
                f"{latest.version} provides. Keep them, or release {latest.version.major + 1}.0.0.",
                path="spec.outputs",
            )
        )
    if new.provides != latest.provides:
        out.append(
            error(
                "Breaking change in a non-major release",
                f"This {kind} release of {name} provides '{new.provides}' instead of "
                f"'{latest.provides}'. Changing the provided type needs {latest.version.major + 1}.0.0.",
                path="spec.provides",
            )
        )
    return out
