"""The lazy command tree (issue 13): its static table says what the command modules define.

``stackyard --help`` lists the root's commands from ``stackyard.cli.tree.COMMANDS`` without
importing them, so the table must name every command a module offers, with the help line
that module gives it; these tests import every command module and compare.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
import typer
import typer.main

import stackyard.cli
from stackyard.cli.tree import COMMANDS, LazyCommands, app, build, first_paragraph

pytestmark = pytest.mark.unit

ENTRIES = {e.name: e for e in COMMANDS}


def _modules() -> dict[str, Any]:
    return {
        info.name.rsplit(".", 1)[1]: importlib.import_module(info.name)
        for info in pkgutil.iter_modules(stackyard.cli.__path__, prefix="stackyard.cli.")
        if not info.name.endswith("__main__")
    }


@pytest.mark.parametrize("name", list(ENTRIES), ids=list(ENTRIES))
def test_an_entry_builds_the_command_its_module_defines(name: str) -> None:
    entry = ENTRIES[name]
    command = build(entry)
    assert command.name == name
    shown = first_paragraph(command.short_help or command.help or "")
    assert shown == entry.help, "COMMANDS' help line differs from the command's own help"


def test_every_command_a_module_registers_is_in_the_table() -> None:
    """``register(app)`` (the modules' own list of root commands) and the table agree."""
    for short, module in _modules().items():
        register = getattr(module, "register", None)
        if register is None:
            continue
        holder = typer.Typer()
        register(holder)
        offered = {c.name: c.callback for c in holder.registered_commands} | {
            g.name: g.typer_instance for g in holder.registered_groups
        }
        for name, target in offered.items():
            entry = ENTRIES.get(str(name))
            assert entry is not None, f"{short}.register adds '{name}', which COMMANDS lacks"
            assert entry.module == short and getattr(module, entry.attr) is target, name


def test_every_command_group_app_is_in_the_table() -> None:
    named = {(e.module, e.attr) for e in COMMANDS}
    for short, module in _modules().items():
        if short == "tree":
            continue
        for attr, value in vars(module).items():
            if isinstance(value, typer.Typer):
                assert (short, attr) in named, f"stackyard.cli.{short}.{attr} is not in COMMANDS"


def test_the_root_lists_the_table_in_order_and_resolves_lazily() -> None:
    root = typer.main.get_command(app)
    commands = root.commands  # type: ignore[attr-defined]
    assert isinstance(commands, LazyCommands)
    assert list(commands) == [e.name for e in COMMANDS]
    assert "nope" not in commands and commands.get("nope") is None
    assert commands.stub("env").help == ENTRIES["env"].help  # type: ignore[union-attr]
    assert commands["env"].name == "env" and "list" in commands["env"].commands


def test_a_command_whose_import_raises_keyerror_is_not_no_such_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Mapping.get`` swallows every ``KeyError``: one raised while importing a command's
    module used to turn into "No such command"; it is now an internal error naming it."""
    from stackyard.cli import tree

    def broken(entry: tree.Entry) -> Any:
        raise KeyError("a bug in the module")

    monkeypatch.setattr(tree, "build", broken)
    commands = tree.LazyCommands(tree.COMMANDS)
    with pytest.raises(RuntimeError, match="cannot load the command 'env'"):
        commands.get("env")
    assert commands.get("no-such-command") is None
