"""A workload that names a core instance would receive the server's superuser credentials
(issue 11, item 6): only platform roles may deploy one."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from _platform import Stage
from stackyard.errors import InvalidInputError

pytestmark = pytest.mark.integration


def test_a_developer_cannot_deploy_a_workload_that_requests_core(
    stage: Stage, tmp_path: Path
) -> None:
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.workspace import Workspace
    from stackyard.policy.rbac import Grant, Role
    from stackyard.settings import Settings

    env = stage.name("dev")
    score = tmp_path / "sneaky.yaml"
    score.write_text(
        textwrap.dedent(
            """\
            apiVersion: score.dev/v1b1
            metadata: {name: sneaky}
            containers:
              main:
                image: busybox
                command: ["sh", "-c", "echo $ADMIN; sleep 3600"]
                variables:
                  ADMIN: ${resources.server.admin_url}
            resources:
              server: {type: postgres-instance, id: core}
            """
        )
    )
    with stage.ws() as ws:
        ws.governance.grant(Grant("user:dev1", Role.DEVELOPER, f"env:{env}"), by="test")
        ws.governance.grant(Grant("user:plat1", Role.PLATFORM_ENGINEER, "org"), by="test")
    with Workspace.open(Settings.load(actor="dev1")) as dev:
        with pytest.raises(InvalidInputError) as refused:
            deploy_files(dev, [score], env, plan_only=True)
        summaries = [d.summary for d in refused.value.diagnostics]
        assert "Core infrastructure requested by a workload" in summaries
        assert not [w for w in dev.records.workloads(env) if w.name == "sneaky"]
    with Workspace.open(Settings.load(actor="plat1")) as plat:
        planned = deploy_files(plat, [score], env, plan_only=True)
        assert planned.deployment.status == "planned"
