"""The service boundary: the CLI parses flags, calls the service layer and renders. Access
checks (``authorize``, ``act``, ``permits``) and the RBAC module belong to the service layer,
where the API of a later issue calls the same functions; a check in the CLI is one the API
would silently skip."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "src" / "stackyard" / "cli"
#: Calls that decide who may do what: only the service layer makes them.
CHECKS = frozenset({"authorize", "act", "permits", "allowed", "roles_of"})
RBAC = "stackyard.policy.rbac"


def offences(source: str, name: str) -> list[str]:
    """Each access check or RBAC import in ``source``, as ``file:line what``."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Call):
            f = node.func
            called = (
                f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            )
            if called in CHECKS:
                found.append(f"{name}:{node.lineno} calls {called}()")
        elif isinstance(node, ast.ImportFrom) and node.module == RBAC:
            names = ", ".join(a.name for a in node.names)
            found.append(f"{name}:{node.lineno} imports {names} from {RBAC}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == RBAC or alias.name.startswith(RBAC + "."):
                    found.append(f"{name}:{node.lineno} imports {alias.name}")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "stackyard.policy"
            and any(a.name == "rbac" for a in node.names)
        ):
            found.append(f"{name}:{node.lineno} imports rbac from stackyard.policy")
    return found


def test_the_cli_makes_no_access_decision() -> None:
    files = sorted(CLI.glob("*.py"))
    assert files, CLI
    found = [o for p in files for o in offences(p.read_text(), p.name)]
    assert not found, "access checks belong to the service layer:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("ws.authorize(Action.VIEW)", True),
        ("with ws.act(Action.DEPLOY, env=e):\n    pass", True),
        ("permits(a, roles)", True),
        ("from stackyard.policy.rbac import Action", True),
        ("import stackyard.policy.rbac", True),
        ("from stackyard.policy import rbac", True),
        ("def f():\n    from stackyard.policy.rbac import Role", True),
        ("from stackyard.environments import grants\ngrants.grant(ws, g)", False),
        ("ws.actor", False),
    ],
    ids=[
        "authorize",
        "act",
        "permits",
        "import-from",
        "import-module",
        "import-package",
        "nested-import",
        "service-call",
        "attribute",
    ],
)
def test_the_check_sees(source: str, caught: bool) -> None:
    assert bool(offences(source, "x.py")) is caught
