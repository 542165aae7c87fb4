"""The checked-builds cache: checks an immutable build passed, remembered under the home.

A published build is content-addressed, so what was once found true of a digest stays true
as long as everything else the check depends on is unchanged. The cache records only
*passes*, each as an opaque key: the SHA-256 of everything the check depends on (the
stackyard version, the digests checked, the schema or the trusted keys). A miss means
"check it, as if never seen"; a pass is recorded after the check, never a failure.

The file is ``<home>/keys/checked-builds`` (mode 0600, written atomically: a temporary file
renamed over it). It is a cache, never a source of truth: a file that cannot be read, parsed
or written is ignored and rebuilt, and anything wrong with it costs only a check again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from pathlib import Path

import stackyard
from stackyard.components.layout import write_atomic

__all__ = ["MAX_ENTRIES", "CheckedBuilds", "trust_fingerprint"]

#: Bump when what a key means changes: every older entry then misses.
_FORMAT = 1
#: Oldest entries are dropped past this many (a few hundred bytes per hundred builds).
MAX_ENTRIES = 4096
_KEY = re.compile(r"[0-9a-f]{64}")


def trust_fingerprint(trusted_dir: Path) -> str:
    """A digest of the trusted key files (names and bytes) in ``trusted_dir``, read without
    parsing them: adding, removing or changing any trusted key changes it."""
    h = hashlib.sha256(b"stackyard-trusted-keys\0")
    if trusted_dir.is_dir():
        for path in sorted(trusted_dir.glob("*.pub")):
            data = path.read_bytes()
            h.update(f"{path.name}\0{len(data)}\0".encode())
            h.update(data)
    return "sha256:" + h.hexdigest()


class CheckedBuilds:
    """The passes recorded under ``home``; read once per instance, merged on each write.

    Safe to share between the threads of one command (resolution fetches in parallel).
    Two processes writing at once each rename a whole file over it: one's new entries may be
    lost, which costs a check again, never a wrong answer.
    """

    def __init__(self, home: Path) -> None:
        # beside the trusted keys, not in ``cache/`` (whose blobs are untrusted, re-checked on
        # read, and may be shared or restored): a pass recorded here skips a signature check
        self.path = Path(home) / "keys" / "checked-builds"
        self._lock = threading.Lock()
        self._entries: list[str] | None = None

    @staticmethod
    def key(*parts: str) -> str:
        """The key of a pass: what it is (``parts[0]``) and everything it depends on."""
        doc = json.dumps([_FORMAT, stackyard.__version__, *parts], separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()

    def passed(self, *parts: str) -> bool:
        """Whether the check named by ``parts`` passed before."""
        key = self.key(*parts)
        with self._lock:
            if self._entries is None:
                self._entries = self._read()
            return key in self._entries

    def record(self, *parts: str) -> None:
        """Remember that the check named by ``parts`` passed (best effort: an unwritable home
        only means checking again next time)."""
        key = self.key(*parts)
        with self._lock:
            merged = [k for k in self._read() if k != key]
            merged.append(key)
            self._entries = merged[-MAX_ENTRIES:]
            with contextlib.suppress(OSError):
                self._write(self._entries)

    def _read(self) -> list[str]:
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return []
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            return []
        entries = doc.get("passed")
        if not isinstance(entries, list):
            return []
        # one malformed entry makes the whole file suspect: start again
        if not all(isinstance(k, str) and _KEY.fullmatch(k) for k in entries):
            return []
        return list(entries)

    def _write(self, entries: list[str]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"format": _FORMAT, "passed": entries}
        write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode("ascii"))
