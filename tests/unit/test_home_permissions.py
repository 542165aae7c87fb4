"""Issue 11 item 16: a home made with mode 0755 is narrowed to 0700 (with its folders) on open."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stackyard.home import enforce_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _world_readable_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for folder in (home, home / "buckets", home / "envs", home / "envs" / "dev"):
        folder.mkdir()
        folder.chmod(0o755)
    (home / "config.yaml").write_text("{}\n")
    (home / "config.yaml").chmod(0o644)
    return home


def test_enforce_private_narrows_the_home_and_its_folders(tmp_path: Path) -> None:
    home = _world_readable_home(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    outside.chmod(0o755)
    (home / "link").symlink_to(outside, target_is_directory=True)

    changed = enforce_private(home)

    assert set(changed) == {home, home / "buckets", home / "envs"}
    assert _mode(home) == _mode(home / "buckets") == _mode(home / "envs") == 0o700
    assert _mode(home / "config.yaml") == 0o644, "files keep their own modes"
    assert _mode(outside) == 0o755, "a symlink is not followed"
    assert enforce_private(home) == [], "a second call changes nothing"
    assert enforce_private(tmp_path / "missing") == []


def test_opening_a_workspace_fixes_a_world_readable_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings
    from stackyard.state import open_store

    home = _world_readable_home(tmp_path)
    monkeypatch.setenv("STACKYARD_HOME", str(home))
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    settings = Settings.load(home=home, actor="alice", environ={})
    open_store(settings).close()
    for folder in (home, home / "buckets", home / "envs"):
        folder.chmod(0o755)

    with Workspace.open(settings):
        pass

    for folder in (home, home / "buckets", home / "envs"):
        assert _mode(folder) == 0o700, folder
    assert os.access(home / "envs" / "dev", os.R_OK)
