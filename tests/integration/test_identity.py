"""Identity is the operating-system account (issue 11, item 4): no variable makes anyone
somebody else. ``STACKYARD_USER=alice`` used to grant admin and approve as alice."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from _as_user import cli

pytestmark = pytest.mark.integration

ME = pwd.getpwuid(os.geteuid()).pw_name
_run = cli


def test_stackyard_user_does_not_change_who_acts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # alice makes the home, so she is its bootstrap admin; the OS account of this test is not.
    made = _run(home, "init", user="alice")
    assert made.returncode == 0, made.stderr
    listed = _run(home, "access", "list", "--output", "json", user="alice")
    assert listed.returncode == 0, listed.stderr
    assert "user:alice" in listed.stdout

    for var in ("STACKYARD_USER", "USER", "LOGNAME"):
        res = _run(home, "access", "grant", "admin", "--user", "mallory", **{var: "alice"})
        assert res.returncode == 6, (var, res.stdout, res.stderr)
        assert ME in res.stderr  # refused as the real account, named
    after = _run(home, "access", "list", "--output", "json", user="alice")
    assert "mallory" not in after.stdout

    # the audit log shows the real account as the actor of the refused attempts
    audit = _run(home, "audit", "--output", "json", user="alice")
    assert audit.returncode == 0, audit.stderr
    assert f'"actor": "{ME}"' in audit.stdout or f'"actor":"{ME}"' in audit.stdout
