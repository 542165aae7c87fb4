"""The built-in component library: every folder is a complete, valid component package."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

import stackyard

pytestmark = pytest.mark.unit

LIBRARY = Path(stackyard.__file__).parent / "library"
EXPECTED = [
    "local-volume",
    "postgres-database",
    "postgres-external",
    "postgres-server",
    "redis-cache",
    "redis-external",
    "redis-server",
]
COMPONENTS = sorted(p for p in LIBRARY.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _manifest(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((folder / "component.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_library_holds_the_expected_components() -> None:
    assert set(EXPECTED) <= {p.name for p in COMPONENTS}


@pytest.mark.parametrize("folder", COMPONENTS, ids=lambda p: p.name)
def test_component_folder_is_complete(folder: Path) -> None:
    assert (folder / "component.yaml").is_file()
    assert (folder / "README.md").read_text().strip(), "the catalog shows the README"
    tests = sorted((folder / "tests").glob("*.yaml"))
    assert tests, "a component ships at least one test workload"
    manifest = _manifest(folder)
    assert manifest["metadata"]["name"] == folder.name
    for case in tests:
        doc = yaml.safe_load(case.read_text())
        assert set(doc) == {"workload", "expect"}, case.name
        expected = doc["expect"]["outputs"]
        assert set(expected) <= set(manifest["spec"]["outputs"]), case.name
        provided = manifest["spec"]["provides"]["type"]
        types = {r["type"] for r in doc["workload"]["resources"].values()}
        assert provided in types, f"{case.name} should request a {provided!r}"


@pytest.mark.parametrize("folder", COMPONENTS, ids=lambda p: p.name)
def test_component_passes_validation(folder: Path) -> None:
    component = importlib.import_module("stackyard.model.component")
    validate = getattr(component, "validate_component", None)
    if validate is None:
        pytest.skip("stackyard.model.component.validate_component does not exist yet")
    from stackyard.diagnostics import has_errors

    manifest, diags = validate(folder)
    assert manifest is not None, diags
    assert not has_errors(diags), [f"{d.summary}: {d.detail}" for d in diags]


@pytest.mark.parametrize("folder", COMPONENTS, ids=lambda p: p.name)
def test_component_test_workloads_are_valid_score(folder: Path) -> None:
    workload = importlib.import_module("stackyard.model.workload")
    check = getattr(workload, "check_workload", None)
    if check is None:
        pytest.skip("stackyard.model.workload.check_workload does not exist yet")
    from stackyard.diagnostics import has_errors

    for case in sorted((folder / "tests").glob("*.yaml")):
        doc = yaml.safe_load(case.read_text())
        parsed, diags = check(doc["workload"], file=str(case))
        assert parsed is not None and not has_errors(diags), [d.summary for d in diags]
