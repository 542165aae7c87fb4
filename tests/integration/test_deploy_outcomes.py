"""How deploys end: an event hook that raises is logged and counted, and the deployment says
events were lost; a workload that cannot run ends with its own exit code, never exit 1.

Deployment events are stored by a hook (``_EventLog``); when a hook fails on an event, that
event may be missing from the stored log. The engine goes on (a renderer's bug must not stop
an apply), but the failure is logged on the ``stackyard`` logger and the deployment records
``events_lost``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from _lite import lite_platform, sleeper_score
from stackyard.engine.events import Event, Events

pytestmark = pytest.mark.integration

LOGGER = "stackyard.engine.events"


def test_a_failing_hook_is_logged_and_counted_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Event] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("renderer bug")

    events = Events(broken, seen.append)
    with caplog.at_level(logging.WARNING, logger="stackyard"):
        events.emit("finished", "app/db", action="create")
        events.emit("finished", "app/cache", action="create")
    assert [e.address for e in seen] == ["app/db", "app/cache"]
    assert events.lost == 2
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 2
    assert records[0].levelno == logging.WARNING
    assert "'finished' event of app/db" in records[0].getMessage()
    assert "RuntimeError: renderer bug" in records[0].getMessage()


def test_no_failure_no_loss() -> None:
    events = Events(lambda _e: None)
    events.emit("started", "a/b")
    assert events.lost == 0


# -- through a real deploy ---------------------------------------------------------------------

SCORE = sleeper_score("sleeper")


def _sy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def lite_env(library_home: Path, tmp_path: Path, sweeper) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A created environment whose only binding is a local volume (nothing to connect to)."""
    name = sweeper.env
    folder = tmp_path / "platform"
    folder.mkdir()
    (folder / "platform.yaml").write_text(lite_platform(name))
    applied = _sy("platform", "apply", str(folder), "--yes")
    assert applied.returncode == 0, applied.stderr
    created = _sy("env", "create", name)
    assert created.returncode == 0, created.stderr
    try:
        yield name
    finally:
        destroyed = _sy("env", "destroy", name, "--yes")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr


def test_a_deploy_whose_event_hook_fails_records_the_lost_events(
    lite_env: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    score = tmp_path / "score.yaml"
    score.write_text(SCORE)

    def progress(message: str) -> None:
        # Progress lines for finished changes are printed by the event hook: a renderer that
        # breaks on them (a closed pipe, say) makes that hook fail on those events.
        if message.startswith("finished"):
            raise BrokenPipeError("stdout is gone")

    with Workspace.open(Settings.load()) as ws, caplog.at_level(logging.WARNING, "stackyard"):
        result = deploy_files(ws, [score], lite_env, progress=progress)
        assert result.deployment.status == "succeeded"
        stored = ws.records.deployment(result.deployment.id)
    assert stored is not None
    assert stored.summary.get("events_lost", 0) >= 1, stored.summary
    assert any(r.name == LOGGER and "BrokenPipeError" in r.getMessage() for r in caplog.records), (
        caplog.text
    )

    shown = _sy("deployments", lite_env, stored.id, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["summary"]["events_lost"] >= 1
    text = _sy("deployments", lite_env, stored.id)
    assert "events lost" in text.stdout, text.stdout


def test_logs_of_a_container_the_workload_lacks_is_invalid_input(
    lite_env: str, tmp_path: Path
) -> None:
    # Not an event hook, but the same running workload: a name the user typed is input (exit
    # 2), never an internal error (it was exit 1).
    score = tmp_path / "score.yaml"
    score.write_text(SCORE)
    deployed = _sy("deploy", str(score), "--env", lite_env, "--yes")
    assert deployed.returncode == 0, deployed.stderr
    res = _sy("logs", lite_env, "sleeper", "--container", "nope")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "has no container 'nope'" in res.stderr and "Traceback" not in res.stderr


def _score_with(container: str) -> str:
    return (
        "apiVersion: score.dev/v1b1\nmetadata: {name: broken}\ncontainers:\n  main:\n"
        + textwrap.indent(textwrap.dedent(container), "    ")
        + "resources:\n  data: {type: volume}\n"
    )


RUNTIME_REFUSALS = {
    # (the container, the exit code, a phrase of the error): each was exit 1
    "command not on PATH": (
        'image: none\ncommand: ["no-such-command-xyz"]\n',
        2,
        "not found on PATH",
    ),
    "volumes that overlap": (
        'image: none\ncommand: ["sh", "-c", "sleep 3600"]\n'
        'volumes:\n  /data: {source: "${resources.data}"}\n  /data/x: {source: "${resources.data}"}\n',
        2,
        "overlaps",
    ),
    "a NUL in a variable": (
        'image: none\ncommand: ["sh", "-c", "sleep 3600"]\nvariables: {A: "x\\0y"}\n',
        2,
        "an environment cannot hold",
    ),
    "a workload that never becomes ready": (
        'image: none\ncommand: ["sh", "-c", "exit 0"]\n',
        7,
        "did not become ready",
    ),
}


@pytest.mark.parametrize("case", RUNTIME_REFUSALS, ids=list(RUNTIME_REFUSALS))
def test_a_workload_that_cannot_run_has_its_own_exit_code(
    case: str, lite_env: str, tmp_path: Path
) -> None:
    container, code, phrase = RUNTIME_REFUSALS[case]
    score = tmp_path / "score.yaml"
    score.write_text(_score_with(container))
    res = _sy("deploy", str(score), "--env", lite_env, "--yes")
    assert res.returncode == code, (res.stdout, res.stderr)
    assert phrase in res.stderr and "Traceback" not in res.stderr


def test_a_deploy_that_cannot_ask_records_itself_cancelled(lite_env: str, tmp_path: Path) -> None:
    """Without --yes and without a terminal the confirmation cannot be asked: the command exits
    2 and the deployment is recorded cancelled, never left ``running``."""
    score = tmp_path / "score.yaml"
    score.write_text(SCORE)
    res = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "deploy", str(score), "--env", lite_env],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert res.returncode == 2 and "Confirmation needed" in res.stderr, res.stderr
    listed = _sy("deployments", lite_env, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    statuses = [d["status"] for d in json.loads(listed.stdout)]
    assert "running" not in statuses and "cancelled" in statuses, statuses
