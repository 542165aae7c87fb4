"""Remembered component test passes (``stackyard.components.testcache``): reused only for the
same component files, code and machine, never for a failure, never when stale or off."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stackyard.components.testcache import MAX_AGE_S
from stackyard.components.testcache import TestCache as Cache
from stackyard.components.testing import TestOutcome as Outcome
from stackyard.diagnostics import error

pytestmark = pytest.mark.unit


def _component(tmp_path: Path) -> Path:
    comp = tmp_path / "comp"
    (comp / "tests").mkdir(parents=True)
    (comp / "component.yaml").write_text("name: c\n")
    (comp / "tests" / "basic.yaml").write_text("workload: {}\n")
    return comp


def test_a_pass_is_reused_for_the_same_files(tmp_path: Path) -> None:
    comp, cache = _component(tmp_path), Cache(tmp_path / "cache")
    assert cache.get(comp) is None
    cache.put(comp, [Outcome("basic.yaml", True)])
    hit = cache.get(comp)
    assert hit is not None and [(o.file, o.ok) for o in hit] == [("basic.yaml", True)]
    assert hit[0].cached_at is not None


def test_a_failure_is_never_remembered(tmp_path: Path) -> None:
    comp, cache = _component(tmp_path), Cache(tmp_path / "cache")
    failed = Outcome("basic.yaml", False, (error("Apply failed", "no server"),))
    cache.put(comp, [Outcome("other.yaml", True), failed])
    cache.put(comp, [])
    assert cache.get(comp) is None
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("change", ["edit", "add", "rename"])
def test_any_change_to_the_component_is_a_new_key(tmp_path: Path, change: str) -> None:
    comp, cache = _component(tmp_path), Cache(tmp_path / "cache")
    cache.put(comp, [Outcome("basic.yaml", True)])
    if change == "edit":
        (comp / "tests" / "basic.yaml").write_text("workload: {x: 1}\n")
    elif change == "add":
        (comp / "README.md").write_text("# c\n")
    else:
        (comp / "tests" / "basic.yaml").rename(comp / "tests" / "first.yaml")
    assert cache.get(comp) is None


def test_a_stale_or_corrupt_entry_is_not_trusted(tmp_path: Path) -> None:
    comp, cache = _component(tmp_path), Cache(tmp_path / "cache")
    cache.put(comp, [Outcome("basic.yaml", True)])
    assert cache.get(comp, now=time.time() + MAX_AGE_S + 60) is None
    entry = next((tmp_path / "cache").iterdir())
    entry.write_text("{not json")
    assert cache.get(comp) is None
    entry.write_text(json.dumps({"at": time.time(), "files": []}))
    assert cache.get(comp) is None


def test_the_environment_names_or_turns_off_the_cache(tmp_path: Path) -> None:
    assert Cache.from_env({"STACKYARD_TEST_CACHE": "0"}) is None
    assert Cache.from_env({"STACKYARD_TEST_CACHE": "off"}) is None
    named = Cache.from_env({"STACKYARD_TEST_CACHE": str(tmp_path / "c")})
    assert named is not None and named.root == tmp_path / "c"
    xdg = Cache.from_env({"XDG_CACHE_HOME": str(tmp_path / "x")})
    assert xdg is not None and xdg.root == tmp_path / "x" / "stackyard" / "component-tests"


def test_the_cache_never_breaks_a_run(tmp_path: Path) -> None:
    comp = _component(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = Cache(blocker / "cache")  # cannot be made: a file is in the way
    cache.put(comp, [Outcome("basic.yaml", True)])
    assert cache.get(comp) is None
