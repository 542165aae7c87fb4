"""kill -9 during the delete of a Redis user with 60,000 keys: the re-run finishes it.

The re-run follows journal recovery's rule (``engine/recovery.py``): a pending delete whose
object observes as missing is recorded as deleted and never retried. So ``observe`` must not
report the user missing while keys remain under its prefix, whatever the point of the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from _sweeper import Sweeper
from stackyard.providers.api import CreateRequest, DeleteRequest, ObserveRequest, ResourceMeta
from stackyard.providers.redis import Clients, make_provider
from stackyard.resolve.naming import physical_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

UID = "redis.default#big.cache"
KEYS = 60_000

_WORKER = """
import os, signal, sys
import redis.client
from stackyard.providers.api import DeleteRequest, ResourceMeta
from stackyard.providers.redis import PROVIDER

url, env, address, pname, mode = sys.argv[1:6]
if mode == "after-deluser":
    real = redis.client.Pipeline.execute

    def execute(self, *args, **kwargs):
        stack = [c.args if hasattr(c, "args") else c[0] for c in self.command_stack]
        out = real(self, *args, **kwargs)
        if any(len(a) > 1 and str(a[0]).upper() == "ACL" and str(a[1]).upper() == "DELUSER"
               for a in stack):
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    redis.client.Pipeline.execute = execute
meta = ResourceMeta(address=address, kind="redis.acl_user", env=env, physical_name=pname)
print("go", flush=True)
PROVIDER.kind("redis.acl_user").delete(
    DeleteRequest(meta, {"server": url, "password": "pw-big"}, {})
)
print("done", flush=True)
"""


@pytest.fixture
def kind() -> Iterator[Any]:
    clients = Clients()
    yield make_provider(clients).kind("redis.acl_user")
    clients.close()


def _fill(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for start in range(0, KEYS, 5000):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + 5000, KEYS)):
                pipe.set(f"{prefix}k{i}", "v" * 16)
            pipe.execute()
    finally:
        client.close()


def _count(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000))
    finally:
        client.close()


def _kill_run(url: str, meta: ResourceMeta, mode: str, delay: float) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WORKER,
            url,
            meta.env,
            meta.address,
            meta.physical_name,
            mode,
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        proc.stdout.readline()
        if mode == "random":
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _recover(kind: Any, meta: ResourceMeta, config: dict[str, Any]) -> None:
    """What a re-run does: observe; missing means done (recovery), else delete again."""
    for _ in range(3):
        if kind.observe(ObserveRequest(meta, config, {})) is None:
            return
        kind.delete(DeleteRequest(meta, config, {}))
    raise AssertionError("the delete did not converge in three runs")


@pytest.mark.parametrize(
    ("mode", "delay"),
    [("after-deluser", 0.0), ("random", 0.05), ("random", 0.3), ("random", 0.8)],
)
def test_kill_9_during_delete_leaves_no_keys_after_rerun(
    kind: Any, redis_url: str, sweeper: Sweeper, mode: str, delay: float
) -> None:
    meta = ResourceMeta(
        address=f"{UID}/user",
        kind="redis.acl_user",
        env=sweeper.env,
        physical_name=physical_name(sweeper.env, UID, "user", kind.naming),
    )
    config = {"server": redis_url, "password": "pw-big"}
    prefix = kind.create(CreateRequest(meta, config)).outputs["prefix"]
    _fill(redis_url, prefix)
    assert _count(redis_url, prefix) == KEYS
    _kill_run(redis_url, meta, mode, delay)
    _recover(kind, meta, config)
    assert _count(redis_url, prefix) == 0


_KILL_AFTER_DELUSER = """
import os, signal
import redis.client

_real = redis.client.Pipeline.execute


def _execute(self, *args, **kwargs):
    stack = [c[0] for c in self.command_stack]
    out = _real(self, *args, **kwargs)
    if any(len(a) > 1 and str(a[0]).upper() == "ACL" and str(a[1]).upper() == "DELUSER"
           for a in stack):
        os.kill(os.getpid(), signal.SIGKILL)
    return out


redis.client.Pipeline.execute = _execute
"""


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_env_destroy_killed_after_deluser_then_rerun_removes_every_key(
    stage: Any, tmp_path: Any, redis_url: str
) -> None:
    """The whole road: deploy, 60,000 keys, ``env destroy`` killed right after ACL DELUSER,
    ``env destroy`` again: it must not say destroyed while keys remain."""
    from _platform import EXAMPLES
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.inspect import outputs

    dev = stage.name("dev")
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app.py").write_text((EXAMPLES / "hello" / "app.py").read_text())
    (folder / "score.yaml").write_text((EXAMPLES / "hello" / "score.yaml").read_text())
    with stage.ws() as ws:
        result = deploy_files(ws, [folder / "score.yaml"], dev, confirm=lambda _p: True)
        assert result.deployment.status == "succeeded", result.deployment
        prefix = outputs(ws, dev, "hello")["cache"]["outputs"]["prefix"]
    _fill(redis_url, prefix)

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_KILL_AFTER_DELUSER)
    base = dict(os.environ)
    path = os.pathsep.join(p for p in (str(hook), base.get("PYTHONPATH", "")) if p)
    killed = _cli("env", "destroy", dev, "--yes", env={**base, "PYTHONPATH": path})
    assert killed.returncode == -signal.SIGKILL, killed
    assert _count(redis_url, prefix) > 0  # killed before the keys went

    deadline = time.monotonic() + 120
    while True:  # the killed writer's lease has to expire first
        again = _cli("env", "destroy", dev, "--yes", env=base)
        if again.returncode != 4 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert again.returncode == 0, again
    assert _count(redis_url, prefix) == 0, again.stdout
