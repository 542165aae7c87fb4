"""Approvals and promotion in a real headless Chromium, on a platform with a promotion path
(stage → production) and the example's ``production-approval`` policy:

- an author promotes a release to production from the releases page;
- the author's destructive change to production is parked; the author sees no Approve button
  on it, and their forged POST (with a valid CSRF token) is refused with 403;
- an approver sees it waiting on the home and approvals pages, reads the diff and the policy
  and rule that asked, approves it with a comment, and sees it applied.

Every page is screenshotted (checked not blank) and run through axe's serious and critical
rules, as in ``test_browser``."""

from __future__ import annotations

import dataclasses
import re
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _apisupport import ADMIN, Live, prepare, serving, teardown
from _browsing import snap

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXTRA = textwrap.dedent(
    """\
    ---
    apiVersion: stackyard.dev/v1
    kind: EnvironmentType
    metadata: {{name: production}}
    spec:
      description: Production, local runtime, volumes only.
      runtime: local
      bindings:
        - {{type: volume, component: local-volume@^1}}
    ---
    apiVersion: stackyard.dev/v1
    kind: Environment
    metadata: {{name: {stage}}}
    spec: {{type: lite, owner: team-checkout}}
    ---
    apiVersion: stackyard.dev/v1
    kind: Environment
    metadata: {{name: {prod}}}
    spec: {{type: production, owner: team-checkout}}
    ---
    apiVersion: stackyard.dev/v1
    kind: PromotionPath
    metadata: {{name: default}}
    spec: {{stages: [{stage}, {prod}]}}
    ---
    apiVersion: stackyard.dev/v1
    kind: Policy
    metadata: {{name: production-approval}}
    spec:
      layer: environment-type
      target: production
      stages: [plan, destroy]
      description: Replacing or deleting a resource in production waits for an approver.
      modules: [policies/production-approval.rego]
    """
)

KEEPER = textwrap.dedent(
    """\
    apiVersion: score.dev/v1b1
    metadata: {name: keeper}
    containers:
      main:
        image: none
        command: ["sh", "-c", "sleep 3600"]
        variables:
          DATA_DIR: ${resources.data.path}
    resources:
      data:
        type: volume
    """
)


@dataclasses.dataclass
class Gov:
    live: Live
    stage: str
    prod: str


@pytest.fixture(scope="module")
def gov(portal_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gov]:
    """A server whose platform adds a production type with the approval policy and the path
    ``<env>-stage → <env>-prod``; dev-dana builds (and approves production: so her own change
    is refused for being hers, not for a missing role), appr-alex approves."""
    import os
    import secrets

    from stackyard.api.context import ApiConfig
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir
    from stackyard.environments.workspace import Workspace

    env = f"a{secrets.token_hex(5)}"
    stage, prod = f"{env}-stage", f"{env}-prod"
    home = tmp_path_factory.mktemp("portal-gov") / "home"
    saved = os.environ.pop("STACKYARD_DATABASE_URL", None)
    settings = prepare(home, portal_template, env)
    platform = home.parent / "platform"
    (platform / "policies").mkdir(exist_ok=True)
    shutil.copy(
        EXAMPLES / "platform" / "policies" / "production-approval.rego",
        platform / "policies" / "production-approval.rego",
    )
    with (platform / "platform.yaml").open("a") as f:
        f.write(EXTRA.format(stage=stage, prod=prod))
    with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
        apply_dir(ws.platform, ws.access, platform, confirm=lambda _q: True)
        lifecycle.create(ws, stage)
        lifecycle.create(ws, prod)
    try:
        with serving(settings, worker=True, config=ApiConfig(auth_failures=10_000)) as (
            url,
            logs,
        ):
            live = Live(url, home, settings, env, logs)
            grant(live, "dev-dana", "environment-owner")
            grant(live, "dev-dana", "approver")
            grant(live, "appr-alex", "approver")
            grant(live, "appr-alex", "viewer")
            yield Gov(live, stage, prod)
    finally:
        teardown(settings)
        if saved is not None:
            os.environ["STACKYARD_DATABASE_URL"] = saved


def grant(live: Live, user: str, role: str) -> None:
    from stackyard.environments import grants
    from stackyard.environments.workspace import Workspace

    with Workspace.open(live.as_user(ADMIN)) as ws:
        grants.grant(ws, grants.parse(role, user=user, team=None, env=None, env_type=None))


def sign_in(browser: Any, live: Live, user: str) -> Any:
    """A fresh browser context signed in as ``user`` through the token form."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(live.url + "/signin")
    page.fill("#token", live.token(user))
    page.click("button[type=submit]")
    page.wait_for_url(live.url + "/")
    assert user in page.inner_text("header")
    return page


def wait_job(page: Any) -> str:
    """Wait for the job page's live panel to end; its text."""
    page.wait_for_selector("#job-panel a.button")
    return str(page.inner_text("#job-panel"))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def test_promote_then_an_approver_approves_what_the_author_may_not(
    gov: Gov, browser: Any, artifacts: Path
) -> None:
    from stackyard.environments import lifecycle, promotion
    from stackyard.environments.workspace import Workspace

    live = gov.live
    score = artifacts.parent / "score.yaml"
    score.write_text(KEEPER)
    with Workspace.open(live.as_user("dev-dana")) as ws:
        rel, _ = promotion.create_release(ws, [score], env=gov.stage)
        staged = promotion.deploy_release(ws, rel.id, gov.stage, confirm=lambda _p: True)
        assert staged.deployment.status == "succeeded"

    # -- the author promotes the release to production from the page ------------------------
    dana = sign_in(browser, live, "dev-dana")
    try:
        dana.click("nav >> text=Releases")
        row = dana.locator("tr.release", has_text=rel.short)
        assert gov.stage in row.inner_text()
        snap(dana, artifacts, "releases")
        row.locator("select").select_option(gov.prod)
        row.locator("button[type=submit]").click()
        panel = wait_job(dana)
        assert "succeeded" in panel, panel
        snap(dana, artifacts, "job-promote")
        with live.client("dev-dana") as c:
            promoted = c.get(f"/api/v1/environments/{gov.prod}").json()
            assert "keeper" in promoted["workloads"], promoted

        # -- her destructive change is parked by the production-approval policy -------------
        with Workspace.open(live.as_user("dev-dana")) as ws:
            parked = lifecycle.remove_workload(ws, gov.prod, "keeper")
        dep = parked.deployment.id
        assert parked.deployment.status == "awaiting-approval"

        dana.goto(f"{live.url}/approvals/{dep}")
        snap(dana, artifacts, "approval-own")
        assert dana.locator("button", has_text="Approve").count() == 0
        assert dana.locator("button", has_text="Reject").count() == 0
        assert "it is your own" in dana.inner_text("main")
        assert dep not in dana.goto(live.url + "/").text()  # not waiting for her
    finally:
        dana.context.close()

    # ... and her forged POST, with a valid CSRF token, is refused before any job is queued
    with live.client("dev-dana") as c:
        token = csrf_of(c.get(f"/approvals/{dep}").text)
        jobs_before = c.get("/api/v1/jobs").json()
        forged = c.post(f"/approvals/{dep}/approve", data={"csrf": token, "comment": "mine"})
        assert forged.status_code == 403, forged.text[:1000]
        assert "may not approve" in forged.text
        assert c.get("/api/v1/jobs").json() == jobs_before
        forged = c.post(f"/approvals/{dep}/reject", data={"csrf": token, "comment": "mine"})
        assert forged.status_code == 403, forged.text[:1000]
        shown = c.get(f"/api/v1/environments/{gov.prod}/deployments/{dep}").json()
        assert shown["status"] == "awaiting-approval"

    # -- the approver sees it, reads the diff and the policy, approves, sees it applied ------
    alex = sign_in(browser, live, "appr-alex")
    try:
        waiting = alex.inner_text("main")
        assert dep[:12] in waiting or gov.prod in waiting, waiting
        snap(alex, artifacts, "home-approver")
        alex.click("nav >> text=Approvals")
        row = alex.locator("tr", has_text=gov.prod)
        assert "production-approval" in row.inner_text() and "yes" in row.inner_text()
        snap(alex, artifacts, "approvals")
        row.locator("a").click()
        why = alex.inner_text("section[aria-labelledby=h-why]")
        assert "production-approval" in why and "destructive-change" in why, why
        assert "would be deleted" in why
        diff = alex.inner_text("section[aria-labelledby=h-diff]")
        assert "delete" in diff and "keeper" in diff, diff
        assert alex.locator("section[aria-labelledby=h-diff] del").count() >= 1
        snap(alex, artifacts, "approval")
        alex.fill("#comment-a", "retiring keeper: fine")
        alex.click("button:has-text('Approve')")
        panel = wait_job(alex)
        assert "succeeded" in panel, panel
        snap(alex, artifacts, "job-approve")
        alex.click("#open-env")
        workloads = alex.inner_text("section[aria-labelledby=h-workloads]")
        assert "No workloads deployed" in workloads, workloads
        snap(alex, artifacts, "environment-prod")
        alex.goto(live.url + "/approvals")
        assert "No deployment waits for approval" in alex.inner_text("main")
    finally:
        alex.context.close()
    with live.client(ADMIN) as c:
        done = c.get(f"/api/v1/environments/{gov.prod}/deployments/{dep}").json()
        assert done["status"] == "succeeded", done
    with Workspace.open(live.as_user(ADMIN)) as ws:
        mine = [(e.actor, e.action, e.result) for e in ws.governance.audit()]
        assert ("dev-dana", "approve", "denied") in mine
        assert ("appr-alex", "approve", "ok") in mine
