"""Issue 16: containers reach the loopback servers their resources name, through the
environment's relay on the network's gateway address (``containers.reach``, ``.relay``).

The pure part (which outputs are loopback endpoints, and how they are rewritten) is table
tested; the relay itself runs for real: a busybox container on the environment's network talks
to the machine's Redis through it, a container on another network and a host connection to
127.0.0.1 are refused, and a destroy leaves no relay behind.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from _ctrsupport import podman_leftovers

from stackyard.model.values import Secret
from stackyard.runtime.containers.reach import endpoints, is_loopback, rewrite

GW = "10.89.7.1"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("db.localhost", False),
        ("web", False),
        ("0.0.0.0", False),
    ],
    ids=lambda v: str(v),
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


CASES: list[tuple[str, dict[str, Any], set[str], dict[str, Any]]] = [
    (
        "host and port on loopback are relayed; the other outputs stay",
        {"db": {"host": "127.0.0.1", "port": 5432, "name": "app", "password": Secret("pw")}},
        {"127.0.0.1:5432"},
        {"db": {"host": GW, "port": 40001, "name": "app", "password": "pw"}},
    ),
    (
        "a port given as a string stays a string",
        {"q": {"host": "localhost", "port": "5672", "vhost": "v"}},
        {"localhost:5672"},
        {"q": {"host": GW, "port": "40002", "vhost": "v"}},
    ),
    (
        "a URL on loopback keeps its scheme, credentials and path; a secret stays a secret",
        {
            "s3": {
                "endpoint": "http://127.0.0.1:9000",
                "admin_url": Secret("redis://u:p@127.0.0.1:6379/0"),
                "region": "us-east-1",
            }
        },
        {"127.0.0.1:9000", "127.0.0.1:6379"},
        {
            "s3": {
                "endpoint": f"http://{GW}:40003",
                "admin_url": f"redis://u:p@{GW}:40004/0",
                "region": "us-east-1",
            }
        },
    ),
    (
        "a host that is not loopback (another workload, a remote server) is left alone",
        {"svc": {"hostname": "web", "port": 8080}, "ext": {"host": "db.example", "port": 5432}},
        set(),
        {"svc": {"hostname": "web", "port": 8080}, "ext": {"host": "db.example", "port": 5432}},
    ),
    (
        "a URL without a port, a host without a port, and a bool port are not endpoints",
        {
            "a": {"url": "http://127.0.0.1/x"},
            "b": {"host": "127.0.0.1"},
            "c": {"host": "::1", "port": True},
        },
        set(),
        {
            "a": {"url": "http://127.0.0.1/x"},
            "b": {"host": "127.0.0.1"},
            "c": {"host": "::1", "port": True},
        },
    ),
    (
        "IPv6 loopback",
        {"r": {"host": "::1", "port": 6380}},
        {"[::1]:6380"},
        {"r": {"host": GW, "port": 40005}},
    ),
]
PORTS = {
    "127.0.0.1:5432": 40001,
    "localhost:5672": 40002,
    "127.0.0.1:9000": 40003,
    "127.0.0.1:6379": 40004,
    "[::1]:6380": 40005,
}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("reason", "outputs", "found", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_endpoints_and_rewrite(
    reason: str, outputs: dict[str, Any], found: set[str], expected: dict[str, Any]
) -> None:
    assert endpoints(outputs) == found, reason
    got = rewrite(outputs, GW, PORTS)
    from stackyard.model.values import reveal

    assert reveal(got) == expected, reason
    for name, outs in outputs.items():  # secrets stay wrapped
        for key, value in outs.items():
            assert isinstance(got[name][key], Secret) == isinstance(value, Secret), reason


# -- the relay, for real -------------------------------------------------------------------------


def _run(network: str, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    from stackyard.runtime.containers.engine import detect

    engine = detect(Path(os.environ["STACKYARD_HOME"]), os.environ)
    argv = engine.cmd(
        "run", "--rm", "--network", network, *engine.run_flags(), "--http-proxy=false"
    )
    for key in env:
        argv += ["--env", key]
    argv += ["localhost/busybox:latest", "sh", "-c", script]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **env}
    )


@pytest.mark.integration
def test_a_container_reaches_a_loopback_server_through_the_relay_only(
    home: Path, image: str, redis_url: str, sweeper: Any
) -> None:
    from urllib.parse import urlsplit

    from stackyard.runtime.containers.runtime import ContainersRuntime

    if os.geteuid() != 0:
        pytest.skip("the relay serves rootful podman (rootless: see docs/runtime-containers.md)")
    sweeper.add_check(podman_leftovers)
    env = sweeper.env
    rt = ContainersRuntime(home / "envs" / env / "containers", home=home, env=env)
    other = ContainersRuntime(home / "envs" / f"{env}-b" / "containers", home=home, env=f"{env}-b")
    redis = urlsplit(redis_url)
    outputs = {
        "cache": {
            "host": redis.hostname,
            "port": redis.port,
            "username": redis.username or "default",
            "password": Secret(redis.password or ""),
        }
    }
    try:
        seen = rt.reachable("app", outputs)["cache"]
        gateway, port = seen["host"], seen["port"]
        assert gateway != redis.hostname and port != redis.port
        assert rt.reachable("app", outputs)["cache"] == seen, "the same needs, the same port"
        # A container on the environment's network speaks Redis to the machine's server.
        auth = f"AUTH {outputs['cache']['username']} {redis.password}\r\n" if redis.password else ""
        key = f"relay-{uuid.uuid4().hex[:8]}"
        done = _run(
            rt.names_of.network,
            'printf "${REQ}" | nc -w 3 "$H" "$P"',
            REQ=f"{auth}PING\r\nECHO {key}\r\nQUIT\r\n",
            H=str(gateway),
            P=str(port),
        )
        assert "+PONG" in done.stdout and key in done.stdout, done.stdout + done.stderr
        # The relay listens on the gateway address only: not on the host's loopback.
        host_side = subprocess.run(
            ["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"],
            capture_output=True,
            check=False,
        )
        assert host_side.returncode != 0, "nothing listens on 127.0.0.1 at the relay's port"
        # A container of another environment (another network) gets no answer from it.
        other._ensure_network()
        refused = _run(
            other.names_of.network,
            'printf "PING\\r\\n" | nc -w 3 "$H" "$P"; echo "exit $?"',
            H=str(gateway),
            P=str(port),
        )
        assert "+PONG" not in refused.stdout, refused.stdout
        # A stop closes the listeners only that workload needed; a destroy stops the relay.
        rt.stop("app")
        gone = _run(
            rt.names_of.network,
            'printf "PING\\r\\n" | nc -w 3 "$H" "$P"; echo done',
            H=str(gateway),
            P=str(port),
        )
        assert "+PONG" not in gone.stdout
    finally:
        rt.stop_all()
        other.stop_all()
    assert not (rt.root / ".relay").exists()
    from stackyard.host import supervise

    assert supervise.running(rt.root / ".relay" / "relay.pid") is None
