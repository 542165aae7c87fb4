"""Issue 16: the ``containers`` runtime against a real podman, through the deploy road.

Two workloads where one reaches the other by name on the environment's network, a volume
written by a container and read after its restart, an exec probe, logs, recovery after a
kill -9 of the container or of its supervisor, and a destroy that leaves nothing in podman.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _ctrsupport import open_ws, podman_leftovers, write_score
from _images import podman

pytestmark = pytest.mark.integration

WEB = {
    "main": {
        "image": "busybox",
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "files": [{"target": "/www/index.html", "content": "hello from web\n"}],
        "readinessProbe": {"httpGet": {"port": 8080, "path": "/index.html"}},
    }
}
WEB_SERVICE = {"ports": {"http": {"port": 80, "targetPort": 8080}}}

# The client fetches the web workload by name, appends one line per start to its volume, and
# only then is ready (an exec probe inside the container looks for the marker it writes).
CLIENT_SCRIPT = (
    'echo "boot $(date +%s%N)" >> /data/boots; '
    'echo "boots: $(wc -l < /data/boots)"; '
    "touch /tmp/ready; "
    'while true; do wget -q -O- "http://$TARGET:8080/index.html" && echo "greeting: ok"; '
    "sleep 1; done"
)


def _client(data_source: str = "${resources.data}") -> dict[str, Any]:
    return {
        "main": {
            "image": "busybox",
            "command": ["sh", "-c"],
            "args": [CLIENT_SCRIPT],
            "variables": {"TARGET": "web"},
            "volumes": [{"source": data_source, "target": "/data"}],
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]}},
        }
    }


def _deploy(ws: Any, env: str, *paths: Path) -> Any:
    from stackyard.environments.deploy import deploy_files

    return deploy_files(ws, list(paths), env, confirm=lambda _p: True)


def _wait_log(ws: Any, env: str, workload: str, marker: str, count: int = 1) -> str:
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = "\n".join(ws.runtime(env).logs(workload))
        if text.count(marker) >= count:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{count} x {marker!r} not in the log of {workload}:\n{text}")


def _inspect(name: str) -> dict[str, Any]:
    out = subprocess.run(
        [podman(), "inspect", name], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out)[0])


def _containers(env: str, workload: str) -> list[str]:
    done = subprocess.run(
        [
            podman(),
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label=dev.stackyard.env={env}",
            "--filter",
            f"label=dev.stackyard.workload={workload}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_two_workloads_by_name_a_volume_an_exec_probe_and_logs(cenv: str, tmp_path: Path) -> None:
    env = cenv
    web = write_score(tmp_path, "web", WEB, service=WEB_SERVICE)
    client = write_score(tmp_path, "client", _client(), resources={"data": {"type": "volume"}})
    with open_ws() as ws:
        result = _deploy(ws, env, web, client)
        assert result.workloads["web"].state == "ready"
        assert result.workloads["client"].state == "ready", "the exec probe passed"
        # The web workload is published on 127.0.0.1, and its endpoint is in its status.
        endpoint = ws.runtime(env).status("web").endpoints["http"]
        assert endpoint.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{endpoint}/index.html", timeout=5) as resp:
            assert resp.read() == b"hello from web\n"
        # The client reached the web workload by its name, on the environment's network.
        log = _wait_log(ws, env, "client", "greeting: ok")
        assert "hello from web" in log and "boots: 1" in log
        # Its container is labelled with the environment and the workload.
        (name,) = _containers(env, "client")
        labels = _inspect(name)["Config"]["Labels"]
        assert labels["dev.stackyard.workload"] == "client"
        assert labels["dev.stackyard.owner"].endswith(f":{env}:workload.client")

        # A restart (a changed variable) keeps what the container wrote to its volume.
        client2 = write_score(
            tmp_path / "v2",
            "client",
            {"main": {**_client()["main"], "variables": {"TARGET": "web", "V": "2"}}},
            resources={"data": {"type": "volume"}},
        )
        result = _deploy(ws, env, client2)
        assert result.workloads["client"].state == "ready"
        log = _wait_log(ws, env, "client", "boots: 2")
        assert "boots: 2" in log, "the second start read the first one's line from the volume"

    with open_ws() as ws:
        from stackyard.environments import lifecycle

        lifecycle.destroy(ws, env)
    assert podman_leftovers(env) == [], "destroy leaves no container, network or volume"


def test_a_killed_container_or_supervisor_is_recovered(cenv: str, tmp_path: Path) -> None:
    env = cenv
    web = write_score(tmp_path, "web", WEB, service=WEB_SERVICE)
    with open_ws() as ws:
        _deploy(ws, env, web)
        runtime = ws.runtime(env)
        (name,) = _containers(env, "web")
        before = runtime.status("web").restarts

        # kill -9 of the container's process: its supervisor starts it again.
        os.kill(int(_inspect(name)["State"]["Pid"]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while runtime.status("web").restarts == before and time.monotonic() < deadline:
            time.sleep(0.1)
        status = runtime.wait_ready("web", timeout=30)
        assert status.restarts > before
        assert "exited" in "\n".join(runtime.logs("web"))

        # kill -9 of the supervisor: the workload reads as stopped, its container still runs,
        # and the next deploy replaces it (one container, ready again).
        pid = json.loads((runtime.root / "web" / "supervisor.pid").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while runtime.status("web").state != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.status("web").state == "stopped"
        result = _deploy(ws, env, web)
        assert result.workloads["web"].state == "ready"
        assert len(_containers(env, "web")) == 1
        endpoint = runtime.status("web").endpoints["http"]
        with urllib.request.urlopen(f"{endpoint}/index.html", timeout=5) as resp:
            assert resp.status == 200


def test_an_image_only_container_runs_its_image_command(cenv: str, tmp_path: Path) -> None:
    """No command: the image's entrypoint (none here) stays, and Score's args replace its
    ``CMD``; resource limits reach the container."""
    score = write_score(
        tmp_path,
        "plain",
        {
            "main": {
                "image": "busybox",
                "args": ["sh", "-c", "echo started as $(id -u); sleep 3600"],
                "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
            }
        },
    )
    with open_ws() as ws:
        _deploy(ws, cenv, score)
        log = _wait_log(ws, cenv, "plain", "started as")
        assert "started as 0" in log
        (name,) = _containers(cenv, "plain")
        host = _inspect(name)["HostConfig"]
        assert host["Memory"] == 64 * 2**20
        assert host["NanoCpus"] == 250_000_000


def test_doctor_says_which_runtimes_this_machine_can_use(home: Path) -> None:
    import sys

    from _cli import finished, ok

    podman()
    args = ["doctor", "--output", "json"]
    done = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "STACKYARD_HOME": str(home)},
    )
    report = ok(finished(args, done.returncode, done.stdout, done.stderr)).json()
    assert report["runtimes"]["local"]["usable"] is True
    assert report["runtimes"]["containers"]["usable"] is True
    assert report["engines"]["podman"]["works"] is True
    assert (home / "containers" / "engine.json").is_file(), "the quirks are cached"


def test_forced_quirks_override_detection(home: Path) -> None:
    """``STACKYARD_PODMAN_ULIMITS=none`` forces no ulimits: on a host that needs them podman
    then fails, and says so; on one that does not, the engine has none."""
    podman()
    from stackyard.errors import WorkloadFailedError
    from stackyard.runtime.containers.engine import detect

    detected = detect(home, {})
    try:
        forced = detect(home, {"STACKYARD_PODMAN_ULIMITS": "none"})
    except WorkloadFailedError as exc:
        assert detected.ulimits, "only a host that needs ulimits refuses to run without them"
        assert "STACKYARD_PODMAN" in (exc.hint or "")
    else:
        assert forced.ulimits == ()
        assert "forced" in " ".join(forced.quirks)
