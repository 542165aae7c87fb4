"""``stackyard init`` on a machine that cannot run one library component's tests (no RabbitMQ,
MariaDB or Caddy installed): the rest of the library is published, the missing one is named
with its reason, and a later ``init`` adds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stackyard import service
from stackyard.components import testing
from stackyard.diagnostics import error
from stackyard.settings import Settings

pytestmark = pytest.mark.integration

MISSING = "a server its tests need is not installed on this machine"


def test_a_component_whose_tests_cannot_run_here_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["dns-localhost", "environment", "local-volume"]
    monkeypatch.setattr(service.library, "names", lambda: names)
    real = service._test_all

    def machine_without_rabbitmq(todo: list[Any]) -> dict[str, list[testing.TestOutcome]]:
        failed = [testing.TestOutcome("basic.yaml", False, (error("Apply failed", MISSING),))]
        return {
            name: failed if name == "dns-localhost" else service._test_one(name) for name, _ in todo
        }

    monkeypatch.setattr(service, "_test_all", machine_without_rabbitmq)
    settings = Settings.load(home=tmp_path / "home", actor="ops", environ={})
    first = service.init_home(settings)
    assert sorted(p["name"] for p in first.published) == ["environment", "local-volume"]
    assert first.not_published == [{"component": "dns-localhost@1.0.0", "reason": MISSING}]

    monkeypatch.setattr(service, "_test_all", real)  # the server was installed since
    second = service.init_home(settings)
    assert [p["name"] for p in second.published] == ["dns-localhost"]
    assert sorted(second.already) == ["environment@1.0.0", "local-volume@1.0.0"]
    assert second.not_published == []
