"""Fixtures of the API tests; the servers, tokens and log capture they use are in
``_apisupport``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _apisupport import CANARY, Live, prepare, serving, teardown


@pytest.fixture(scope="session")
def volume_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with only ``local-volume`` published (all the lite platform binds): quicker
    than the whole library, and needs no local database servers."""
    from unittest import mock

    import stackyard.service as service
    from stackyard.settings import Settings

    home = tmp_path_factory.mktemp("volume-home") / "home"
    settings = Settings.load(home=home, actor="server-os-user", environ={})
    with mock.patch.object(service.library, "names", lambda: ["local-volume"]):
        service.init_home(settings)
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.providers.registry import ProviderRegistry

    registry = open_registry(None, home=home)
    try:
        publish(CANARY, registry=registry, keyring=Keyring(home), kinds=ProviderRegistry.discover())
    finally:
        registry.close()
    return home


@pytest.fixture
def live(
    volume_template: Path, tmp_path: Path, sweeper: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Live]:
    """A server with an in-process worker on a fresh home; environment ``sweeper.env``."""
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    settings = prepare(home, volume_template, sweeper.env)
    monkeypatch.setenv("STACKYARD_HOME", str(home))
    try:
        with serving(settings, worker=True) as (url, logs):
            yield Live(url, home, settings, sweeper.env, logs)
    finally:
        teardown(settings)


@pytest.fixture(scope="module")
def quiet_live(volume_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server without a worker (submitted jobs stay queued), shared by a module's tests."""
    import secrets

    env = f"t{secrets.token_hex(5)}"
    home = tmp_path_factory.mktemp("api") / "home"
    settings = prepare(home, volume_template, env)
    try:
        from stackyard.api.context import ApiConfig

        # the tests of 401s fail many times from 127.0.0.1: no lock-out here (test_edge has
        # its own server for the rate limit)
        with serving(settings, worker=False, config=ApiConfig(auth_failures=10_000)) as (
            url,
            logs,
        ):
            yield Live(url, home, settings, env, logs)
    finally:
        teardown(settings)
