"""What the cost read model needs of many environments at once, in two queries: each
component instance's cost and currency, and which workloads use it (no output read, no
secret decrypted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from stackyard.state.sql import SqlStateStore
from stackyard.state.tables import instances, workloads

__all__ = ["CostRow", "cost_rows"]

#: Environments per ``IN (...)`` list.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class CostRow:
    """One instance's part of the cost: its monthly cost (decimal text) and currency."""

    env: str
    uid: str
    component: str
    core: bool
    monthly_cost: str | None
    currency: str | None


def cost_rows(
    store: SqlStateStore, envs: Sequence[str]
) -> tuple[dict[str, list[CostRow]], dict[str, dict[str, list[str]]]]:
    """``(env → its instances by uid, env → uid → the names of the workloads listing it)``,
    in the order ``Records.instances`` and ``Records.workloads`` give (a workload listing a
    uid twice is listed twice), for the environments ``envs`` (one read transaction)."""
    rows: dict[str, list[CostRow]] = {e: [] for e in envs}
    users: dict[str, dict[str, list[str]]] = {e: {} for e in envs}
    names = list(dict.fromkeys(envs))
    with store.reading() as conn:
        for i in range(0, len(names), _CHUNK):
            chunk = names[i : i + _CHUNK]
            for r in conn.execute(
                sa.select(
                    instances.c.env,
                    instances.c.uid,
                    instances.c.component,
                    instances.c.core,
                    instances.c.monthly_cost,
                    instances.c.currency,
                )
                .where(instances.c.env.in_(chunk))
                .order_by(instances.c.env, instances.c.uid)
            ):
                rows[r.env].append(
                    CostRow(r.env, r.uid, r.component, bool(r.core), r.monthly_cost, r.currency)
                )
            for w in conn.execute(
                sa.select(workloads.c.env, workloads.c.name, workloads.c.uids)
                .where(workloads.c.env.in_(chunk))
                .order_by(workloads.c.env, workloads.c.name)
            ):
                for uid in w.uids:
                    users[w.env].setdefault(uid, []).append(w.name)
    return rows, users
