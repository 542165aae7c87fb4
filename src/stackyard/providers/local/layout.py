"""Where local objects live on disk, and the ownership marker that labels each of them.

Every object is a directory holding a marker file ``.stackyard-owner`` whose text is the
owner label (``stackyard:<installation>:<env>:<address>``). A directory without a marker, or with another
label, is not ours: it is reported unmanaged and never changed or deleted.

Layout of a server (``<home>/servers/<name>/``)::

    .stackyard-owner   the label
    server.json        port, binaries, data dir (no secrets)
    secret             the admin password (0600)
    server.log         the server's output
    server.pid         pid and start time
    data/              the server's own files, owned by the server user (or a symlink, below)

Under root the server runs as an unprivileged user, which must be able to reach its data dir.
When it cannot traverse the home (``/root`` and pytest's temporary dirs are 0700), the data
dir lives in ``/var/lib/stackyard/servers/<hash>-<name>`` instead, with its own marker, and
``data`` is a symlink to it. The home's permissions are never widened (see ADR 0001).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

from stackyard.errors import ProviderError, ProviderPermanentError, ProviderTransientError

MARKER = ".stackyard-owner"
EXTERNAL_ROOT = Path("/var/lib/stackyard/servers")
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)


class Ownership(Enum):
    """Whose a directory is."""

    MISSING = "missing"
    OURS = "ours"
    FOREIGN = "foreign"


def home_dir(override: str = "") -> Path:
    """The stackyard home: ``override``, else ``$STACKYARD_HOME``, else ``~/.stackyard``."""
    raw = override or os.environ.get("STACKYARD_HOME") or "~/.stackyard"
    return Path(raw).expanduser().absolute()


def checked_name(name: str, *, address: str) -> str:
    """``name`` if it is a safe single path component, else ``ProviderPermanentError``."""
    if not _NAME.match(name) or name in (".", ".."):
        raise ProviderPermanentError(
            f"Invalid local object name {name!r}: use 1-63 characters a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit",
            address=address,
        )
    return name


def ownership(path: Path, label: str) -> Ownership:
    """Whether ``path`` is missing, ours (marker holds ``label``) or someone else's."""
    if not path.exists() and not path.is_symlink():
        return Ownership.MISSING
    try:
        found = (path / MARKER).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return Ownership.FOREIGN
    return Ownership.OURS if found == label else Ownership.FOREIGN


def marker_label(path: Path) -> str | None:
    """The label in ``path``'s marker, or None when it has none (or is not a directory)."""
    try:
        return (path / MARKER).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def owner_of(path: Path) -> str:
    """The label in ``path``'s marker, or a phrase saying there is none."""
    try:
        return repr((path / MARKER).read_text(encoding="utf-8").strip())
    except OSError:
        return "no stackyard marker"


def claim(path: Path, label: str, *, address: str, mode: int = 0o700) -> None:
    """Create ``path`` (and parents) with our marker; refuse a directory that is not ours.

    The directory is made beside ``path`` with its marker inside and renamed into place, so
    it never exists without its marker: a create killed at any point leaves either nothing
    at ``path`` or a directory marked ours (a re-run then converges on it). A directory an
    older stackyard left half-made (only ``MARKER.tmp`` holding our label) is finished.
    """
    state = ownership(path, label)
    if state is Ownership.FOREIGN and _half_claimed(path, label):
        (path / (MARKER + ".tmp")).replace(path / MARKER)
        state = Ownership.OURS
    if state is Ownership.FOREIGN:
        raise ProviderPermanentError(
            f"{path} exists and is not owned by this resource ({owner_of(path)})",
            address=address,
            hint="Choose another name, or remove the directory if it is a leftover.",
        )
    if state is Ownership.OURS:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.claim-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)  # our own pid's leftover from a killed run
    staged.mkdir(mode=mode)
    staged.chmod(mode)
    marker = staged / MARKER
    marker.write_text(label + "\n", encoding="utf-8")
    marker.chmod(0o644)
    try:
        staged.rename(path)  # atomic; refused when something appeared at ``path`` meanwhile
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)
        if ownership(path, label) is not Ownership.OURS:
            raise ProviderPermanentError(
                f"{path} appeared while it was being created and is not owned by this "
                f"resource ({owner_of(path)})",
                address=address,
                hint="Another process made it; choose another name or remove it.",
            ) from None


def _half_claimed(path: Path, label: str) -> bool:
    """``path`` holds nothing but a marker being written with ``label`` (an older claim that
    was killed between writing the marker and renaming it into place)."""
    try:
        names = [p.name for p in path.iterdir()]
        return names == [MARKER + ".tmp"] and (
            (path / names[0]).read_text(encoding="utf-8").strip() == label
        )
    except OSError:
        return False


def remove(path: Path, label: str, *, address: str, recorded: bool = False) -> None:
    """Delete ``path`` if it is ours; a missing path is success; a foreign one is refused.

    The marker goes last: the contents first, then the marker, then the (empty) directory,
    so a delete killed at any point leaves either a marked directory or an empty one, and a
    re-run finishes it. ``recorded``: the caller's state records this exact path as its own;
    a directory there without a marker is then a delete that stopped after the marker went
    (an older stackyard removed it early) and is finished too. A directory with another
    owner's marker is always refused.
    """
    state = ownership(path, label)
    if state is Ownership.MISSING:
        return
    if state is Ownership.FOREIGN and not _half_deleted(path, recorded=recorded):
        raise ProviderPermanentError(
            f"Refusing to delete {path}: it is not owned by this resource ({owner_of(path)})",
            address=address,
        )
    if path.is_symlink():
        shutil.rmtree(path)  # refused by shutil (OSError), as it always was
    for entry in path.iterdir():
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
    (path / MARKER).unlink(missing_ok=True)
    path.rmdir()


def _half_deleted(path: Path, *, recorded: bool) -> bool:
    """A directory whose delete stopped after its marker went: no marker, and empty or ours."""
    if path.is_symlink() or not path.is_dir() or (path / MARKER).exists():
        return False
    return recorded or not any(path.iterdir())


def external_data_dir(server_dir: Path) -> Path:
    """The data dir used when the server user cannot reach ``server_dir`` (deterministic)."""
    digest = hashlib.sha256(str(server_dir).encode()).hexdigest()[:16]
    return EXTERNAL_ROOT / f"{digest}-{server_dir.name}"


@contextlib.contextmanager
def provider_errors(address: str) -> Iterator[None]:
    """The one boundary where OS errors become provider errors."""
    try:
        yield
    except ProviderError:
        raise
    except PermissionError as exc:
        raise ProviderPermanentError(f"{type(exc).__name__}: {exc}", address=address) from exc
    except (OSError, TimeoutError) as exc:
        raise ProviderTransientError(f"{type(exc).__name__}: {exc}", address=address) from exc
