"""The audit chain's seal outside the database: its key (``audit.key``) and signed head
(``audit.head``), both private files in the stackyard home.

Whoever can write the database but not the home can neither recompute the chain (no key) nor
hide a cut tail (the head checkpoint only moves forward and is itself MAC'd). ``audit.head``
keeps one checkpoint per state store the home has used (by its URL, password masked).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from stackyard.errors import StateError, VerificationFailedError
from stackyard.policy.audit import Checkpoint
from stackyard.state.secrets import _load_or_create_key, _read_key

__all__ = ["HEAD_FILE", "KEY_FILE", "AuditSeal"]

KEY_FILE = "audit.key"
HEAD_FILE = "audit.head"


class AuditSeal:
    """The audit key of the home ``home`` and its head checkpoint for the store ``store_url``."""

    def __init__(self, home: Path, store_url: str) -> None:
        self.home = home
        self.store = hashlib.sha256(store_url.encode()).hexdigest()[:16]

    def key(self, *, create: bool) -> bytes | None:
        """The HMAC key; made once (mode 0600) when ``create``, else None when absent."""
        path = self.home / KEY_FILE
        if create:
            # The same atomic, private creation as secret.key: one key wins a race.
            return _load_or_create_key(path)
        try:
            return _read_key(path)
        except FileNotFoundError:
            return None

    def checkpoint(self, key: bytes | None) -> Checkpoint | None:
        """The signed head, or None when none was written; ``StateError`` when it is forged."""
        path = self.home / HEAD_FILE
        heads = self._heads(path)
        if self.store not in heads:
            return None
        try:
            raw = heads[self.store]
            point = Checkpoint(int(raw["seq"]), str(raw["hash"]))
            mac = str(raw["mac"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"The audit checkpoint {path} is unreadable",
                hint="Restore it from a backup of the stackyard home; it must not be edited.",
            ) from exc
        if key is None or not secrets.compare_digest(self._mac(point, key), mac):
            raise VerificationFailedError(
                f"The audit checkpoint {path} was not signed with this home's audit key",
                hint="Restore audit.key and audit.head together from a backup of the home.",
            )
        return point

    def advance(self, point: Checkpoint, key: bytes) -> None:
        """Record ``point`` as the head, unless a later one is already recorded (appenders
        race; the checkpoint only moves forward). Written atomically: tmp file, rename."""
        path = self.home / HEAD_FILE
        lock = os.open(self.home / f"{HEAD_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.checkpoint(key)
            if current is not None and current.seq >= point.seq:
                return
            heads = self._heads(path)
            heads[self.store] = {"seq": point.seq, "hash": point.hash, "mac": self._mac(point, key)}
            body = json.dumps(heads, sort_keys=True)
            tmp = path.with_name(f".{HEAD_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, body.encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise StateError(
                f"Cannot write the audit checkpoint {path}: {exc.strerror}",
                hint="Make the stackyard home writable by the user running stackyard.",
            ) from exc
        finally:
            os.close(lock)

    def _mac(self, point: Checkpoint, key: bytes) -> str:
        """The checkpoint's HMAC, bound to this store so one cannot stand in for another's."""
        return point.mac(key, scope=self.store)

    @staticmethod
    def _heads(path: Path) -> dict[str, Any]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StateError(
                f"The audit checkpoint {path} is unreadable",
                hint="Restore it from a backup of the stackyard home; it must not be edited.",
            ) from exc
        if not isinstance(raw, dict):
            raise StateError(
                f"The audit checkpoint {path} is unreadable",
                hint="Restore it from a backup of the stackyard home; it must not be edited.",
            )
        return raw
