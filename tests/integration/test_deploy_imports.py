"""A deploy imports the providers its plan touches, and no other (issue 13).

An environment whose only binding is a local volume (``local.directory``): deploying a
workload there, as the ``stackyard`` script does, in a fresh interpreter, imports the
``local`` provider and not the ``postgres``, ``redis`` or ``noop`` providers, nor Alembic
(the store is already current). The ``local`` provider's own modules import psycopg, redis
and ``random``'s password generator for its server kinds; that is the provider's business,
not the registry's, so those are not asserted on here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from _as_user import cli
from _cli import Result, finished, ok
from _imports import heavy, imported_by, tops
from _lite import lite_platform

pytestmark = pytest.mark.integration

SCORE = """\
apiVersion: score.dev/v1b1
metadata: {name: importer}
containers:
  main:
    image: none
    command: ["sh", "-c", "sleep 3600"]
    variables:
      DATA_DIR: ${resources.data.path}
resources:
  data:
    type: volume
"""


def _sy(home: Path, *args: str) -> Result:
    res = cli(home, *args)
    return ok(finished(args, res.returncode, res.stdout, res.stderr))


@pytest.fixture
def lite_env(library_home: Path, tmp_path: Path, sweeper) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A created environment whose only binding is a local volume."""
    name = sweeper.env
    folder = tmp_path / "platform"
    folder.mkdir()
    (folder / "platform.yaml").write_text(lite_platform(name))
    _sy(library_home, "platform", "apply", str(folder), "--yes")
    _sy(library_home, "env", "create", name)
    try:
        yield name
    finally:
        _sy(library_home, "env", "destroy", name, "--yes")


def test_a_deploy_imports_only_the_providers_of_its_plan(lite_env: str, tmp_path: Path) -> None:
    score = tmp_path / "score.yaml"
    score.write_text(SCORE)
    res, modules = imported_by(
        ["deploy", str(score), "--env", lite_env, "--yes"],
        tmp_path / "modules.json",
        dict(os.environ),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "stackyard.providers.local" in modules, "the plan's provider is imported"
    others = heavy(
        modules,
        (
            "stackyard.providers.postgres",
            "stackyard.providers.redis",
            "stackyard.providers.noop",
            "alembic",
        ),
    )
    assert not others, f"imported beyond the plan: {', '.join(tops(others))}"
