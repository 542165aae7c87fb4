"""What the docs and the CI script name exists: every ``stackyard`` command they quote, and every
test file they point at (issue 12, papercuts: ``keys remove`` and ``test_registry.py``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from stackyard.cli.main import app

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TEXTS = sorted(
    [*REPO.glob("docs/**/*.md"), REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / ".ci/run"]
)
#: Commands the docs name as not available yet, on purpose.
PLANNED = {"adopt"}
WORD = re.compile(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*")


def _missing_command(root: Any, span: str) -> str | None:
    """The first word of ``stackyard <span>`` that is not a command, or ``None``."""
    node: Any = root
    for raw in span.replace("\\|", "|").split():
        commands = getattr(node, "commands", None)
        word = raw.strip("[]")
        if commands is None or not WORD.fullmatch(word):
            return None  # past the commands: arguments, options, placeholders
        names = word.split("|")
        for name in names:
            if name not in commands:
                return name
        node = commands[names[0]] if len(names) == 1 else None
    return None


def test_every_quoted_command_exists() -> None:
    root = typer.main.get_command(app)
    missing = [
        (path.relative_to(REPO).as_posix(), span, word)
        for path in TEXTS
        for span in re.findall(r"`stackyard ([^`]+)`", path.read_text(encoding="utf-8"))
        if (word := _missing_command(root, span)) is not None and word not in PLANNED
    ]
    assert missing == []


def test_every_named_test_file_exists() -> None:
    tests = {p.name for p in (REPO / "tests").rglob("test_*.py")}
    missing = []
    for path in TEXTS:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(REPO).as_posix()
        missing += [
            (where, m) for m in re.findall(r"tests/[\w/]+\.py", text) if not (REPO / m).is_file()
        ]
        missing += [
            (where, m) for m in re.findall(r"(?<![\w/])test_\w+\.py", text) if m not in tests
        ]
    assert missing == []
