"""`stackyard quickstart` end to end, through the real CLI, on embedded servers (dev's core):
from a fresh home to an app that reports its database, cache and volume work; idempotent;
and `env destroy` leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from _sweeper import home_leaked, leaked

pytestmark = pytest.mark.integration

STACKYARD = [sys.executable, "-m", "stackyard.cli"]


def _run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKYARD_HOME": str(home)}
    env.pop("STACKYARD_DATABASE_URL", None)
    proc = subprocess.run(
        [*STACKYARD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"stackyard {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _leftovers(home: Path) -> list[str]:
    """Server folders of this home (also relocated ones) and processes still running from it."""
    from stackyard.providers.local.layout import EXTERNAL_ROOT, external_data_dir

    out = [str(p) for p in (home / "servers").glob("*")] if (home / "servers").is_dir() else []
    for d in EXTERNAL_ROOT.glob("*") if EXTERNAL_ROOT.is_dir() else []:
        name = d.name.partition("-")[2]
        if external_data_dir(home / "servers" / name) == d:
            out.append(str(d))
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(home) in cmdline:
            out.append(f"process {proc.name}: {cmdline[:120]}")
    return out


@pytest.fixture
def qs_home(home: Path) -> Iterator[Path]:
    yield home
    for env in ("quickstart", "dev"):  # whatever the test left, torn down
        _run(home, "env", "destroy", env, "--yes", check=False)


def test_quickstart_twice_then_destroy(qs_home: Path) -> None:
    first = json.loads(_run(qs_home, "quickstart", "--output", "json").stdout)
    assert first["changed"] is True
    url = first["url"]
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "/", timeout=15) as resp:
        body = json.loads(resp.read())
    assert body["ok"] and body["postgres"]["ok"] and body["redis"]["ok"] and body["volume"]["ok"]
    assert first["outputs"]["db"]["outputs"]["password"] == "(secret)"
    assert (
        first["environments"]["child"]["parent"] == "dev"
        and first["environments"]["child"]["expires_at"]
    )

    status = json.loads(_run(qs_home, "status", "quickstart", "--output", "json").stdout)
    pid = status["workloads"]["hello"]["containers"]["web"]["pid"]
    serials = {
        e: json.loads(_run(qs_home, "state", "list", e, "--output", "json").stdout)
        for e in ("dev", "quickstart")
    }

    second = json.loads(_run(qs_home, "quickstart", "--output", "json").stdout)
    assert second["changed"] is False
    assert second["url"] == url
    assert second["deployment"]["summary"]["create"] == 0
    again = json.loads(_run(qs_home, "status", "quickstart", "--output", "json").stdout)
    assert again["workloads"]["hello"]["containers"]["web"]["pid"] == pid  # not restarted
    assert {
        e: json.loads(_run(qs_home, "state", "list", e, "--output", "json").stdout)
        for e in ("dev", "quickstart")
    } == serials

    logs = _run(qs_home, "logs", "quickstart", "hello").stdout
    assert "hello listening on" in logs

    core = json.loads(_run(qs_home, "outputs", "dev", "--reveal", "--output", "json").stdout)
    pg_admin = core["postgres-instance.default#core"]["outputs"]["admin_url"]
    redis_admin = core["redis-instance.default#core"]["outputs"]["admin_url"]
    assert leaked(pg_admin, redis_admin, "quickstart")  # the sweep below can see what it checks

    _run(qs_home, "env", "destroy", "quickstart", "--yes")
    assert leaked(pg_admin, redis_admin, "quickstart", [home_leaked(qs_home)]) == []
    assert (
        json.loads(_run(qs_home, "env", "show", "dev", "--output", "json").stdout)["status"]
        == "ready"
    )

    _run(qs_home, "env", "destroy", "dev", "--yes")
    assert _leftovers(qs_home) == []
    listed = json.loads(_run(qs_home, "env", "list", "--output", "json").stdout)
    assert {e["name"]: e["status"] for e in listed}["dev"] == "declared"
