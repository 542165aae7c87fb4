"""Keyring: the Ed25519 signing key and the trusted public keys in the stackyard home.

Layout::

    <home>/keys/               mode 0700
    ├── signing.key            this home's private key, PKCS8 PEM, mode 0600
    └── trusted/
        └── <keyid>.pub        a trusted public key (SubjectPublicKeyInfo PEM), optionally
                               preceded by one '# name: ...' line

The key id of a trusted key is always recomputed from the key itself, never taken from the
file name, so renaming a file cannot make a key look like another.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from stackyard.components.attest import PublicKey, SigningKey, key_id
from stackyard.errors import StackyardError

__all__ = ["Keyring", "KeyringError", "TrustedKey"]

SIGNING_KEY_FILE = "signing.key"
_KEY_ID = re.compile(r"^ed25519:[0-9a-f]{16}$")
_NAME_PREFIX = "# name: "
_GENERATE_HINT = "Run 'stackyard keys generate' to create a signing key."


class KeyringError(StackyardError):
    """A key is missing, unsafe, or not an Ed25519 key. ``.path`` names the file if any.

    Exit 2: each is something the user fixes (generate, chmod, import another file), never an
    internal error.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: Path | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


@dataclass(frozen=True)
class TrustedKey:
    """One trusted public key; ``own`` is True for this home's signing key."""

    key_id: str
    key: PublicKey
    name: str
    own: bool


class Keyring:
    """The keys in ``<home>/keys``. Every method reads the files afresh (no caching)."""

    def __init__(self, home: Path | str) -> None:
        self.dir = Path(home) / "keys"
        self.signing_path = self.dir / SIGNING_KEY_FILE
        self.trusted_dir = self.dir / "trusted"

    # -- the signing key ------------------------------------------------------------------

    def has_signing_key(self) -> bool:
        """Whether a signing key exists (it may still be unusable)."""
        return self.signing_path.exists()

    def signing_key(self) -> SigningKey:
        """This home's private key; ``KeyringError`` if it is absent, unsafe or not Ed25519."""
        path = self.signing_path
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise KeyringError(
                f"There is no signing key ({path} does not exist)", path=path, hint=_GENERATE_HINT
            ) from None
        except OSError as exc:
            raise KeyringError(f"Cannot read the signing key {path}: {exc.strerror}") from exc
        try:
            mode = os.fstat(fd).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyringError(
                    f"Refusing to use the signing key {path}: it is accessible by group or "
                    f"others (mode {stat.S_IMODE(mode):04o})",
                    path=path,
                    hint=f"Run 'chmod 600 {path}'.",
                )
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read()
        finally:
            os.close(fd)
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyringError(
                f"The signing key {path} is not an unencrypted PEM private key",
                path=path,
                hint="Replace it with 'stackyard keys generate --force'.",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyringError(
                f"The signing key {path} is not an Ed25519 key",
                path=path,
                hint="Replace it with 'stackyard keys generate --force'.",
            )
        return key

    def generate(self, *, force: bool = False) -> str:
        """Create a signing key, trust its public key, and return its key id.

        An existing key is kept unless ``force``. With ``force`` the old public key stays
        trusted, so builds it attested still verify; ``remove`` it to stop trusting them.
        """
        if not force and self.signing_path.exists():
            raise KeyringError(
                f"A signing key already exists ({self.signing_path}, "
                f"{self._own_key_id() or 'unreadable'})",
                path=self.signing_path,
                hint="Use --force to replace it. Builds it signed stay verifiable.",
            )
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        self._private_dir(self.dir)
        _write_atomic(self.signing_path, pem, mode=0o600, replace=force)
        return self._trust(key.public_key(), name="this home")

    def key_id(self) -> str:
        """The key id of the signing key."""
        return key_id(self.signing_key())

    def public_pem(self) -> bytes:
        """The signing key's public key as PEM, to give to whoever verifies."""
        return _public_pem(self.signing_key().public_key())

    # -- trusted keys ---------------------------------------------------------------------

    def import_public(self, pem: bytes, *, name: str | None = None) -> str:
        """Trust an Ed25519 public key given as PEM; return its key id. Idempotent."""
        if b"PRIVATE KEY" in pem:
            raise KeyringError(
                "This is a private key; only public keys can be imported",
                hint=(
                    "Import the public key instead: run 'stackyard keys' on the machine that "
                    "owns it and copy the PUBLIC KEY block. Never share the private key."
                ),
            )
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise KeyringError(
                "This is not a PEM public key",
                hint="Give the '-----BEGIN PUBLIC KEY-----' block that 'stackyard keys' shows.",
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyringError(
                f"This is a {type(key).__name__.removesuffix('PublicKey') or 'non-Ed25519'} "
                "public key; stackyard attestations use Ed25519 keys only",
                hint="Generate an Ed25519 key with 'stackyard keys generate'.",
            )
        if name is not None and (not name.strip() or len(name) > 100 or not name.isprintable()):
            raise KeyringError(
                f"The key name {name!r} is not a printable name of 1 to 100 characters"
            )
        return self._trust(key, name=name)

    def trusted(self) -> list[tuple[str, PublicKey]]:
        """The trusted keys as ``(key id, key)``, sorted by key id."""
        return [(t.key_id, t.key) for t in self.trusted_keys()]

    def trusted_keys(self) -> list[TrustedKey]:
        """The trusted keys with their names, sorted by key id; a broken file is an error."""
        if not self.trusted_dir.is_dir():
            return []
        own = self._own_key_id()
        found: dict[str, TrustedKey] = {}
        for path in sorted(self.trusted_dir.glob("*.pub")):
            data = path.read_bytes()
            try:
                key = load_pem_public_key(data)
            except (ValueError, TypeError):
                key = None
            if not isinstance(key, Ed25519PublicKey):
                raise KeyringError(
                    f"The trusted key file {path} is not an Ed25519 PEM public key",
                    path=path,
                    hint="Delete the file, then import the key again with 'stackyard keys import'.",
                )
            kid = key_id(key)
            found[kid] = TrustedKey(kid, key, _read_name(data), own=kid == own)
        return [found[k] for k in sorted(found)]

    def remove(self, kid: str) -> None:
        """Stop trusting a key. ``KeyringError`` if it is not trusted."""
        matches = [t for t in self.trusted_keys() if t.key_id == kid]
        if not _KEY_ID.match(kid) or not matches:
            raise KeyringError(
                f"Key {kid} is not trusted",
                hint="Run 'stackyard keys' to list the trusted keys and their ids.",
            )
        for path in self.trusted_dir.glob("*.pub"):
            try:
                key = load_pem_public_key(path.read_bytes())
            except (ValueError, TypeError):
                continue
            if isinstance(key, Ed25519PublicKey) and key_id(key) == kid:
                path.unlink()

    # -- helpers --------------------------------------------------------------------------

    def _trust(self, key: PublicKey, *, name: str | None) -> str:
        kid = key_id(key)
        header = f"{_NAME_PREFIX}{name.strip()}\n".encode() if name else b""
        self._private_dir(self.dir)
        self.trusted_dir.mkdir(mode=0o755, exist_ok=True)
        # Trusted keys are public, but the file must never be seen half-written.
        _write_atomic(self._trusted_path(kid), header + _public_pem(key), mode=0o644, replace=True)
        return kid

    def _trusted_path(self, kid: str) -> Path:
        # ':' is not portable in file names; the id inside the file is what counts.
        return self.trusted_dir / f"{kid.replace(':', '-')}.pub"

    def _own_key_id(self) -> str | None:
        try:
            return self.key_id()
        except KeyringError:
            return None

    @staticmethod
    def _private_dir(path: Path) -> None:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyringError(
                f"Cannot create the key directory {path}: {exc.strerror}",
                path=path,
                hint="Make the stackyard home writable.",
            ) from exc


def _public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _read_name(data: bytes) -> str:
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    return first.removeprefix(_NAME_PREFIX).strip() if first.startswith(_NAME_PREFIX) else ""


def _write_atomic(path: Path, data: bytes, *, mode: int, replace: bool) -> None:
    """Write ``data`` to a new private temporary file, then move it into place.

    The temporary file is created with ``O_CREAT | O_EXCL`` and its final mode, so no reader
    ever sees a partial file or a private key with loose permissions. Without ``replace``
    the file is hard-linked into place, which fails if ``path`` exists: of two racing
    writers exactly one wins and the other gets ``KeyringError``.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed the mode given to os.open
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyringError(
                    f"A key already exists at {path}",
                    path=path,
                    hint="Use --force to replace it.",
                ) from None
            finally:
                tmp.unlink()
    except OSError as exc:
        raise KeyringError(
            f"Cannot write {path}: {exc.strerror}",
            path=path,
            hint="Make the stackyard home writable.",
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
