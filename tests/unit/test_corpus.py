"""The bad-input corpus: every file is refused by the real CLI with diagnostics, never a crash.

``tests/corpus/workload/*`` are Score files; the first line of each is
``# expect: <summary>``, a summary that must be among the diagnostics. ``tests/corpus/component/*/``
are component directories with an optional ``expect`` file holding one summary line.

Every case goes through the real CLI (``python -m stackyard.cli ... --output json``). Process
start-up dominates the cost, so the selected cases run once, up front, in parallel, with the
workload files batched (see ``runs``); each case is still asserted on its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
WORKLOAD_CASES = sorted(p for p in (CORPUS / "workload").iterdir() if p.is_file())
COMPONENT_CASES = sorted(
    p for p in (CORPUS / "component").glob("*/") if (p / "component.yaml").exists()
)

# Files that cannot carry a first-line comment (no text, or not UTF-8).
NO_COMMENT = {
    "empty.yaml": "Empty file",
    "utf16-with-bom.yaml": "Not UTF-8 text",
    "binary-junk.bin": "Not UTF-8 text",
}
BATCHES = 4
EXPECT = re.compile(rb"^#\s*expect:\s*(?P<summary>.+?)\s*$")


def _argv(*cases: Path) -> list[str]:
    group = "component" if cases[0].is_dir() else "workload"
    paths = [str(c) for c in cases]
    return [sys.executable, "-m", "stackyard.cli", group, "validate", *paths, "--output", "json"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


@dataclass(frozen=True)
class Outcome:
    """One case's share of a CLI run: the run's exit code and stderr, and its diagnostics."""

    returncode: int
    stderr: str
    valid: bool
    diagnostics: list[dict[str, Any]]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> dict[Path, Outcome]:
    """The CLI outcome of every corpus case selected in this session.

    Workload files are validated in a few batches (``workload validate`` takes many files,
    and each file's diagnostics are told apart by their ``file``); component directories
    run one per process. The processes run in parallel.
    """
    cases = sorted(
        {
            item.callspec.params["case"]
            for item in request.session.items
            if getattr(item, "module", None) is request.module
            and hasattr(item, "callspec")
            and item.callspec.params.get("case") is not None
        }
    )
    files = [c for c in cases if not c.is_dir()]
    batches = [files[i::BATCHES] for i in range(BATCHES) if files[i::BATCHES]]
    jobs = [_argv(*batch) for batch in batches] + [_argv(c) for c in cases if c.is_dir()]
    members = [*batches, *([c] for c in cases if c.is_dir())]
    workers = max(2, min(8, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_run, jobs))
    out: dict[Path, Outcome] = {}
    for group, res in zip(members, results, strict=True):
        out.update(_split(group, res))
    return out


def _split(group: Sequence[Path], res: subprocess.CompletedProcess[str]) -> dict[Path, Outcome]:
    try:
        report = json.loads(res.stdout)
    except ValueError:
        report = {"valid": True, "diagnostics": []}  # the assertions below say what went wrong
    out = {}
    for case in group:
        diags = [d for d in report["diagnostics"] if len(group) == 1 or d["file"] == str(case)]
        valid = (
            report["valid"] if len(group) == 1 else not any(d["severity"] == "error" for d in diags)
        )
        out[case] = Outcome(res.returncode, res.stderr, valid, diags)
    return out


def _outcome(runs: dict[Path, Outcome], case: Path) -> Outcome:
    outcome = runs.get(case) or _split([case], _run(_argv(case)))[case]
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert "internal error" not in outcome.stderr, outcome.stderr
    assert outcome.returncode == 2, outcome
    assert outcome.valid is False
    assert [d for d in outcome.diagnostics if d["severity"] == "error"], outcome
    return outcome


def _expected_workload_summary(case: Path) -> str:
    if case.name in NO_COMMENT:
        return NO_COMMENT[case.name]
    first = case.read_bytes().split(b"\n", 1)[0]
    match = EXPECT.match(first)
    assert match, (
        f"{case.name}: first line must be '# expect: <summary>' (or list it in NO_COMMENT)"
    )
    return match["summary"].decode()


def test_workload_corpus_is_big_enough() -> None:
    assert len(WORKLOAD_CASES) >= 40


@pytest.mark.parametrize("case", WORKLOAD_CASES, ids=[p.name for p in WORKLOAD_CASES])
def test_workload_corpus(case: Path, runs: dict[Path, Outcome]) -> None:
    outcome = _outcome(runs, case)
    summaries = [d["summary"] for d in outcome.diagnostics]
    assert _expected_workload_summary(case) in summaries, outcome
    for diag in outcome.diagnostics:
        assert diag["file"] == str(case)
        assert diag["detail"], diag


@pytest.mark.parametrize(
    "case",
    COMPONENT_CASES
    or [pytest.param(None, marks=pytest.mark.skip(reason="no component corpus yet"))],
    ids=[p.name for p in COMPONENT_CASES] or ["none"],
)
def test_component_corpus(case: Path | None, runs: dict[Path, Outcome]) -> None:
    assert case is not None
    outcome = _outcome(runs, case)
    expect = case / "expect"
    if expect.exists():
        wanted = expect.read_text(encoding="utf-8").strip()
        assert wanted in [d["summary"] for d in outcome.diagnostics], outcome


def test_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    padding = "# " + "x" * 1022 + "\n"
    big.write_text(
        "apiVersion: score.dev/v1b1\nmetadata: {name: big}\ncontainers: {web: {image: x}}\n"
        + padding * 1025,
        encoding="utf-8",
    )
    assert big.stat().st_size > 1024 * 1024
    outcome = _outcome({}, big)
    assert [d["summary"] for d in outcome.diagnostics] == ["File too large"]


def test_missing_file_and_directory_are_diagnostics(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    res = _run([*_argv(missing)[:-2], str(tmp_path), "--output", "json"])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    report = json.loads(res.stdout)
    found = {(d["file"], d["summary"]) for d in report["diagnostics"]}
    assert found == {(str(missing), "File not found"), (str(tmp_path), "Not a file")}


def test_many_files_in_one_call_report_each(shared_dir: Path) -> None:
    good = shared_dir / "score" / "score-full.yaml"
    bad = CORPUS / "workload" / "container-image-missing.yaml"
    res = _run([*_argv(good), str(bad)])
    assert res.returncode == 2
    report = json.loads(res.stdout)
    assert report["valid"] is False
    assert {d["file"] for d in report["diagnostics"]} == {str(bad)}


def test_valid_file_exits_zero(shared_dir: Path) -> None:
    res = _run(_argv(shared_dir / "score" / "score-full.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout) == {"valid": True, "diagnostics": []}


def test_text_output_names_file_and_path(tmp_path: Path) -> None:
    case = CORPUS / "workload" / "container-image-missing.yaml"
    res = _run([sys.executable, "-m", "stackyard.cli", "workload", "validate", str(case)])
    assert res.returncode == 2
    assert "Missing field" in res.stderr
    assert f"{case}:containers.web.image" in res.stderr
