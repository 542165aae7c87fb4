"""The stackyard home's permissions: the home and every folder in it are private (0700).

The home holds the state database, the secret key and every environment's files, so nobody
but its owner may list or enter it. ``enforce_private`` is called whenever a home is opened,
not only when it is made: a home made by hand with the umask's ``0755``, or by an older
version, is narrowed the next time it is used. What must be reachable by another account
(a server's data, a confined workload's files, a bucket under root) lives outside the home
(``/var/lib/stackyard``), so narrowing never breaks it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE", "enforce_private"]

#: The mode of the home and of each folder directly in it.
PRIVATE = 0o700


def enforce_private(home: Path) -> list[Path]:
    """Narrow ``home`` and each folder directly inside it to ``0700``; returns what changed.

    Symlinks are not followed, files are left alone (each sets its own mode), and a folder
    we do not own (and so cannot chmod) is skipped. A missing home is not an error.
    """
    changed: list[Path] = []
    try:
        entries = [home, *home.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return changed
    for path in entries:
        try:
            st = path.lstat() if path != home else path.stat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) == PRIVATE:
            continue
        if st.st_uid != os.geteuid() and os.geteuid() != 0:
            continue
        with contextlib.suppress(PermissionError):
            path.chmod(PRIVATE)
            changed.append(path)
    return changed
