"""The portal's forms: sign in and out; create an environment; deploy a Score file (the plan
and the policy results first, then confirm); extend; destroy with a typed confirmation;
reveal outputs; approve or reject a parked deployment.

Each POST is checked for its CSRF token first, then calls the service function the API calls
(or queues the job the API queues, after the same ``admission.admit``): the service layer
refuses what the caller may not do, whatever the page showed.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from stackyard.errors import InvalidInputError
from stackyard.identity import NotAuthenticated
from stackyard.policy.rbac import Action
from stackyard.portal import oidc_signin
from stackyard.portal.session import COOKIE, SESSION_S, SIGNIN_COOKIE
from stackyard.portal.web import Caller, Upload, portal, redirect, safe_next

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

router = APIRouter(include_in_schema=False)

#: The largest Score file a form takes (the edge's body limit applies too).
MAX_SCORE = 256 * 1024


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# -- signing in and out ------------------------------------------------------------------------


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form (a token); a double-submit cookie guards it against login CSRF."""
    p = portal(request)
    nonce = secrets.token_urlsafe(24)
    target = safe_next(next)
    response = p.render(
        request,
        "signin.html",
        None,
        signin_csrf=nonce,
        next=target,
        error="",
        oidc=oidc_signin.offer(request, target),
    )
    response.set_cookie(
        SIGNIN_COOKIE, nonce, httponly=True, samesite="strict", secure=_secure(request), path="/"
    )
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Check the token like any API request; on success, the session cookie."""
    p = portal(request)
    async with request.form() as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    given = fields.get("csrf")
    target = safe_next(fields.get("next") or "/")
    if not nonce or not isinstance(given, str) or not secrets.compare_digest(nonce, given):
        return p.render(
            request,
            "error.html",
            None,
            code=403,
            title="Forbidden",
            detail="The sign-in form is stale: open it again.",
            hint="",
        )
    token = (fields.get("token") or "").strip()
    client = request.client.host if request.client else ""
    try:
        who = await p.yard.bounded(
            lambda: p.yard.authenticator.authenticate(f"Bearer {token}", client=client)
        )
    except NotAuthenticated as exc:
        return p.render(
            request,
            "signin.html",
            None,
            code=429 if getattr(exc, "retry_after", None) else 401,
            signin_csrf=nonce,
            next=target,
            error=exc.message,
            oidc=oidc_signin.offer(request, target),
        )
    del who
    done = redirect(target)
    done.set_cookie(
        COOKIE,
        p.sealer.seal(token),
        max_age=SESSION_S,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    done.delete_cookie(SIGNIN_COOKIE, path="/")
    return done


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the session (the token itself stays valid: revoke it to end it everywhere)."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        await p.form(request, caller)
        response = await oidc_signin.signed_out(request) or redirect("/signin")
        response.delete_cookie(COOKIE, path="/")
        return response

    return await p.guarded(request, run)


# -- creating an environment -------------------------------------------------------------------


def _choices(ws: Workspace) -> dict[str, Any]:
    from stackyard.environments import views

    listed = views.environments(ws)
    return {
        "types": sorted(ws.platform().types.values(), key=lambda t: t.name),
        "parents": [e.name for e in listed.environments if e.live],
        "can_create": ws.access.allowed(Action.ENV_CREATE, ws.access.target()),
    }


@router.get("/new")
async def new_environment(request: Request) -> Response:
    """The form to create an (ephemeral) environment: name, type, parent, TTL."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        data = await p.call(caller, _choices)
        return p.render(request, "new.html", caller, values={}, **data)

    return await p.guarded(request, run)


@router.post("/new")
async def create_environment(request: Request) -> Response:
    """Queue ``env.create`` (as ``POST /api/v1/environments`` does) and show the job."""
    from stackyard.model.platform import parse_duration

    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        name = str(form.get("name") or "").strip()
        ttl = str(form.get("ttl") or "").strip() or None
        args: dict[str, Any] = {
            "name": name,
            "type": str(form.get("type") or "").strip() or None,
            "parent": str(form.get("parent") or "").strip() or None,
            "ttl": ttl,
            "owner": None,
        }
        if ttl is not None:
            try:
                parse_duration(ttl)
            except ValueError as exc:
                raise InvalidInputError(
                    f"Invalid ttl: {exc}", hint="Use forms like 30m, 4h, 2d."
                ) from None
        return await _submit(request, caller, "env.create", name, args)

    return await p.guarded(request, run)


async def _submit(
    request: Request, caller: Caller, kind: str, env: str | None, args: dict[str, Any]
) -> Response:
    """Queue a job after the service layer's admission check; go to its page."""
    from stackyard.jobs import admission

    p = portal(request)
    await p.call(caller, lambda ws: admission.admit(ws, kind, args))
    who = caller.who
    job = await p.yard.bounded(
        lambda: p.yard.jobs.submit(kind, env=env, actor=who.user, teams=tuple(who.teams), args=args)
    )
    return redirect(f"/jobs/{job.id}")


# -- deploying ---------------------------------------------------------------------------------


def _score_text(form: Any) -> str:
    upload = form.get("file")
    if isinstance(upload, Upload):
        data = upload.data
        if len(data) > MAX_SCORE:
            raise InvalidInputError("The Score file is too large", hint="Keep it under 256 KiB.")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(
                "The Score file is not UTF-8 text", hint="Upload a YAML file."
            ) from None
    text = str(form.get("score") or "")
    if not text.strip():
        raise InvalidInputError("Give a Score file", hint="Paste its YAML or upload the file.")
    if len(text) > MAX_SCORE:
        raise InvalidInputError("The Score file is too large", hint="Keep it under 256 KiB.")
    return text


@router.get("/environments/{name}/deploy")
async def deploy_form(request: Request, name: str) -> Response:
    """The form to deploy a Score file (paste or upload)."""
    from stackyard.environments import views

    p = portal(request)

    async def run(caller: Caller) -> Response:
        env = await p.call(caller, lambda ws: views.environment(ws, name).environment)
        return p.render(request, "deploy.html", caller, env=env, score="", planned=None)

    return await p.guarded(request, run)


@router.post("/environments/{name}/deploy/plan")
async def deploy_plan(request: Request, name: str) -> Response:
    """The plan and the policy decision of a Score file, before anything is applied."""
    from stackyard.api.routing import score_files
    from stackyard.environments import views
    from stackyard.environments.deploy import deploy_files

    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        text = _score_text(form)

        def plan(ws: Workspace) -> tuple[Any, dict[str, Any]]:
            env = views.environment(ws, name).environment
            with score_files({"score.yaml": text}) as paths:
                return env, deploy_files(ws, paths, name, plan_only=True).to_json()

        env, planned = await p.call(caller, plan)
        return p.render(request, "deploy.html", caller, env=env, score=text, planned=planned)

    return await p.guarded(request, run)


@router.post("/environments/{name}/deploy")
async def deploy(request: Request, name: str) -> Response:
    """Queue the deploy (as ``POST /api/v1/environments/{env}/deploy`` does)."""
    from stackyard.api.routing import score_files
    from stackyard.environments.workloads import load_score

    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        text = _score_text(form)

        def check(ws: Workspace) -> None:
            with score_files({"score.yaml": text}) as paths:
                for path in paths:
                    load_score(path)  # an invalid file: refused now, not a failed job

        await p.call(caller, check)
        args = {"env": name, "plan_only": False, "scores": {"score.yaml": text}}
        return await _submit(request, caller, "deploy", name, args)

    return await p.guarded(request, run)


# -- extend, destroy, reveal -------------------------------------------------------------------


@router.post("/environments/{name}/extend")
async def extend(request: Request, name: str) -> Response:
    """Push the expiry out (``lifecycle.extend``)."""
    from stackyard.environments import lifecycle
    from stackyard.model.platform import parse_duration

    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        try:
            seconds = parse_duration(str(form.get("ttl") or "").strip())
        except ValueError as exc:
            raise InvalidInputError(f"Invalid ttl: {exc}", hint="Use forms like 4h, 2d.") from None
        await p.call(caller, lambda ws: lifecycle.extend(ws, name, ttl_s=seconds))
        return redirect(f"/environments/{name}")

    return await p.guarded(request, run)


@router.get("/environments/{name}/destroy")
async def destroy_form(request: Request, name: str) -> Response:
    """The destroy form: type the environment's name to confirm."""
    from stackyard.environments import views

    p = portal(request)

    async def run(caller: Caller) -> Response:
        env = await p.call(caller, lambda ws: views.environment(ws, name).environment)
        return p.render(request, "destroy.html", caller, env=env, error="")

    return await p.guarded(request, run)


@router.post("/environments/{name}/destroy")
async def destroy(request: Request, name: str) -> Response:
    """Queue ``env.destroy`` once the typed name matches."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        if str(form.get("confirm") or "") != name:
            raise InvalidInputError(
                "The confirmation does not match",
                hint="Type the environment's name exactly to destroy it.",
            )
        return await _submit(request, caller, "env.destroy", name, {"name": name})

    return await p.guarded(request, run)


@router.post("/environments/{name}/reveal")
async def reveal(request: Request, name: str) -> Response:
    """The outputs with secrets shown (needs ``outputs.reveal``; audited by the service)."""
    from stackyard.environments import inspect, views

    p = portal(request)

    async def run(caller: Caller) -> Response:
        await p.form(request, caller)

        def load(ws: Workspace) -> tuple[Any, dict[str, Any]]:
            env = views.environment(ws, name).environment
            return env, inspect.outputs(ws, name, reveal=True)

        env, outputs = await p.call(caller, load)
        return p.render(request, "revealed.html", caller, env=env, outputs=outputs)

    return await p.guarded(request, run)


# -- approvals ---------------------------------------------------------------------------------


def _may_approve(ws: Workspace, deployment: str) -> str:
    """The environment of the parked ``deployment`` once ``ws``'s actor may approve it: the
    approvals service's own checks (still parked; ``approver`` there; not the author unless
    a policy allows self-approval, the refusal audited), so a refused approval is a 403 now
    rather than a failed job. The job checks again when it runs."""
    from stackyard.environments import approvals
    from stackyard.jobs import admission
    from stackyard.model.status import Verdict

    env = admission.parked_env(ws, deployment)
    dep = approvals._pending(ws, deployment)
    approvals._check_approver(ws, dep, Verdict.APPROVED)
    return env


@router.post("/approvals/{deployment}/approve")
async def approve(request: Request, deployment: str) -> Response:
    """Queue the approval (re-plan, re-evaluate, apply): as ``POST .../approve`` does."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        args = {"deployment": deployment, "reason": str(form.get("comment") or "")[:2000]}
        env = await p.call(caller, lambda ws: _may_approve(ws, deployment))
        return await _submit(request, caller, "approve", env, args)

    return await p.guarded(request, run)


@router.post("/approvals/{deployment}/reject")
async def reject(request: Request, deployment: str) -> Response:
    """Reject the parked deployment with a comment (``approvals.reject``)."""
    from stackyard.environments.approvals import reject as run_reject

    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        comment = str(form.get("comment") or "")[:2000]
        await p.call(caller, lambda ws: run_reject(ws, deployment, comment=comment))
        return redirect("/approvals")

    return await p.guarded(request, run)


# -- releases and promotion --------------------------------------------------------------------


def _releases(ws: Workspace) -> dict[str, Any]:
    """The releases, newest first, each with the stages it succeeded in and the stages it may
    be promoted to next (the service refuses any other, and who may not promote)."""
    from stackyard.environments import views
    from stackyard.model.status import DeploymentStatus

    ws.access.authorize(Action.VIEW)
    paths = list(ws.platform().paths.values())
    stages = [s for p in paths for s in p.stages]
    rows = []
    for rel in sorted(views.releases(ws), key=lambda r: r.created_at, reverse=True)[:100]:
        done = [
            s
            for s in stages
            if ws.records.environment(s) is not None
            and any(
                d.status is DeploymentStatus.SUCCEEDED
                for d in ws.records.deployments(s, release_id=rel.id, limit=50)
            )
        ]
        nexts = sorted(
            {
                p.stages[i + 1]
                for p in paths
                for i, s in enumerate(p.stages[:-1])
                if s in done and p.stages[i + 1] not in done
            }
        )
        rows.append(
            {
                "id": rel.id,
                "short": rel.short,
                "created_at": rel.created_at,
                "created_by": rel.created_by,
                "workloads": rel.workload_names(),
                "done": done,
                "next": [
                    s
                    for s in nexts
                    if ws.records.environment(s) is not None
                    and ws.access.allowed(Action.PROMOTE, ws.access.target(s))
                ],
            }
        )
    return {"releases": rows, "paths": [(p.name, list(p.stages)) for p in paths]}


@router.get("/releases")
async def releases(request: Request) -> Response:
    """The releases, where each succeeded, and a form to promote one to its next stage."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        data = await p.call(caller, _releases)
        return p.render(request, "releases.html", caller, **data)

    return await p.guarded(request, run)


@router.post("/releases/{release}/promote")
async def promote(request: Request, release: str) -> Response:
    """Queue the promotion (as ``POST /api/v1/promotions`` does): the service checks the
    path, the previous stage's success, the role and the policies when it runs."""
    p = portal(request)

    async def run(caller: Caller) -> Response:
        form = await p.form(request, caller)
        to = str(form.get("to") or "").strip()
        if not to:
            raise InvalidInputError("Choose the stage to promote to", hint="Pick a stage.")
        args = {"release": release, "to": to, "plan_only": False}
        return await _submit(request, caller, "promote", to, args)

    return await p.guarded(request, run)
