"""SCRAM-SHA-256 verifiers, computed and checked client-side (the plaintext never reaches SQL)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata

ITERATIONS = 4096
SALT_BYTES = 16
PREFIX = "SCRAM-SHA-256$"


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes: SASLprep (RFC 4013) of the password, or its raw UTF-8.

    PostgreSQL falls back to the raw bytes when SASLprep fails (prohibited or bidirectionally
    invalid text), so this does too instead of raising.
    """
    raw = password.encode("utf-8", "surrogatepass")
    if password.isascii() and password.isprintable():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if not stringprep.in_table_b1(ch)
    )
    text = unicodedata.normalize("NFKC", mapped)
    if not text:
        return raw
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(check(ch) for ch in text for check in prohibited):
        return raw
    rand_al = [stringprep.in_table_d1(ch) for ch in text]
    if any(rand_al):
        if any(stringprep.in_table_d2(ch) for ch in text):
            return raw
        if not (rand_al[0] and rand_al[-1]):
            return raw
    return text.encode("utf-8")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` verifier for ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    stored_key, server_key = _keys(password, salt, iterations)
    return f"{PREFIX}{iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def verify(password: str, stored: str | None, *, role: str = "") -> bool:
    """Whether ``password`` matches ``stored`` (a pg_authid.rolpassword value).

    SCRAM verifiers are checked by recomputing StoredKey and ServerKey; legacy MD5 hashes
    (``md5`` + md5(password + role name)) are checked too. Anything else does not verify.
    """
    if stored is None:
        return password == ""
    if stored.startswith(PREFIX):
        try:
            head, keys = stored[len(PREFIX) :].split("$", 1)
            iter_text, salt_text = head.split(":", 1)
            stored_text, server_text = keys.split(":", 1)
            iterations = int(iter_text)
            salt = base64.b64decode(salt_text, validate=True)
            want_stored = base64.b64decode(stored_text, validate=True)
            want_server = base64.b64decode(server_text, validate=True)
        except ValueError:
            return False
        if not 1 <= iterations <= 10_000_000:
            return False
        stored_key, server_key = _keys(password, salt, iterations)
        return hmac.compare_digest(stored_key, want_stored) and hmac.compare_digest(
            server_key, want_server
        )
    if stored.startswith("md5") and len(stored) == 35:
        digest = hashlib.md5(
            password.encode("utf-8") + role.encode("utf-8"), usedforsecurity=False
        ).hexdigest()
        return hmac.compare_digest("md5" + digest, stored)
    return False
