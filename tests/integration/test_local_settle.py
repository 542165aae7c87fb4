"""The readiness of a probe-less, port-less container, against real processes: one whose
processes all go idle is ready then (``ready_by`` "idle"), one that keeps running busily is
ready when the settle ends ("settle"), one that dies before either never is, and
``wait_ready`` fails for it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackyard.errors import StackyardError
from stackyard.runtime.local import LocalRuntime
from stackyard.runtime.spec import ContainerSpec, WorkloadSpec
from stackyard.runtime.supervisor import Limits

pytestmark = pytest.mark.integration

#: Longer than the default settle, so that a process exiting after 50 ms ends well before it
#: however busy the machine is (what is checked is the order, not a duration).
SETTLE = 0.4


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path / "workloads", limits=Limits(settle=SETTLE))
    try:
        yield runtime
    finally:
        runtime.stop_all()
        assert runtime.names() == []


def _spec(script: str) -> WorkloadSpec:
    return WorkloadSpec("dev", "job", (ContainerSpec("main", ("sh", "-c", script), {}),))


def test_a_running_probe_less_container_is_ready_after_its_settle(rt: LocalRuntime) -> None:
    # Never idle (it always runs): ready when the settle ends.
    rt.start(_spec("while :; do :; done"))
    st = rt.wait_ready("job", timeout=20)
    assert st.state == "ready"
    info = st.containers["main"]
    assert info["ready"] and info["exits"] == 0
    assert info["ready_by"] == "settle"
    assert isinstance(info["started_at"], float)


@pytest.mark.parametrize(
    "script",
    [
        "exec sleep 60",
        "echo started; sleep 60",  # the shell waits for its child: both asleep
        "exec python3 -c 'import time; [x * x for x in range(300000)]; time.sleep(60)'",
    ],
    ids=["sleep", "shell-and-child", "busy-then-asleep"],
)
def test_a_container_whose_processes_go_idle_is_ready_before_its_settle(
    tmp_path: Path, script: str
) -> None:
    """Ready once every process of its group has slept, using no CPU, for ``quiet``: here
    long before a settle of 60 s would end (``wait_ready`` gives up at 30 s)."""
    runtime = LocalRuntime(tmp_path / "workloads", limits=Limits(settle=60.0))
    try:
        runtime.start(_spec(script))
        st = runtime.wait_ready("job", timeout=30)
        info = st.containers["main"]
        assert st.state == "ready" and info["ready_by"] == "idle"
        assert info["exits"] == 0
    finally:
        runtime.stop_all()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads) so far."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_ready_probe_less_container_leaves_its_supervisor_idle(tmp_path: Path) -> None:
    # Without a liveness probe there is no liveness check to wait for: once ready, the
    # supervisor looks at its process every tick and probes nothing, well after the
    # liveness period too (a past liveness time must not make it spin).
    runtime = LocalRuntime(tmp_path / "workloads", limits=Limits(live_period=0.1))
    try:
        runtime.start(_spec("exec sleep 60"))
        runtime.wait_ready("job", timeout=20)
        pid = int(json.loads((runtime.root / "job" / "supervisor.pid").read_text())["pid"])
        time.sleep(0.3)  # past the liveness period
        before, started = _cpu_seconds(pid), time.monotonic()
        time.sleep(1.0)
        used, elapsed = _cpu_seconds(pid) - before, time.monotonic() - started
        assert used < 0.5 * elapsed  # a spinning supervisor uses all of it
        assert runtime.status("job").state == "ready"
    finally:
        runtime.stop_all()


def test_a_container_that_dies_before_its_settle_ends_fails_wait_ready(rt: LocalRuntime) -> None:
    # Busy until it exits (as a wrong argument or a failing import is): never idle first.
    rt.start(_spec("echo 'going away'; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; exit 3"))
    with pytest.raises(StackyardError) as caught:
        rt.wait_ready("job", timeout=20)
    message = caught.value.message
    assert "Workload 'job' did not become ready" in message
    assert "exited 3 times (last exit code 3)" in message
    assert "going away" in message
    assert not any(c.get("ready") for c in rt.status("job").containers.values())
