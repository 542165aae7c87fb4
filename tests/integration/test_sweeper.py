"""The leak sweeper itself must see what it is meant to catch."""

from __future__ import annotations

from pathlib import Path

import pytest

from _sweeper import home_leaked
from stackyard.providers.api import CreateRequest, DeleteRequest, ResourceMeta
from stackyard.providers.registry import ProviderRegistry

pytestmark = pytest.mark.integration


def test_home_check_reports_a_labelled_bucket_until_it_is_deleted(home: Path) -> None:
    kind = ProviderRegistry.discover().kind("local.directory")
    meta = ResourceMeta(
        "volume.default#w.v/directory", "local.directory", "tsweep1", "tsweep1-w-v-1234"
    )
    applied = kind.create(CreateRequest(meta, {}))
    check = home_leaked(home)
    assert check("tsweep1"), "a bucket labelled with the env must be reported"
    assert not check("tother"), "another env's label must not be reported"
    kind.delete(DeleteRequest(meta, {}, applied.outputs))
    assert check("tsweep1") == []
