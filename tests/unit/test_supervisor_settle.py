"""When the supervisor checks a container's readiness, and how ``wait_ready`` notices it.

A probe-less, port-less container is ready once all its processes have been idle for
``quiet`` (looked at every ``quiet``), or at the latest once it has run for the settle: the
supervisor checks it at the very moment the settle ends (not up to a poll later), and
``wait_ready`` reads ``status.json`` as soon as the supervisor replaces it. These tests check
the scheduling itself, with made-up clock values: no timing is measured.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stackyard.runtime import local
from stackyard.runtime.supervisor import (
    TICK,
    Limits,
    ProbePlan,
    ProcessPlan,
    Runner,
    Supervisor,
    SupervisorPlan,
    next_check,
    tick,
)

LIMITS = Limits()  # ready_poll 0.05, settle 0.1, quiet 0.02, ready_period 1.0
NOT_QUIET = Limits(quiet=0.0)  # the containers runtime's: the settle alone


def test_before_the_settle_ends_checks_come_every_quiet() -> None:
    began = 1000.0
    assert next_check(LIMITS, began=began, now=began, ever_ready=False, settles=True) == (
        began + LIMITS.quiet
    )
    assert next_check(NOT_QUIET, began=began, now=began, ever_ready=False, settles=True) == (
        began + LIMITS.ready_poll
    )


def test_the_check_after_a_poll_that_would_pass_the_settle_is_at_the_settle() -> None:
    began = 1000.0
    now = began + 0.09  # the next look (1000.11) would come 10 ms after the settle
    assert next_check(LIMITS, began=began, now=now, ever_ready=False, settles=True) == (
        began + LIMITS.settle
    )
    now = began + 0.07  # the next poll (1000.12) would come 20 ms after the settle
    assert next_check(NOT_QUIET, began=began, now=now, ever_ready=False, settles=True) == (
        began + LIMITS.settle
    )


def test_a_probed_container_keeps_its_poll() -> None:
    began = 1000.0
    now = began + 0.07
    assert next_check(LIMITS, began=began, now=now, ever_ready=False, settles=False) == (
        now + LIMITS.ready_poll
    )


def test_after_the_settle_and_once_ready_the_usual_periods_apply() -> None:
    began = 1000.0
    late = began + 0.3
    # the settle ended while a check ran: the next one is at once (and passes)
    assert next_check(LIMITS, began=began, now=late, ever_ready=False, settles=True) == late
    assert next_check(LIMITS, began=began, now=late, ever_ready=True, settles=True) == (
        late + LIMITS.ready_period
    )


def test_the_wait_between_looks_ends_when_a_check_is_due() -> None:
    assert tick(10.0, 9.0) == TICK  # far off: the usual tick (exit and stop are seen)
    assert tick(10.0, 10.0 - TICK / 4) == pytest.approx(TICK / 4)
    assert tick(10.0, 10.5) == 0.0  # overdue: no wait at all


def _runner(
    tmp_path: Path, *, readiness: ProbePlan | None = None, ports: tuple[int, ...] = ()
) -> Runner:
    (tmp_path / "logs").mkdir(exist_ok=True)
    process = ProcessPlan("main", "/bin/sleep", ("sleep", "60"), {}, readiness=readiness)
    plan = SupervisorPlan("web", "d", str(tmp_path), {}, ports, (process,), LIMITS)
    return Supervisor(plan).runners[0]


@pytest.mark.parametrize("began", [0.0, 0.1, 12.345678, 98765.4321, 1234567.891011, 3.3e6 + 0.7])
def test_checks_made_when_due_find_the_container_ready_when_the_settle_ends(
    tmp_path: Path, began: float
) -> None:
    runner = _runner(tmp_path)
    assert runner._settles()
    now, checks = began, []
    while not runner._ready(began, now):
        checks.append(now)
        assert len(checks) < 10
        # A check takes a few milliseconds (writing the status): the next is scheduled
        # from its end, so polls drift later and later.
        now = next_check(LIMITS, began=began, now=now + 0.004, ever_ready=False, settles=True)
    # Ready at the settle's end, not at the first poll after it (``now - began`` may round
    # to a hair under the settle: the check made then still passes), never before it.
    assert now == pytest.approx(began + LIMITS.settle, abs=1e-6)
    assert all(c < began + LIMITS.settle for c in checks)
    assert checks[:2] == [began, pytest.approx(began + 0.004 + LIMITS.quiet, abs=1e-6)]
    assert runner.ready_by == "settle"  # no process to find idle: the settle decides


def test_a_container_with_a_probe_or_a_port_does_not_settle(tmp_path: Path) -> None:
    assert not _runner(tmp_path, readiness=ProbePlan("http://127.0.0.1:9/"))._settles()
    assert not _runner(tmp_path, ports=(9,))._settles()


def _replace(path: Path, text: str) -> None:
    """As the supervisor writes ``status.json``: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_a_replaced_status_file_ends_the_wait_at_once(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    _replace(status, '{"state": "starting"}')
    seen = local._stamp(status)
    _replace(status, '{"state": "ready"}')  # same size, maybe the same mtime: a new inode
    assert local._stamp(status) != seen
    started = time.monotonic()
    local._await_change(status, seen, until=started + 60.0)
    assert time.monotonic() - started < 30.0  # returned on the change, not at ``until``


def test_a_status_file_that_appears_ends_the_wait(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    seen = local._stamp(status)
    assert seen is None
    _replace(status, "{}")
    started = time.monotonic()
    local._await_change(status, seen, until=started + 60.0)
    assert time.monotonic() - started < 30.0


def test_an_unchanged_status_file_waits_until_the_end(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    _replace(status, "{}")
    until = time.monotonic() + 0.03
    local._await_change(status, local._stamp(status), until=until)
    assert time.monotonic() >= until
    assert os.path.exists(status)
