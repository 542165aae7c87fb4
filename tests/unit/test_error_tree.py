"""The error model: the tree drawn in ``errors.py`` is the tree of classes, and the exit-code
table in ``docs/errors.md`` is the classes' ``exit_code`` values.

Every module of ``stackyard`` is imported (``pkgutil.walk_packages``), and every module's
source is read as well: a module that cannot run on import (``__main__``) or whose optional
dependency is missing still has its exception classes found, from its syntax tree.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import stackyard
from stackyard import errors

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
_NODE = re.compile(r"^(?P<indent>(?:[│ ]   |[├└]── )*)(?P<name>[A-Z]\w*)(?P<rest>.*)$")
_MODULE = re.compile(r"^\s*\[(?P<module>[\w.]+)\]")
_BUILTIN_EXCEPTIONS = {
    n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
}


@dataclass(frozen=True)
class Drawn:
    """One class as ``errors.py``'s docstring draws it."""

    name: str
    parent: str | None  # None for the root
    module: str  # where the drawing says it is defined


def drawn_tree(doc: str) -> dict[str, Drawn]:
    """Parse the drawing after ``The tree::``: indentation (in steps of four) gives the parent."""
    lines = doc.split("The tree::", 1)[1].splitlines()
    out: dict[str, Drawn] = {}
    stack: list[str] = []
    started = False
    for raw in lines:
        if not raw.strip():
            if started:
                break  # the drawing ends at the first blank line after it
            continue
        started = True
        line = raw[4:]  # the literal block's own indentation
        m = _NODE.match(line)
        assert m, f"cannot read this line of the drawing: {raw!r}"
        depth = len(m["indent"]) // 4
        assert depth <= len(stack), f"{m['name']} is indented past its parent"
        del stack[depth:]
        module = _MODULE.match(m["rest"])
        name = m["name"]
        assert name not in out, f"{name} is drawn twice"
        out[name] = Drawn(
            name,
            stack[-1] if stack else None,
            f"stackyard.{module['module']}" if module else errors.__name__,
        )
        stack.append(name)
    return out


def _module_names() -> list[str]:
    names = [stackyard.__name__]
    for info in pkgutil.walk_packages(stackyard.__path__, prefix=f"{stackyard.__name__}."):
        names.append(info.name)
    return sorted(names)


def _source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    return Path(spec.origin).read_text(encoding="utf-8")


def _classes_in_syntax(name: str) -> dict[str, list[str]]:
    """Every class statement in the module (nested ones too): its base names."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(_source(name))):
        if isinstance(node, ast.ClassDef):
            bases = []
            for base in node.bases:
                if isinstance(base, ast.Name):
                    bases.append(base.id)
                elif isinstance(base, ast.Attribute):
                    bases.append(base.attr)
            found[node.name] = bases
    return found


@dataclass(frozen=True)
class Defined:
    """Every exception class stackyard defines: the imported ones, and the rest by syntax."""

    classes: dict[str, type[BaseException]]
    by_syntax: dict[str, tuple[str, str]]  # name -> (module, parent name)
    unimportable: dict[str, str]  # module -> why it cannot be imported on its own


def _defined() -> Defined:
    classes: dict[str, type[BaseException]] = {}
    syntax: dict[str, tuple[str, list[str]]] = {}
    unimportable: dict[str, str] = {}
    for name in _module_names():
        for cls_name, bases in _classes_in_syntax(name).items():
            syntax[f"{name}:{cls_name}"] = (name, bases)
        if name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing it would run the command; its classes come from its source
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a script run by a host, or an optional dependency missing
            unimportable[name] = f"{type(exc).__name__}: {exc}"
            continue  # the syntax tree stands in for it
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                assert obj.__name__ not in classes, f"two exception classes named {obj.__name__}"
                classes[obj.__name__] = obj
    # A class statement whose base is an exception, but that import did not show (nested in a
    # function, or in a module that could not be imported).
    known = set(classes) | _BUILTIN_EXCEPTIONS
    by_syntax: dict[str, tuple[str, str]] = {}
    changed = True
    while changed:
        changed = False
        for key, (module_name, bases) in syntax.items():
            cls_name = key.split(":", 1)[1]
            if cls_name in classes or cls_name in by_syntax:
                continue
            exception_bases = [b for b in bases if b in known]
            if exception_bases:
                by_syntax[cls_name] = (module_name, exception_bases[0])
                known.add(cls_name)
                changed = True
    return Defined(classes, by_syntax, unimportable)


@pytest.fixture(scope="module")
def defined() -> Defined:
    return _defined()


@pytest.fixture(scope="module")
def drawn() -> dict[str, Drawn]:
    assert errors.__doc__
    return drawn_tree(errors.__doc__)


def test_the_drawing_is_read_as_a_tree() -> None:
    tree = drawn_tree(
        "x\n\nThe tree::\n\n    A\n    ├── B   text\n    │   └── C [m.n] text\n    └── D\n\nafter\n"
    )
    assert [(d.name, d.parent) for d in tree.values()] == [
        ("A", None),
        ("B", "A"),
        ("C", "B"),
        ("D", "A"),
    ]
    assert tree["C"].module == "stackyard.m.n"


def test_every_exception_class_is_found(defined: Defined) -> None:
    # Found by import, not only by syntax: the package imports without optional extras here.
    assert not defined.by_syntax, defined.by_syntax
    assert {"StackyardError", "RegistryError", "AttestationError"} <= set(defined.classes)


def test_only_migration_scripts_cannot_be_imported(defined: Defined) -> None:
    # Alembic runs these with its own context; everything else imports on its own.
    others = {
        n: why
        for n, why in defined.unimportable.items()
        if not n.startswith("stackyard.state.migrations.")
    }
    assert not others, others


def test_every_exception_derives_from_the_root(defined: Defined) -> None:
    strays = sorted(
        n for n, c in defined.classes.items() if not issubclass(c, errors.StackyardError)
    )
    assert strays == [], f"exceptions outside the StackyardError tree: {strays}"


def test_every_class_is_drawn_under_its_parent(defined: Defined, drawn: dict[str, Drawn]) -> None:
    problems = []
    for name, cls in sorted(defined.classes.items()):
        if name not in drawn:
            problems.append(f"{name} ({cls.__module__}) is not drawn in errors.py")
            continue
        parents = [b.__name__ for b in cls.__bases__ if issubclass(b, BaseException)]
        want = None if name == "StackyardError" else parents[0]
        if drawn[name].parent != want:
            problems.append(f"{name} is drawn under {drawn[name].parent}, but derives from {want}")
        if drawn[name].module != cls.__module__:
            problems.append(
                f"{name} is drawn as in {drawn[name].module}, defined in {cls.__module__}"
            )
    for name, (module, parent) in sorted(defined.by_syntax.items()):
        if name not in drawn:
            problems.append(f"{name} ({module}, derives from {parent}) is not drawn in errors.py")
    for name in sorted(set(drawn) - set(defined.classes) - set(defined.by_syntax)):
        problems.append(f"{name} is drawn in errors.py, but no such class exists")
    assert not problems, "\n".join(problems)


def test_a_missing_class_is_caught(defined: Defined, drawn: dict[str, Drawn]) -> None:
    """The check above would fail for a class that is not drawn (guards against a vacuous pass)."""
    assert "LockHeldError" in drawn
    smaller = {k: v for k, v in drawn.items() if k != "LockHeldError"}
    assert set(defined.classes) - set(smaller) == {"LockHeldError"}


# -- exit codes --------------------------------------------------------------------------------

_ROW = re.compile(r"^\|\s*(?P<code>\d+)\s*\|(?P<meaning>[^|]*)\|(?P<classes>[^|]*)\|\s*$")


def exit_table(text: str) -> dict[int, set[str]]:
    """The ``| code | meaning | raised as |`` table: each code's class names (in backticks)."""
    rows: dict[int, set[str]] = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            code = int(m["code"])
            assert code not in rows, f"exit code {code} has two rows"
            rows[code] = set(re.findall(r"`([A-Z]\w*)`", m["classes"]))
    return rows


def test_the_exit_code_table_is_the_classes_exit_codes(defined: Defined) -> None:
    table = exit_table(DOCS.read_text(encoding="utf-8"))
    assert {0, 1, 2}.issubset(table), table
    problems = []
    for code, names in sorted(table.items()):
        for name in sorted(names):
            cls = defined.classes.get(name)
            if cls is None or not issubclass(cls, errors.StackyardError):
                problems.append(f"row {code} names {name}, which is no StackyardError")
            elif cls.exit_code != code:
                problems.append(f"row {code} names {name}, whose exit_code is {cls.exit_code}")
    for name, cls in sorted(defined.classes.items()):
        if not issubclass(cls, errors.StackyardError):
            continue
        if "exit_code" in vars(cls) and name not in table.get(cls.exit_code, set()):
            problems.append(
                f"{name} sets exit_code {cls.exit_code}: name it in that row of {DOCS.name}"
            )
    assert not problems, "\n".join(problems)


def test_the_tree_drawing_names_each_exit_code_it_sets(
    defined: Defined, drawn: dict[str, Drawn]
) -> None:
    assert errors.__doc__
    lines = {
        m["name"]: m["rest"] for raw in errors.__doc__.splitlines() if (m := _NODE.match(raw[4:]))
    }
    problems = []
    for name, cls in defined.classes.items():
        sets = issubclass(cls, errors.StackyardError) and "exit_code" in vars(cls)
        if sets and f"exit {cls.exit_code}" not in lines.get(name, ""):
            problems.append(f"{name}: the drawing should say 'exit {cls.exit_code}'")
    assert not problems, "\n".join(problems)
