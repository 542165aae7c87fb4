"""Fixtures for environment tests: a home with the library published, platform configs bound
to the machine's services (or embedded ones), and teardown that destroys every environment."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

__all__ = ["EXAMPLES", "Stage", "library_home", "stage", "write_platform"]


@pytest.fixture(scope="session")
def library_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the built-in library published (done once; each test copies it)."""
    import os

    from stackyard.service import init_home
    from stackyard.settings import Settings

    home = tmp_path_factory.mktemp("library-home") / "home"
    previous = os.environ.get("STACKYARD_HOME")
    os.environ["STACKYARD_HOME"] = str(home)
    try:
        init_home(Settings.load(home=home, environ={}))
    finally:
        if previous is None:
            os.environ.pop("STACKYARD_HOME", None)
        else:
            os.environ["STACKYARD_HOME"] = previous
    return home


@pytest.fixture
def library_home(home: Path, library_template: Path) -> Path:
    """The test's ``home`` with the library already published."""
    shutil.rmtree(home)
    shutil.copytree(library_template, home)
    return home


def _binding_params(pg_url: str, redis_url: str) -> tuple[str, str]:
    pg, rd = urlparse(pg_url), urlparse(redis_url)
    pg_params = (
        f"{{host: '{pg.hostname}', port: {pg.port or 5432}, username: '{pg.username or 'postgres'}', "
        f"password: '{pg.password or ''}', database: '{(pg.path or '/postgres').lstrip('/') or 'postgres'}'}}"
    )
    rd_params = f"{{host: '{rd.hostname}', port: {rd.port or 6379}, username: '{rd.username or 'default'}', password: '{rd.password or ''}'}}"
    return pg_params, rd_params


def write_platform(
    directory: Path,
    prefix: str,
    *,
    pg_url: str,
    redis_url: str,
    extra: str = "",
    policies: bool = False,
) -> Path:
    """The example platform, with environments ``<prefix>-dev|-staging|-prod`` whose core
    instances are the given (real) servers, on the path dev → staging → prod."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("environment-types.yaml", "teams.yaml"):
        shutil.copy(EXAMPLES / "platform" / name, directory / name)
    if policies:  # the example policies, as quickstart applies them
        shutil.copy(EXAMPLES / "platform" / "policies.yaml", directory / "policies.yaml")
        shutil.copytree(EXAMPLES / "platform" / "policies", directory / "policies")
    pg_params, rd_params = _binding_params(pg_url, redis_url)
    envs = []
    for stage, type_ in (("dev", "development"), ("staging", "staging"), ("prod", "production")):
        envs.append(
            textwrap.dedent(
                f"""\
                apiVersion: stackyard.dev/v1
                kind: Environment
                metadata: {{name: {prefix}-{stage}}}
                spec:
                  type: {type_}
                  owner: team-checkout
                  bindings:
                    - {{type: postgres-instance, component: postgres-external@^1, params: {pg_params}}}
                    - {{type: redis-instance, component: redis-external@^1, params: {rd_params}}}
                """
            )
        )
    envs.append(
        textwrap.dedent(
            f"""\
            apiVersion: stackyard.dev/v1
            kind: PromotionPath
            metadata: {{name: default}}
            spec: {{stages: [{prefix}-dev, {prefix}-staging, {prefix}-prod]}}
            """
        )
    )
    (directory / "environments.yaml").write_text("---\n".join(envs) + extra)
    return directory


@dataclass
class Stage:
    """A platform applied in a fresh home, with helpers; destroys everything at teardown."""

    home: Path
    prefix: str
    platform_dir: Path

    def ws(self):  # type: ignore[no-untyped-def]
        from stackyard.environments.workspace import Workspace
        from stackyard.settings import Settings

        return Workspace.open(Settings.load())

    def name(self, stage: str) -> str:
        return f"{self.prefix}-{stage}"

    def teardown(self) -> None:
        from stackyard.environments import lifecycle

        with self.ws() as ws:
            for _ in range(3):
                live = [
                    e
                    for e in ws.records.environments()
                    if e.status not in ("declared", "destroyed")
                ]
                if not live:
                    break
                parents = {e.parent for e in live}
                for env in live:
                    if env.name in parents:
                        continue
                    try:
                        done = lifecycle.destroy(ws, env.name)
                        if (
                            done.deployment is not None
                            and done.deployment.status == "awaiting-approval"
                        ):
                            self._approve(done.deployment.id, env.name)
                    except Exception as exc:  # report but keep tearing down
                        print(f"teardown: destroy {env.name} failed: {exc}")

    def _approve(self, deployment_id: str, env: str) -> None:
        """A production destroy waits for an approver: a teardown approver approves it."""
        from stackyard.environments.approvals import approve
        from stackyard.environments.workspace import Workspace
        from stackyard.policy.rbac import Grant, Role
        from stackyard.settings import Settings

        with self.ws() as ws:
            ws.governance.grant(Grant("user:teardown", Role.APPROVER, f"env:{env}"), by="teardown")
        with Workspace.open(Settings.load(actor="teardown")) as ws:
            approve(ws, deployment_id, comment="test teardown")


@pytest.fixture
def stage(
    library_home: Path,
    tmp_path: Path,
    sweeper,  # type: ignore[no-untyped-def]
    postgres_admin_url: str,
    redis_url: str,
) -> Iterator[Stage]:
    """The example platform on the machine's services, applied; ``<prefix>-dev`` created."""
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir

    st = Stage(
        library_home,
        sweeper.env,
        write_platform(
            tmp_path / "platform", sweeper.env, pg_url=postgres_admin_url, redis_url=redis_url
        ),
    )
    with st.ws() as ws:
        apply_dir(ws.platform, ws.access, st.platform_dir, confirm=lambda _q: True)
        lifecycle.create(ws, st.name("dev"))
    try:
        yield st
    finally:
        st.teardown()
