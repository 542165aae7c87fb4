"""Workloads that reach each other, and what the environment itself answers, deployed for real
on the ``local`` runtime: ``service-port`` (the client reaches the server at its outputs, and
starts only once the server is ready), ``environment`` (the environment's variables in a
workload), and ``route`` (requests through the environment's Caddy reach a workload whose host
port nobody named). Host ports are reserved before resolve, kept across deploys and freed on
remove; a missing workload or port and workloads waiting for each other are diagnostics."""

from __future__ import annotations

import http.client
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _platform import EXAMPLES, Stage
from _sweeper import Sweeper
from stackyard.environments import lifecycle
from stackyard.environments.deploy import deploy_files
from stackyard.environments.platform import apply_dir
from stackyard.errors import InvalidInputError

pytestmark = pytest.mark.integration

SERVER_APP = r"""
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"server {self.path} {self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

CLIENT_APP = r"""
import http.server, os, urllib.request

BACKEND = f"http://{os.environ['BACKEND_HOST']}:{os.environ['BACKEND_PORT']}"

def fetch(path):
    try:
        with urllib.request.urlopen(BACKEND + path, timeout=5) as reply:
            return reply.read().decode()
    except OSError as exc:
        return f"failed: {exc}"

# The server must already be ready when the client starts: no retry here.
print("first attempt:", fetch("/first"), flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/env/"):
            body = os.environ.get(self.path[5:], "<unset>").encode()
        else:
            body = fetch(self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _score(
    name: str,
    app: str,
    *,
    variables: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
) -> str:
    """A Score workload that runs ``app`` (Python) on its one service port, 8080."""
    return yaml.safe_dump(
        {
            "apiVersion": "score.dev/v1b1",
            "metadata": {"name": name},
            "containers": {
                "main": {
                    "image": "python:3.11-slim",
                    "command": ["python", "app.py"],
                    "files": [{"target": "app.py", "noExpand": True, "content": app}],
                    "variables": {"PYTHONUNBUFFERED": "1", **(variables or {})},
                }
            },
            "service": {"ports": {"web": {"port": 8080, "targetPort": 8080}}},
            "resources": resources or {},
        },
        sort_keys=False,
    )


def _platform(directory: Path, env: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "platform" / "teams.yaml", directory / "teams.yaml")
    (directory / "types.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: stackyard.dev/v1
            kind: EnvironmentType
            metadata: {name: reach}
            spec:
              runtime: local
              core:
                - {type: proxy-instance}
              bindings:
                - {type: proxy-instance, component: proxy-server@^1}
                - {type: dns, component: dns-localhost@^1}
                - {type: route, component: route-proxy@^1}
                - {type: service-port, component: service-port@^1}
                - {type: environment, component: environment@^1}
            """
        )
    )
    (directory / "environments.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: stackyard.dev/v1
            kind: Environment
            metadata: {{name: {env}}}
            spec:
              type: reach
              owner: team-checkout
              variables: {{GREETING: "hello ${{world}}", REGION: eu-west}}
            """
        )
    )
    return directory


@pytest.fixture
def reach(library_home: Path, tmp_path: Path, sweeper: Sweeper) -> Iterator[Stage]:
    """A platform whose environment ``<prefix>-reach`` has a Caddy core and binds the types
    the environment answers; destroyed at teardown."""
    st = Stage(library_home, sweeper.env, _platform(tmp_path / "platform", f"{sweeper.env}-reach"))
    with st.ws() as ws:
        apply_dir(ws.platform, ws.access, st.platform_dir, confirm=lambda _q: True)
        try:
            lifecycle.create(ws, st.name("reach"))
        except InvalidInputError as exc:
            if "caddy" in str(exc).lower():
                from _services import require_or_skip

                require_or_skip(f"no Caddy: {exc}")
            raise
    try:
        yield st
    finally:
        st.teardown()


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return path


def _get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def _host_port(ws: Any, env: str, workload: str) -> int:
    endpoint = ws.runtime(env).status(workload).endpoints["web"]
    return int(endpoint.rsplit(":", 1)[1])


CLIENT_RESOURCES = {
    "backend": {"type": "service-port", "params": {"workload": "server", "port": 8080}},
    "env": {"type": "environment"},
}
CLIENT_VARIABLES = {
    "BACKEND_HOST": "${resources.backend.hostname}",
    "BACKEND_PORT": "${resources.backend.port}",
    "GREETING": "${resources.env.GREETING}",
    "REGION": "${resources.env.REGION}",
}


def test_client_reaches_server_by_service_port_after_it_is_ready(
    reach: Stage, tmp_path: Path
) -> None:
    env = reach.name("reach")
    server = _write(tmp_path, "server", _score("server", SERVER_APP))
    client = _write(
        tmp_path,
        "client",
        _score("client", CLIENT_APP, variables=CLIENT_VARIABLES, resources=CLIENT_RESOURCES),
    )
    with reach.ws() as ws:
        # One deploy of both: 'client' sorts first, so only the ordering makes it wait.
        result = deploy_files(ws, [client, server], env, confirm=lambda _p: True)
        assert {n: s.state for n, s in result.workloads.items()} == {
            "server": "ready",
            "client": "ready",
        }
        assert list(result.workloads) == ["server", "client"]
        server_port = _host_port(ws, env, "server")
        client_port = _host_port(ws, env, "client")
        outputs = ws.records.instances(env)
        backend = next(r for uid, r in outputs.items() if uid.startswith("service-port."))
        assert backend.outputs == {"hostname": "127.0.0.1", "port": server_port}

        # the client reached the server on its first attempt, and still does
        logs = list(ws.runtime(env).logs("client"))
        assert f"first attempt: server /first 127.0.0.1:{server_port}" in logs
        assert _get(client_port, "/hello") == (200, f"server /hello 127.0.0.1:{server_port}")
        # the environment's variables, '$' kept literal
        assert _get(client_port, "/env/GREETING") == (200, "hello ${world}")
        assert _get(client_port, "/env/REGION") == (200, "eu-west")

        # a redeploy keeps the server's host port, so nothing changes
        again = deploy_files(ws, [client, server], env, confirm=lambda _p: True)
        assert not again.changed
        assert _host_port(ws, env, "server") == server_port


def test_route_reaches_a_workload_through_caddy_without_a_host_port(
    reach: Stage, tmp_path: Path
) -> None:
    env = reach.name("reach")
    host = f"web-{env}.localhost"
    resources = {"route": {"type": "route", "params": {"host": host, "path": "/", "port": 8080}}}
    web = _write(tmp_path, "web", _score("web", SERVER_APP, resources=resources))
    with reach.ws() as ws:
        result = deploy_files(ws, [web], env, confirm=lambda _p: True)
        assert result.workloads["web"].state == "ready"
        port = _host_port(ws, env, "web")
        proxy = next(r for r in ws.records.instances(env).values() if r.core)
        proxy_port = int(proxy.outputs["port"])
        # what 'curl -H "Host: <host>" http://127.0.0.1:<proxy port>/shop' does
        assert _get(proxy_port, "/shop", host) == (200, f"server /shop {host}")
        ports_file = ws.settings.home / "envs" / env / "workloads" / "web" / "ports.json"
        assert json.loads(ports_file.read_text()) == {"web": port}

        # removing the workload frees its port (and its route)
        lifecycle.remove_workload(ws, env, "web")
        assert not ports_file.exists()
        assert _get(proxy_port, "/shop", host)[0] == 404


def test_a_route_named_by_the_dns_resources_host(reach: Stage, tmp_path: Path) -> None:
    """``host: ${resources.dns.host}``: the dns host name, known only after apply on the first
    deploy, routes; a redeploy reads it from the records and changes nothing."""
    env = reach.name("reach")
    resources = {
        "dns": {"type": "dns"},
        "route": {
            "type": "route",
            "params": {"host": "${resources.dns.host}", "path": "/", "port": 8080},
        },
    }
    web = _write(tmp_path, "web", _score("web", SERVER_APP, resources=resources))
    with reach.ws() as ws:
        result = deploy_files(ws, [web], env, confirm=lambda _p: True)
        assert result.workloads["web"].state == "ready"
        records = ws.records.instances(env)
        host = records["dns.default#web.dns"].outputs["host"]
        assert host == f"web-{env}.localhost"
        assert records["route.default#web.route"].outputs["host"] == host
        proxy = next(r for r in records.values() if r.core)
        assert _get(int(proxy.outputs["port"]), "/shop", host) == (200, f"server /shop {host}")

        again = deploy_files(ws, [web], env, confirm=lambda _p: True)
        assert not again.changed
        lifecycle.remove_workload(ws, env, "web")


def test_missing_workload_port_and_waiting_cycles_are_diagnostics(
    reach: Stage, tmp_path: Path
) -> None:
    env = reach.name("reach")

    def needing(name: str, workload: str, port: Any) -> Path:
        res = {"other": {"type": "service-port", "params": {"workload": workload, "port": port}}}
        return _write(tmp_path, name, _score(name, SERVER_APP, resources=res))

    with reach.ws() as ws:
        with pytest.raises(InvalidInputError) as missing:
            deploy_files(ws, [needing("alone", "nobody", 8080)], env, confirm=lambda _p: True)
        details = " ".join(d.detail for d in missing.value.diagnostics)
        assert "Unknown workload" in {d.summary for d in missing.value.diagnostics}
        assert "'nobody'" in details

        with pytest.raises(InvalidInputError) as port:
            deploy_files(
                ws,
                [
                    needing("asker", "target", 9999),
                    _write(tmp_path, "target", _score("target", SERVER_APP)),
                ],
                env,
                confirm=lambda _p: True,
            )
        found = [d for d in port.value.diagnostics if d.summary == "Unknown service port"]
        assert found and "web (8080)" in found[0].detail

        with pytest.raises(InvalidInputError) as cycle:
            deploy_files(
                ws,
                [needing("ping", "pong", 8080), needing("pong", "ping", "web")],
                env,
                confirm=lambda _p: True,
            )
        loops = [d for d in cycle.value.diagnostics if d.summary == "Workloads wait for each other"]
        assert loops and "ping -> pong -> ping" in loops[0].detail
        # nothing was started by the refused deploys
        assert ws.runtime(env).status("ping").state == "stopped"
        assert not ws.records.workloads(env)


def test_platform_apply_refuses_variable_names_that_are_not_identifiers(
    library_home: Path, tmp_path: Path, sweeper: Sweeper
) -> None:
    directory = _platform(tmp_path / "platform", f"{sweeper.env}-vars")
    text = (directory / "environments.yaml").read_text()
    (directory / "environments.yaml").write_text(
        text.replace("REGION: eu-west", '"1BAD": x, "has-dash": y')
    )
    st = Stage(library_home, sweeper.env, directory)
    with st.ws() as ws, pytest.raises(InvalidInputError) as bad:
        apply_dir(ws.platform, ws.access, directory, confirm=lambda _q: True)
    names = {
        d.path.rsplit(".", 1)[-1]
        for d in bad.value.diagnostics
        if d.summary == "Invalid variable name"
    }
    assert names == {"1BAD", "has-dash"}
