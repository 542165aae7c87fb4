"""Unprivileged OS accounts that local servers and workloads run as when stackyard runs as root.

Each local server and each environment's workloads get an account of their own, so one cannot
read another's files: ``stackyard-<12 hex>``, the hex a hash of what the account is for (a
server's directory, or a home and an environment), so the same server or environment of the
same home always gets the same account back. Accounts are made on demand with ``useradd
--system --no-create-home --shell /usr/sbin/nologin`` and removed (``userdel``) once nothing of
theirs is left: a server's when the server is deleted, after its files; an environment's when
its workloads are all stopped and its last bucket is gone (whichever comes last). While it
still owns a bucket or a workload root, or a process runs as it, it is kept, so its uid is
never reused on files left behind.

When stackyard does not run as root it cannot switch users: every function here then returns
``None`` and everything runs as the invoking user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PREFIX",
    "Account",
    "account_name",
    "ensure",
    "env_purpose",
    "leftovers",
    "lookup",
    "reap_orphans",
    "remove",
    "runnable_by_server_user",
    "useradd",
]

#: Every account stackyard makes is named ``PREFIX`` + 12 hex digits.
PREFIX = "stackyard-"


@dataclass(frozen=True, slots=True)
class Account:
    """An unprivileged account: its name, uid and primary gid."""

    name: str
    uid: int
    gid: int


def env_purpose(home: Path, env: str) -> str:
    """What an environment's workload account is for: its home and its name."""
    return f"env:{Path(home).expanduser().absolute()}:{env}"


def account_name(purpose: str) -> str:
    """The account name for ``purpose`` (``server:<dir>`` or ``env:<home>:<env>``)."""
    return PREFIX + hashlib.sha256(purpose.encode()).hexdigest()[:12]


def lookup(name: str) -> Account | None:
    """The account called ``name``, or ``None`` when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def ensure(purpose: str, comment: str) -> Account | None:
    """The account for ``purpose``, created when missing; ``None`` unless we run as root.

    Safe to call concurrently: a lost ``useradd`` race is followed by a second look-up. Returns
    ``None`` too when the account cannot be made (no ``useradd``); callers then fall back
    as documented where they call it.
    """
    if os.geteuid() != 0:
        return None
    name = account_name(purpose)
    return lookup(name) or useradd(name, comment=comment, user_group=True)


def useradd(name: str, *, comment: str = "", user_group: bool = False) -> Account | None:
    """Create the system account ``name`` (no home, no login shell) and look it up again.

    Safe to call concurrently: when another process won the ``useradd`` race, the second
    look-up finds its account. ``None`` when it cannot be made (no ``useradd``, not root).
    """
    args = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent"]
    args += ["--shell", "/usr/sbin/nologin"]
    if user_group:
        args.append("--user-group")
    if comment:
        args += ["--comment", comment[:200].replace(":", " ")]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([*args, name], capture_output=True, timeout=30, check=False)
    return lookup(name)


def remove(purpose: str, *, unless_owning: Iterable[Path] = ()) -> None:
    """Delete the account for ``purpose`` once nothing it owned is left.

    Kept while any of ``unless_owning`` belongs to it (so its uid is never reused on files
    left behind), and while a process runs as it (``userdel`` refuses). Best effort and safe
    to repeat: a missing account is success.
    """
    found = lookup(account_name(purpose))
    if os.geteuid() != 0 or found is None:
        return
    for path in unless_owning:
        with contextlib.suppress(OSError):
            if path.lstat().st_uid == found.uid:
                return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["userdel", found.name], capture_output=True, timeout=30, check=False)


def leftovers() -> list[Path]:
    """What a workload account may own in stackyard's shared folders: buckets and roots."""
    shared = Path("/var/lib/stackyard")
    return [*shared.glob("buckets/*/*"), *shared.glob("workloads/*")]


def reap_orphans() -> list[str]:
    """Delete the accounts whose purpose is gone: a server account whose directory no longer
    exists, or a workload account whose home no longer exists, that runs no process and owns
    nothing in the shared folders. Such accounts are left when a create was killed between
    ``useradd`` and the first file (recovery then finds no object, and nothing deletes the
    account). Returns the names removed; best effort, and a no-op unless we run as root."""
    if os.geteuid() != 0:
        return []
    running = _uids_running()
    owned = set()
    for path in leftovers():
        with contextlib.suppress(OSError):
            owned.add(path.lstat().st_uid)
    removed = []
    for entry in pwd.getpwall():
        if not entry.pw_name.startswith(PREFIX) or entry.pw_uid in running | owned:
            continue
        if any(p.exists() for p in _purpose_paths(entry.pw_gecos)):
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                ["userdel", entry.pw_name], capture_output=True, timeout=30, check=False
            )
            if done.returncode == 0:
                removed.append(entry.pw_name)
    return removed


def _purpose_paths(comment: str) -> list[Path]:
    """The folders an account's comment names (``ensure``'s ``comment``, with ':' as ' '):
    ``stackyard server server <dir>`` or ``stackyard workloads [env] <home> [<env>]``. An
    account whose comment names none is never taken for an orphan."""
    for lead in ("stackyard server server ", "stackyard workloads env ", "stackyard workloads "):
        if comment.startswith(lead):
            rest = comment[len(lead) :]
            candidates = [Path(rest), Path(rest.rsplit(" ", 1)[0])]
            return [p for p in candidates if p.is_absolute()] or [Path("/")]
    return [Path("/")]


def _uids_running() -> set[int]:
    """The real uids of every process on the machine (from ``/proc``)."""
    uids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    uids.add(int(line.split()[1]))
                    break
    return uids


def runnable_by_server_user(binary: Path) -> bool:
    """Whether an unprivileged account (a server's, or an environment's workloads') can run
    ``binary``.

    Under root servers and workloads run as an unprivileged account, which cannot reach a
    binary inside a private folder (a virtualenv under a 0700 temp dir, say): such a candidate
    is skipped in favour of the next one. As any other user they run as that user, so
    ``X_OK`` is enough.
    """
    if os.geteuid() != 0:
        return True
    try:
        target = binary.resolve()
        if not target.stat().st_mode & 0o001:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in target.parents)
    except OSError:
        return False
