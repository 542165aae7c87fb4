"""The portal's pages that read: home, an environment (with its graph, logs and cost), a
job's live events, approvals, the catalog, decisions, audit and cost. Each loads what it
shows through the service functions the API calls, as the caller; what the caller may do
next is asked of ``ws.access.allowed`` only to hide what the server would refuse anyway."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from stackyard.errors import InvalidInputError, PermissionDeniedError
from stackyard.policy.rbac import Action
from stackyard.portal import charts, graph, markdown
from stackyard.portal.web import HEADERS, Caller, portal

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

router = APIRouter(include_in_schema=False)

FINAL = frozenset({"succeeded", "failed", "cancelled"})
#: Environments that expire within this many seconds are "expiring soon".
SOON_S = 24 * 3600
LOG_LINES = 40


def _may(ws: Workspace, action: Action, env: str | None = None) -> bool:
    return ws.access.allowed(action, ws.access.target(env))


# -- home --------------------------------------------------------------------------------------


def _home(ws: Workspace) -> dict[str, Any]:
    from stackyard.environments import views
    from stackyard.environments.approvals import pending

    me = ws.access.actor
    teams = set(ws.access.teams())
    try:
        listed = views.environments(ws)
    except PermissionDeniedError:
        return {"listed": False, "mine": [], "expiring": [], "deployments": [], "approvals": []}
    live = [e for e in listed.environments if e.live]
    mine = [e for e in live if e.created_by == me or (e.owner and e.owner in teams)]
    expiring = sorted(
        (e for e in live if e.expires_at and e.expires_at - listed.now < SOON_S),
        key=lambda e: e.expires_at or 0,
    )
    deps: list[dict[str, Any]] = []
    for e in mine[:20]:
        deps.extend(d.to_json() for d in views.deployments(ws, e.name)[:5])
    deps.sort(key=lambda d: d["created_at"], reverse=True)
    waiting = [
        a
        for a in pending(ws)
        if a["actor"] != me and _may(ws, Action.APPROVE, a["env"])  # no self-approval
    ]
    return {
        "listed": True,
        "mine": mine,
        "others": [e for e in live if e not in mine],
        "expiring": expiring,
        "deployments": deps[:10],
        "approvals": waiting,
        "now": listed.now,
        "can_create": _may(ws, Action.ENV_CREATE),
    }


@router.get("/")
async def home(request: Request) -> Response:
    """Home: my environments, recent deployments, approvals waiting for me, expiring soon."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        data = await p.read(caller, _home)
        return p.render(request, "home.html", caller, **data)

    return await p.guarded(request, run)


# -- an environment ----------------------------------------------------------------------------


def _requests(ws: Workspace, env: str) -> dict[str, list[tuple[str, str, str]]]:
    from stackyard.environments.workloads import parse_spec

    out: dict[str, list[tuple[str, str, str]]] = {}
    for w in ws.records.workloads(env):
        spec = parse_spec(w.spec, file=w.name)
        out[w.name] = [(r.name, r.type, str(r.uid)) for r in spec.resources.values()]
    return out


def _environment(ws: Workspace, name: str) -> dict[str, Any]:
    from stackyard.environments import drift, inspect, views
    from stackyard.environments.cost import report

    view = views.environment(ws, name)  # refuses who may not view it
    status = inspect.status(ws, name)
    requests = _requests(ws, name)  # read after the view check above
    g = graph.build(status, requests)
    logs: dict[str, list[str]] = {}
    may_logs = _may(ws, Action.LOGS_READ, name)
    if may_logs:
        for w in sorted(status["workloads"]):
            try:
                lines = views.logs(ws, name, w, lines=LOG_LINES)
                logs[w] = [ln.rstrip("\n") for ln in itertools.islice(lines, LOG_LINES)]
            except InvalidInputError:
                logs[w] = []
    return {
        "env": view.environment,
        "view": view,
        "now": view.now,
        "status": status,
        "outputs": inspect.outputs(ws, name),
        "deployments": [d.to_json() for d in views.deployments(ws, name)[:10]],
        "drift": [scan.to_json() for scan in drift.history(ws, name, limit=5)],
        "cost": report(ws, env=name, by="workload").to_json(),
        "graph": graph.render(g, title=f"Resource graph of {name}"),
        "logs": logs,
        "may": {
            "deploy": _may(ws, Action.DEPLOY, name),
            "extend": _may(ws, Action.ENV_EXTEND, name),
            "destroy": _may(ws, Action.ENV_DESTROY, name),
            "reveal": _may(ws, Action.OUTPUTS_REVEAL, name),
            "logs": may_logs,
        },
    }


@router.get("/environments/{name}")
async def environment(request: Request, name: str) -> Response:
    """An environment: type, owner, family, TTL, resources, workloads, outputs, logs, graph."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        data = await p.call(caller, lambda ws: _environment(ws, name))
        jobs = await p.yard.bounded(lambda: p.yard.jobs.list(env=name, limit=5))
        from stackyard.jobs import admission

        shown = await p.call(caller, lambda ws: [j for j in jobs if admission.visible(ws, j)])
        return p.render(request, "environment.html", caller, jobs=shown, **data)

    return await p.guarded(request, run)


@router.get("/environments/{name}/graph.svg")
async def graph_svg(request: Request, name: str) -> Response:
    """The resource graph alone, as an SVG file."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        def draw(ws: Workspace) -> str:
            from stackyard.environments import inspect

            status = inspect.status(ws, name)
            return str(graph.render(graph.build(status, _requests(ws, name)), title=name))

        svg = await p.call(caller, draw)
        return Response(svg, media_type="image/svg+xml", headers=HEADERS)

    return await p.guarded(request, run)


# -- jobs and their live events ----------------------------------------------------------------


async def _job(request: Request, caller: Caller, job_id: str) -> tuple[Any, list[Any]]:
    from stackyard.jobs import admission

    p = portal(request)
    y = p.yard
    job = await y.bounded(lambda: y.jobs.get(job_id))
    if job is None or not await p.call(caller, lambda ws: admission.visible(ws, job)):
        raise InvalidInputError(f"No job '{job_id[:64]}'", hint="Open the environment's page.")
    events = await y.bounded(lambda: y.jobs.events(job_id))
    return job, events


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    """A job with its events; the panel refreshes itself (htmx) until the job ends."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        job, events = await _job(request, caller, job_id)
        return p.render(
            request, "job.html", caller, job=job, events=events, final=str(job.status) in FINAL
        )

    return await p.guarded(request, run)


@router.get("/jobs/{job_id}/panel")
async def job_panel(request: Request, job_id: str) -> Response:
    """The live part of a job's page (htmx polls it)."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        job, events = await _job(request, caller, job_id)
        return p.render(
            request,
            "_job_panel.html",
            caller,
            job=job,
            events=events,
            final=str(job.status) in FINAL,
        )

    return await p.guarded(request, run, page=False)


# -- approvals ---------------------------------------------------------------------------------


def _approvals(ws: Workspace) -> list[dict[str, Any]]:
    from stackyard.environments.approvals import pending

    me = ws.access.actor
    return [
        {**a, "may_decide": a["actor"] != me and _may(ws, Action.APPROVE, a["env"])}
        for a in pending(ws)
    ]


@router.get("/approvals")
async def approvals(request: Request) -> Response:
    """Deployments parked for approval, with the policies that asked."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        rows = await p.read(caller, _approvals)
        return p.render(request, "approvals.html", caller, approvals=rows)

    return await p.guarded(request, run)


def _approval(ws: Workspace, deployment: str) -> dict[str, Any]:
    from stackyard.environments import views
    from stackyard.jobs import admission

    env = admission.parked_env(ws, deployment)
    shown = views.deployment(ws, env, deployment).to_json()  # refuses who may not view it
    parked = next((a for a in _approvals(ws) if a["id"] == deployment), None)
    return {"deployment": shown, "parked": parked, "env": env}


@router.get("/approvals/{deployment}")
async def approval(request: Request, deployment: str) -> Response:
    """One parked deployment: its plan as a diff, the rules that asked, approve or reject."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        data = await p.read(caller, lambda ws: _approval(ws, deployment))
        return p.render(request, "approval.html", caller, **data)

    return await p.guarded(request, run)


# -- catalog -----------------------------------------------------------------------------------


def _adoption(ws: Workspace, name: str | None = None) -> list[dict[str, Any]] | None:
    """Who runs which version (``adoption.adoption``), as rows of component, version, how it
    stands and where it runs; None when the caller may not see it (no organisation ``view``)."""
    from stackyard.environments.adoption import adoption
    from stackyard.ops.slo import missed

    try:
        report = adoption(ws, name)
    except PermissionDeniedError:
        return None
    misses = {(s.component, s.env, s.target) for found in missed(ws).values() for s in found}
    return [
        {
            **v.to_json(),
            "slo_missed_in": sorted({u.env for u in v.uses if (c.name, u.env, u.uid) in misses}),
            "where": sorted(
                {(u.env, w) for u in v.uses for w in u.workloads}
                | {(u.env, "") for u in v.uses if not u.workloads}
            ),
            "envs": sorted({u.env for u in v.uses}),
        }
        for c in report.components
        for v in c.versions
    ]


@router.get("/catalog")
async def catalog(request: Request) -> Response:
    """The published components: owner, lifecycle, type, SLA, latest version."""
    from stackyard.components.catalog import entries

    p = portal(request)

    def load(ws: Workspace) -> dict[str, Any]:
        return {
            "components": [e.to_json() for e in entries(ws.registry)],
            "adoption": _adoption(ws),
        }

    async def run(caller: Caller) -> Response:
        data = await p.read(caller, load)
        return p.render(request, "catalog.html", caller, **data)

    return await p.guarded(request, run)


#: A build's README rendered, by the digest of the archive it comes from (immutable).
_READMES: OrderedDict[str, Markup] = OrderedDict()
_READMES_MAX = 128
_READMES_LOCK = threading.Lock()


def _readme(digest: str, text: str) -> Markup:
    """``markdown.render(text)``, remembered by ``digest`` (a bounded LRU of the process)."""
    if not digest.startswith("sha256:"):
        return markdown.render(text)
    with _READMES_LOCK:
        found = _READMES.get(digest)
        if found is not None:
            _READMES.move_to_end(digest)
            return found
    html = markdown.render(text)
    with _READMES_LOCK:
        _READMES[digest] = html
        while len(_READMES) > _READMES_MAX:
            _READMES.popitem(last=False)
    return html


@router.get("/catalog/{name}")
async def component(request: Request, name: str, version: str | None = None) -> Response:
    """One component: its README, inputs, outputs, versions, attestation and cost."""
    from stackyard.components.catalog import details
    from stackyard.components.keys import Keyring

    p = portal(request)

    async def run(caller: Caller) -> Response:
        def load(ws: Workspace) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
            shown = details(ws.registry, Keyring(ws.settings.home), name, version)
            return shown, _adoption(ws, name)

        shown, adopted = await p.read(caller, load)
        readme = _readme(str(shown.get("archive_digest") or ""), shown.get("readme") or "")
        return p.render(request, "component.html", caller, c=shown, readme=readme, adoption=adopted)

    return await p.guarded(request, run)


# -- decisions, audit, cost --------------------------------------------------------------------


@router.get("/decisions")
async def decisions(request: Request, env: str | None = None) -> Response:
    """The policy decisions, newest first."""
    from stackyard.environments import views

    p = portal(request)

    async def run(caller: Caller) -> Response:
        rows = await p.read(caller, lambda ws: views.decisions(ws, env=env or None, limit=100))
        return p.render(request, "decisions.html", caller, decisions=rows, env=env or "")

    return await p.guarded(request, run)


#: Audit events per page.
AUDIT_PAGE = 100
_AUDIT_FILTERS = ("actor", "action", "target")


def _seq_param(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        seq = int(value)
    except ValueError:
        raise InvalidInputError(
            f"Invalid audit position '{value[:40]}'", hint="Follow the page's links."
        ) from None
    if seq < 0:
        raise InvalidInputError(f"Invalid audit position '{seq}'", hint="Follow the page's links.")
    return seq


@router.get("/audit")
async def audit(
    request: Request,
    before: str | None = None,
    after: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    verify: str | None = None,
) -> Response:
    """The audit log, newest first, a page at a time (``before``/``after`` a sequence number;
    ``actor``, ``action``, ``target`` filter), and whether its chain verifies (from the head
    the server verified last; ``verify=full`` checks the whole chain now)."""
    from stackyard.environments import views

    p = portal(request)
    filters = {"actor": actor or "", "action": action or "", "target": target or ""}

    async def run(caller: Caller) -> Response:
        older_than, newer_than = _seq_param(before), _seq_param(after)

        def load(ws: Workspace) -> dict[str, Any]:
            page = views.audit_page(
                ws,
                before=older_than,
                after=newer_than if older_than is None else None,
                limit=AUDIT_PAGE,
                **{k: v or None for k, v in filters.items()},
            )
            checked = views.audit_recent_verification(ws, full=verify == "full")
            return {
                "events": [e.to_json() for e in page.events],
                "total": page.total,
                "newer": page.newer,
                "older": page.older,
                "verify": checked.to_json(),
            }

        data = await p.read(caller, load)
        kept = "".join(f"&{k}={quote(v, safe='')}" for k, v in filters.items() if v)
        return p.render(request, "audit.html", caller, filters=filters, kept=kept, **data)

    return await p.guarded(request, run)


@router.get("/cost")
async def cost(request: Request) -> Response:
    """Monthly cost by team, environment and component, with charts."""
    from stackyard.environments.cost import shares

    p = portal(request)

    async def run(caller: Caller) -> Response:
        rows = await p.read(caller, shares)
        currency = rows[0].currency if rows else "USD"
        sums: dict[str, dict[str, Decimal]] = {"team": {}, "env": {}, "component": {}}
        for r in rows:
            for by, key in (
                ("team", r.team or "(none)"),
                ("env", r.env),
                ("component", r.component),
            ):
                sums[by][key] = sums[by].get(key, Decimal(0)) + r.monthly
        total = sum((r.monthly for r in rows), Decimal(0))
        figures = {
            by: charts.bars(
                [(k, f"{v:.2f}") for k, v in sorted(found.items(), key=lambda kv: -kv[1])],
                title=f"Monthly cost by {by}",
                currency=currency,
            )
            for by, found in sums.items()
        }
        tables = {
            by: [(k, f"{v:.2f}") for k, v in sorted(found.items())] for by, found in sums.items()
        }
        return p.render(
            request,
            "cost.html",
            caller,
            figures=figures,
            tables=tables,
            total=f"{total:.2f}",
            currency=currency,
        )

    return await p.guarded(request, run)
