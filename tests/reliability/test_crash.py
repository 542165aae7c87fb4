"""Crash consistency: SIGKILL a process mid-apply; a fresh apply converges with 0 duplicates and
0 orphans according to the ledger, and destroy leaves nothing live."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.reliability

RUNS = 30
NODES, LATENCY_MS, PARALLELISM = 20, 25.0, 4


@pytest.fixture(scope="module")
def apply_window(worker: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long one uninterrupted apply of the crash graph takes on this machine."""
    home = tmp_path_factory.mktemp("calibrate")
    return worker.apply_duration(home, nodes=NODES, latency_ms=LATENCY_MS, parallelism=PARALLELISM)


@pytest.mark.parametrize("seed", range(RUNS), ids=lambda s: f"seed{s}")
def test_kill_9_then_apply_converges(
    worker: ModuleType, apply_window: float, tmp_path: Path, seed: int
) -> None:
    report = worker.crash_once(
        tmp_path / "home",
        seed,
        nodes=NODES,
        latency_ms=LATENCY_MS,
        parallelism=PARALLELISM,
        expected_s=apply_window,
    )
    context = (
        f"killed {report.killed_after_s}s in, after {report.finished_before_kill} changes "
        f"(worker exit {report.child_exit}); recovered: {report.recovered}"
    )
    assert report.error == "", f"{report.error} ({context})"
    assert report.ok, context
    assert report.duplicates == [], context
    assert report.orphans == [], context
    assert report.missing == [], context
    assert report.pending_intents == 0, context
    assert report.replan_changes == 0, f"a plan after converging still has changes ({context})"
    assert report.live_after_destroy == 0, context
