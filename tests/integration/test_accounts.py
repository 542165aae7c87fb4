"""Unprivileged accounts never pile up: an account whose server directory (or home) is gone
and that runs nothing is reaped. A create killed between ``useradd`` and its first file used to
leave one behind each time (issue 11; the system uid range holds only a few hundred)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from stackyard.host import accounts

pytestmark = pytest.mark.integration


@pytest.mark.skipif(os.geteuid() != 0, reason="accounts are made only when running as root")
def test_orphaned_accounts_are_reaped_and_live_ones_kept(tmp_path: Path) -> None:
    gone = tmp_path / "servers" / "gone-server"
    kept = tmp_path / "servers" / "kept-server"
    kept.mkdir(parents=True)
    orphan = accounts.ensure(f"server:{gone}", f"stackyard server server:{gone}")
    alive = accounts.ensure(f"server:{kept}", f"stackyard server server:{kept}")
    assert orphan is not None and alive is not None
    busy_home = tmp_path / "busy-home"
    busy = accounts.ensure(f"env:{busy_home}:dev", f"stackyard workloads env:{busy_home}:dev")
    assert busy is not None
    sleeper = subprocess.Popen(["sleep", "60"], user=busy.uid, group=busy.gid)
    try:
        removed = accounts.reap_orphans()
        # Reaping is machine-wide: a parallel test's workload stop (another pytest-xdist
        # worker) may have reaped this orphan a moment earlier. Run alone, only this call can.
        assert orphan.name in removed or accounts.lookup(orphan.name) is None
        assert accounts.lookup(orphan.name) is None
        assert accounts.lookup(alive.name) is not None, "its directory exists"
        assert accounts.lookup(busy.name) is not None, "a process runs as it"
    finally:
        sleeper.kill()
        sleeper.wait()
        for acct in (alive, busy):
            subprocess.run(["userdel", acct.name], capture_output=True, check=False)
    assert not [e for e in pwd.getpwall() if e.pw_name in (orphan.name, alive.name, busy.name)]
