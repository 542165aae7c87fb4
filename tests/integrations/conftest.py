"""Fixtures of the integrations tests: a real home (the API tests' ``prepare``: the lite
platform, ``root-admin``) with ``local-volume`` and the canary component published, and
environments running workloads, shared by a module's tests."""

from __future__ import annotations

import dataclasses
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

from _apisupport import ADMIN, CANARY, prepare, teardown
from _backstagesupport import READER, SLEEPER, Site


@pytest.fixture(scope="session")
def canary_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with only ``local-volume`` (all the lite platform binds) and the canary
    published: quicker than the whole library."""
    from unittest import mock

    import stackyard.service as service
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.settings import Settings

    home = tmp_path_factory.mktemp("integrations-home") / "home"
    settings = Settings.load(home=home, actor="server-os-user", environ={})
    with mock.patch.object(service.library, "names", lambda: ["local-volume"]):
        service.init_home(settings)
    registry = open_registry(None, home=home)
    try:
        publish(CANARY, registry=registry, keyring=Keyring(home), kinds=ProviderRegistry.discover())
    finally:
        registry.close()
    return home


@pytest.fixture(scope="module")
def site(canary_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The environments and their workloads, deployed through the service layer."""
    import os

    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.workspace import Workspace

    env = f"b{secrets.token_hex(5)}"
    other = f"{env}-x"
    root = tmp_path_factory.mktemp("backstage")
    saved = os.environ.pop("STACKYARD_DATABASE_URL", None)
    settings = prepare(root / "home", canary_template, env)
    try:
        scores = root / "scores"
        scores.mkdir()
        (scores / "reader.yaml").write_text(READER)
        (scores / "sleeper.yaml").write_text(SLEEPER)
        with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
            lifecycle.create(ws, other, type_name="lite")  # not declared: no owner
            for target, score in ((env, "reader.yaml"), (other, "sleeper.yaml")):
                done = deploy_files(ws, [scores / score], target, confirm=lambda _p: True)
                assert done.deployment.status == "succeeded", done.deployment
        yield Site(root / "home", settings, env, other)
    finally:
        teardown(settings)
        if saved is not None:
            os.environ["STACKYARD_DATABASE_URL"] = saved
