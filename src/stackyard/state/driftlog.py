"""The history of drift scans (``drift_scans``): one row per scan of one environment,
scheduled (``stackyard.ops.driftscan``) or asked for (``stackyard drift``), with what it found
as the masked JSON of its findings. ``status`` shows an environment's last scan."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackyard.state.tables import drift_scans

if TYPE_CHECKING:
    from stackyard.state.sql import SqlStateStore

__all__ = ["KEEP", "Scan", "history", "last", "record"]

#: Scans kept per environment (older ones are dropped when a new one is recorded).
KEEP = 200


@dataclass(frozen=True, slots=True)
class Scan:
    """One recorded scan of one environment."""

    id: str
    env: str
    at: float
    trigger: str  # schedule | manual
    actor: str
    resources: int
    drifted: int
    findings: list[dict[str, Any]]
    error: str | None = None

    def to_json(self, *, with_findings: bool = True) -> dict[str, Any]:
        """A JSON-ready form (findings are already masked)."""
        out: dict[str, Any] = {
            "id": self.id,
            "env": self.env,
            "at": self.at,
            "trigger": self.trigger,
            "actor": self.actor,
            "resources": self.resources,
            "drifted": self.drifted,
            "findings": len(self.findings),
            "error": self.error,
        }
        if with_findings:
            out["detail"] = self.findings
        return out


def record(
    store: SqlStateStore,
    *,
    env: str,
    trigger: str,
    actor: str,
    resources: int = 0,
    drifted: int = 0,
    findings: list[dict[str, Any]] | None = None,
    error: str | None = None,
    at: float | None = None,
) -> Scan:
    """Record one scan: its counts and masked findings, or the ``error`` it failed with."""
    scan = Scan(
        id=f"ds-{secrets.token_hex(6)}",
        env=env,
        at=time.time() if at is None else at,
        trigger=trigger,
        actor=actor,
        resources=resources,
        drifted=drifted,
        findings=list(findings or []),
        error=error,
    )
    with store.writing() as conn:
        conn.execute(
            sa.insert(drift_scans).values(
                id=scan.id,
                env=scan.env,
                at=scan.at,
                trigger=scan.trigger,
                actor=scan.actor,
                resources=scan.resources,
                drifted=scan.drifted,
                findings=scan.findings,
                error=scan.error,
            )
        )
        keep = (
            sa.select(drift_scans.c.id)
            .where(drift_scans.c.env == env)
            .order_by(drift_scans.c.at.desc())
            .limit(KEEP)
        )
        conn.execute(
            sa.delete(drift_scans).where(
                drift_scans.c.env == env, drift_scans.c.id.not_in(keep.scalar_subquery())
            )
        )
    return scan


def _row(r: Any) -> Scan:
    return Scan(
        id=str(r["id"]),
        env=str(r["env"]),
        at=float(r["at"]),
        trigger=str(r["trigger"]),
        actor=str(r["actor"]),
        resources=int(r["resources"]),
        drifted=int(r["drifted"]),
        findings=list(r["findings"] or []),
        error=r["error"],
    )


def history(store: SqlStateStore, env: str, *, limit: int = 20) -> list[Scan]:
    """``env``'s scans, newest first."""
    query = (
        sa.select(drift_scans)
        .where(drift_scans.c.env == env)
        .order_by(drift_scans.c.at.desc())
        .limit(limit)
    )
    with store.reading() as conn:
        return [_row(r) for r in conn.execute(query).mappings()]


def last(store: SqlStateStore, env: str) -> Scan | None:
    """``env``'s newest scan, or None."""
    found = history(store, env, limit=1)
    return found[0] if found else None
