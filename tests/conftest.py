"""Shared fixtures: an isolated STACKYARD_HOME per test, and the real services (``_services``)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from _services import *  # noqa: F403  (fixtures: postgres_admin_url, redis_url, ...)
from _sweeper import sweeper, sweeper_checks  # noqa: F401  (fixtures)

# Every command a test runs is a process of its own: a warm command server (on by default for
# users) would outlive the test and serve the next one. tests/cli/test_cmdserver.py turns it
# on for its own commands, with a private socket directory.
os.environ["STACKYARD_DAEMON"] = "0"

# A library component's tests run once per test session: every later `stackyard init` (each
# test home) reuses the passes (stackyard.components.testcache), never a user's own cache.
_TEST_CACHE = tempfile.mkdtemp(prefix="stackyard-component-tests-")
os.environ["STACKYARD_TEST_CACHE"] = _TEST_CACHE
atexit.register(shutil.rmtree, _TEST_CACHE, ignore_errors=True)

SHARED = Path(__file__).resolve().parents[2] / "shared"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, private STACKYARD_HOME for one test."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("STACKYARD_HOME", str(h))
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    yield h


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder beside the repository (Score schema and sample)."""
    return SHARED


from _platform import library_home, library_template, stage  # noqa: E402, F401  (fixtures)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding real installed-plugin metadata (``*.dist-info``)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for mod in set(sys.modules) - before:
        if mod.startswith("acme_"):
            del sys.modules[mod]
