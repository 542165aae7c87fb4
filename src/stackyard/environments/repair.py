"""``stackyard env repair``: bring an environment back to what its records say, without files.

Nothing in stackyard runs as a daemon, so nothing restarts a local server that was killed on
its own: the supervisors restart a workload's processes, and ``repair`` (like any deploy,
whose plan starts a stopped server) restarts the rest. It re-converges the environment with
the workloads that are live and the component builds they already use: stopped servers are
started, objects lost with a server are made again, and every workload whose supervisor is
gone is started again. It is an ordinary governed deploy (``deploy`` permission, ``plan``
policies, one lease); run it from cron for unattended healing.
"""

from __future__ import annotations

from stackyard.environments.deploy import DeployResult, Progress, converge
from stackyard.environments.target import Target
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.model.status import EnvironmentStatus
from stackyard.policy.rbac import Action

__all__ = ["repair"]


def repair(
    ws: Workspace, env_name: str, *, progress: Progress | None = None, ready_timeout: float = 60.0
) -> DeployResult:
    """Re-converge ``env_name``'s core and workloads on their current builds; safe to repeat.

    A first pass starts stopped servers; when it changed anything, a second pass observes
    what the servers now hold (objects a restart lost) and makes it again.
    """
    env = ws.environment(env_name)
    with ws.access.act(Action.DEPLOY, env=env_name, detail={"repair": True}) as audit:
        if env.status is not EnvironmentStatus.READY:
            raise InvalidInputError(
                f"Environment '{env_name}' is {env.status}",
                hint=f"Only a ready environment is repaired; 'stackyard env create {env_name}' "
                "resumes one that is being created.",
            )
        result = _pass(ws, env_name, progress, ready_timeout)
        if result.plan is not None and result.plan.has_changes:
            result = _pass(ws, env_name, progress, ready_timeout)
            result.changed = True  # the first pass repaired something, whatever the second did
        audit.update(result.deployment.audit_detail())
        return result


def _pass(
    ws: Workspace, env_name: str, progress: Progress | None, ready_timeout: float
) -> DeployResult:
    # What is live, and the builds it runs, are read under the lock (``Target.repair``).
    env = ws.environment(env_name)
    return converge(
        ws,
        Target(env, {}, set(), repair=True),
        kind="repair",
        progress=progress,
        ready_timeout=ready_timeout,
    )
