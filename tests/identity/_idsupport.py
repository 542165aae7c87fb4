"""Test-only support of the identity tests (imported under this unique name: every test folder
has a ``conftest``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackyard.environments.workspace import Workspace
from stackyard.settings import Settings
from stackyard.state import open_store

#: The bootstrap admin of every home here (its first actor).
ADMIN = "root-admin"


def new_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str | None) -> Settings:
    """Settings of a new home (its state in ``url``, else SQLite) acting as ``ADMIN``, who is
    its bootstrap admin."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("STACKYARD_HOME", str(home))
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    base = Settings.load(home=home, database_url=url, actor=ADMIN, environ={})
    open_store(base).close()  # the schema, as 'stackyard init' makes it
    with Workspace.open(base):
        pass  # the bootstrap admin
    return base
