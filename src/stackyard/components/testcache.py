"""Remembered component test passes: ``stackyard init`` on a second home (a CI job, a new
checkout) does not test again a library build this machine has already seen pass.

A pass is remembered under a key made of everything that decides the result: the component
folder's files, the whole installed stackyard package (its code and library), the Python
version and the machine's name. Any change to one of them is a new key, so a pass is reused
only for the very same code on the same machine, and for at most ``MAX_AGE_S``. Failures are
never remembered: a component that could not be tested is tried again next time.

The cache lives in ``$XDG_CACHE_HOME/stackyard/component-tests`` (``~/.cache/...``);
``STACKYARD_TEST_CACHE`` names another folder, and ``0`` (or ``off``) turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from functools import cache
from pathlib import Path

from stackyard.components.testing import TestOutcome

__all__ = ["MAX_AGE_S", "TestCache"]

#: How long a remembered pass is trusted (seconds): a week.
MAX_AGE_S = 7 * 86400.0
_OFF = ("0", "off", "false", "no")


class TestCache:
    """Passes of component tests, one small JSON file per key."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TestCache | None:
        """The cache the environment asks for; None when it is turned off."""
        env = os.environ if environ is None else environ
        named = env.get("STACKYARD_TEST_CACHE", "").strip()
        if named.lower() in _OFF:
            return None
        if named:
            return cls(Path(named))
        base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return cls(Path(base) / "stackyard" / "component-tests")

    def key(self, component_dir: Path) -> str:
        """The key of ``component_dir``'s tests on this machine with this code."""
        h = hashlib.sha256()
        h.update(_package_digest().encode())
        h.update(_tree_digest(component_dir).encode())
        h.update(sys.version.encode())
        h.update(platform.node().encode())
        return h.hexdigest()

    def get(self, component_dir: Path, *, now: float | None = None) -> list[TestOutcome] | None:
        """The remembered passing outcomes of ``component_dir``'s tests, or None."""
        path = self.root / f"{self.key(component_dir)}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            at = float(data["at"])
            files = [str(f) for f in data["files"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (time.time() if now is None else now) - at > MAX_AGE_S or not files:
            return None
        return [TestOutcome(f, True, cached_at=at) for f in files]

    def put(self, component_dir: Path, outcomes: list[TestOutcome]) -> None:
        """Remember ``outcomes`` when every one passed (never raises: a cache is optional)."""
        if not outcomes or not all(o.ok for o in outcomes):
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.root / f"{self.key(component_dir)}.json"
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(
                json.dumps({"at": time.time(), "files": [o.file for o in outcomes]}),
                encoding="utf-8",
            )
            os.replace(tmp, path)
        except OSError:
            pass


def _tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of the files under ``root`` (sorted)."""
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode() + b"\0")
            try:
                h.update(path.read_bytes())
            except OSError:
                h.update(b"\1unreadable")
            h.update(b"\0")
    return h.hexdigest()


@cache
def _package_digest() -> str:
    """The digest of the installed stackyard package (code, library, schemas)."""
    import stackyard

    return _tree_digest(Path(stackyard.__file__).parent)
