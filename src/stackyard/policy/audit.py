"""The audit log's keyed hash chain: each event's HMAC covers its fields and the previous
hash, and a signed checkpoint of the head kept outside the database catches a cut tail.

Events written before the chain was keyed carry a plain ``sha256:`` hash (the *legacy*
scheme). They are still verified, but only as a prefix of the chain: once a keyed event
follows them its HMAC covers their last hash, and no legacy event may come after a keyed one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stackyard.canonical import canonical_json

GENESIS = "sha256:" + "0" * 64
LEGACY = "sha256:"
KEYED = "hmac-sha256:"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what to which target, with what result, and when."""

    seq: int
    at: float
    actor: str
    action: str
    target: str
    result: str  # an ``AuditResult`` when written; read back as stored (see Governance.audit)
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
    key: bytes | None = None,
) -> str:
    """The hash of one event given the previous one's: an HMAC-SHA256 under ``key``, or the
    legacy unkeyed SHA-256 (anyone can recompute it; kept to verify old events) without."""
    body = canonical_json(
        {
            "seq": seq,
            "at": repr(float(at)),
            "actor": actor,
            "action": action,
            "target": target,
            "result": result,
            "detail": detail,
        },
        ascii_only=True,
        default=str,
    )
    message = f"{prev_hash}|{body}".encode()
    if key is None:
        return LEGACY + hashlib.sha256(message).hexdigest()
    return KEYED + hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's head as last signed outside the database: event ``seq`` had ``hash``."""

    seq: int
    hash: str

    def mac(self, key: bytes, *, scope: str = "") -> str:
        """The checkpoint's own HMAC (for the store ``scope``), so it cannot be forged
        without the key either."""
        message = f"checkpoint|{scope}|{self.seq}|{self.hash}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking the chain."""

    ok: bool
    events: int
    broken_at: int | None = None
    reason: str = ""
    checkpoint: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "ok": self.ok,
            "events": self.events,
            "broken_at": self.broken_at,
            "reason": self.reason,
            "checkpoint": self.checkpoint,
        }


def verify(
    events: Iterable[AuditEvent],
    *,
    key: bytes | None = None,
    checkpoint: Checkpoint | None = None,
) -> Verification:
    """Recompute the chain in sequence order; the first row that does not fit breaks it.

    Keyed events are checked with ``key``; legacy events only before the first keyed one.
    Then the ``checkpoint`` (when there is one) must still be in the chain: fewer events
    means the newest were deleted, another hash at its ``seq`` means the chain was rewritten.
    """
    prev = GENESIS
    expected_seq = 1
    count = 0
    keyed = False
    at_checkpoint: str | None = None
    for e in events:
        count += 1
        broken = _check_link(e, expected_seq, prev) or _check_hash(e, prev, key, keyed)
        if broken:
            return Verification(False, count, e.seq, broken, _seq(checkpoint))
        keyed = keyed or e.hash.startswith(KEYED)
        if checkpoint is not None and e.seq == checkpoint.seq:
            at_checkpoint = e.hash
        prev = e.hash
        expected_seq += 1
    if checkpoint is not None:
        if count < checkpoint.seq:
            return Verification(
                False,
                count,
                count + 1,
                f"the log ends at event {count} but the checkpoint kept outside the database "
                f"says {checkpoint.seq} events were written: the newest events were deleted",
                checkpoint.seq,
            )
        if at_checkpoint != checkpoint.hash:
            return Verification(
                False,
                count,
                checkpoint.seq,
                "it is not the event the checkpoint kept outside the database signed: "
                "the chain was rewritten",
                checkpoint.seq,
            )
    return Verification(True, count, checkpoint=_seq(checkpoint))


def _seq(checkpoint: Checkpoint | None) -> int | None:
    return None if checkpoint is None else checkpoint.seq


def _check_link(e: AuditEvent, expected_seq: int, prev: str) -> str:
    if e.seq != expected_seq:
        return f"sequence jumps from {expected_seq - 1} to {e.seq}: an event was removed"
    if e.prev_hash != prev:
        return "its previous-hash does not match the event before: the chain was cut or spliced"
    return ""


def _check_hash(e: AuditEvent, prev: str, key: bytes | None, keyed: bool) -> str:
    if e.hash.startswith(KEYED):
        if key is None:
            return "it is keyed but no audit key was found (audit.key in the stackyard home)"
        use: bytes | None = key
    elif e.hash.startswith(LEGACY) and not keyed:
        use = None
    elif e.hash.startswith(LEGACY):
        return "an unkeyed hash after keyed events: the row was edited and rehashed"
    else:
        return "its hash has an unknown scheme: the row was edited"
    want = chain_hash(
        prev,
        seq=e.seq,
        at=e.at,
        actor=e.actor,
        action=e.action,
        target=e.target,
        result=e.result,
        detail=e.detail,
        key=use,
    )
    if not hmac.compare_digest(want, e.hash):
        return "its content does not match its hash: the row was edited"
    return ""
