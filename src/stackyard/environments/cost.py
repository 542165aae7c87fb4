"""Cost attribution: each instance's declared monthly cost, split among the workloads using it.

An instance no workload uses is charged to ``(core)`` (the environment's core) or
``(shared)``; one several workloads share is split to the cent, the parts adding up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.policy.cost import amount, split
from stackyard.policy.rbac import Action, Target
from stackyard.state.costrows import cost_rows

#: The breakdowns, and the attribution field each groups by.
BREAKDOWNS = {"resource": "uid", "workload": "workload", "environment": "env"}


@dataclass(frozen=True, slots=True)
class Share:
    """One workload's (or ``(core)``'s, ``(shared)``'s) part of one instance's cost."""

    env: str
    team: str | None
    uid: str
    component: str
    workload: str
    monthly: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class CostReport:
    """Monthly totals per breakdown item (environment, and resource or workload)."""

    currency: str
    total: str
    by: str
    items: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (amounts as decimal text, to the cent)."""
        return {"currency": self.currency, "total": self.total, "by": self.by, "items": self.items}


def shares(ws: Workspace, *, env: str | None = None, team: str | None = None) -> list[Share]:
    """Every share in ``env`` (or every live environment, or those ``team`` owns); each
    environment needs ``view``."""
    if env:
        ws.access.authorize(Action.VIEW, env=env)
        envs = [ws.environment(env)]
    else:  # across environments: only those the actor may view (their target as
        # ``access.target`` makes it, from the record just read)
        envs = [
            e
            for e in ws.records.environments()
            if e.live and ws.access.allowed(Action.VIEW, Target(e.name, e.type, e.owner))
        ]
    if team:
        envs = [e for e in envs if e.owner == team]
    out: list[Share] = []
    found, used = cost_rows(ws.store, [e.name for e in envs])  # two queries, not two per env
    for e in envs:
        users = used[e.name]
        for rec in sorted(found[e.name], key=lambda r: r.uid):
            monthly = Decimal(rec.monthly_cost or "0")
            owners = sorted(users.get(rec.uid, [])) or ["(core)" if rec.core else "(shared)"]
            for who, part in zip(owners, split(monthly, len(owners)), strict=True):
                out.append(
                    Share(e.name, e.owner, rec.uid, rec.component, who, part, rec.currency or "USD")
                )
    return out


def check_breakdown(by: str) -> None:
    """``InvalidInputError`` unless ``by`` is a breakdown (resource, workload or environment)."""
    if by not in BREAKDOWNS:
        raise InvalidInputError(
            f"Invalid --by '{by}'", hint="Use resource, workload or environment."
        )


def report(
    ws: Workspace, *, env: str | None = None, team: str | None = None, by: str = "resource"
) -> CostReport:
    """The monthly cost broken down ``by`` resource, workload or environment."""
    check_breakdown(by)
    rows = shares(ws, env=env, team=team)
    field = BREAKDOWNS[by]
    totals: dict[tuple[str, str], Decimal] = {}
    for r in rows:
        k = (r.env, getattr(r, field))
        totals[k] = totals.get(k, Decimal(0)) + r.monthly
    grand = sum((r.monthly for r in rows), Decimal(0))
    currency = sorted({r.currency for r in rows})[0] if rows else "USD"
    items = [{"env": k[0], by: k[1], "monthly": amount(v)} for k, v in sorted(totals.items())]
    return CostReport(currency, amount(grand), by, items)
