from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from stackyard.host.accounts import runnable_by_server_user

pytestmark = pytest.mark.unit


@pytest.mark.skipif(os.geteuid() != 0, reason="the rule only narrows candidates under root")
def test_a_binary_in_a_private_folder_is_not_runnable_by_the_server_user() -> None:
    # pytest's own tmp root is private (0700), so work in a fresh folder under /tmp.
    tmp_path = Path(tempfile.mkdtemp(prefix="stackyard-bin-", dir="/tmp"))
    try:
        _check(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _check(tmp_path: Path) -> None:
    private = tmp_path / "private"
    public = tmp_path / "public"
    for folder, mode in ((private, 0o700), (public, 0o755)):
        folder.mkdir()
        shutil.copy("/bin/true", folder / "tool")
        (folder / "tool").chmod(0o755)
        folder.chmod(mode)
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if not parent.stat().st_mode & 0o001:
            pytest.skip(f"{parent} is private on this machine")
    assert not runnable_by_server_user(private / "tool"), "a 0700 folder hides the binary"
    assert runnable_by_server_user(public / "tool"), "a world-traversable path is fine"
