"""The audit log's hash chain: each event's hash covers its fields and the previous hash, so
editing, deleting or inserting a row breaks the chain from that row on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "sha256:" + "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what to which target, with what result, and when."""

    seq: int
    at: float
    actor: str
    action: str
    target: str
    result: str  # ok | failed | denied | refused
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "result": self.result,
            "detail": dict(self.detail),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def chain_hash(
    prev_hash: str,
    *,
    seq: int,
    at: float,
    actor: str,
    action: str,
    target: str,
    result: str,
    detail: Mapping[str, Any],
) -> str:
    """The hash of one event given the previous one's."""
    body = json.dumps(
        {
            "seq": seq,
            "at": repr(float(at)),
            "actor": actor,
            "action": action,
            "target": target,
            "result": result,
            "detail": detail,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "sha256:" + hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking the chain."""

    ok: bool
    events: int
    broken_at: int | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "ok": self.ok,
            "events": self.events,
            "broken_at": self.broken_at,
            "reason": self.reason,
        }


def verify(events: Iterable[AuditEvent]) -> Verification:
    """Recompute the chain in sequence order; the first row that does not fit breaks it."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for e in events:
        count += 1
        if e.seq != expected_seq:
            return Verification(
                False,
                count,
                e.seq,
                f"sequence jumps from {expected_seq - 1} to {e.seq}: an event was removed",
            )
        if e.prev_hash != prev:
            return Verification(
                False,
                count,
                e.seq,
                "its previous-hash does not match the event before: the chain was cut or spliced",
            )
        want = chain_hash(
            prev,
            seq=e.seq,
            at=e.at,
            actor=e.actor,
            action=e.action,
            target=e.target,
            result=e.result,
            detail=e.detail,
        )
        if want != e.hash:
            return Verification(
                False, count, e.seq, "its content does not match its hash: the row was edited"
            )
        prev = e.hash
        expected_seq += 1
    return Verification(True, count)
