"""A repair that waited for the lock never undoes what landed meanwhile: what it re-converges
is read under the lock (review of issue 11: it used to read the live workloads first, and put a
workload removed while it waited back, with its database)."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import pytest

from _platform import Stage

pytestmark = pytest.mark.reliability


def _score(directory: Path, name: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: score.dev/v1b1
            metadata: {{name: {name}}}
            containers:
              main: {{image: busybox, command: ["sleep", "3600"]}}
            resources:
              db: {{type: postgres}}
            """
        )
    )
    return path


def test_a_repair_that_waited_keeps_a_removal_that_landed_meanwhile(
    stage: Stage, tmp_path: Path
) -> None:
    from stackyard.engine.engine import Engine
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.repair import repair

    env = stage.name("dev")
    with stage.ws() as ws:
        deploy_files(ws, [_score(tmp_path, "keep"), _score(tmp_path, "gone")], env)
    waiting = threading.Event()
    result: dict[str, object] = {}

    def run_repair() -> None:
        def progress(message: str) -> None:
            if "waiting" in message:
                waiting.set()

        with stage.ws() as ws:
            ws.lock_wait_s = 60
            try:
                result["repair"] = repair(ws, env, progress=progress)
            except Exception as exc:  # reported below
                result["error"] = exc

    with stage.ws() as ws:
        other = Engine(store=ws.store, kinds=ws.kinds, holder="another-writer")
        with other.locked(env) as held:
            t = threading.Thread(target=run_repair)
            t.start()
            assert waiting.wait(timeout=60), "the repair never waited for the lock"
            # What a `stackyard remove gone` that held the lock records: 'gone' is no longer
            # live (its resources are left to the next converge, which drops them).
            ws.records.record_deploy(
                env, put_workloads=[], put_instances=[], drop_workloads=["gone"], lease=held.lease
            )
        t.join(timeout=300)
        assert not t.is_alive()
        assert "error" not in result, result.get("error")
        live = {w.name for w in ws.records.workloads(env)}
        assert live == {"keep"}, f"the repair brought back {sorted(live - {'keep'})}"
        assert not [uid for uid in ws.records.instances(env) if "#gone." in uid]
