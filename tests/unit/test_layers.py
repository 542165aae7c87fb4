"""The layers: each package imports only the packages below it, the core imports no web, CLI
or database driver, and no two packages import each other round a cycle.

Read from the AST of every module under ``src/stackyard``: every ``import`` and ``from ...
import`` anywhere in a module counts (inside functions too, and under ``TYPE_CHECKING``: a
type a module names is a dependency of its code even when Python never imports it at run
time). The one place the difference matters is the import-time closure of the core (what
``import stackyard.engine.plan`` really loads): there a function-local import runs only when
called and a ``TYPE_CHECKING`` one never, so only import-time edges are followed.

The oracle is this file: it does not use stackyard's own graph code (``stackyard.cycles``).
The table mirrors ``docs/architecture.md`` ("## Layers"); change both together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src"

#: Every package (and top-level module) of stackyard, lowest first, with the layer of DESIGN §9
#: it belongs to. A package may import only packages listed above it.
LAYERS: tuple[tuple[str, str, str], ...] = (
    ("stackyard", "foundation", "the package root: __version__"),
    ("diagnostics", "foundation", "Diagnostic, the value user mistakes are reported as"),
    ("errors", "foundation", "the exception tree; exceptions carry diagnostics"),
    ("canonical", "foundation", "canonical JSON and sha256 digests (stdlib only)"),
    ("cycles", "foundation", "cycles in a dependency graph (stdlib only)"),
    ("lazy", "foundation", "modules imported on first use (stdlib only)"),
    ("settings", "foundation", "configuration, built once at the edge"),
    ("home", "foundation", "the home folder and its permissions"),
    ("host", "foundation", "OS processes and unprivileged accounts of this machine"),
    ("library", "foundation", "the built-in components: data folders, no code"),
    ("model", "model", "Score workloads, components, platform documents, placeholders"),
    ("providers", "resolve", "the provider SDK (api) and the built-in providers"),
    ("resolve", "resolve", "bindings, expansion into provider nodes, naming"),
    ("testing", "resolve", "synthetic provider kinds for tests and benchmarks"),
    ("policy", "engine/policy/state", "Rego policies, decisions, RBAC table, audit chain"),
    ("state", "engine/policy/state", "the store protocol (api) and its SQL implementation"),
    ("engine", "engine/policy/state", "plan, apply, recovery, drift"),
    ("runtime", "components, runtime", "the local runtime: supervised host processes"),
    ("components", "components, runtime", "packaging, OCI registries, attestations, tests"),
    ("service", "service layer", "init_home and the operations the CLI calls"),
    ("environments", "service layer", "environments, deploy, releases, governance"),
    ("identity", "service layer", "who calls the server: API tokens and OIDC identities"),
    ("ops", "day 2", "the ticker, webhooks, metrics, SLOs and scheduled drift scans"),
    ("jobs", "adapters", "long operations as jobs: read model, queue, handlers, worker"),
    ("integrations", "adapters", "other tools' formats: the Backstage export, Slack commands"),
    ("api", "adapters", "the REST API: FastAPI app, routers, problem details, SSE, the edge"),
    ("portal", "adapters", "server-rendered pages over the service layer and the API's context"),
    ("cli", "adapters", "Typer commands and Rich rendering"),
)

#: Imports that go up the table anyway, each with why it cannot go down: none today. An entry
#: whose import is gone fails ``test_every_exception_is_still_needed``, so the list only shrinks.
EXCEPTIONS: dict[tuple[str, str], str] = {}

#: The core of DESIGN §9 (model, resolve, engine, policy), the foundation below it, and the
#: runtime, which runs processes through ``host`` and needs no adapter. It imports no driver,
#: and from the adapter packages (``providers``, ``state``) only their ports.
CORE_PACKAGES = frozenset(
    {"stackyard", "diagnostics", "errors", "canonical", "cycles", "lazy", "settings", "home"}
    | {"host"}
    | {"model", "resolve", "engine", "policy", "runtime"}
)
#: The interfaces of the two adapter packages the core may import: the provider SDK and the
#: state store protocol. They are core themselves.
PORTS = frozenset({"stackyard.providers.api", "stackyard.state.api"})

#: Web, CLI and database libraries, and the only modules that may import each (by prefix). The
#: ports never may.
DRIVERS: dict[str, tuple[str, ...]] = {
    "fastapi": (
        "stackyard.portal",
        "stackyard.api",
    ),
    "starlette": (
        "stackyard.portal",
        "stackyard.api",
    ),
    "uvicorn": ("stackyard.cli.server",),
    "typer": ("stackyard.cli",),
    "click": ("stackyard.cli",),
    "rich": ("stackyard.cli",),
    "sqlalchemy": (
        "stackyard.state",
        "stackyard.jobs.store",
        "stackyard.jobs.pgqueue",
        "stackyard.ops",  # the day 2 read models: deliveries, observations, figures
    ),
    "alembic": ("stackyard.state",),
    "psycopg": (
        "stackyard.providers.postgres",
        "stackyard.providers.local",
        "stackyard.jobs.pgqueue",
        "stackyard.state.changes",  # the store's change feed: LISTEN, which SQLAlchemy lacks
    ),
    "redis": ("stackyard.providers.redis", "stackyard.providers.local"),
}


@dataclass(frozen=True, slots=True)
class Edge:
    """One import: ``source`` (a module) imports ``target`` (a module or an outside library)."""

    source: str
    line: int
    target: str
    import_time: bool  # runs when ``source`` is imported: module level, not TYPE_CHECKING

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def _modules() -> dict[str, Path]:
    """Every module of stackyard by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted((SRC / "stackyard").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in MODULES else base


def _edges(module: str) -> list[Edge]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    out: list[Edge] = []

    def visit(nodes: Iterable[ast.AST], *, import_time: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                out.extend(
                    Edge(module, node.lineno, t, import_time) for t in _targets(node, module)
                )
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(ast.iter_child_nodes(node), import_time=False)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, import_time=False)
                visit(node.orelse, import_time=import_time)
            else:
                visit(ast.iter_child_nodes(node), import_time=import_time)

    visit(tree.body, import_time=True)
    return out


EDGES = [e for m in MODULES for e in _edges(m)]
IMPORT_TIME: dict[str, list[str]] = defaultdict(list)
for _e in EDGES:
    if _e.import_time:
        IMPORT_TIME[_e.source].append(_e.target)
INTERNAL = [e for e in EDGES if e.target == "stackyard" or e.target.startswith("stackyard.")]


def package_of(module: str) -> str:
    """The row of ``LAYERS`` a module belongs to: ``stackyard.engine.plan`` → ``engine``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for e in INTERNAL:
        src, dst = package_of(e.source), package_of(e.target)
        if src != dst:
            graph[src].add(dst)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of packages that reach each other (deliberately simple: a few dozen nodes)."""

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reaches = {n: reach(n) for n in graph}
    groups = {
        tuple(sorted(m for m in reaches if m in reaches[n] and n in reaches[m]))
        for n in reaches
        if n in reaches[n]
    }
    return sorted(list(g) for g in groups)


RANK = {name: i for i, (name, _, _) in enumerate(LAYERS)}


def test_every_package_has_a_layer() -> None:
    packages = {package_of(m) for m in MODULES}
    assert packages - set(RANK) == set(), "place the new package in LAYERS and the docs"
    assert set(RANK) - packages == set(), "a package in LAYERS no longer exists"


def test_packages_import_only_lower_layers() -> None:
    wrong = [
        f"{e} ({package_of(e.source)} may not import {package_of(e.target)}, which is above it)"
        for e in INTERNAL
        if RANK[package_of(e.target)] > RANK[package_of(e.source)]
        and (package_of(e.source), package_of(e.target)) not in EXCEPTIONS
    ]
    assert wrong == []


def test_every_exception_is_still_needed() -> None:
    graph = _package_graph()
    assert [pair for pair in EXCEPTIONS if pair[1] not in graph.get(pair[0], set())] == []


def test_no_cycle_between_packages() -> None:
    assert _cycles(_package_graph()) == []


def test_the_oracle_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"], ["e"]]


@pytest.mark.parametrize(
    ("importer", "forbidden", "reason"),
    [
        ("stackyard.model", "stackyard.resolve", "resolution builds on the model"),
        ("stackyard.model", "stackyard.engine", "the engine builds on the model"),
        ("stackyard.model", "stackyard.state", "the store records the model"),
        ("stackyard.model", "stackyard.environments", "the service layer is on top"),
        ("stackyard.runtime", "stackyard.providers.local", "both use stackyard.host"),
    ],
    ids=["model-resolve", "model-engine", "model-state", "model-environments", "runtime-local"],
)
def test_named_rules(importer: str, forbidden: str, reason: str) -> None:
    wrong = [
        str(e) for e in INTERNAL if _within(e.source, importer) and _within(e.target, forbidden)
    ]
    assert wrong == [], reason


def _library(target: str) -> str:
    return target.split(".")[0]


def test_drivers_only_in_their_adapters() -> None:
    wrong = [
        str(e)
        for e in EDGES
        if _library(e.target) in DRIVERS
        and (
            e.source in PORTS
            or not any(_within(e.source, owner) for owner in DRIVERS[_library(e.target)])
        )
    ]
    assert wrong == []


def _is_core(module: str) -> bool:
    return module in PORTS or package_of(module) in CORE_PACKAGES


def test_core_imports_only_the_ports_of_adapters() -> None:
    wrong = [
        str(e)
        for e in INTERNAL
        if _is_core(e.source)
        and not _is_core(e.target)
        # "from stackyard.state import api": the package itself, on the way to its port
        and e.target not in {p.rpartition(".")[0] for p in PORTS}
    ]
    assert wrong == []


def _loaded_by(module: str) -> set[str]:
    """What ``import module`` loads: import-time edges, parent packages included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        parts = current.split(".")
        for name in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if name not in seen:
                seen.add(name)
                todo.extend(IMPORT_TIME.get(name, ()))
    return seen


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _is_core(m)))
def test_importing_the_core_loads_no_driver(module: str) -> None:
    loaded = {_library(m) for m in _loaded_by(module)}
    assert loaded & set(DRIVERS) == set()
