"""Reliability fixtures: the shared apply worker (``bench/_worker.py``), loaded by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = Path(__file__).resolve().parent / "apply_worker.py"


def _load_worker() -> ModuleType:
    name = "stackyard_bench_worker"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "_worker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def worker() -> ModuleType:
    """``bench/_worker.py``: the worker (``main``, ``fork``) and its building blocks."""
    return _load_worker()


@pytest.fixture(scope="session")
def worker_script() -> Path:
    """The worker as a script, for tests that need fresh interpreters."""
    return WORKER_SCRIPT
