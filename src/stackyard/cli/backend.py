"""The one seam between the commands and where they run: ``backend()`` is the local home
(``LocalBackend``, the service functions called as they always were) or a server
(``remote_backend.RemoteBackend``, the same operations over the REST API).

A command calls ``backend().op(...)`` and renders what comes back; both backends return what
the service function returns (the remote one rebuilds it from the server's JSON, and its
``to_json()`` is the server's document as sent), so text and ``--output json`` read the same
in both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stackyard.cli.common import workspace
from stackyard.errors import CancelledError

if TYPE_CHECKING:
    from stackyard.engine.plan import Plan
    from stackyard.environments.cost import CostReport
    from stackyard.environments.deploy import DeployResult
    from stackyard.environments.drift import Adopted, DriftReport
    from stackyard.environments.grants import Change as GrantChange
    from stackyard.environments.grants import Grant, Grants
    from stackyard.environments.lifecycle import DestroyResult
    from stackyard.environments.platform import Change
    from stackyard.environments.promotion import Release
    from stackyard.environments.upgrade import Campaign
    from stackyard.environments.views import (
        DeploymentView,
        Environments,
        EnvironmentView,
        Policies,
        ReleaseView,
    )
    from stackyard.integrations.backstage import Export
    from stackyard.model.environment import Deployment, Environment
    from stackyard.ops.slo import SloSummary
    from stackyard.ops.webhooks import Delivery
    from stackyard.policy.audit import AuditEvent, Verification
    from stackyard.state.driftlog import Scan

Progress = Callable[[str], None]
#: Asked with the plan before an apply (renders it, then confirms); True goes on.
AskPlan = Callable[["Plan"], bool]
#: Asked with an upgrade campaign's plans before it applies (renders, then confirms).
AskCampaign = Callable[["Campaign"], bool]
#: Asked a yes/no question; True goes on.
Ask = Callable[[str], bool]


class Backend(Protocol):
    """The operations the commands run, local or remote."""

    # environments
    def env_create(
        self,
        name: str,
        *,
        type_name: str | None,
        parent: str | None,
        ttl: str | None,
        owner: str | None,
        lock_timeout: str | None,
        progress: Progress,
    ) -> tuple[Environment, Any, bool, float]:
        """As ``LocalBackend.env_create``."""

    def env_list(self) -> Environments:
        """As ``LocalBackend.env_list``."""

    def env_show(self, name: str) -> EnvironmentView:
        """As ``LocalBackend.env_show``."""

    def env_extend(self, name: str, ttl: str) -> tuple[Environment, float]:
        """As ``LocalBackend.env_extend``."""

    def env_destroy(
        self, name: str, *, ask: Ask, lock_timeout: str | None, progress: Progress
    ) -> DestroyResult:
        """As ``LocalBackend.env_destroy``."""

    def env_reap(self, *, progress: Progress) -> dict[str, Any]:
        """As ``LocalBackend.env_reap``."""

    # delivery
    def deploy(
        self,
        env: str,
        *,
        scores: list[str],
        release: str | None,
        plan_only: bool,
        yes: bool,
        ask: AskPlan,
        lock_timeout: str | None,
        progress: Progress,
    ) -> DeployResult:
        """As ``LocalBackend.deploy``."""

    def explain(self, score: str, env: str) -> dict[str, Any]:
        """As ``LocalBackend.explain``."""

    def status(self, env: str) -> dict[str, Any]:
        """As ``LocalBackend.status``."""

    def outputs(self, env: str, workload: str | None, *, reveal: bool) -> dict[str, Any]:
        """As ``LocalBackend.outputs``."""

    def logs(
        self, env: str, workload: str, *, container: str | None, follow: bool, lines: int | None
    ) -> Iterator[str]:
        """As ``LocalBackend.logs``."""

    def deployments(self, env: str) -> list[Deployment]:
        """As ``LocalBackend.deployments``."""

    def deployment(self, env: str, deployment: str) -> DeploymentView:
        """As ``LocalBackend.deployment``."""

    def remove(
        self,
        env: str,
        *,
        workload: str | None,
        resource: str | None,
        ask: Ask,
        lock_timeout: str | None,
        progress: Progress,
    ) -> tuple[str, DeployResult]:
        """As ``LocalBackend.remove``."""

    # releases, promotion and approvals
    def release_create(
        self, scores: list[str], *, env: str | None, images: list[str]
    ) -> tuple[Release, bool]:
        """As ``LocalBackend.release_create``."""

    def releases(self) -> list[Release]:
        """As ``LocalBackend.releases``."""

    def release(self, ident: str) -> ReleaseView:
        """As ``LocalBackend.release``."""

    def promote(
        self,
        release: str,
        to: str,
        *,
        plan_only: bool,
        yes: bool,
        ask: AskPlan,
        lock_timeout: str | None,
        progress: Progress,
    ) -> DeployResult:
        """As ``LocalBackend.promote``."""

    def approve(
        self, deployment: str, *, comment: str, lock_timeout: str | None, progress: Progress
    ) -> DeployResult | DestroyResult:
        """As ``LocalBackend.approve``."""

    def reject(self, deployment: str, *, comment: str) -> Deployment:
        """As ``LocalBackend.reject``."""

    def approvals(self, env: str | None) -> list[dict[str, Any]]:
        """As ``LocalBackend.approvals``."""

    # governance
    def decisions(
        self, *, env: str | None, limit: int, decision_id: str | None
    ) -> list[dict[str, Any]]:
        """As ``LocalBackend.decisions``."""

    def audit(self, *, since: float | None) -> list[AuditEvent]:
        """As ``LocalBackend.audit``."""

    def audit_verify(self) -> Verification:
        """As ``LocalBackend.audit_verify``."""

    def cost(self, *, env: str | None, team: str | None, by: str) -> CostReport:
        """As ``LocalBackend.cost``."""

    def grants(self) -> Grants:
        """As ``LocalBackend.grants``."""

    def grant(self, g: Grant) -> GrantChange:
        """As ``LocalBackend.grant``."""

    def revoke(self, g: Grant) -> GrantChange:
        """As ``LocalBackend.revoke``."""

    def policies(self) -> Policies:
        """As ``LocalBackend.policies``."""

    # platform
    def platform_show(self) -> list[dict[str, Any]]:
        """As ``LocalBackend.platform_show``."""

    def platform_apply(
        self, directory: Path, *, ask: Ask, show: Callable[[list[Change]], None] | None
    ) -> dict[str, Any]:
        """As ``LocalBackend.platform_apply``."""

    # day 2
    def drift(
        self,
        envs: list[str] | None,
        *,
        fix: bool,
        parallelism: int,
        lock_timeout: str | None,
        progress: Progress,
    ) -> DriftReport:
        """As ``LocalBackend.drift``."""

    def drift_history(self, envs: list[str] | None, *, limit: int) -> dict[str, list[Scan]]:
        """As ``LocalBackend.drift_history``."""

    def adopt(
        self, env: str, address: str, *, lock_timeout: str | None, progress: Progress
    ) -> Adopted:
        """As ``LocalBackend.adopt``."""

    def forget(self, env: str, addresses: list[str], *, lock_timeout: str | None) -> int:
        """As ``LocalBackend.forget``."""

    def env_repair(
        self, name: str, *, lock_timeout: str | None, progress: Progress
    ) -> DeployResult:
        """As ``LocalBackend.env_repair``."""

    def upgrade(
        self,
        component: str,
        to: str,
        *,
        envs: list[str],
        env_types: list[str],
        plan_only: bool,
        confirm: AskCampaign | None,
        lock_timeout: str | None,
        progress: Progress,
    ) -> Campaign:
        """As ``LocalBackend.upgrade``."""

    def slo(self, *, env: str | None, component: str | None, window: str) -> list[SloSummary]:
        """As ``LocalBackend.slo``."""

    def slo_probe(self, env: str | None) -> int:
        """As ``LocalBackend.slo_probe``."""

    def adoption(self, name: str | None) -> dict[str, Any]:
        """As ``LocalBackend.adoption``."""

    def catalog_export(self, env: str | None) -> Export:
        """As ``LocalBackend.catalog_export``."""

    # webhooks
    def webhooks(self) -> list[dict[str, Any]]:
        """As ``LocalBackend.webhooks``."""

    def webhook_deliveries(
        self, *, webhook: str | None, status: str | None, limit: int
    ) -> list[Delivery]:
        """As ``LocalBackend.webhook_deliveries``."""

    def webhook_redeliver(self, delivery: str) -> Delivery:
        """As ``LocalBackend.webhook_redeliver``."""

    def webhooks_deliver(self) -> dict[str, Any]:
        """As ``LocalBackend.webhooks_deliver``."""


def backend() -> Backend:
    """The server's API when one is configured (``STACKYARD_URL`` or ``stackyard login``),
    else the local home."""
    from stackyard.cli.remote import target

    found = target()
    if found is None:
        return LocalBackend()
    from stackyard.cli.remote_backend import RemoteBackend

    return RemoteBackend(found)


class LocalBackend:
    """The service functions on the local home, as the commands always called them."""

    # -- environments --------------------------------------------------------------------------

    def env_create(
        self,
        name: str,
        *,
        type_name: str | None,
        parent: str | None,
        ttl: str | None,
        owner: str | None,
        lock_timeout: str | None,
        progress: Progress,
    ) -> tuple[Environment, Any, bool, float]:
        """Create ``name``: the environment, its core's deploy result, whether it was new, and
        the store's clock."""
        from stackyard.environments import lifecycle

        with workspace(lock_timeout=lock_timeout) as ws:
            env, result, created = lifecycle.create(
                ws,
                name,
                type_name=type_name,
                parent=parent,
                ttl_s=ttl_seconds(ttl),
                owner=owner,
                progress=progress,
            )
            return env, result, created, ws.store.now()

    def env_list(self) -> Environments:
        """Every environment."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.environments(ws)

    def env_show(self, name: str) -> EnvironmentView:
        """One environment."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.environment(ws, name)

    def env_extend(self, name: str, ttl: str) -> tuple[Environment, float]:
        """Push the expiry out: the environment and the store's clock."""
        from stackyard.environments import lifecycle

        seconds = ttl_seconds(ttl)
        assert seconds is not None
        with workspace() as ws:
            return lifecycle.extend(ws, name, ttl_s=seconds), ws.store.now()

    def env_destroy(
        self, name: str, *, ask: Ask, lock_timeout: str | None, progress: Progress
    ) -> DestroyResult:
        """Destroy ``name`` once ``ask`` said yes."""
        from stackyard.environments import confirmation, lifecycle

        with workspace(lock_timeout=lock_timeout) as ws:
            if not ask(confirmation.destroy(ws, name).question):
                raise CancelledError("Cancelled: nothing was changed")
            return lifecycle.destroy(ws, name, progress=progress)

    def env_reap(self, *, progress: Progress) -> dict[str, Any]:
        """Destroy the expired environments."""
        from stackyard.environments import lifecycle

        with workspace() as ws:
            return lifecycle.reap(ws, progress=progress)

    # -- delivery ------------------------------------------------------------------------------

    def deploy(
        self,
        env: str,
        *,
        scores: list[str],
        release: str | None,
        plan_only: bool,
        yes: bool,
        ask: AskPlan,
        lock_timeout: str | None,
        progress: Progress,
    ) -> DeployResult:
        """Deploy Score files or a release."""
        from stackyard.environments.deploy import deploy_files
        from stackyard.environments.promotion import deploy_release
        from stackyard.environments.workloads import score_paths

        with workspace(lock_timeout=lock_timeout) as ws:
            if release:
                return deploy_release(
                    ws, release, env, plan_only=plan_only, confirm=ask, progress=progress
                )
            return deploy_files(
                ws,
                score_paths(scores),
                env,
                plan_only=plan_only,
                confirm=ask,
                progress=progress,
            )

    def explain(self, score: str, env: str) -> dict[str, Any]:
        """Candidates and winners of each resource request."""
        from stackyard.environments import inspect
        from stackyard.environments.workloads import score_paths

        with workspace() as ws:
            return inspect.explain(ws, score_paths([score]), env)

    def status(self, env: str) -> dict[str, Any]:
        """Resources, workloads and last deployments."""
        from stackyard.environments import inspect

        with workspace() as ws:
            return inspect.status(ws, env)

    def outputs(self, env: str, workload: str | None, *, reveal: bool) -> dict[str, Any]:
        """Resource outputs, masked unless ``reveal``."""
        from stackyard.environments import inspect

        with workspace() as ws:
            return inspect.outputs(ws, env, workload, reveal=reveal)

    def logs(
        self, env: str, workload: str, *, container: str | None, follow: bool, lines: int | None
    ) -> Iterator[str]:
        """A workload's captured lines."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.logs(ws, env, workload, container=container, follow=follow, lines=lines)

    def deployments(self, env: str) -> list[Deployment]:
        """``env``'s deployments, newest first."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.deployments(ws, env)

    def deployment(self, env: str, deployment: str) -> DeploymentView:
        """One deployment with its events."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.deployment(ws, env, deployment)

    def remove(
        self,
        env: str,
        *,
        workload: str | None,
        resource: str | None,
        ask: Ask,
        lock_timeout: str | None,
        progress: Progress,
    ) -> tuple[str, DeployResult]:
        """Once ``ask`` said yes, take ``workload`` out of ``env`` (or destroy ``resource``,
        which no live workload uses): what was removed, in words, and the removal's result."""
        from stackyard.environments import confirmation, lifecycle

        with workspace(lock_timeout=lock_timeout) as ws:
            asked = confirmation.remove(ws, env, workload=workload, resource=resource)
            if not ask(asked.question):
                raise CancelledError("Cancelled: nothing was changed")
            if resource:
                result = lifecycle.destroy_resource(ws, env, resource, progress=progress)
            else:
                assert workload is not None
                result = lifecycle.remove_workload(ws, env, workload, progress=progress)
            return asked.what, result

    # -- releases, promotion and approvals -----------------------------------------------------

    def release_create(
        self, scores: list[str], *, env: str | None, images: list[str]
    ) -> tuple[Release, bool]:
        """Pin Score files into a release: it and whether it is new."""
        from stackyard.environments import promotion
        from stackyard.environments.workloads import score_paths

        with workspace() as ws:
            return promotion.create_release(
                ws, score_paths(scores), env=env, images=promotion.parse_images(images)
            )

    def releases(self) -> list[Release]:
        """Every release, newest first."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.releases(ws)

    def release(self, ident: str) -> ReleaseView:
        """A release and where it went."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.release(ws, ident)

    def promote(
        self,
        release: str,
        to: str,
        *,
        plan_only: bool,
        yes: bool,
        ask: AskPlan,
        lock_timeout: str | None,
        progress: Progress,
    ) -> DeployResult:
        """Deploy a release to the next stage."""
        from stackyard.environments import promotion

        with workspace(lock_timeout=lock_timeout) as ws:
            return promotion.promote(
                ws, release, to, plan_only=plan_only, confirm=ask, progress=progress
            )

    def approve(
        self, deployment: str, *, comment: str, lock_timeout: str | None, progress: Progress
    ) -> DeployResult | DestroyResult:
        """Approve a parked deployment (applied now)."""
        from stackyard.environments.approvals import approve

        with workspace(lock_timeout=lock_timeout) as ws:
            done: DeployResult | DestroyResult = approve(
                ws, deployment, comment=comment, progress=progress
            )
            return done

    def reject(self, deployment: str, *, comment: str) -> Deployment:
        """Reject a parked deployment."""
        from stackyard.environments.approvals import reject

        with workspace() as ws:
            return reject(ws, deployment, comment=comment)

    def approvals(self, env: str | None) -> list[dict[str, Any]]:
        """Parked deployments."""
        from stackyard.environments.approvals import pending

        with workspace() as ws:
            return pending(ws, env)

    # -- governance ----------------------------------------------------------------------------

    def decisions(
        self, *, env: str | None, limit: int, decision_id: str | None
    ) -> list[dict[str, Any]]:
        """Policy decisions, newest first."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.decisions(ws, env=env, limit=limit, decision_id=decision_id)

    def audit(self, *, since: float | None) -> list[AuditEvent]:
        """Audit events in chain order."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.audit(ws, since=since)

    def audit_verify(self) -> Verification:
        """The audit chain checked."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.audit_verification(ws)

    def cost(self, *, env: str | None, team: str | None, by: str) -> CostReport:
        """Monthly cost."""
        from stackyard.environments.cost import report

        with workspace() as ws:
            return report(ws, env=env, team=team, by=by)

    def grants(self) -> Grants:
        """Every grant."""
        from stackyard.environments import grants

        with workspace() as ws:
            return grants.grants(ws)

    def grant(self, g: Grant) -> GrantChange:
        """Grant a role."""
        from stackyard.environments import grants

        with workspace() as ws:
            return grants.grant(ws, g)

    def revoke(self, g: Grant) -> GrantChange:
        """Revoke a grant."""
        from stackyard.environments import grants

        with workspace() as ws:
            return grants.revoke(ws, g)

    def policies(self) -> Policies:
        """The applied policies."""
        from stackyard.environments import views

        with workspace() as ws:
            return views.policies(ws)

    # -- platform ----------------------------------------------------------------------------

    def platform_show(self) -> list[dict[str, Any]]:
        """The applied platform documents."""
        from stackyard.environments.views import platform_documents

        with workspace() as ws:
            return platform_documents(ws)

    def platform_apply(
        self, directory: Path, *, ask: Ask, show: Callable[[list[Change]], None] | None
    ) -> dict[str, Any]:
        """Apply a folder of platform documents."""
        from stackyard.environments import platform as plat

        with workspace() as ws:
            return plat.apply_dir(ws.platform, ws.access, directory, confirm=ask, show=show)

    # -- day 2 -------------------------------------------------------------------------------

    def drift(
        self,
        envs: list[str] | None,
        *,
        fix: bool,
        parallelism: int,
        lock_timeout: str | None,
        progress: Progress,
    ) -> DriftReport:
        """Scan ``envs`` (None: every one the actor may view); with ``fix``, repair what
        drifted through the governed road and scan again."""
        from stackyard.environments import drift as service

        with workspace(lock_timeout=lock_timeout) as ws:
            if fix:
                return service.fix(ws, envs, parallelism=parallelism, progress=progress)
            return service.scan(ws, envs, parallelism=parallelism)

    def drift_history(self, envs: list[str] | None, *, limit: int) -> dict[str, list[Scan]]:
        """Each environment's past scans (None: every live one the actor may view)."""
        from stackyard.environments.drift import history
        from stackyard.environments.views import environments

        with workspace() as ws:
            names = envs
            if names is None:
                names = [e.name for e in environments(ws).environments if e.status.is_live]
            return {name: history(ws, name, limit=limit) for name in names}

    def adopt(
        self, env: str, address: str, *, lock_timeout: str | None, progress: Progress
    ) -> Adopted:
        """Record an object whose record was lost."""
        from stackyard.environments import drift as service

        with workspace(lock_timeout=lock_timeout) as ws:
            return service.adopt(ws, env, address, progress=progress)

    def forget(self, env: str, addresses: list[str], *, lock_timeout: str | None) -> int:
        """Drop records without touching the objects: the state's new serial."""
        from stackyard.environments import drift as service

        with workspace(lock_timeout=lock_timeout) as ws:
            return service.forget(ws, env, addresses)

    def env_repair(
        self, name: str, *, lock_timeout: str | None, progress: Progress
    ) -> DeployResult:
        """Restart stopped servers and workloads and re-make what they lost."""
        from stackyard.environments.repair import repair

        with workspace(lock_timeout=lock_timeout) as ws:
            return repair(ws, name, progress=progress)

    def upgrade(
        self,
        component: str,
        to: str,
        *,
        envs: list[str],
        env_types: list[str],
        plan_only: bool,
        confirm: AskCampaign | None,
        lock_timeout: str | None,
        progress: Progress,
    ) -> Campaign:
        """Move every instance of ``component`` to the newest build in ``to``."""
        from stackyard.environments import upgrade as service

        with workspace(lock_timeout=lock_timeout) as ws:
            return service.upgrade(
                ws,
                component,
                to,
                envs=envs,
                env_types=env_types,
                plan_only=plan_only,
                confirm=confirm,
                progress=progress,
            )

    def slo(self, *, env: str | None, component: str | None, window: str) -> list[SloSummary]:
        """Availability against the objective over ``window``."""
        from stackyard.ops.slo import summaries
        from stackyard.settings import parse_ttl

        window_s = parse_ttl(window, "--window")
        with workspace() as ws:
            return summaries(ws, env=env, component=component, window_s=window_s)

    def slo_probe(self, env: str | None) -> int:
        """Probe now: the count of observations recorded."""
        from stackyard.ops.slo import observe

        with workspace() as ws:
            return observe(ws, env)

    def adoption(self, name: str | None) -> dict[str, Any]:
        """Who runs which component versions, with the SLO misses."""
        from stackyard.environments.adoption import adoption
        from stackyard.ops.slo import flag_adoption

        with workspace() as ws:
            return flag_adoption(ws, adoption(ws, name).to_json())

    def catalog_export(self, env: str | None) -> Export:
        """The catalog as Backstage entities."""
        from stackyard.integrations import backstage

        with workspace() as ws:
            return backstage.export(ws, env=env)

    # -- webhooks ------------------------------------------------------------------------------

    def webhooks(self) -> list[dict[str, Any]]:
        """The applied webhooks with their last delivery."""
        from stackyard.ops import webhooks

        with workspace() as ws:
            return webhooks.listing(ws)

    def webhook_deliveries(
        self, *, webhook: str | None, status: str | None, limit: int
    ) -> list[Delivery]:
        """Deliveries, newest first."""
        from stackyard.ops import webhooks

        with workspace() as ws:
            return webhooks.deliveries(ws, webhook=webhook, status=status, limit=limit)

    def webhook_redeliver(self, delivery: str) -> Delivery:
        """Make a delivery pending again."""
        from stackyard.ops import webhooks

        with workspace() as ws:
            return webhooks.redeliver(ws, delivery)

    def webhooks_deliver(self) -> dict[str, Any]:
        """Dispatch new events and send the due deliveries now."""
        from stackyard.ops import webhooks

        with workspace() as ws:
            return webhooks.run_now(ws)


def ttl_seconds(text: str | None) -> int | None:
    """``--ttl`` in seconds."""
    from stackyard.errors import InvalidInputError
    from stackyard.model.platform import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"Invalid --ttl: {exc}", hint="Use forms like 30m, 4h, 2d."
        ) from None
