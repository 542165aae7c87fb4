"""Issue 11 items 3 and 6: what a workload and a developer can reach on the local runtime.

Under root, a deployed workload runs as its environment's own unprivileged account: a real
workload that tries to read the home's ``secret.key`` and ``state.db``, another environment's
workload files and a server's data is refused each time. Every local server runs as an
account of its own. A developer cannot reveal a core server's ``admin_url``; a platform
engineer can.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from _local_env import (
    apply_types,
    environments,
    needs_local_servers,
    server_pids,
    uid_of,
    wait_for_line,
    write_score,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="switching to another account needs root"),
]

SPY = """\
import os, sys
print("UID", os.getuid(), flush=True)
for entry in os.environ["TARGETS"].split(";"):
    name, _, path = entry.partition("=")
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        print("READ", name, "allowed", flush=True)
    except OSError as exc:
        print("READ", name, "refused", type(exc).__name__, flush=True)
print("OWN", open("note.txt").read(), flush=True)
print("DONE", flush=True)
import time
time.sleep(3600)
"""

PEER = """\
import time
print("DONE", flush=True)
time.sleep(3600)
"""


def _ws(actor: str | None = None) -> Any:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    return Workspace.open(Settings.load(actor=actor) if actor else Settings.load())


def test_a_workload_cannot_read_the_home_another_environment_or_a_server(
    library_home: Path, tmp_path: Path, sweeper: Any
) -> None:
    needs_local_servers()
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files
    from stackyard.host.accounts import lookup
    from stackyard.runtime.isolation import files_root

    env, other = sweeper.env, f"{sweeper.env}x"
    home = library_home
    with _ws() as ws:
        apply_types(ws, tmp_path / "platform")
    with environments(_ws, env, other), _ws() as ws:
        lifecycle.create(ws, env, type_name="development", owner="team-checkout")
        lifecycle.create(ws, other, type_name="bare", owner="team-checkout")
        peer = write_score(
            tmp_path / "peer", "peer", PEER, files={"secret.txt": "the other env's secret"}
        )
        deploy_files(ws, [peer], other, confirm=lambda _p: True)
        peer_root = files_root(home / "envs" / other / "workloads", "peer")
        assert (peer_root / "secret.txt").read_text() == "the other env's secret"

        data_dirs = [Path(os.readlink(d / "data")) for d in sorted((home / "servers").iterdir())]
        targets = {
            "secret.key": home / "secret.key",
            "state.db": home / "state.db",
            "home": home,
            "other-env-files": peer_root / "secret.txt",
            "other-env-folder": home / "envs" / other,
            **{f"server-data-{i}": d for i, d in enumerate(data_dirs)},
        }
        assert all(p.exists() for p in targets.values()), targets
        spy = write_score(
            tmp_path / "spy",
            "spy",
            SPY,
            variables={"TARGETS": ";".join(f"{k}={v}" for k, v in targets.items())},
            resources={"db": "postgres", "data": "volume"},
            files={"note.txt": "mine"},
        )
        deploy_files(ws, [spy], env, confirm=lambda _p: True)
        log = wait_for_line(ws, env, "spy", "DONE")

        uid = int(log.split("UID ", 1)[1].split()[0])
        assert uid != 0, log
        assert "OWN mine" in log, "the workload reads its own files"
        for name in targets:
            assert f"READ {name} refused PermissionError" in log, log
        assert "allowed" not in log, log

        # The peer runs as its own environment's account, and each server as its own.
        peer_pid = ws.runtime(other).status("peer").containers["main"]["pid"]
        servers = server_pids(home)
        assert len(servers) == 2
        uids = {uid_of(p) for p in servers.values()}
        assert len(uids) == 2 and 0 not in uids, "each server has an account of its own"
        assert uid not in uids and uid_of(peer_pid) not in {uid, 0, *uids}
        for data in data_dirs:
            st = data.stat()
            assert st.st_uid in uids and stat.S_IMODE(st.st_mode) == 0o700, data
        status = ws.runtime(env).isolation()
        assert status["isolated"] is True and status["user"].startswith("stackyard-")
        names = {pwd.getpwuid(u).pw_name for u in {uid, uid_of(peer_pid), *uids}}
        assert status["user"] in names and all(n.startswith("stackyard-") for n in names)
    # Destroying the environments removed every account, after the files it owned.
    assert [n for n in names if lookup(n) is not None] == []


def test_only_platform_roles_reveal_a_core_admin_url(
    library_home: Path, tmp_path: Path, sweeper: Any
) -> None:
    needs_local_servers()
    from stackyard.environments import lifecycle
    from stackyard.environments.inspect import outputs
    from stackyard.policy.rbac import Grant, Role

    env = sweeper.env
    with _ws() as ws:
        apply_types(ws, tmp_path / "platform")
    with environments(_ws, env), _ws() as ws:
        lifecycle.create(ws, env, type_name="development", owner="team-platform")
        ws.governance.grant(Grant("user:dev1", Role.DEVELOPER, f"env:{env}"), by="test")
        ws.governance.grant(Grant("user:plat1", Role.PLATFORM_ENGINEER, "org"), by="test")
        with _ws("dev1") as dev:
            seen = outputs(dev, env, reveal=True)
        with _ws("plat1") as plat:
            full = outputs(plat, env, reveal=True)
    pg = "postgres-instance.default#core"
    rd = "redis-instance.default#core"
    assert seen[pg]["outputs"]["admin_url"] == "(secret)"
    assert seen[rd]["outputs"]["admin_url"] == "(secret)"
    assert seen[rd]["outputs"]["password"] == "(secret)", "the superuser's password too"
    assert seen[pg]["outputs"]["host"] == "127.0.0.1", "what is not secret is shown"
    assert full[pg]["outputs"]["admin_url"].startswith("postgresql://postgres:")
    assert full[rd]["outputs"]["admin_url"].startswith("redis://default:")
    assert full[rd]["outputs"]["password"] != "(secret)"
