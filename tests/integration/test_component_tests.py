"""The component-test stage: each library component's own tests deploy, check and destroy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stackyard import library
from stackyard.components.testing import run_tests
from stackyard.model.component import load_component
from stackyard.providers.registry import ProviderRegistry

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", library.names())
def test_library_component_tests_pass(name: str, home: Path) -> None:
    outcomes = run_tests(
        library.path(name), load_component(library.path(name)), kinds=ProviderRegistry.discover()
    )
    assert outcomes, f"{name} has no tests"
    assert all(o.ok for o in outcomes), [
        (o.file, [d.detail for d in o.diagnostics]) for o in outcomes
    ]


def test_a_missing_expected_output_fails_the_test(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "local-volume"
    shutil.copytree(library.path("local-volume"), folder)
    test = folder / "tests" / "basic.yaml"
    test.write_text(
        test.read_text().replace("outputs: [", "outputs: [no_such_output, "), encoding="utf-8"
    )
    [outcome] = run_tests(folder, load_component(folder), kinds=ProviderRegistry.discover())
    assert not outcome.ok
    assert [d.summary for d in outcome.diagnostics] == ["Expected output missing"]


def test_an_unprovided_type_is_a_clear_failure(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "local-volume"
    shutil.copytree(library.path("local-volume"), folder)
    (folder / "tests" / "basic.yaml").write_text(
        "workload:\n  apiVersion: score.dev/v1b1\n  metadata: {name: wl}\n  containers:\n    main: {image: busybox}\n"
        "  resources:\n    queue: {type: kafka-topic}\nexpect: {outputs: []}\n",
        encoding="utf-8",
    )
    [outcome] = run_tests(folder, load_component(folder), kinds=ProviderRegistry.discover())
    assert not outcome.ok
    assert "No component provides 'kafka-topic'" in outcome.diagnostics[0].detail
