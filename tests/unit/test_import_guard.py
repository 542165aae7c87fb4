"""The import guard (issue 13): the modules a command imports, read from ``sys.modules``.

Each case runs the ``stackyard`` console script's entry point in a fresh interpreter, the way
the installed script does, and reads ``sorted(sys.modules)`` at its exit (``tests/_imports.py``).
A heavy module on a path that does not use it is a failure here, whatever the machine's speed:
time is measured only in ``bench/cli.py``.

What each command may import, and why:

- ``--version`` prints one line: nothing but the interpreter and ``stackyard`` itself, not
  even Typer or Rich.
- ``--help`` renders the command tree: Typer and Rich, and no command group's module (the
  root knows every command's name and one-line help statically).
- ``workload validate FILE`` parses YAML and checks the file against the Score JSON schema,
  so PyYAML and ``jsonschema`` (with ``referencing``) are justified. pydantic is not: the
  Score model is frozen dataclasses, stackyard's pydantic models (the providers' configs)
  stay out, as do the component and platform documents' models (and Typer is held below
  0.29, which coerces every parameter through a pydantic ``TypeAdapter``).
  Nothing that opens a store, talks to a backend, signs, or evaluates policies either.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _imports import heavy, imported_by, tops

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SCORE = REPO / "examples" / "hello" / "score.yaml"

#: Never imported by the three commands guarded here: databases, drivers, crypto, policy
#: engines, HTTP, the engine, the state store, the providers and the signing keyring.
BACKENDS = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "psycopg_binary",
    "redis",
    "cryptography",
    "regorus",
    "celpy",
    "httpx",
    "stackyard.state",
    "stackyard.engine",
    "stackyard.providers",
    "stackyard.components",
    "stackyard.environments",
    "stackyard.policy",
    "stackyard.runtime",
    "stackyard.service",
)
#: The command-group modules of the CLI; only the one a command lives in may be imported.
GROUPS = tuple(
    f"stackyard.cli.{name}"
    for name in (
        "component",
        "deploy",
        "envs",
        "governance",
        "keys",
        "platform",
        "providers",
        "release",
        "state",
        "workload",
        "common",
    )
)
#: The other documents' models: a workload is validated without the component manifest's
#: schema or the platform documents.
OTHER_MODELS = ("stackyard.model.component", "stackyard.model.platform")
PARSING = ("pydantic", "pydantic_core", "jsonschema", "referencing", "yaml", "stackyard.model")

CASES = [
    # (argv, forbidden prefixes, exit status, reason)
    (
        ["--version"],
        (*BACKENDS, *GROUPS, *PARSING, "typer", "rich"),
        0,
        "--version prints one line: no Typer, no Rich, nothing heavy",
    ),
    (
        ["--help"],
        (*BACKENDS, *GROUPS, *PARSING),
        0,
        "--help lists every command from the static table, importing none",
    ),
    (
        ["workload", "validate", str(SCORE)],
        (
            *BACKENDS,
            *(g for g in GROUPS if g != "stackyard.cli.workload"),
            *OTHER_MODELS,
            "pydantic",
            "pydantic_core",
        ),
        0,
        "validate needs YAML and the Score JSON schema, nothing that opens a store",
    ),
    (
        ["env", "--help"],
        (
            *BACKENDS,
            *(g for g in GROUPS if g not in ("stackyard.cli.envs", "stackyard.cli.common")),
        ),
        0,
        "a group's help imports that group's module, not the others",
    ),
]


def _run(args: list[str], tmp_path: Path) -> tuple[int, list[str], str]:
    env = {**os.environ, "STACKYARD_HOME": str(tmp_path / "home"), "COLUMNS": "100"}
    env.pop("STACKYARD_DATABASE_URL", None)
    res, modules = imported_by(args, tmp_path / "modules.json", env)
    return res.returncode, modules, res.stderr


@pytest.mark.parametrize(
    ("args", "forbidden", "status", "reason"), CASES, ids=[" ".join(c[0][:2]) for c in CASES]
)
def test_a_command_imports_only_what_it_uses(
    tmp_path: Path, args: list[str], forbidden: tuple[str, ...], status: int, reason: str
) -> None:
    code, modules, stderr = _run(args, tmp_path)
    assert code == status, stderr
    found = heavy(modules, forbidden)
    assert not found, f"{reason}; imported: {', '.join(tops(found))}"


def test_the_guard_sees_a_heavy_import(tmp_path: Path) -> None:
    """The instrumentation itself: ``providers list`` imports every provider, and is seen to."""
    code, modules, stderr = _run(["providers", "list"], tmp_path)
    assert code == 0, stderr
    assert "stackyard.providers.postgres" in heavy(modules, BACKENDS)
