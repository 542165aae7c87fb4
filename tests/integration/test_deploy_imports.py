"""A deploy imports the providers its plan touches, and no other (issue 13).

An environment whose only binding is a local volume (``local.directory``): deploying a
workload there, as the ``stackyard`` script does, in a fresh interpreter, imports the
``local`` provider and not the ``postgres``, ``redis`` or ``noop`` providers, nor Alembic
(the store is already current). Nor the drivers: the ``local`` provider's server kinds import
psycopg and redis-py when they talk to their servers, not when the provider loads. Nor httpx:
the home's registry is the local OCI layout, and only a remote registry needs an HTTP client.
``env list`` and ``status`` on that home import none of them either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from _as_user import cli
from _cli import Result, finished, ok
from _imports import heavy, imported_by, tops
from _lite import lite_platform, sleeper_score

pytestmark = pytest.mark.integration

#: What a home on the local registry layout, with local volumes only, never needs.
DRIVERS = ("psycopg", "psycopg_binary", "redis", "httpx", "httpcore")

SCORE = sleeper_score("importer")


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
            *DRIVERS,
        ),
    )
    assert not others, f"imported beyond the plan: {', '.join(tops(others))}"


@pytest.mark.parametrize(
    "args",
    [["env", "list"], ["status", "{env}"]],
    ids=["env list", "status"],
)
def test_reading_commands_on_a_local_home_import_no_driver(
    lite_env: str, tmp_path: Path, args: list[str]
) -> None:
    argv = [a.format(env=lite_env) for a in args]
    res, modules = imported_by(argv, tmp_path / "modules.json", dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr
    found = heavy(modules, DRIVERS)
    assert not found, f"{' '.join(argv)} imported: {', '.join(tops(found))}"
