"""Issue 16: an app image with a real client stack (a Debian rootfs made by debootstrap, see
``_images.app_image``) deployed into an environment of the example platform's ``containers``
type, with all five resources of its local cloud: it connects to PostgreSQL, Redis, RabbitMQ,
MariaDB and S3 with its injected credentials (through the environment's relay: every one of
those servers listens on 127.0.0.1) and reports each as working. The app also asks for ``dns``
(a ``*.localhost`` host name) and a ``route`` on it, and the test reaches it the way curl
does, through the environment's Caddy proxy on 127.0.0.1 with that host name. A read-only
volume is mounted read-only. The destroy leaves nothing in podman.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _ctrsupport import open_ws, podman_leftovers, write_score
from _images import app_image, podman

from _platform import EXAMPLES

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


def _variables() -> dict[str, str]:
    out: dict[str, str] = {}
    for prefix, res, keys in (
        ("PG", "db", {"HOST": "host", "PORT": "port", "DB": "name", "USER": "username"}),
        ("REDIS", "cache", {"HOST": "host", "PORT": "port", "USER": "username"}),
        ("AMQP", "queue", {"HOST": "host", "PORT": "port", "VHOST": "vhost", "USER": "username"}),
        ("MYSQL", "sql", {"HOST": "host", "PORT": "port", "DB": "database", "USER": "username"}),
    ):
        for var, key in {**keys, "PASSWORD": "password"}.items():
            out[f"{prefix}_{var}"] = f"${{resources.{res}.{key}}}"
    out["REDIS_PREFIX"] = "${resources.cache.prefix}"
    for var, key in {
        "ENDPOINT": "endpoint",
        "REGION": "region",
        "BUCKET": "bucket",
        "KEY": "access_key_id",
        "SECRET": "secret_key",
    }.items():
        out[f"S3_{var}"] = f"${{resources.bucket.{key}}}"
    return out


@pytest.fixture
def full_env(library_home: Path, tmp_path: Path, sweeper: Any) -> Iterator[str]:
    """An environment of the example ``containers`` type (its five core servers running)."""
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir

    image = app_image()  # before the servers: a cold build takes minutes
    assert image
    sweeper.add_check(podman_leftovers)
    platform = tmp_path / "platform"
    platform.mkdir()
    for name in ("environment-types.yaml", "teams.yaml"):
        shutil.copy(EXAMPLES / "platform" / name, platform / name)
    env = sweeper.env
    with open_ws() as ws:
        apply_dir(ws.platform, ws.access, platform, confirm=lambda _q: True)
        lifecycle.create(ws, env, type_name="containers", owner="team-checkout")
    try:
        yield env
    finally:
        with open_ws() as ws:
            record = ws.records.environment(env)
            if record is not None and record.status not in ("declared", "destroyed"):
                lifecycle.destroy(ws, env)


def _instances(ws: Any, env: str, component: str) -> list[Any]:
    """The environment's recorded instances of ``component`` (``name@``)."""
    return [r for r in ws.records.instances(env).values() if r.component.startswith(component)]


def test_an_app_in_a_container_reaches_all_five_resources_through_its_route(
    full_env: str, tmp_path: Path
) -> None:
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files

    resources: dict[str, Any] = {
        "db": {"type": "postgres"},
        "cache": {"type": "redis"},
        "queue": {"type": "amqp"},
        "sql": {"type": "mysql"},
        "bucket": {"type": "s3"},
        "data": {"type": "volume"},
        "dns": {"type": "dns"},
    }
    containers = {
        "main": {
            "image": app_image(),
            "command": ["python3", "/app/app.py"],
            "files": [
                {
                    "target": "/app/app.py",
                    "content": (HERE / "client_app.py").read_text(),
                    "noExpand": True,
                }
            ],
            "variables": _variables(),
            "volumes": [{"source": "${resources.data}", "target": "/data", "readOnly": True}],
            "readinessProbe": {"httpGet": {"port": 8080, "path": "/healthz"}},
        }
    }
    service = {"ports": {"web": {"port": 80, "targetPort": 8080}}}
    with open_ws() as ws:
        first = write_score(tmp_path, "clients", containers, service=service, resources=resources)
        result = deploy_files(ws, [first], full_env, confirm=lambda _p: True)
        assert result.workloads["clients"].state == "ready"
        (dns,) = _instances(ws, full_env, "dns-localhost@")
        host = str(dns.outputs["host"])
        assert host.endswith(".localhost"), host
        # The route on the dns output's host name, path '/', the app's service port. (A
        # resource's params cannot name another resource's outputs yet, so the host is read
        # from the first deploy, as 'stackyard outputs' shows it.)
        resources["route"] = {"type": "route", "params": {"host": host, "path": "/", "port": 80}}
        second = write_score(
            tmp_path / "routed", "clients", containers, service=service, resources=resources
        )
        result = deploy_files(ws, [second], full_env, confirm=lambda _p: True)
        assert result.workloads["clients"].state == "ready"
        (route,) = _instances(ws, full_env, "route-proxy@")
        (proxy,) = _instances(ws, full_env, "proxy-server@")
        proxy_port = int(proxy.outputs["port"])
        assert route.outputs["url"] == f"http://{host}:{proxy_port}/"
        # What 'curl --resolve <host>:<port>:127.0.0.1 <url>' does: the proxy on loopback,
        # the route's host name in the Host header; Caddy forwards to the published port.
        reply = httpx.get(
            f"http://127.0.0.1:{proxy_port}/", headers={"Host": host}, timeout=120, trust_env=False
        )
        assert reply.status_code == 200, reply.text
        report = reply.json()
        assert report == dict.fromkeys(("postgres", "redis", "amqp", "mysql", "s3"), "ok"), report
        # Another host name is not routed to the app.
        other = httpx.get(
            f"http://127.0.0.1:{proxy_port}/healthz",
            headers={"Host": f"nobody-{host}"},
            timeout=30,
            trust_env=False,
        )
        assert other.status_code == 404, other.text
        runtime = ws.runtime(full_env)
        name = runtime.names_of.container("clients", "main")

        def in_container(script: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [podman(), "exec", name, "sh", "-c", script],
                capture_output=True,
                text=True,
                check=False,
            )

        # Every server listens on 127.0.0.1: the container got the relay's address instead.
        hosts = in_container("echo $PG_HOST $MYSQL_HOST $S3_ENDPOINT").stdout
        assert "127.0.0.1" not in hosts and hosts.split()[0] == hosts.split()[1], hosts
        # The volume is mounted read-only.
        written = in_container("touch /data/probe")
        assert written.returncode != 0 and "Read-only" in written.stderr, written
        lifecycle.destroy(ws, full_env)
    assert podman_leftovers(full_env) == [], "destroy leaves no container, network or volume"
