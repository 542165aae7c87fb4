"""Issue 16: two containers, one reaching the other by name through ``service-port``, on a real
podman.

``api`` serves a file with busybox httpd; ``admin`` asks for ``{type: service-port, params:
{workload: api, port: http}}``, fetches ``http://${resources.api.hostname}:${resources.api.port}``
once (no retry) over the environment's network, and serves what it got. ``admin`` sorts before
``api``, so only the ``service-port`` ordering makes ``api`` start (and get ready) first. The
``environment`` type brings the environment's variables. A ``service-port`` to a workload that
does not exist, or to a port it does not declare, is refused by the CLI (exit 2) with nothing
started.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ctrsupport import open_ws, podman_leftovers, write_score
from _images import podman

from _as_user import cli
from _cli import finished
from _platform import EXAMPLES

pytestmark = pytest.mark.integration

TYPES = """\
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: svcport}
spec:
  description: Workloads as podman containers that reach each other; no core servers.
  runtime: containers
  attestation: optional
  bindings:
    - {type: service-port, component: service-port@^1}
    - {type: environment, component: environment@^1}
"""

ENVIRONMENT = """\
apiVersion: stackyard.dev/v1
kind: Environment
metadata: {{name: {env}}}
spec:
  type: svcport
  owner: team-checkout
  variables: {{REGION: eu-west}}
"""

API = {
    "main": {
        "image": "busybox",
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "files": [{"target": "/www/index.html", "content": "hello from api\n"}],
        "readinessProbe": {"httpGet": {"port": 8080, "path": "/index.html"}},
    }
}
PORTS = {"ports": {"http": {"port": 80, "targetPort": 8080}}}

# One attempt only: the api must already be ready when admin starts. What it got is served.
# (No 'wget -T': Debian's static busybox segfaults with it.)
ADMIN_SCRIPT = (
    "url=http://${resources.api.hostname}:${resources.api.port}/index.html; "
    'echo "reaching $url"; '
    'got=$(wget -q -O- "$url" 2>&1) || got="failed: $got"; '
    'echo "first attempt: $got"; echo "region: $REGION"; '
    'mkdir -p /www && echo "$got" > /www/index.html; '
    "exec httpd -f -p 8080 -h /www"
)
ADMIN_RESOURCES = {
    "api": {"type": "service-port", "params": {"workload": "api", "port": "http"}},
    "env": {"type": "environment"},
}


def _admin() -> dict[str, Any]:
    return {
        "main": {
            "image": "busybox",
            "command": ["sh", "-c"],
            "args": [ADMIN_SCRIPT],
            "variables": {"REGION": "${resources.env.REGION}"},
            "readinessProbe": {"httpGet": {"port": 8080, "path": "/index.html"}},
        }
    }


@pytest.fixture
def senv(library_home: Path, tmp_path: Path, sweeper: Any, image: str) -> Iterator[str]:
    """A live environment of type ``svcport`` (destroyed after the test; podman swept)."""
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir

    sweeper.add_check(podman_leftovers)
    env = sweeper.env
    platform = tmp_path / "platform"
    platform.mkdir()
    shutil.copy(EXAMPLES / "platform" / "teams.yaml", platform / "teams.yaml")
    (platform / "types.yaml").write_text(TYPES)
    (platform / "environments.yaml").write_text(ENVIRONMENT.format(env=env))
    with open_ws() as ws:
        apply_dir(ws.platform, ws.access, platform, confirm=lambda _q: True)
        lifecycle.create(ws, env)
    try:
        yield env
    finally:
        with open_ws() as ws:
            record = ws.records.environment(env)
            if record is not None and record.status not in ("declared", "destroyed"):
                lifecycle.destroy(ws, env)


def _containers(env: str) -> list[str]:
    done = subprocess.run(
        [
            podman(),
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label=dev.stackyard.env={env}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_a_workload_reaches_another_by_name_after_it_is_ready(senv: str, tmp_path: Path) -> None:
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files

    env = senv
    api = write_score(tmp_path, "api", API, service=PORTS)
    admin = write_score(tmp_path, "admin", _admin(), service=PORTS, resources=ADMIN_RESOURCES)
    said: list[str] = []
    with open_ws() as ws:
        result = deploy_files(ws, [admin, api], env, confirm=lambda _p: True, progress=said.append)
        assert {n: s.state for n, s in result.workloads.items()} == {
            "api": "ready",
            "admin": "ready",
        }
        # 'admin' sorts first: only the service-port ordering starts 'api' first, and 'admin'
        # is started once 'api' is ready.
        assert list(result.workloads) == ["api", "admin"]
        steps = [m for m in said if "workload 'a" in m]
        assert steps == [
            "started workload 'api'",
            "workload 'api' is ready",
            "started workload 'admin'",
            "workload 'admin' is ready",
        ], said

        # The service-port's outputs: the workload's name and its targetPort on the network.
        found = [
            r for uid, r in ws.records.instances(env).items() if uid.startswith("service-port.")
        ]
        assert [r.outputs for r in found] == [{"hostname": "api", "port": 8080}]

        # admin reached api by its name on its first attempt, and serves what it got.
        log = "\n".join(ws.runtime(env).logs("admin"))
        assert "reaching http://api:8080/index.html" in log
        assert "first attempt: hello from api" in log, log
        assert "127.0.0.1" not in log
        assert "region: eu-west" in log, "the environment's variables reach the container"
        endpoint = ws.runtime(env).status("admin").endpoints["http"]
        with urllib.request.urlopen(f"{endpoint}/index.html", timeout=5) as resp:
            assert resp.read() == b"hello from api\n"

        # A redeploy of the same files changes nothing (the outputs are stable).
        again = deploy_files(ws, [admin, api], env, confirm=lambda _p: True)
        assert not again.changed

        live = podman_leftovers(env)
        assert sum(x.startswith("podman container ") for x in live) == 2, live
        assert sum(x.startswith("podman network ") for x in live) == 1, live
        lifecycle.destroy(ws, env)
    assert podman_leftovers(env) == [], "destroy leaves no container, network or volume"


def test_a_service_port_to_a_missing_workload_or_port_is_refused(
    senv: str, library_home: Path, tmp_path: Path
) -> None:
    env = senv

    def deploy(*paths: Path, output: str = "text") -> Any:
        args = ["deploy", *map(str, paths), "--env", env, "--yes", "--output", output]
        done = cli(library_home, *args)
        return finished(args, done.returncode, done.stdout, done.stderr)

    def asking(directory: str, workload: str, port: Any) -> Path:
        wanted = {"type": "service-port", "params": {"workload": workload, "port": port}}
        resources = {**ADMIN_RESOURCES, "api": wanted}
        return write_score(
            tmp_path / directory, "admin", _admin(), service=PORTS, resources=resources
        )

    # A workload that is neither live nor deployed with it: the diagnostic names what exists.
    run = deploy(asking("nobody", "nobody", 80))
    assert run.code == 2, str(run)
    assert "Unknown workload" in run.err and "'nobody'" in run.err, str(run)

    # A port the target does not declare: the diagnostic names the ports it does.
    api = write_score(tmp_path, "api", API, service=PORTS)
    run = deploy(asking("wrong", "api", 9999), api, output="json")
    assert run.code == 2, str(run)
    found = [d for d in run.json()["diagnostics"] if d["summary"] == "Unknown service port"]
    assert found and "'9999'" in found[0]["detail"] and "http (80)" in found[0]["detail"], str(run)

    # Nothing was started, nor recorded, nor made in podman.
    with open_ws() as ws:
        assert not ws.records.workloads(env)
        assert ws.runtime(env).status("api").state == "stopped"
    assert _containers(env) == []
    assert podman_leftovers(env) == []
