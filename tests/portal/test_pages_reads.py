"""The read pages that grew with the data (issue 15's render budget): the audit page shows a
page of events at a time by sequence number, keeps its filters, and still says when the chain
is broken although it verifies only what is new since its last whole check; the cost page's
figures are those of the per-environment reads it replaced; a README is rendered once."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from _apisupport import ADMIN, Live

pytestmark = pytest.mark.integration


def seqs(html: str) -> list[int]:
    """The sequence numbers of the audit page's rows, top to bottom."""
    return [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", html)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return None if found is None else found.group(1).replace("&amp;", "&")


def append(site: Live, n: int, actor: str = "perf-a") -> None:
    from stackyard.environments.workspace import Workspace
    from stackyard.model.status import AuditResult

    with Workspace.open(site.as_user(ADMIN)) as ws:
        for k in range(n):
            ws.governance.append(
                actor=actor if k % 2 == 0 else "perf-b",
                action="perf.test",
                target=f"env:perf{k % 3}",
                result=AuditResult.OK,
                detail={"k": k},
            )


@contextlib.contextmanager
def database(site: Live) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(site.home / "state.db", timeout=30)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def newest(site: Live) -> int:
    with database(site) as db:
        return int(db.execute("SELECT max(seq) FROM audit_events").fetchone()[0])


def test_the_audit_page_pages_by_sequence_and_keeps_its_filters(site: Live) -> None:
    site.token(ADMIN)  # made (and audited) first
    append(site, 230)
    top = newest(site)
    with site.client(ADMIN) as c:
        first = c.get("/audit")
        assert first.status_code == 200
        shown = seqs(first.text)
        assert shown == list(range(top, top - 100, -1))  # the newest 100, newest first
        assert link(first.text, "prev") is None  # nothing newer
        older = link(first.text, "next")
        assert older == f"/audit?before={top - 99}"
        second = c.get(older)
        assert seqs(second.text) == list(range(top - 100, top - 200, -1))
        back = link(second.text, "prev")
        assert back == f"/audit?after={top - 100}"
        assert seqs(c.get(back).text) == shown
        # before the first event: none
        last = c.get("/audit?before=1")
        assert seqs(last.text) == [] and "No events." in last.text
        # filtered: only that actor's events, and the links keep the filter
        mine = c.get("/audit?actor=perf-b&action=perf.test")
        rows = re.findall(
            r"<tr><td>\d+</td><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>", mine.text
        )
        assert len(rows) == 100 and set(rows) == {("perf-b", "perf.test")}
        nxt = link(mine.text, "next")
        assert nxt is not None and nxt.endswith("&actor=perf-b&action=perf.test")
        assert 'value="perf-b"' in mine.text
        assert "of 115 events" in mine.text
        assert c.get("/audit?before=x").status_code == 400


def test_the_audit_page_says_when_the_chain_is_broken(site: Live) -> None:
    append(site, 5)
    with database(site) as db:  # what an attacker with the database file does first
        db.execute("DROP TRIGGER audit_events_no_update")
        db.execute("DROP TRIGGER audit_events_no_delete")
    with site.client(ADMIN) as c:
        assert "<strong>verified</strong>" in c.get("/audit").text  # verified whole, remembered
        append(site, 3)
        page = c.get("/audit").text
        assert "<strong>verified</strong>" in page
        assert re.search(r"The newest [1-9]\d* checked now", page), page[:3000]

        # a new event edited after it was written: the incremental check sees it
        append(site, 2)
        edited = newest(site) - 1
        with database(site) as db:
            (saved,) = db.execute(
                "SELECT detail FROM audit_events WHERE seq=?", (edited,)
            ).fetchone()
            db.execute("UPDATE audit_events SET detail=? WHERE seq=?", ('{"k": 999}', edited))
        page = c.get("/audit").text
        assert "<strong>BROKEN</strong>" in page and f"broken at {edited}:" in page
        assert "the row was edited" in page
        with database(site) as db:
            db.execute("UPDATE audit_events SET detail=? WHERE seq=?", (saved, edited))
        assert "<strong>verified</strong>" in c.get("/audit").text

        # an event deleted from the part verified before: the count shows it at once
        with database(site) as db:
            row = db.execute("SELECT * FROM audit_events WHERE seq=3").fetchone()
            db.execute("DELETE FROM audit_events WHERE seq=3")
        page = c.get("/audit").text
        assert "<strong>BROKEN</strong>" in page and "broken at 4:" in page
        with database(site) as db:
            db.execute(f"INSERT INTO audit_events VALUES ({','.join('?' * len(row))})", row)
        assert "<strong>verified</strong>" in c.get("/audit").text

        # an old event edited in place: the whole check (asked for, or every few minutes)
        with database(site) as db:
            (saved,) = db.execute("SELECT actor FROM audit_events WHERE seq=2").fetchone()
            db.execute("UPDATE audit_events SET actor='someone-else' WHERE seq=2")
        whole = c.get("/audit?verify=full").text
        assert "<strong>BROKEN</strong>" in whole and "broken at 2:" in whole
        assert "<strong>BROKEN</strong>" in c.get("/audit").text  # never remembered as good
        with database(site) as db:
            db.execute("UPDATE audit_events SET actor=? WHERE seq=2", (saved,))
        assert "<strong>verified</strong>" in c.get("/audit?verify=full").text


def _old_shares(ws: Any) -> list[tuple[Any, ...]]:
    """``cost.shares`` as it was: two record reads per environment."""
    from stackyard.policy.cost import split
    from stackyard.policy.rbac import Action

    out = []
    for e in ws.records.environments():
        if not (e.live and ws.access.allowed(Action.VIEW, ws.access.target(e.name))):
            continue
        users: dict[str, list[str]] = {}
        for w in ws.records.workloads(e.name):
            for uid in w.uids:
                users.setdefault(uid, []).append(w.name)
        for uid, rec in sorted(ws.records.instances(e.name).items()):
            monthly = Decimal(rec.monthly_cost or "0")
            owners = sorted(users.get(uid, [])) or ["(core)" if rec.core else "(shared)"]
            for who, part in zip(owners, split(monthly, len(owners)), strict=True):
                out.append((e.name, e.owner, uid, rec.component, who, part, rec.currency or "USD"))
    return out


def test_cost_reads_every_environment_at_once_with_the_same_figures(site: Live) -> None:
    from stackyard.environments.cost import shares
    from stackyard.environments.workspace import Workspace
    from stackyard.model.environment import Environment, InstanceRecord, WorkloadRecord
    from stackyard.model.status import EnvironmentStatus

    names = ["costa", "costb"]
    with Workspace.open(site.as_user(ADMIN)) as ws:
        now = time.time()
        for n, env in enumerate(names):
            made = Environment(
                name=env, type="lite", status=EnvironmentStatus.CREATING, owner=None, created_at=now,
                created_by=ADMIN, expires_at=now + 3600,
            )  # fmt: skip
            ws.records.insert_environment(made)
            ws.records.put_environment(dataclasses.replace(made, status=EnvironmentStatus.READY))

            def inst(uid: str, cost: str | None, core: bool = False, env: str = env) -> Any:
                return InstanceRecord(
                    env, uid, "local-volume@1.0.0", "sha256:" + "0" * 64, core, {}, {}, {},
                    monthly_cost=cost, currency="USD" if cost else None,
                )  # fmt: skip

            ws.records.record_deploy(
                env,
                put_workloads=[
                    WorkloadRecord(env, "web", "seed", {}, ("u1", "u2", "u1")),
                    WorkloadRecord(env, "api", "seed", {}, ("u1",)),
                ],
                put_instances=[
                    inst("u1", f"{n + 1}.01"),
                    inst("u2", "0.33"),
                    inst("u3", "2.50", core=True),
                    inst("u4", None),
                ],
            )
        try:
            got = [
                (s.env, s.team, s.uid, s.component, s.workload, s.monthly, s.currency)
                for s in shares(ws)
            ]
            assert got == _old_shares(ws)
            assert {g[0] for g in got} >= set(names)
            total = sum((g[5] for g in got), Decimal(0))
            with site.client(ADMIN) as c:
                page = c.get("/cost").text
            assert f"Total: <strong>{total:.2f} USD</strong>" in page
            assert ">costa<" in page and ">costb<" in page
        finally:
            for env in names:  # gone from the other tests' pages (the teardown skips them)
                ws.records.forget_environment(env)
                ws.records.set_status(env, EnvironmentStatus.DESTROYING)
                ws.records.set_status(env, EnvironmentStatus.DESTROYED)


def test_a_readme_is_rendered_once_per_build(site: Live) -> None:
    from stackyard.portal import pages

    with site.client(ADMIN) as c:
        first = c.get("/catalog/local-volume")
        assert first.status_code == 200
        cached = dict(pages._READMES)
        assert len(cached) >= 1 and all(k.startswith("sha256:") for k in cached)
        again = c.get("/catalog/local-volume")
        assert again.text.count("README") == first.text.count("README")
        readme = re.search(r'<section aria-labelledby="h-readme".*?</section>', again.text, re.S)
        assert readme is not None and any(str(v) in readme.group(0) for v in cached.values())
        assert dict(pages._READMES) == cached
