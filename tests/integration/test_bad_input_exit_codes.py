"""No bad input is an internal error: every file of the bad-input corpus, through every command
that reads a file, ends with a real exit code (2, mostly) and never with exit 1 or a traceback.

The corpus is ``tests/corpus`` (see its README): Score files under ``workload/`` and component
directories under ``component/``. Each command runs in process through the CLI's own error
boundary (``stackyard.cli.main.invoke``, what the ``stackyard`` script runs), in a home with
the library published and an environment ``lite`` whose only binding is a local volume, so
that a file that gets past parsing goes on through resolution, expansion and planning.
Nothing is ever applied: deploys are ``--plan-only`` and no file of the corpus is valid.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from _lite import lite_platform
from stackyard.cli.main import invoke

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
WORKLOADS = sorted(p for p in (CORPUS / "workload").iterdir() if p.is_file())
COMPONENTS = sorted(p for p in (CORPUS / "component").iterdir() if p.is_dir())
ENV = "lite"


@dataclass(frozen=True)
class Yard:
    """The prepared home, and a scratch folder for files the commands write."""

    home: Path
    scratch: Path


@pytest.fixture(scope="module")
def yard(library_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Yard]:
    root = tmp_path_factory.mktemp("bad-input")
    home = root / "home"
    shutil.copytree(library_template, home)
    platform = root / "platform"
    platform.mkdir()
    (platform / "platform.yaml").write_text(lite_platform(ENV))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STACKYARD_HOME", str(home))
        mp.delenv("STACKYARD_DATABASE_URL", raising=False)
        assert invoke(["platform", "apply", str(platform), "--yes"]) == 0
        assert invoke(["env", "create", ENV]) == 0
    scratch = root / "scratch"
    scratch.mkdir()
    yield Yard(home, scratch)
    # ``lite`` owns nothing outside the home (no core), and the home is a temporary folder.


Argv = Callable[[Sequence[Path], Path], list[str]]  # (cases, scratch) -> arguments

#: Commands that take many files get them in batches of this many: every file is still read
#: by the command (each is refused at validation, where all files are read), in fewer runs.
BATCH = 12


def _alone(cases: Sequence[Path], scratch: Path) -> Path:
    """A folder holding only ``cases`` (for commands that read a folder of documents)."""
    folder = scratch / f"docs-{cases[0].parent.name}-{cases[0].name}-{len(cases)}"
    if not folder.exists():
        folder.mkdir()
        for case in cases:
            name = case.parent.name if case.name == "component.yaml" else case.stem
            shutil.copy(case, folder / f"{name}.yaml")
    return folder


def _manifests(cases: Sequence[Path]) -> list[str]:
    return [str(c / "component.yaml" if c.is_dir() else c) for c in cases]


@dataclass(frozen=True)
class Command:
    """A command that reads files: how to call it, and whether it takes many at once."""

    argv: Argv
    many: bool = False


def _paths(cases: Sequence[Path]) -> list[str]:
    return [str(c) for c in cases]


# Every command that reads a file a user wrote, as it reads a Score file (or any YAML file).
FILE_COMMANDS: dict[str, Command] = {
    "workload validate": Command(lambda f, _s: ["workload", "validate", *_paths(f)], many=True),
    "workload validate --env": Command(
        lambda f, _s: ["workload", "validate", *_paths(f), "--env", ENV], many=True
    ),
    "deploy --plan-only": Command(
        lambda f, _s: ["deploy", *_paths(f), "--env", ENV, "--plan-only"], many=True
    ),
    "deploy --plan-only -o json": Command(
        lambda f, _s: ["deploy", *_paths(f), "--env", ENV, "--plan-only", "-o", "json"], many=True
    ),
    "release create": Command(
        lambda f, _s: ["release", "create", *_paths(f), "--env", ENV], many=True
    ),
    "platform apply": Command(
        lambda f, s: ["platform", "apply", str(_alone(f, s)), "--yes"], many=True
    ),
    "explain": Command(lambda f, _s: ["explain", *_paths(f), "--env", ENV]),
    "policy eval --input": Command(
        lambda f, _s: ["policy", "eval", "--stage", "plan", "--input", *_paths(f)]
    ),
    "keys import": Command(lambda f, _s: ["keys", "import", *_paths(f), "--name", "corpus"]),
    "component validate": Command(lambda f, _s: ["component", "validate", *_paths(f)]),
}

# Every command that reads a component directory.
COMPONENT_COMMANDS: dict[str, Command] = {
    "component validate": Command(lambda d, _s: ["component", "validate", *_paths(d)]),
    "component validate -o json": Command(
        lambda d, _s: ["component", "validate", *_paths(d), "-o", "json"]
    ),
    "component build": Command(
        lambda d, s: ["component", "build", *_paths(d), "--out", str(s / "x.tar.gz")]
    ),
    "component publish": Command(lambda d, _s: ["component", "publish", *_paths(d)]),
    "policy test": Command(lambda d, _s: ["policy", "test", *_paths(d)]),
    "platform apply": Command(
        lambda d, s: [
            "platform",
            "apply",
            str(_alone([Path(m) for m in _manifests(d)], s)),
            "--yes",
        ],
        many=True,
    ),
    "workload validate": Command(lambda d, _s: ["workload", "validate", *_manifests(d)], many=True),
    "deploy --plan-only": Command(
        lambda d, _s: ["deploy", *_manifests(d), "--env", ENV, "--plan-only"], many=True
    ),
}


def _run(runs: Sequence[list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    problems = []
    for args in runs:
        code = invoke(args)
        out, err = capsys.readouterr()
        text = out + err
        if code == 1 or "Traceback" in text or "internal error" in text:
            problems.append(f"stackyard {' '.join(args)} -> exit {code}\n{text.strip()[-600:]}")
    assert not problems, f"{len(problems)} internal error(s):\n\n" + "\n\n".join(problems)


def _runs(yard: Yard, cases: Sequence[Path], command: Command) -> list[list[str]]:
    size = BATCH if command.many else 1
    return [command.argv(cases[i : i + size], yard.scratch) for i in range(0, len(cases), size)]


@pytest.fixture
def in_yard(yard: Yard, monkeypatch: pytest.MonkeyPatch) -> Yard:
    monkeypatch.setenv("STACKYARD_HOME", str(yard.home))
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return yard


@pytest.mark.parametrize("command", FILE_COMMANDS, ids=list(FILE_COMMANDS))
def test_no_workload_file_is_an_internal_error(
    command: str, in_yard: Yard, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(_runs(in_yard, WORKLOADS, FILE_COMMANDS[command]), capsys)


@pytest.mark.parametrize("command", COMPONENT_COMMANDS, ids=list(COMPONENT_COMMANDS))
def test_no_component_is_an_internal_error(
    command: str, in_yard: Yard, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(_runs(in_yard, COMPONENTS, COMPONENT_COMMANDS[command]), capsys)


LIBRARY_COMPONENT = Path(__file__).resolve().parents[2] / "src/stackyard/library/local-volume"

# Paths a user names that cannot be used: each was an internal error (exit 1) before.
DESTINATIONS = {
    "build --out a folder": lambda s: [
        "component",
        "build",
        str(LIBRARY_COMPONENT),
        "--out",
        str(s),
    ],
    "build --out in a missing folder": lambda s: [
        "component",
        "build",
        str(LIBRARY_COMPONENT),
        "--out",
        str(s / "no" / "x.tar.gz"),
    ],
    "init --to an unwritable place": lambda _s: [
        "component",
        "init",
        "thing",
        "--type",
        "volume",
        "--to",
        "/proc/no-such-thing",
    ],
    "policy test without tests": lambda s: ["policy", "test", str(s)],
}


@pytest.mark.parametrize("case", DESTINATIONS, ids=list(DESTINATIONS))
def test_an_unusable_path_is_invalid_input(
    case: str, in_yard: Yard, capsys: pytest.CaptureFixture[str]
) -> None:
    args = DESTINATIONS[case](in_yard.scratch)
    code = invoke(args)
    out, err = capsys.readouterr()
    assert code == 2, (args, out, err)
    assert "Traceback" not in out + err and "internal error" not in out + err


def test_the_corpus_is_there() -> None:
    assert len(WORKLOADS) >= 40 and len(COMPONENTS) >= 20


class _Terminal(io.StringIO):
    """Standard input that says it is a terminal, holding the answers typed into it."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", ["n\n", ""], ids=["no", "end-of-input"])
def test_a_declined_confirmation_is_cancelled_not_an_internal_error(
    answer: str,
    in_yard: Yard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    code = invoke(["env", "destroy", ENV])
    out, err = capsys.readouterr()
    assert code == 10, (out, err)  # cancelled: nothing was changed (it was exit 1)
    assert "Cancelled" in out + err
    assert invoke(["env", "show", ENV, "-o", "json"]) == 0
    assert '"status": "ready"' in capsys.readouterr().out
