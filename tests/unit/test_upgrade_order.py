"""The order of an upgrade campaign's steps: promotion paths first, stage by stage."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from stackyard.environments.upgrade import order

pytestmark = pytest.mark.unit


@dataclass
class _Path:
    name: str
    stages: list[str]


@pytest.mark.parametrize(
    ("paths", "names", "expected"),
    [
        pytest.param(
            [_Path("default", ["dev", "staging", "prod"])],
            ["prod", "dev", "staging"],
            ["dev", "staging", "prod"],
            id="stage-order-not-name-order",
        ),
        pytest.param(
            [_Path("default", ["dev", "staging", "prod"])],
            ["zeta", "prod", "alpha", "dev"],
            ["dev", "prod", "alpha", "zeta"],
            id="off-path-environments-after-by-name",
        ),
        pytest.param(
            [_Path("web", ["w-dev", "w-prod"]), _Path("data", ["d-dev", "shared", "d-prod"])],
            ["w-prod", "d-prod", "shared", "w-dev"],
            ["shared", "d-prod", "w-dev", "w-prod"],
            id="paths-by-name-each-in-stage-order",
        ),
        pytest.param(
            [_Path("a", ["dev", "prod"]), _Path("b", ["dev", "qa"])],
            ["qa", "prod", "dev"],
            ["dev", "prod", "qa"],
            id="an-environment-on-two-paths-once",
        ),
    ],
)
def test_order(paths: list[_Path], names: list[str], expected: list[str]) -> None:
    assert order(paths, names) == expected
