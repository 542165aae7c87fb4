"""The deploy road goes down, not round (issue 12, §1): each step of DESIGN §2 is one module
that receives the parts it needs (never the workspace), ``deploy._converge`` calls the steps
in the road's order, the workspace only composes, and one function reads every decision.

Read from the source (AST): nothing is imported or run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENVS = Path(__file__).resolve().parents[2] / "src" / "stackyard" / "environments"
WORKSPACE = "stackyard.environments.workspace"

#: DESIGN §2's steps, in order: the module of each, and what ``deploy._converge`` calls for it.
ROAD = [
    ("resolve", "resolver.py", "resolve_target"),
    ("expand", "expansion.py", "expand_resolution"),
    ("plan", None, "engine.plan"),
    ("govern", "governed.py", "governed.gate"),
    ("apply", None, "engine.apply"),
    ("outputs", "outputs.py", "instance_outputs"),
    ("record", "outputs.py", "record"),
    ("run", "runner.py", "run"),
]
#: modules the steps run on (and the parts the workspace is built from)
PARTS = ["target.py", "access.py", "catalog.py", "platform.py", "workloads.py"]
STEPS = sorted({m for _, m, _ in ROAD if m} | set(PARTS))


def _tree(name: str) -> ast.Module:
    return ast.parse((ENVS / name).read_text(), name)


def _imports(tree: ast.AST) -> set[str]:
    """Every module imported anywhere in ``tree`` (TYPE_CHECKING and function bodies too)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no function {name}")


@pytest.mark.parametrize("name", STEPS)
def test_a_step_never_sees_the_workspace(name: str) -> None:
    tree = _tree(name)
    assert WORKSPACE not in _imports(tree), f"{name} imports the workspace"
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            assert "Workspace" not in ast.unparse(node.annotation), (name, node.arg)


def test_converge_walks_the_road_in_order() -> None:
    """``_converge`` calls each step once, in DESIGN §2's order (first call of each)."""
    body = _function(_tree("deploy.py"), "_converge")
    calls = sorted(
        (n for n in ast.walk(body) if isinstance(n, ast.Call)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    names = [_dotted(c.func) for c in calls]
    wanted = [call for _, _, call in ROAD]
    first = {call: names.index(call) for call in wanted if call in names}
    assert set(first) == set(wanted), f"missing steps: {set(wanted) - set(first)}"
    assert sorted(wanted, key=first.__getitem__) == wanted, [
        names[i] for i in sorted(first.values())
    ]


def test_each_step_lives_in_its_module() -> None:
    deploy = _tree("deploy.py")
    imported = {
        (node.module, a.name)
        for node in ast.walk(deploy)
        if isinstance(node, ast.ImportFrom) and node.module
        for a in node.names
    }
    for step, module, call in ROAD:
        if module is None or "." in call:
            continue
        assert (f"stackyard.environments.{module[:-3]}", call) in imported, step
        defined = {n.name for n in _tree(module).body if isinstance(n, ast.FunctionDef)}
        assert call in defined, (step, module)


def test_the_workspace_only_composes() -> None:
    """The workspace opens the stores and builds the parts; what a command looks up first
    (an environment, its runtime) is all it answers itself."""
    tree = _tree("workspace.py")
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Workspace"]
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    public = {m for m in methods if not m.startswith("_")}
    assert public == {"open", "close", "environment", "runtime"}, public


def test_no_circle_between_the_environments_modules() -> None:
    graph = {
        p.stem: {
            m.rsplit(".", 1)[-1]
            for m in _imports(ast.parse(p.read_text()))
            if m.startswith("stackyard.environments.")
        }
        - {p.stem}
        for p in ENVS.glob("*.py")
    }
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            assert seen.get(nxt) != 1, "circle: " + " -> ".join([*path, node, nxt])
            if nxt not in seen:
                visit(nxt, [*path, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


def test_one_verdict_reads_every_decision() -> None:
    """Only ``governed`` reads a decision's outcome, denies (``PolicyDeniedError``) or parks
    a deployment: deploy, destroy, promote and environment changes share its one path."""
    offenders = []
    for path in sorted(ENVS.glob("*.py")):
        if path.name == "governed.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "outcome":
                offenders.append(f"{path.name}:{node.lineno} reads .outcome")
            if isinstance(node, ast.Call) and _dotted(node.func).endswith(
                ("raise_if_denied", "PolicyDeniedError")
            ):
                offenders.append(f"{path.name}:{node.lineno} denies by itself")
            if (
                isinstance(node, ast.keyword)
                and node.arg == "status"
                and isinstance(node.value, ast.Constant)
                and node.value.value == "awaiting-approval"
            ):
                offenders.append(f"{path.name}:{node.value.lineno} parks by itself")
    assert not offenders, offenders


def test_deploy_reads_outputs_through_the_engine() -> None:
    """The outputs step asks ``Engine.outputs``; nothing in environments reads recorded
    outputs off a state snapshot by itself."""
    for path in sorted(ENVS.glob("*.py")):
        text = path.read_text()
        assert "recorded_outputs" not in text, path.name
    body = ast.unparse(_function(_tree("outputs.py"), "instance_outputs"))
    assert "engine.outputs(" in body
