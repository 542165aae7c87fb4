"""Binding matching: which component serves a resource uid in an environment, and why.

Bindings come in *levels*, nearest first: the environment's own, then each ancestor's, then
the environment type's. A binding matches a uid when its type is the uid's type and its
optional class and id equal the uid's. The winner is the most specific match: an exact id
beats a class, a class beats a bare type, and within the same specificity the nearer level
wins. Two bindings with the same selector at one level would tie; ``platform apply``
refuses them, so matching never has to break a tie.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from stackyard.model.ids import ResourceUid
from stackyard.model.platform import Binding


@dataclass(frozen=True, slots=True)
class Level:
    """The bindings of one level, and where they come from (``environment dev``)."""

    source: str
    bindings: tuple[Binding, ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One binding considered for a uid: whether it matched, and why (not)."""

    binding: Binding
    source: str
    rank: int  # 0 for the nearest level
    matched: bool
    reason: str

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "selector": self.binding.selector,
            "component": f"{self.binding.component}@{self.binding.range}",
            "source": self.source,
            "matched": self.matched,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Match:
    """Every candidate for one uid and the winner (None when nothing matched)."""

    uid: ResourceUid
    candidates: tuple[Candidate, ...]
    winner: Candidate | None

    def suggestion(self, levels: Sequence[Level]) -> str | None:
        """A bound type close to the uid's type, for a did-you-mean."""
        types = sorted({b.type for lvl in levels for b in lvl.bindings})
        close = difflib.get_close_matches(self.uid.type, types, n=1, cutoff=0.6)
        return close[0] if close else None


def match(uid: ResourceUid, levels: Sequence[Level]) -> Match:
    """Match ``uid`` against ``levels`` (nearest first)."""
    candidates: list[Candidate] = []
    for rank, level in enumerate(levels):
        for b in level.bindings:
            if b.type != uid.type:
                continue  # other types are not candidates at all
            if b.klass is not None and b.klass != uid.klass:
                why, ok = f"class '{b.klass}' is not the request's class '{uid.klass}'", False
            elif b.id is not None and b.id != uid.id:
                why, ok = f"id '{b.id}' is not the request's id '{uid.id}'", False
            else:
                what = "id" if b.id is not None else "class" if b.klass is not None else "type"
                why, ok = f"matches by {what}", True
            candidates.append(Candidate(b, level.source, rank, ok, why))
    matched = [c for c in candidates if c.matched]
    if not matched:
        return Match(uid, tuple(candidates), None)
    best = max(matched, key=lambda c: (*c.binding.specificity, -c.rank))
    explained = []
    winner = best
    for c in candidates:
        shown = c
        if c is best:
            shown = winner = Candidate(c.binding, c.source, c.rank, True, f"{c.reason} (winner)")
        elif c.matched:
            why = f"{c.reason}, but {_why_lost(c, best)}"
            shown = Candidate(c.binding, c.source, c.rank, True, why)
        explained.append(shown)
    return Match(uid, tuple(explained), winner)


def _why_lost(loser: Candidate, best: Candidate) -> str:
    if best.binding.specificity > loser.binding.specificity:
        return f"'{best.binding.selector}' from {best.source} is more specific"
    return f"'{best.binding.selector}' from {best.source} is nearer"
