"""What a job needs before it is queued, decided in the service layer: who may submit it and
who may see it.

A job runs as its actor, through the same service functions as the CLI, and those check
access again when it runs. ``admit`` refuses up front what the job would refuse (a missing
environment, release or parked deployment; a role that lacks the action), so a refused
request gets its 4xx at once instead of a failed job. Refusals are audited as the CLI's are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stackyard.errors import InvalidInputError
from stackyard.policy.rbac import Action

if TYPE_CHECKING:
    from stackyard.environments.confirmation import Confirmation
    from stackyard.environments.workspace import Workspace
    from stackyard.jobs.model import Job

__all__ = ["admit", "check_cancel", "parked_env", "removal", "visible"]

#: The action a job of each kind performs: who may submit it may also cancel it.
ACTIONS = {
    "deploy": Action.DEPLOY,
    "env.create": Action.ENV_CREATE,
    "env.destroy": Action.ENV_DESTROY,
    "reap": Action.ENV_REAP,
    "promote": Action.PROMOTE,
    "approve": Action.APPROVE,
    "drift.fix": Action.DEPLOY,
    "adopt": Action.DEPLOY,
    "env.repair": Action.DEPLOY,
    "upgrade": Action.DEPLOY,
    "remove": Action.DEPLOY,
}


def admit(ws: Workspace, kind: str, args: Mapping[str, Any]) -> str | None:
    """Check that ``ws``'s actor may submit a job of ``kind`` with ``args``, and that what it
    names exists; the environment the job runs in (None: organisation-wide)."""
    access = ws.access
    if kind == "deploy":
        env = str(args["env"])
        ws.environment(env)
        access.authorize(Action.DEPLOY, env=env, audit=True)
        return env
    if kind == "env.create":
        name = str(args["name"])
        env_type = args.get("type")
        if env_type is None and args.get("parent"):  # a child takes its parent's type
            env_type = ws.environment(str(args["parent"])).type
        access.authorize(
            Action.ENV_CREATE, env=name, env_type=str(env_type) if env_type else None, audit=True
        )
        return name
    if kind == "env.destroy":
        from stackyard.environments import confirmation

        name = str(args["name"])
        confirmation.destroy(ws, name)  # refuses what the destroy would refuse
        access.authorize(Action.ENV_DESTROY, env=name, audit=True)
        return name
    if kind == "reap":
        access.authorize(Action.ENV_REAP, audit=True)
        return None
    if kind == "promote":
        from stackyard.environments import promotion

        to = str(args["to"])
        promotion.get_release(ws, str(args["release"]))
        ws.environment(to)
        access.authorize(Action.PROMOTE, env=to, audit=True)
        return to
    if kind == "approve":
        env = parked_env(ws, str(args["deployment"]))
        access.authorize(Action.APPROVE, env=env, audit=True)
        return env
    if kind in ("drift.fix", "upgrade"):
        # A repair and an upgrade step are deploys: each named environment is checked now
        # (every other one, when the job reaches it).
        if kind == "upgrade":
            from stackyard.environments import upgrade

            if args.get("envs") and args.get("env_types"):
                raise InvalidInputError(
                    "Give --env or --env-type, not both",
                    hint="stackyard upgrade NAME --to RANGE --env-type production",
                )
            upgrade.newest(ws, str(args["component"]), str(args["to"]))
        names = [str(e) for e in args.get("envs") or ()]
        for name in names:
            ws.environment(name)
            access.authorize(Action.DEPLOY, env=name, audit=True)
        return names[0] if kind == "drift.fix" and len(names) == 1 else None
    if kind in ("adopt", "env.repair", "remove"):
        env = str(args["name" if kind == "env.repair" else "env"])
        ws.environment(env)
        access.authorize(Action.DEPLOY, env=env, audit=True)
        return env
    raise InvalidInputError(f"Unknown job kind '{kind[:40]}'")


def removal(ws: Workspace, env: str, *, workload: str | None, resource: str | None) -> Confirmation:
    """The question a client asks before it submits a ``remove`` job (the CLI's, computed
    here): for whoever may view ``env``."""
    from stackyard.environments import confirmation

    if bool(workload) == bool(resource):
        raise InvalidInputError(
            "Give a workload or --resource UID, not both or neither",
            hint="stackyard remove hello --env dev",
        )
    asked = confirmation.remove(ws, env, workload=workload, resource=resource)
    ws.access.authorize(Action.VIEW, env=env)
    return asked


def parked_env(ws: Workspace, deployment: str) -> str:
    """The environment of deployment ``deployment`` (``No deployment`` when there is none)."""
    dep = ws.records.deployment(deployment)
    if dep is None:
        raise InvalidInputError(
            f"No deployment '{deployment[:64]}'",
            hint="'stackyard approvals' (GET /api/v1/approvals) lists the parked ones.",
        )
    return dep.env


def visible(ws: Workspace, job: Job) -> bool:
    """Whether ``ws``'s actor may see ``job``: their own, or one in an environment they may
    view (a job of no environment: an organisation-wide ``view``)."""
    if job.actor == ws.access.actor:
        return True
    return ws.access.allowed(Action.VIEW, ws.access.target(job.env))


def check_cancel(ws: Workspace, job: Job) -> None:
    """Refuse (``PermissionDeniedError``, audited) unless ``ws``'s actor submitted ``job`` or
    may perform its action where it runs: seeing a job is not enough to cancel it."""
    if job.actor == ws.access.actor:
        return
    action = ACTIONS.get(job.kind)
    if action is None:
        raise InvalidInputError(f"Unknown job kind '{job.kind[:40]}'")
    ws.access.authorize(action, env=job.env, audit=True)
