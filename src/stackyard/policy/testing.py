"""``stackyard policy test DIR``: each ``X_test.rego`` runs with ``X.rego`` beside it, plus every
module of the folder that is not in package ``stackyard`` (shared libraries), so one policy's
tests never see another policy's rules."""

from __future__ import annotations

from pathlib import Path

from stackyard.errors import InvalidInputError
from stackyard.model.source import files_under, read_text
from stackyard.policy.rego import (
    MAX_MODULE_BYTES,
    ROOT_PACKAGE,
    Module,
    TestResult,
    package_of,
    run_tests,
)


def run_dir(directory: Path) -> list[TestResult]:
    """Run every test file under ``directory``; a test file without its policy is an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInputError(
            f"'{directory}' is not a directory", hint="Give the folder of .rego files."
        )
    files = files_under(directory, (".rego",))
    if not files:
        raise InvalidInputError(f"No .rego files in '{directory}'")
    modules = {
        p: Module(str(p.relative_to(directory)), read_text(p, limit=MAX_MODULE_BYTES))
        for p in files
    }
    libraries = [
        m
        for p, m in modules.items()
        if not p.stem.endswith("_test") and package_of(m.source) != ROOT_PACKAGE
    ]
    results: list[TestResult] = []
    for path, module in modules.items():
        if not path.stem.endswith("_test"):
            continue
        policy = path.with_name(path.stem.removesuffix("_test") + ".rego")
        if policy not in modules:
            results.append(TestResult(module.name, "(setup)", False, f"no {policy.name} beside it"))
            continue
        group = [modules[policy], module, *(m for m in libraries if m is not modules[policy])]
        results.extend(run_tests(group))
    return results
