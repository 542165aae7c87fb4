"""SecretBox: encryption at rest for sensitive state values (Fernet, key file or given key)."""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from stackyard.errors import StateError

__all__ = ["KEY_FILE", "SecretBox"]

KEY_FILE = "secret.key"


class SecretBox:
    """Encrypts and decrypts JSON values with Fernet (AES-128-CBC + HMAC-SHA256).

    ``keys`` is one Fernet key, or several separated by commas: the first encrypts, and all
    of them decrypt (key rotation). Error messages never contain plaintext or ciphertext.

    A box decrypts each token once: a token is immutable and its plaintext is fixed by the
    keys, so the plaintext is kept by token (and a token this box encrypted is known
    already). A command opens one box with its store, so the records it reads several times
    (the resources, then the instances, by several steps) are decrypted once per command.
    The plaintext lives as long as the box, as the values decrypted from it do anyway.
    """

    #: Tokens whose plaintext is kept; past it the oldest are dropped (a bound, not a tuning).
    MAX_KEPT = 4096

    def __init__(self, keys: str | bytes) -> None:
        text = keys.decode("ascii") if isinstance(keys, bytes) else keys
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise StateError("The secret key is empty", hint=_KEY_HINT)
        try:
            self._fernet = MultiFernet([Fernet(p.encode("ascii")) for p in parts])
        except (ValueError, UnicodeEncodeError):
            raise StateError(
                "The secret key is not a valid Fernet key (32 url-safe base64-encoded bytes)",
                hint=_KEY_HINT,
            ) from None
        self._plain: dict[str, bytes] = {}
        self._kept = threading.Lock()  # observe and apply read records from many threads

    @classmethod
    def from_home(cls, home: Path, *, key: str | None = None) -> SecretBox:
        """The box for ``key`` if given, else for ``<home>/secret.key`` (created if absent)."""
        if key:
            return cls(key)
        return cls(_load_or_create_key(home / KEY_FILE))

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key."""
        return Fernet.generate_key().decode("ascii")

    def encrypt_json(self, obj: Any) -> str:
        """Encrypt a JSON-serialisable value; returns an ASCII token."""
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")
        token = self._fernet.encrypt(data).decode("ascii")
        self._keep(token, data)
        return token

    def decrypt_json(self, token: str) -> Any:
        """Decrypt a token from ``encrypt_json``; ``StateError`` if the key does not match.

        Each call returns a new value (callers may change it); the token is decrypted once.
        """
        data = self._plain.get(token)
        if data is None:
            try:
                data = self._fernet.decrypt(token.encode("ascii"))
            except (InvalidToken, UnicodeEncodeError):
                raise StateError(
                    "Cannot decrypt secret values in the state: the secret key does not match "
                    "the key they were encrypted with, or the stored value is corrupt",
                    hint=_KEY_HINT,
                ) from None
            self._keep(token, data)
        return json.loads(data)

    def _keep(self, token: str, data: bytes) -> None:
        with self._kept:
            if len(self._plain) >= self.MAX_KEPT:
                self._plain.pop(next(iter(self._plain)))  # dicts keep insertion order
            self._plain[token] = data


_KEY_HINT = (
    "Use the key the state was written with: set STACKYARD_SECRET_KEY, or restore "
    "secret.key in the stackyard home. A new key can be made with "
    "'python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"'."
)


def _load_or_create_key(path: Path) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    _create_key(path)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StateError(
                f"Refusing to use the secret key file {path}: it is accessible by group or "
                f"others (mode {stat.S_IMODE(mode):04o})",
                hint=f"Run 'chmod 600 {path}'.",
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read().strip()
    finally:
        os.close(fd)


def _create_key(path: Path) -> None:
    """Create the key file atomically: readers never see a partial or world-readable file.

    The key is written to a private temporary file (``O_CREAT | O_EXCL``, mode 0600) and then
    hard-linked into place, so when two processes race, exactly one key wins and both use it.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, Fernet.generate_key() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
        finally:
            tmp.unlink()
    except OSError as exc:
        raise StateError(
            f"Cannot create the secret key file {path}: {exc.strerror}",
            hint="Make the stackyard home writable, or set STACKYARD_SECRET_KEY.",
        ) from exc
