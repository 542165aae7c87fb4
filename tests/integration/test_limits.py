"""Limits against hostile input, on the machine's PostgreSQL and Redis: a Score that expands
past the resource limit is refused before planning, and a policy that runs too long or eats
memory is stopped at its limit and fails closed, naming the policy and the stage."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _platform import EXAMPLES, Stage, write_platform

pytestmark = pytest.mark.integration

HELLO = EXAMPLES / "hello" / "score.yaml"


def sy(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "STACKYARD_HOME": str(home), "COLUMNS": "300", "NO_COLOR": "1"}
    environ.pop("STACKYARD_DATABASE_URL", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


# -- expansion size ----------------------------------------------------------------------------


def _hostile_score(path: Path, resources: int) -> Path:
    """A ~129 KB Score whose resources expand to four provider resources each."""
    lines = [
        "apiVersion: score.dev/v1b1",
        "metadata: {name: flood}",
        "containers:",
        "  main: {image: busybox, command: [sleep, '1']}",
        "resources:",
    ]
    lines += [f"  r{i}: {{type: redis}}" for i in range(resources)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_score_expanding_past_the_limit_is_refused_before_planning(
    stage: Stage, tmp_path: Path
) -> None:
    dev = stage.name("dev")
    score = _hostile_score(tmp_path / "flood.yaml", 5001)
    assert score.stat().st_size > 100_000
    started = time.monotonic()
    res = sy(stage.home, "deploy", str(score), "--env", dev, "--yes")
    elapsed = time.monotonic() - started
    print(f"refused in {elapsed:.1f} s")
    assert res.returncode == 2, (res.stdout, res.stderr[-2000:])
    assert "Too many resources" in res.stderr
    assert "more than 5000 provider resources" in res.stderr
    assert "max_resources" in res.stderr and "Traceback" not in res.stderr
    with stage.ws() as ws:
        assert ws.records.workloads(dev) == []
        assert not [d for d in ws.records.deployments(dev) if d.workloads == ("flood",)]


def test_the_expansion_limit_is_configurable(stage: Stage) -> None:
    dev = stage.name("dev")
    (stage.home / "config.yaml").write_text("max_resources: 2\n")
    res = sy(stage.home, "deploy", str(HELLO), "--env", dev, "--yes", "--plan-only")
    assert res.returncode == 2, res.stderr
    assert "more than 2 provider resources" in res.stderr
    res = sy(
        stage.home,
        "deploy",
        str(HELLO),
        "--env",
        dev,
        "--plan-only",
        env={"STACKYARD_MAX_RESOURCES": "5000"},
    )
    assert res.returncode == 0, res.stderr  # the variable wins over the file


# -- policy evaluation -------------------------------------------------------------------------

SLOW = """\
package stackyard
import rego.v1
deny contains msg if {
  n := count({r | some i in numbers.range(1, 6000); some j in numbers.range(1, 6000); r := (i * j) % 7})
  msg := sprintf("%d residues", [n])
}
"""
GREEDY = """\
package stackyard
import rego.v1
deny contains msg if {
  xs := [sprintf("%d-padding-padding-padding-padding", [i]) | some i in numbers.range(1, 200000000)]
  msg := sprintf("%d strings", [count(xs)])
}
"""


def _policy_doc(name: str, rego: str) -> str:
    body = textwrap.indent(rego, "    ")
    return (
        "---\napiVersion: stackyard.dev/v1\nkind: Policy\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n  layer: organisation\n  stages: [plan]\n  rego: |\n" + body
    )


@pytest.fixture
def hostile(
    request: pytest.FixtureRequest,
    library_home: Path,
    tmp_path: Path,
    sweeper,  # type: ignore[no-untyped-def]
    postgres_admin_url: str,
    redis_url: str,
) -> Iterator[Stage]:
    """The example platform with a hostile plan-stage policy (the parameter: name and Rego);
    ``<prefix>-dev`` created."""
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir

    plat = write_platform(
        tmp_path / "platform",
        sweeper.env,
        pg_url=postgres_admin_url,
        redis_url=redis_url,
        extra="\n" + _policy_doc(*request.param),
    )
    st = Stage(library_home, sweeper.env, plat)
    with st.ws() as ws:
        apply_dir(ws.platform, ws.access, plat, confirm=lambda _q: True)
        lifecycle.create(ws, st.name("dev"))
    try:
        yield st
    finally:
        st.teardown()


@pytest.mark.parametrize(
    ("hostile", "limits", "expect"),
    [
        (
            ("slow-pairs", SLOW),
            {"STACKYARD_POLICY_TIMEOUT": "1s"},
            "Policy 'slow-pairs': Policy evaluation passed its time limit of 1 s",
        ),
        (
            ("greedy-strings", GREEDY),
            {"STACKYARD_POLICY_TIMEOUT": "60s", "STACKYARD_POLICY_MEMORY_MB": "256"},
            "Policy 'greedy-strings': Policy evaluation passed its memory limit of 256 MiB",
        ),
    ],
    ids=["time", "memory"],
    indirect=["hostile"],
)
def test_a_hostile_policy_is_stopped_at_its_limit_and_denies(
    hostile: Stage, limits: dict[str, str], expect: str
) -> None:
    dev = hostile.name("dev")
    started = time.monotonic()
    res = sy(hostile.home, "deploy", str(HELLO), "--env", dev, "--yes", env=limits, timeout=90)
    elapsed = time.monotonic() - started
    print(f"denied in {elapsed:.1f} s")
    assert res.returncode == 5, (res.stdout, res.stderr)
    assert expect in res.stderr, res.stderr
    assert "at the 'plan' stage" in res.stderr and "Traceback" not in res.stderr
    with hostile.ws() as ws:
        assert ws.records.workloads(dev) == []  # failed closed: nothing applied
        assert not [uid for uid in ws.records.instances(dev) if "#hello" in uid]
