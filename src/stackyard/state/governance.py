"""Governance records: role grants, the decision log, the audit log (append-only, hash
chained) and approvals. Every method is one transaction."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stackyard.errors import InvalidInputError, StateError
from stackyard.model.status import (
    AUDIT,
    DECISION,
    VERDICT,
    AuditResult,
    DeploymentStatus,
    Verdict,
)
from stackyard.policy.audit import (
    GENESIS,
    KEYED,
    LEGACY,
    AuditEvent,
    Checkpoint,
    Verification,
    _check_hash,
    _check_link,
    chain_hash,
    verify,
)
from stackyard.policy.decision import Decision
from stackyard.policy.rbac import ORG, Grant, Role
from stackyard.state.audit_seal import AuditSeal
from stackyard.state.sql import SqlStateStore
from stackyard.state.tables import approvals, audit_events, decisions, grants, upsert

__all__ = ["Governance"]

#: ``pg_advisory_xact_lock`` key serialising audit appends on PostgreSQL ("sy-audit").
_AUDIT_LOCK = 0x73792D6175646974
#: ``Governance.verify_recent`` checks the whole chain again when its last whole check is
#: older than this (seconds); in between it checks only the events after the head it verified.
FULL_VERIFY_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class _Verified:
    """A chain head this process verified from genesis, and when (``time.time()``)."""

    seq: int
    hash: str
    full_at: float


#: (home, store, key digest) → the head verified there; bounded, shared by the threads.
_VERIFIED: OrderedDict[tuple[str, str, str], _Verified] = OrderedDict()
_VERIFIED_LOCK = threading.Lock()
_VERIFIED_MAX = 64


@dataclass(frozen=True, slots=True)
class RecentVerification:
    """``Governance.verify_recent``: the outcome, how many of the newest events were checked
    on this call (all of them on a whole check) and when the whole chain was last checked."""

    verification: Verification
    checked: int
    full_at: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (the verification's fields, with ``checked`` and ``full_at``)."""
        return {**self.verification.to_json(), "checked": self.checked, "full_at": self.full_at}


class Governance:
    """Grants, decisions, audit events and approvals in the state database.

    ``home`` holds the audit chain's key and signed head (``AuditSeal``); without it the
    audit log can be read but not appended to or verified.
    """

    def __init__(self, store: SqlStateStore, *, home: Path | None = None) -> None:
        self.store = store
        self.seal = None if home is None else AuditSeal(home, store.url)
        # the grants read on a connection (the read transaction they belong to)
        self._grants: tuple[object, tuple[Grant, ...]] | None = None

    # -- grants ---------------------------------------------------------------------------

    def grants(self) -> list[Grant]:
        """Every grant (read once per shared read transaction: within a thread's
        ``store.read_session`` the rows cannot change, so the RBAC checks of one request
        share one read)."""
        with self.store.reading() as conn:
            seen = self._grants
            if seen is not None and seen[0] is conn:
                return list(seen[1])
            rows = conn.execute(
                sa.select(grants).order_by(grants.c.scope, grants.c.subject, grants.c.role)
            ).all()
            found = [Grant(r.subject, Role(r.role), r.scope) for r in rows]
            self._grants = (conn, tuple(found))
        return found

    def grant(self, grant: Grant, *, by: str) -> bool:
        """Add a grant; False when it already existed."""
        with self.store.writing() as conn:
            ins = upsert(conn, grants).values(
                subject=grant.subject,
                role=grant.role.value,
                scope=grant.scope,
                granted_by=by,
                granted_at=time.time(),
            )
            return bool(
                conn.execute(
                    ins.on_conflict_do_nothing(index_elements=["subject", "role", "scope"])
                ).rowcount
            )

    def revoke(self, grant: Grant) -> bool:
        """Remove a grant; refused when it is the last organisation-wide admin."""
        with self.store.writing() as conn:
            if grant.role is Role.ADMIN and grant.scope == ORG:
                admins = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(grants)
                    .where(grants.c.role == Role.ADMIN.value, grants.c.scope == ORG)
                ).scalar_one()
                exists = conn.execute(
                    sa.select(grants.c.subject).where(
                        grants.c.subject == grant.subject,
                        grants.c.role == grant.role.value,
                        grants.c.scope == grant.scope,
                    )
                ).first()
                if exists is not None and admins <= 1:
                    raise InvalidInputError(
                        f"'{grant.subject}' holds the last admin grant",
                        hint="Grant admin to someone else first; stackyard always keeps at least one admin.",
                    )
            res = conn.execute(
                sa.delete(grants).where(
                    grants.c.subject == grant.subject,
                    grants.c.role == grant.role.value,
                    grants.c.scope == grant.scope,
                )
            )
            return bool(res.rowcount)

    def bootstrap(self, actor: str) -> bool:
        """Make ``actor`` admin when there are no grants at all (a new home); True if done."""
        with self.store.writing() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(grants)).scalar_one():
                return False
            conn.execute(
                sa.insert(grants).values(
                    subject=f"user:{actor}",
                    role=Role.ADMIN.value,
                    scope=ORG,
                    granted_by="bootstrap",
                    granted_at=time.time(),
                )
            )
            return True

    # -- decisions ------------------------------------------------------------------------

    def record_decision(self, d: Decision) -> None:
        """Append a decision to the decision log."""
        with self.store.writing() as conn:
            conn.execute(
                sa.insert(decisions).values(
                    id=d.id,
                    at=d.at,
                    actor=d.actor,
                    stage=d.stage,
                    env=d.env,
                    subject=d.subject,
                    input_hash=d.input_hash,
                    revision=d.revision,
                    outcome=DECISION.parse(d.outcome, subject=f"decision {d.id}"),
                    results={
                        "results": [r.to_json() for r in d.results],
                        "policies": list(d.policies),
                        "allow_self_approval": d.allow_self_approval,
                    },
                )
            )

    def decisions(
        self, *, env: str | None = None, limit: int = 100, decision_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Decisions, newest first."""
        q = sa.select(decisions).order_by(decisions.c.at.desc()).limit(limit)
        if env:
            q = q.where(decisions.c.env == env)
        if decision_id:
            q = q.where(decisions.c.id == decision_id)
        with self.store.reading() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "stage": r.stage,
                "env": r.env,
                "subject": r.subject,
                "input_hash": r.input_hash,
                "revision": r.revision,
                "outcome": DECISION.parse(r.outcome, subject=f"decision {r.id}"),
                "policies": (r.results or {}).get("policies", []),
                "allow_self_approval": (r.results or {}).get("allow_self_approval", False),
                "results": (r.results or {}).get("results", []),
            }
            for r in rows
        ]

    # -- audit ----------------------------------------------------------------------------

    def append(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        result: AuditResult,
        detail: Mapping[str, Any],
    ) -> AuditEvent:
        """Append one event to the chain (serialised, so the chain stays linear), keyed with
        the home's audit key, then move the signed head checkpoint forward to it.

        A chain whose newest event is unkeyed (written before the chain was keyed) is re-keyed
        first: an ``audit.rekey`` event whose HMAC seals the legacy events before it.
        """
        if self.seal is None:
            raise StateError(
                "The audit log cannot be appended to without the stackyard home",
                hint="Open the store through a workspace (the home holds the audit key).",
            )
        result = AUDIT.parse(result, subject=f"audit event {action} {target}")
        key = self.seal.key(create=True)
        assert key is not None  # created when absent
        at = time.time()
        with self.store.writing() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
            last = conn.execute(
                sa.select(audit_events.c.seq, audit_events.c.hash)
                .order_by(audit_events.c.seq.desc())
                .limit(1)
            ).first()
            seq, prev = (1, GENESIS) if last is None else (int(last.seq) + 1, str(last.hash))
            if last is not None and prev.startswith(LEGACY):
                rekey = _insert(
                    conn,
                    key,
                    seq,
                    prev,
                    at=at,
                    actor=actor,
                    action="audit.rekey",
                    target="audit",
                    result=AuditResult.OK,
                    detail={"legacy_events": seq - 1, "scheme": "hmac-sha256"},
                )
                seq, prev = seq + 1, rekey.hash
            event = _insert(
                conn,
                key,
                seq,
                prev,
                at=at,
                actor=actor,
                action=action,
                target=target,
                result=result,
                detail=detail,
            )
        self.seal.advance(Checkpoint(event.seq, event.hash), key)
        return event

    def verify(self) -> Verification:
        """Check the whole chain with the home's audit key and against its signed head."""
        if self.seal is None:
            raise StateError(
                "The audit log cannot be verified without the stackyard home",
                hint="Open the store through a workspace (the home holds the audit key).",
            )
        key = self.seal.key(create=False)
        return verify(self.audit(), key=key, checkpoint=self.seal.checkpoint(key))

    def verify_recent(self, *, full: bool = False) -> RecentVerification:
        """The chain checked as ``verify`` does, but from the head this process last verified
        from genesis: the events after it are checked (their links, HMACs and the signed
        checkpoint), and the verified part is checked not to have lost an event nor changed
        its head. The whole chain is checked again when ``full``, when nothing was verified
        yet, or when the last whole check is older than ``FULL_VERIFY_EVERY_S`` (an edit
        inside the verified part that keeps its row count and head shows then). A broken
        chain is never remembered: it is checked whole on every call.
        """
        if self.seal is None:
            raise StateError(
                "The audit log cannot be verified without the stackyard home",
                hint="Open the store through a workspace (the home holds the audit key).",
            )
        key = self.seal.key(create=False)
        checkpoint = self.seal.checkpoint(key)
        ident = (str(self.seal.home), self.seal.store, _key_id(key))
        with _VERIFIED_LOCK:
            known = _VERIFIED.get(ident)
        now = time.time()
        if not full and known is not None and now - known.full_at <= FULL_VERIFY_EVERY_S:
            recent = self._verify_after(ident, known, key, checkpoint)
            if recent is not None:
                return recent
        events = self.audit()
        result = verify(events, key=key, checkpoint=checkpoint)
        self._remember(
            ident, result, _Verified(events[-1].seq, events[-1].hash, now) if events else None
        )
        return RecentVerification(result, result.events, now)

    def _verify_after(
        self,
        ident: tuple[str, str, str],
        known: _Verified,
        key: bytes | None,
        checkpoint: Checkpoint | None,
    ) -> RecentVerification | None:
        """The events after ``known`` checked, or None when the verified part changed (its
        count or its head): then the whole chain is to be checked."""
        c = audit_events.c
        with self.store.reading() as conn:
            head = conn.execute(sa.select(c.hash).where(c.seq == known.seq)).scalar_one_or_none()
            before = conn.execute(
                sa.select(sa.func.count()).select_from(audit_events).where(c.seq <= known.seq)
            ).scalar_one()
            signed = None
            if checkpoint is not None and checkpoint.seq <= known.seq:
                signed = conn.execute(
                    sa.select(c.hash).where(c.seq == checkpoint.seq)
                ).scalar_one_or_none()
            newer = self._events(conn, sa.select(audit_events).where(c.seq > known.seq))
        if head != known.hash or int(before) != known.seq:
            return None
        count = known.seq
        prev = known.hash
        keyed = known.hash.startswith(KEYED)
        at_checkpoint = signed
        for e in newer:
            count += 1
            broken = _check_link(e, count, prev) or _check_hash(e, prev, key, keyed)
            if broken:
                return None  # checked whole: the answer is the one ``verify`` gives
            keyed = keyed or e.hash.startswith(KEYED)
            if checkpoint is not None and e.seq == checkpoint.seq:
                at_checkpoint = e.hash
            prev = e.hash
        if checkpoint is not None and (count < checkpoint.seq or at_checkpoint != checkpoint.hash):
            return None
        if newer:
            self._remember(
                ident,
                Verification(True, count),
                _Verified(count, prev, known.full_at),
            )
        done = Verification(True, count, checkpoint=None if checkpoint is None else checkpoint.seq)
        return RecentVerification(done, len(newer), known.full_at)

    @staticmethod
    def _remember(
        ident: tuple[str, str, str], result: Verification, head: _Verified | None
    ) -> None:
        with _VERIFIED_LOCK:
            if not result.ok or head is None:
                _VERIFIED.pop(ident, None)
                return
            _VERIFIED[ident] = head
            _VERIFIED.move_to_end(ident)
            while len(_VERIFIED) > _VERIFIED_MAX:
                _VERIFIED.popitem(last=False)

    def audit_page(
        self,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
    ) -> tuple[list[AuditEvent], dict[str, int]]:
        """One page of the audit log, newest first: the ``limit`` events before the sequence
        number ``before`` (the newest when None), or the ``limit`` just after ``after``;
        ``actor``, ``action`` and ``target`` keep the events with exactly that value. With the
        matching events' ``total``, ``newest`` and ``oldest`` sequence numbers (0 when none)."""
        c = audit_events.c
        where = [
            col == value
            for col, value in ((c.actor, actor), (c.action, action), (c.target, target))
            if value
        ]
        q = sa.select(audit_events).where(*where)
        if after is not None:
            q = q.where(c.seq > after).order_by(c.seq).limit(limit)
        else:
            if before is not None:
                q = q.where(c.seq < before)
            q = q.order_by(c.seq.desc()).limit(limit)
        span = sa.select(sa.func.count(), sa.func.max(c.seq), sa.func.min(c.seq)).where(*where)
        with self.store.reading() as conn:
            rows = self._events(conn, q)
            total, newest, oldest = conn.execute(span).one()
        if after is not None:
            rows.reverse()
        return rows, {
            "total": int(total or 0),
            "newest": int(newest or 0),
            "oldest": int(oldest or 0),
        }

    @staticmethod
    def _events(conn: sa.Connection, q: sa.Select[Any]) -> list[AuditEvent]:
        return [
            AuditEvent(
                r.seq, r.at, r.actor, r.action, r.target, r.result, r.detail, r.prev_hash, r.hash
            )
            for r in conn.execute(q)
        ]

    def audit(self, *, since: float | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Audit events in chain order (optionally from ``since``).

        Each event is returned as stored, ``result`` included (not parsed into
        ``AuditResult``): the chain is verified over the stored text, so an edited row shows
        as a broken link instead of stopping the verification.
        """
        q = sa.select(audit_events).order_by(audit_events.c.seq)
        if since is not None:
            q = q.where(audit_events.c.at >= since)
        if limit is not None:
            q = q.limit(limit)
        with self.store.reading() as conn:
            return [
                AuditEvent(
                    r.seq,
                    r.at,
                    r.actor,
                    r.action,
                    r.target,
                    r.result,
                    r.detail,
                    r.prev_hash,
                    r.hash,
                )
                for r in conn.execute(q)
            ]

    # -- approvals ------------------------------------------------------------------------

    def add_approval(
        self, deployment_id: str, *, actor: str, verdict: Verdict, comment: str
    ) -> None:
        """Record an approval or a rejection."""
        verdict = VERDICT.parse(verdict, subject=f"deployment {deployment_id}")
        with self.store.writing() as conn:
            n = conn.execute(
                sa.select(sa.func.count())
                .select_from(approvals)
                .where(approvals.c.deployment_id == deployment_id)
            ).scalar_one()
            conn.execute(
                sa.insert(approvals).values(
                    deployment_id=deployment_id,
                    seq=int(n) + 1,
                    at=time.time(),
                    actor=actor,
                    verdict=verdict,
                    comment=comment,
                )
            )

    def approvals(self, deployment_id: str) -> list[dict[str, Any]]:
        """A deployment's approvals and rejections, in order."""
        with self.store.reading() as conn:
            rows = conn.execute(
                sa.select(approvals)
                .where(approvals.c.deployment_id == deployment_id)
                .order_by(approvals.c.seq)
            ).all()
        return [
            {
                "at": r.at,
                "actor": r.actor,
                "verdict": VERDICT.parse(r.verdict, subject=f"deployment {deployment_id}"),
                "comment": r.comment,
            }
            for r in rows
        ]

    def pending(self, env: str | None = None) -> Sequence[str]:
        """Ids of deployments awaiting approval (newest first)."""
        from stackyard.state.tables import deployments

        q = (
            sa.select(deployments.c.id)
            .where(deployments.c.status == DeploymentStatus.AWAITING_APPROVAL)
            .order_by(deployments.c.created_at.desc())
        )
        if env:
            q = q.where(deployments.c.env == env)
        with self.store.reading() as conn:
            return [r.id for r in conn.execute(q)]


def _key_id(key: bytes | None) -> str:
    """A short digest naming an audit key (never the key)."""
    return "" if key is None else hashlib.sha256(key).hexdigest()[:16]


def _insert(
    conn: sa.Connection,
    key: bytes,
    seq: int,
    prev: str,
    *,
    at: float,
    actor: str,
    action: str,
    target: str,
    result: AuditResult,
    detail: Mapping[str, Any],
) -> AuditEvent:
    """Insert one keyed event after ``prev``."""
    digest = chain_hash(
        prev,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        result=result,
        detail=detail,
        key=key,
    )
    conn.execute(
        sa.insert(audit_events).values(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            target=target,
            result=result,
            detail=dict(detail),
            prev_hash=prev,
            hash=digest,
        )
    )
    return AuditEvent(seq, at, actor, action, target, result, detail, prev, digest)
