"""The commands' operations over the server's REST API (``docs/api.md``).

Each method calls the route of the service function the local backend calls, and returns
what that function returns, rebuilt from the server's JSON: the text renderers read its
attributes, and its ``to_json()`` is the server's document as sent (``Served``), so
``--output json`` is what the server's service layer produced. Long operations follow the
job's event stream (progress lines) to the job's result. Files named on the command line
(Score files, platform folders) are read here and sent in the request body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote

from stackyard.cli.backend import Ask, AskCampaign, AskPlan, Progress
from stackyard.cli.remote import Target
from stackyard.cli.remote_client import Client
from stackyard.errors import CancelledError, InvalidInputError

if TYPE_CHECKING:
    from stackyard.diagnostics import Diagnostic
    from stackyard.environments.cost import CostReport
    from stackyard.environments.deploy import DeployResult
    from stackyard.environments.drift import Adopted, Drifted, DriftReport, EnvDrift
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

T = TypeVar("T")
#: The largest file sent from the command line (the server refuses bodies past its limit).
MAX_FILE = 512 * 1024


class Served:
    """A result the server sent: ``to_json()`` is its document as given; attributes come from
    the object rebuilt from it (or, without one, from the document's keys)."""

    __slots__ = ("_doc", "_obj")

    def __init__(self, obj: object, doc: Any) -> None:
        self._obj = obj
        self._doc = doc

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the rebuilt object's class
        return type(self._obj) if self._obj is not None else Served

    def __getattr__(self, name: str) -> Any:
        if self._obj is not None:
            return getattr(self._obj, name)
        if isinstance(self._doc, Mapping) and name in self._doc:
            return self._doc[name]
        raise AttributeError(name)

    def to_json(self, **_kwargs: Any) -> Any:
        """The server's document."""
        return self._doc


def served(obj: object, doc: Any, _as: type[T] | None = None) -> T:
    """``obj`` (rebuilt from ``doc``) standing in for the local result type."""
    return cast(T, Served(obj, doc))


def _q(part: str) -> str:
    return quote(part, safe="")


# -- rebuilding the service layer's objects from their JSON -------------------------------------


def environment(doc: Mapping[str, Any]) -> Environment:
    """An environment from its JSON (bindings are left out: no renderer reads them)."""
    from stackyard.model.environment import Environment

    return Environment(
        name=doc["name"],
        type=doc["type"],
        status=doc["status"],
        parent=doc.get("parent"),
        owner=doc.get("owner"),
        declared=bool(doc.get("declared")),
        created_at=doc.get("created_at"),
        created_by=doc.get("created_by"),
        expires_at=doc.get("expires_at"),
        variables=dict(doc.get("variables") or {}),
        labels=dict(doc.get("labels") or {}),
    )


def deployment(doc: Mapping[str, Any]) -> Deployment:
    """A deployment from its JSON."""
    from stackyard.model.environment import Deployment

    return Deployment(
        id=doc["id"],
        env=doc["env"],
        kind=doc["kind"],
        status=doc["status"],
        actor=doc["actor"],
        created_at=doc["created_at"],
        release_id=doc.get("release"),
        finished_at=doc.get("finished_at"),
        workloads=tuple(doc.get("workloads") or ()),
        summary=dict(doc.get("summary") or {}),
        plan=doc.get("plan"),
        error=doc.get("error"),
        decision_id=doc.get("decision"),
    )


def deploy_result(doc: Mapping[str, Any]) -> DeployResult:
    """A deploy's outcome from its JSON (``to_json()`` gives the document back)."""
    from stackyard.diagnostics import Diagnostic, Severity
    from stackyard.engine.plan import Plan
    from stackyard.environments.deploy import DeployResult
    from stackyard.runtime.spec import WorkloadStatus

    result = DeployResult(
        deployment=deployment(doc["deployment"]),
        plan=Plan.from_json(doc["plan"]) if doc.get("plan") else None,
        workloads={n: WorkloadStatus.from_json(s) for n, s in (doc.get("workloads") or {}).items()},
        changed=bool(doc.get("changed")),
        diagnostics=[
            Diagnostic(
                Severity(d.get("severity", "warning")),
                d.get("summary", ""),
                d.get("detail", ""),
                file=d.get("file") or "",
                path=d.get("path") or "",
            )
            for d in doc.get("warnings") or []
        ],
    )
    return served(result, doc)


def destroy_result(doc: Mapping[str, Any]) -> DestroyResult:
    """A destroy's outcome from its JSON."""
    from stackyard.environments.lifecycle import DestroyResult
    from stackyard.model.environment import Deployment

    dep = None
    if doc.get("deployment"):
        dep = Deployment(
            id=doc["deployment"],
            env=doc["env"],
            kind="destroy",
            status=doc["status"],
            actor="",
            created_at=0.0,
        )
    result = DestroyResult(
        env=doc["env"],
        stopped=list(doc.get("stopped_workloads") or []),
        destroyed=int(doc.get("destroyed_resources") or 0),
        deployment=dep,
    )
    return served(result, doc)


def diagnostic(doc: Mapping[str, Any], severity: str = "warning") -> Diagnostic:
    """A diagnostic from its JSON."""
    from stackyard.diagnostics import Diagnostic, Severity

    return Diagnostic(
        Severity(doc.get("severity", severity)),
        str(doc.get("summary", "")),
        str(doc.get("detail", "")),
        file=str(doc.get("file") or ""),
        path=str(doc.get("path") or ""),
        subject=str(doc.get("subject") or ""),
    )


def _drifted(doc: Mapping[str, Any]) -> Drifted:
    from stackyard.environments.drift import Drifted

    return Drifted(
        address=doc["address"],
        kind=doc["kind"],
        status=doc["status"],
        changes=tuple(dict(c) for c in doc.get("changes") or ()),
        detail=str(doc.get("detail") or ""),
    )


def _env_drift(doc: Mapping[str, Any]) -> EnvDrift:
    from stackyard.environments.drift import EnvDrift, Finding

    findings = tuple(
        Finding(
            env=f["env"],
            root=_drifted(f),
            why=f["why"],
            dependents=tuple(_drifted(d) for d in f.get("dependents") or ()),
        )
        for f in doc.get("findings") or ()
    )
    return EnvDrift(doc["env"], int(doc["serial"]), int(doc["resources"]), findings)


def drift_report(doc: Mapping[str, Any]) -> DriftReport:
    """A drift scan's (or fix's) report from its JSON; a fixed environment's repair carries
    what the renderer reads (its deployment's id and status, whether it changed)."""
    from types import SimpleNamespace

    from stackyard.environments.drift import DriftReport

    fixed: dict[str, Any] = {
        env: SimpleNamespace(
            deployment=SimpleNamespace(id=f["deployment"], status=f["status"]),
            changed=bool(f.get("changed")),
        )
        for env, f in (doc.get("fixed") or {}).items()
    }
    report = DriftReport(
        [_env_drift(e) for e in doc.get("environments") or ()],
        fixed,
        [_env_drift(e) for e in doc.get("before") or ()],
    )
    return served(report, doc)


def scan(doc: Mapping[str, Any]) -> Scan:
    """A recorded drift scan from its JSON (``detail``: its masked findings)."""
    from stackyard.state.driftlog import Scan

    found = Scan(
        id=doc["id"],
        env=doc["env"],
        at=float(doc["at"]),
        trigger=doc["trigger"],
        actor=doc["actor"],
        resources=int(doc["resources"]),
        drifted=int(doc["drifted"]),
        findings=list(doc.get("detail") or []),
        error=doc.get("error"),
    )
    return served(found, doc)


def campaign(doc: Mapping[str, Any]) -> Campaign:
    """An upgrade campaign from its JSON; the stopped step gets the ``exit_code`` the server
    sent beside it (which is not part of the campaign's document)."""
    from stackyard.environments.upgrade import Campaign, Move, Step, StepStatus
    from stackyard.resolve.lock import Pin

    data = {k: v for k, v in doc.items() if k != "exit_code"}
    steps = [
        Step(
            env=s["env"],
            env_type=s["env_type"],
            moves=tuple(
                Move(m["uid"], Pin.from_json(m["from"]), Pin.from_json(m["to"]))
                for m in s.get("moves") or ()
            ),
            status=StepStatus(s["status"]),
            changes=list(s.get("changes") or []),
            approvals=list(s.get("approvals") or []),
            deployment=s.get("deployment"),
            error=s.get("error"),
            hint=s.get("hint"),
            diagnostics=[diagnostic(d, "error") for d in s.get("diagnostics") or ()],
        )
        for s in data.get("steps") or ()
    ]
    found = Campaign(
        component=data["component"],
        range=data["range"],
        target=Pin.from_json(data["target"]),
        plan_only=bool(data["plan_only"]),
        steps=steps,
        skipped=list(data.get("skipped") or []),
    )
    stop = found.stopped_at
    if stop is not None:
        code = doc.get("exit_code")
        stop.exit_code = code if isinstance(code, int) else 1
    return served(found, data)


def slo_summary(doc: Mapping[str, Any]) -> SloSummary:
    """One SLO summary from its JSON."""
    from stackyard.ops.slo import SloSummary

    found = SloSummary(
        env=doc["env"],
        target=doc["target"],
        component=doc.get("component"),
        objective=doc.get("objective"),
        availability=doc.get("availability"),
        samples=int(doc.get("samples") or 0),
        good=int(doc.get("good") or 0),
        error_budget_remaining=doc.get("error_budget_remaining"),
        met=doc.get("met"),
    )
    return served(found, doc)


def release(doc: Mapping[str, Any]) -> Release:
    """A release from its JSON (the document is every key but the bookkeeping ones)."""
    from stackyard.environments.promotion import Release

    extra = {"id", "short", "created_at", "created_by", "created", "deployments"}
    return Release(
        id=doc["id"],
        created_at=doc["created_at"],
        created_by=doc["created_by"],
        document={k: v for k, v in doc.items() if k not in extra},
    )


def _read(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_FILE:
            raise InvalidInputError(
                f"{path} is larger than {MAX_FILE // 1024} KiB",
                hint=f"A {what} sent to the server must be smaller.",
            )
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"No such file: {path}", hint=f"Name an existing {what}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"Cannot read {path}: {type(exc).__name__}", hint=f"Name a readable {what}."
        ) from None


def scores_body(scores: list[str]) -> dict[str, str]:
    """Score files by name, read here (the server gets their text)."""
    from stackyard.environments.workloads import score_paths

    out: dict[str, str] = {}
    for path in score_paths(scores):
        if path.name in out:
            raise InvalidInputError(
                f"Two Score files are named '{path.name}'",
                hint="The server takes Score files by plain name: rename one.",
            )
        out[path.name] = _read(path, "Score file")
    return out


def folder_body(directory: Path) -> dict[str, str]:
    """A folder's files by relative path (hidden files left out)."""
    if not directory.is_dir():
        raise InvalidInputError(f"No such folder: {directory}", hint="Name a folder of documents.")
    out: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts):
            out[rel.as_posix()] = _read(path, "platform document")
    return out


class RemoteBackend:
    """The operations of ``backend.Backend`` as calls to a server."""

    def __init__(self, target: Target) -> None:
        self.client = Client(target)

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
        """``POST /environments`` (a job)."""
        body = {"name": name, "type": type_name, "parent": parent, "ttl": ttl, "owner": owner}
        doc = self.client.job("POST", "/api/v1/environments", body, progress=progress)
        core = doc.get("core")
        return (
            served(environment(doc["environment"]), doc["environment"]),
            served(None, core) if core is not None else None,
            bool(doc.get("created")),
            time.time(),
        )

    def env_list(self) -> Environments:
        """``GET /environments``."""
        from stackyard.environments.views import Environments

        rows = self.client.items("/api/v1/environments")
        return served(Environments([environment(r) for r in rows], time.time()), rows)

    def env_show(self, name: str) -> EnvironmentView:
        """``GET /environments/{env}``."""
        from stackyard.environments.views import EnvironmentView

        doc = self.client.get(f"/api/v1/environments/{_q(name)}")
        view = EnvironmentView(
            environment(doc),
            list(doc.get("children") or []),
            list(doc.get("workloads") or []),
            list(doc.get("resources") or []),
            time.time(),
        )
        return served(view, doc)

    def env_extend(self, name: str, ttl: str) -> tuple[Environment, float]:
        """``POST /environments/{env}/extend``."""
        doc = self.client.post(f"/api/v1/environments/{_q(name)}/extend", {"ttl": ttl})
        return served(environment(doc), doc), time.time()

    def env_destroy(
        self, name: str, *, ask: Ask, lock_timeout: str | None, progress: Progress
    ) -> DestroyResult:
        """Ask (with the count of resources the server shows), then ``DELETE`` (a job)."""
        shown = self.client.get(f"/api/v1/environments/{_q(name)}")
        count = len(shown.get("resources") or [])
        if not ask(f"Destroy environment '{shown['name']}' and its {count} resource(s)?"):
            raise CancelledError("Cancelled: nothing was changed")
        doc = self.client.job("DELETE", f"/api/v1/environments/{_q(name)}", progress=progress)
        return destroy_result(doc)

    def env_reap(self, *, progress: Progress) -> dict[str, Any]:
        """``POST /reap`` (a job)."""
        return self.client.job("POST", "/api/v1/reap", {}, progress=progress)

    # -- delivery ------------------------------------------------------------------------------

    def _deploy(
        self,
        path: str,
        body: dict[str, Any],
        *,
        plan_only: bool,
        yes: bool,
        ask: AskPlan,
        progress: Progress,
    ) -> DeployResult:
        """The plan at once with ``plan_only``. Else a job: with ``yes``, ``ask`` only shows
        the plan the job applied (the answer is known, and no extra plan is recorded); without,
        the server plans first and ``ask`` confirms it (as the local apply does when the plan
        has changes) before the job applies it."""
        from stackyard.engine.plan import Plan

        if plan_only:
            return deploy_result(self.client.post(path, {**body, "plan_only": True}))
        if not yes:
            planned = self.client.post(path, {**body, "plan_only": True})
            if planned.get("plan"):
                plan = Plan.from_json(planned["plan"])
                if plan.has_changes and not ask(plan):
                    raise CancelledError("Cancelled: nothing was changed")
        result = deploy_result(self.client.job("POST", path, body, progress=progress))
        if yes and result.plan is not None and result.plan.has_changes:
            ask(result.plan)  # shows it; --yes answered
        return result

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
        """``POST /environments/{env}/deploy``."""
        body: dict[str, Any] = {"release": release} if release else {"scores": scores_body(scores)}
        return self._deploy(
            f"/api/v1/environments/{_q(env)}/deploy",
            body,
            plan_only=plan_only,
            yes=yes,
            ask=ask,
            progress=progress,
        )

    def explain(self, score: str, env: str) -> dict[str, Any]:
        """``POST /environments/{env}/explain``."""
        body = {"scores": scores_body([score])}
        return dict(self.client.post(f"/api/v1/environments/{_q(env)}/explain", body))

    def status(self, env: str) -> dict[str, Any]:
        """``GET /environments/{env}/status``."""
        return dict(self.client.get(f"/api/v1/environments/{_q(env)}/status"))

    def outputs(self, env: str, workload: str | None, *, reveal: bool) -> dict[str, Any]:
        """``GET /environments/{env}/outputs``."""
        return dict(
            self.client.get(
                f"/api/v1/environments/{_q(env)}/outputs",
                workload=workload,
                reveal="true" if reveal else None,
            )
        )

    def logs(
        self, env: str, workload: str, *, container: str | None, follow: bool, lines: int | None
    ) -> Iterator[str]:
        """``GET /environments/{env}/logs/{workload}``; ``--follow`` polls for new lines."""
        path = f"/api/v1/environments/{_q(env)}/logs/{_q(workload)}"
        first = self.client.get(path, container=container, lines=lines or 10_000)["lines"]
        if not follow:
            return iter(list(first))
        return self._follow(path, container, list(first))

    def _follow(self, path: str, container: str | None, seen: list[str]) -> Iterator[str]:
        yield from seen
        while True:
            time.sleep(1.0)
            now = self.client.get(path, container=container, lines=10_000)["lines"]
            yield from _new_lines(seen, now)
            seen = now

    def deployments(self, env: str) -> list[Deployment]:
        """``GET /environments/{env}/deployments``."""
        rows = self.client.items(f"/api/v1/environments/{_q(env)}/deployments")
        return [served(deployment(r), r) for r in rows]

    def deployment(self, env: str, deployment_id: str) -> DeploymentView:
        """``GET /environments/{env}/deployments/{id}``."""
        from stackyard.environments.views import DeploymentView
        from stackyard.model.environment import DeploymentEvent

        doc = self.client.get(f"/api/v1/environments/{_q(env)}/deployments/{_q(deployment_id)}")
        events = [DeploymentEvent(**e) for e in doc.get("events") or []]
        return served(DeploymentView(deployment(doc), events), doc)

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
        """Ask the question ``GET /environments/{env}/remove`` gives, then ``POST`` it (a
        job)."""
        path = f"/api/v1/environments/{_q(env)}/remove"
        named = {"workload": workload} if workload else {"resource": resource}
        asked = self.client.get(path, **named)
        if not ask(str(asked["question"])):
            raise CancelledError("Cancelled: nothing was changed")
        doc = self.client.job("POST", path, named, progress=progress)
        return str(asked["what"]), deploy_result(doc)

    # -- releases, promotion and approvals -----------------------------------------------------

    def release_create(
        self, scores: list[str], *, env: str | None, images: list[str]
    ) -> tuple[Release, bool]:
        """``POST /releases``."""
        from stackyard.environments.promotion import parse_images

        body = {"scores": scores_body(scores), "images": parse_images(images), "env": env}
        doc = self.client.post("/api/v1/releases", body)
        return served(release(doc), {k: v for k, v in doc.items() if k != "created"}), bool(
            doc.get("created")
        )

    def releases(self) -> list[Release]:
        """``GET /releases``."""
        return [served(release(r), r) for r in self.client.items("/api/v1/releases")]

    def release(self, ident: str) -> ReleaseView:
        """``GET /releases/{id}``."""
        from stackyard.environments.views import ReleaseView

        doc = self.client.get(f"/api/v1/releases/{_q(ident)}")
        deps = [deployment(d) for d in doc.get("deployments") or []]
        return served(ReleaseView(release(doc), deps), doc)

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
        """``POST /promote``."""
        return self._deploy(
            "/api/v1/promote",
            {"release": release, "to": to},
            plan_only=plan_only,
            yes=yes,
            ask=ask,
            progress=progress,
        )

    def approve(
        self, deployment: str, *, comment: str, lock_timeout: str | None, progress: Progress
    ) -> DeployResult | DestroyResult:
        """``POST /approvals/{id}/approve`` (a job)."""
        doc = self.client.job(
            "POST",
            f"/api/v1/approvals/{_q(deployment)}/approve",
            {"comment": comment},
            progress=progress,
        )
        return destroy_result(doc) if "stopped_workloads" in doc else deploy_result(doc)

    def reject(self, deployment_id: str, *, comment: str) -> Deployment:
        """``POST /approvals/{id}/reject``."""
        doc = self.client.post(
            f"/api/v1/approvals/{_q(deployment_id)}/reject", {"comment": comment}
        )
        return served(deployment(doc), doc)

    def approvals(self, env: str | None) -> list[dict[str, Any]]:
        """``GET /approvals``."""
        return self.client.items("/api/v1/approvals", env=env)

    # -- governance ----------------------------------------------------------------------------

    def decisions(
        self, *, env: str | None, limit: int, decision_id: str | None
    ) -> list[dict[str, Any]]:
        """``GET /decisions`` (the newest ``limit``)."""
        page = self.client.get("/api/v1/decisions", env=env, id=decision_id, limit=min(limit, 500))
        return list(page["items"])[:limit]

    def audit(self, *, since: float | None) -> list[AuditEvent]:
        """``GET /audit``."""
        from stackyard.policy.audit import AuditEvent

        when = None if since is None else datetime.fromtimestamp(since, UTC).isoformat()
        rows = self.client.items("/api/v1/audit", since=when)
        return [served(AuditEvent(**r), r) for r in rows]

    def audit_verify(self) -> Verification:
        """``GET /audit/verify``."""
        from stackyard.policy.audit import Verification

        doc = self.client.get("/api/v1/audit/verify")
        return served(Verification(**doc), doc)

    def cost(self, *, env: str | None, team: str | None, by: str) -> CostReport:
        """``GET /cost``."""
        from stackyard.environments.cost import CostReport

        doc = self.client.get("/api/v1/cost", env=env, team=team, by=by)
        return served(CostReport(**doc), doc)

    def grants(self) -> Grants:
        """``GET /access/grants``."""
        from stackyard.environments.grants import Grants

        doc = self.client.get("/api/v1/access/grants")
        you = doc.get("you") or {}
        listed = Grants(
            str(you.get("actor", "")),
            list(you.get("teams") or []),
            [_grant(g) for g in doc.get("grants") or []],
        )
        return served(listed, doc)

    def _grant_change(self, path: str, g: Grant, *, revoked: bool) -> GrantChange:
        from stackyard.environments.grants import Change as GrantChange

        kind, _, scope = g.scope.partition(":")
        subject_kind, _, subject = g.subject.partition(":")
        body = {
            "role": g.role.value,
            "user": subject if subject_kind == "user" else None,
            "team": subject if subject_kind == "team" else None,
            "env": scope if kind == "env" else None,
            "type": scope if kind == "type" else None,
        }
        doc = self.client.post(path, body)
        changed = bool(doc.get("removed" if revoked else "added"))
        return served(GrantChange(g, revoked=revoked, changed=changed), doc)

    def grant(self, g: Grant) -> GrantChange:
        """``POST /access/grants``."""
        return self._grant_change("/api/v1/access/grants", g, revoked=False)

    def revoke(self, g: Grant) -> GrantChange:
        """``POST /access/grants/revoke``."""
        return self._grant_change("/api/v1/access/grants/revoke", g, revoked=True)

    def policies(self) -> Policies:
        """``GET /policies``."""
        from stackyard.environments.views import Policies

        doc = self.client.get("/api/v1/policies")
        return served(Policies(doc["revision"], list(doc["policies"])), doc)

    # -- platform and catalog ------------------------------------------------------------------

    def platform_show(self) -> list[dict[str, Any]]:
        """``GET /platform``."""
        return self.client.items("/api/v1/platform")

    def platform_apply(
        self, directory: Path, *, ask: Ask, show: Callable[[list[Change]], None] | None
    ) -> dict[str, Any]:
        """A dry run shows the changes; once ``ask`` said yes, the apply."""
        from stackyard.environments.platform import Change

        files = folder_body(directory)
        preview = dict(
            self.client.post("/api/v1/platform/apply", {"files": files, "dry_run": True})
        )
        changes = [
            Change(c["action"], c["kind"], c["name"], tuple(c.get("fields") or ()))
            for c in preview.get("changes") or []
        ]
        if show is not None:
            show(changes)
        real = [c for c in changes if c.action != "unchanged"]
        if not real or not ask(f"Apply {len(real)} platform change(s)?"):
            return preview
        return dict(self.client.post("/api/v1/platform/apply", {"files": files, "dry_run": False}))

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
        """``GET /drift``, or ``POST /drift/fix`` (a job)."""
        if fix:
            body = {"envs": envs, "parallelism": parallelism}
            return drift_report(
                self.client.job("POST", "/api/v1/drift/fix", body, progress=progress)
            )
        return drift_report(self.client.get("/api/v1/drift", env=envs, parallelism=parallelism))

    def drift_history(self, envs: list[str] | None, *, limit: int) -> dict[str, list[Scan]]:
        """``GET /drift/history``."""
        doc = self.client.get("/api/v1/drift/history", env=envs, limit=limit)
        return {name: [scan(s) for s in scans] for name, scans in doc.items()}

    def adopt(
        self, env: str, address: str, *, lock_timeout: str | None, progress: Progress
    ) -> Adopted:
        """``POST /environments/{env}/adopt`` (a job)."""
        from stackyard.environments.drift import Adopted

        path = f"/api/v1/environments/{_q(env)}/adopt"
        doc = self.client.job("POST", path, {"address": address}, progress=progress)
        return served(Adopted(**doc), doc)

    def forget(self, env: str, addresses: list[str], *, lock_timeout: str | None) -> int:
        """``POST /environments/{env}/forget``: the state's new serial."""
        doc = self.client.post(
            f"/api/v1/environments/{_q(env)}/forget", {"addresses": list(addresses)}
        )
        return int(doc["serial"])

    def env_repair(
        self, name: str, *, lock_timeout: str | None, progress: Progress
    ) -> DeployResult:
        """``POST /environments/{env}/repair`` (a job)."""
        path = f"/api/v1/environments/{_q(name)}/repair"
        return deploy_result(self.client.job("POST", path, None, progress=progress))

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
        """``POST /upgrade``: the plans at once with ``plan_only``; else, once ``confirm``
        agreed to the planned campaign (when it moves anything), a job that applies it."""
        body: dict[str, Any] = {
            "component": component,
            "to": to,
            "envs": list(envs),
            "env_types": list(env_types),
        }
        if plan_only or confirm is not None:
            planned = campaign(self.client.post("/api/v1/upgrade", {**body, "plan_only": True}))
            if plan_only:
                return planned
            if planned.steps and confirm is not None and not confirm(planned):
                raise CancelledError("Cancelled: nothing was changed")
        return campaign(self.client.job("POST", "/api/v1/upgrade", body, progress=progress))

    def slo(self, *, env: str | None, component: str | None, window: str) -> list[SloSummary]:
        """``GET /slo``."""
        doc = self.client.get("/api/v1/slo", env=env, component=component, window=window)
        return [slo_summary(s) for s in doc.get("slos") or []]

    def slo_probe(self, env: str | None) -> int:
        """``POST /slo/probe``."""
        return int(self.client.post("/api/v1/slo/probe", {"env": env})["recorded"])

    def adoption(self, name: str | None) -> dict[str, Any]:
        """``GET /catalog/adoption``."""
        return dict(self.client.get("/api/v1/catalog/adoption", name=name))

    def catalog_export(self, env: str | None) -> Export:
        """``GET /catalog/export?format=backstage``."""
        from stackyard.integrations.backstage import Export

        doc = self.client.get("/api/v1/catalog/export", format="backstage", env=env)
        return served(Export(tuple(doc.get("entities") or ())), doc)

    # -- webhooks ------------------------------------------------------------------------------

    def webhooks(self) -> list[dict[str, Any]]:
        """``GET /webhooks``."""
        return [dict(w) for w in self.client.items("/api/v1/webhooks")]

    def webhook_deliveries(
        self, *, webhook: str | None, status: str | None, limit: int
    ) -> list[Delivery]:
        """``GET /webhooks/deliveries``: the newest ``limit`` (pages followed as needed)."""
        page = self.client.get(
            "/api/v1/webhooks/deliveries",
            webhook=webhook,
            status=status,
            limit=min(limit, 500),
        )
        rows = list(page["items"])
        while page.get("next") and len(rows) < limit:
            page = self.client.call("GET", page["next"]).json()
            rows.extend(page["items"])
        return [served(None, r) for r in rows[:limit]]

    def webhook_redeliver(self, delivery: str) -> Delivery:
        """``POST /webhooks/deliveries/{id}/redeliver``."""
        doc = self.client.post(f"/api/v1/webhooks/deliveries/{_q(delivery)}/redeliver")
        return served(None, doc)

    def webhooks_deliver(self) -> dict[str, Any]:
        """``POST /webhooks/deliver``."""
        return dict(self.client.post("/api/v1/webhooks/deliver"))

    def components(self) -> list[Any]:
        """``GET /components``: entries with the local ones' attributes."""
        return [served(None, r) for r in self.client.items("/api/v1/components")]

    def component(self, name: str, version: str | None) -> dict[str, Any]:
        """``GET /components/{name}``."""
        return dict(self.client.get(f"/api/v1/components/{_q(name)}", version=version))


def _grant(doc: Mapping[str, Any]) -> Grant:
    from stackyard.environments.grants import from_json

    return from_json(doc)


def _new_lines(before: list[str], now: list[str]) -> list[str]:
    """The lines of ``now`` after the longest tail of ``before`` it starts with."""
    for start in range(len(before)):
        tail = before[start:]
        if now[: len(tail)] == tail:
            return now[len(tail) :]
    return now
