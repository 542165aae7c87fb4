"""Confining a local workload: the OS account it runs as and the folder it may read.

When stackyard runs as root, the workloads of an environment run as that environment's own
unprivileged account (``host.accounts``), so they cannot read the home
(``secret.key``, ``state.db``), another environment's workloads or a server's data. The home
stays ``0700``: a workload's filesystem root lives outside it, in
``/var/lib/stackyard/workloads/<hash>-<workload>`` (the parent is ``0711``: it can be passed
through but not listed), owned by the account and ``0700``; ``<workload>/root`` in the home is
a symlink to it. When stackyard does not run as root it cannot switch users, and workloads
run as the invoking user with no confinement (this kernel offers no Landlock either).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackyard.host import accounts
from stackyard.host.accounts import env_purpose, runnable_by_server_user

__all__ = [
    "PYTHON_ROOT",
    "WORKLOADS_ROOT",
    "Confinement",
    "describe",
    "env_purpose",
    "files_root",
    "python_for",
    "remove_tree",
]

WORKLOADS_ROOT = Path("/var/lib/stackyard/workloads")
PYTHON_ROOT = Path("/var/lib/stackyard/python")


@dataclass(frozen=True, slots=True)
class Confinement:
    """Workloads of one runtime run as ``account``, each in a root outside the home."""

    account: accounts.Account
    runtime_root: Path

    def files_root(self, workload: str) -> Path:
        """The real filesystem root of ``workload`` (``<workload>/root`` links to it)."""
        return files_root(self.runtime_root, workload)

    def prepare_parent(self) -> None:
        """Make ``WORKLOADS_ROOT`` (root's, ``0711``: traversable, not listable)."""
        WORKLOADS_ROOT.mkdir(parents=True, exist_ok=True)
        os.chown(WORKLOADS_ROOT, 0, 0)
        WORKLOADS_ROOT.chmod(0o711)


def files_root(runtime_root: Path, workload: str) -> Path:
    """Where a confined workload's root lives (deterministic, so a stop finds it)."""
    digest = hashlib.sha256(str(runtime_root.absolute()).encode()).hexdigest()[:16]
    return WORKLOADS_ROOT / f"{digest}-{workload}"


def python_for(account: accounts.Account | None) -> tuple[dict[str, str], str]:
    """What makes ``python`` on a workload's ``PATH`` a Python with stackyard's packages:
    the variables to set first (``PATH`` among them) and the directory put first on ``PATH``.

    Normally that is the directory of the running interpreter. An account cannot run it when
    it lies in a private folder (pyenv under ``/root``): then ``python`` is a mirror of that
    interpreter (its binary, ``libpython`` and standard library, hard-linked, so no copy and
    the same version) in ``PYTHON_ROOT``, with stackyard's ``site-packages`` on
    ``PYTHONPATH`` when the account can read them.
    """
    exe = Path(sys.executable)
    if account is None or runnable_by_server_user(exe):
        return {}, str(exe.parent)
    mirror = _mirror()
    if mirror is None:
        return {}, str(exe.parent)  # the start fails with the command's own error, logged
    extra = {"LD_LIBRARY_PATH": str(mirror / "lib")}
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    readable = [p for p in paths if Path(p).is_dir() and runnable_by_server_user(Path(p))]
    if readable:
        extra["PYTHONPATH"] = os.pathsep.join(readable)
    return extra, str(mirror / "bin")


def _mirror() -> Path | None:
    """The running interpreter hard-linked into ``PYTHON_ROOT`` (made once; None if it
    cannot be, e.g. across file systems)."""
    real = Path(sys.executable).resolve()
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    tag = hashlib.sha256(f"{real}:{sys.version}".encode()).hexdigest()[:12]
    dest = PYTHON_ROOT / f"{version}-{tag}"
    if (dest / ".complete").exists():
        return dest
    PYTHON_ROOT.mkdir(parents=True, exist_ok=True)
    PYTHON_ROOT.chmod(0o755)
    tmp = PYTHON_ROOT / f".{dest.name}.{os.getpid()}"
    try:
        (tmp / "bin").mkdir(parents=True)
        os.link(real, tmp / "bin" / version)
        for name in ("python", "python3"):
            (tmp / "bin" / name).symlink_to(version)
        (tmp / "lib").mkdir()
        for lib in (prefix / "lib").glob("libpython*.so*"):
            if lib.is_symlink():
                (tmp / "lib" / lib.name).symlink_to(os.readlink(lib))
            else:
                os.link(lib, tmp / "lib" / lib.name)
        shutil.copytree(
            prefix / "lib" / version,
            tmp / "lib" / version,
            symlinks=True,
            ignore=shutil.ignore_patterns("site-packages", "test", "__pycache__"),
            copy_function=os.link,
        )
        for folder, _, _ in os.walk(tmp):
            os.chmod(folder, 0o755)  # noqa: S103  (public interpreter files, whatever the umask)
        (tmp / ".complete").touch()
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return dest if (dest / ".complete").exists() else None  # a racing twin made it
    return dest


def describe(purpose: str | None) -> dict[str, Any]:
    """What ``status`` says about confinement: the account, or why there is none."""
    if purpose is not None and os.geteuid() == 0:
        return {
            "isolated": True,
            "user": accounts.account_name(purpose),
            "detail": "workloads run as this environment's own unprivileged account, with no "
            "access to the stackyard home, other environments or the servers' data",
        }
    return {
        "isolated": False,
        "user": _me(),
        "detail": "stackyard does not run as root, so workloads run as the invoking user and "
        "can read what that user can (the stackyard home included); no Landlock on this host",
    }


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def remove_tree(path: Path) -> None:
    """Remove ``path`` (a workload's files root) if it exists; symlinks are not followed."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
