from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stackyard.components.attest import (
    StageResult,
    Statement,
    UntrustedKeyError,
    key_id,
    sign,
    verify,
)
from stackyard.components.keys import Keyring, KeyringError

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "0f" * 32


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _attest(ring: Keyring) -> bytes:
    statement = Statement("redis-cache", "2.0.0", DIGEST, (StageResult("schema", ok=True),))
    return sign(statement, ring.signing_key())


def _verify(envelope: bytes, ring: Keyring) -> Statement:
    return verify(
        envelope,
        [k for _, k in ring.trusted()],
        expect_digest=DIGEST,
        expect_name="redis-cache",
        expect_version="2.0.0",
    )


def test_generate_creates_a_private_key_0600_and_trusts_its_public_key(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "home")
    kid = ring.generate()
    assert _mode(ring.signing_path) == 0o600
    assert _mode(ring.dir) == 0o700
    assert ring.signing_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert ring.key_id() == kid
    assert [k for k, _ in ring.trusted()] == [kid]
    [entry] = ring.trusted_keys()
    assert entry.own
    assert entry.name == "this home"
    assert sorted(p.name for p in ring.dir.iterdir()) == ["signing.key", "trusted"]
    assert not [p for p in ring.trusted_dir.iterdir() if p.name.startswith(".")]
    assert _verify(_attest(ring), ring).subject_name == "redis-cache"


def test_generate_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    first = ring.generate()
    before = ring.signing_path.read_bytes()
    with pytest.raises(KeyringError, match="already exists") as info:
        ring.generate()
    assert first in info.value.message
    assert info.value.hint and "--force" in info.value.hint
    assert ring.signing_path.read_bytes() == before

    old_envelope = _attest(ring)
    second = ring.generate(force=True)
    assert second != first
    assert ring.key_id() == second
    assert _mode(ring.signing_path) == 0o600
    assert {k for k, _ in ring.trusted()} == {first, second}
    assert _verify(old_envelope, ring), "builds signed by the old key stay verifiable"


def test_key_id_and_public_pem_are_stable(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    kid = ring.generate()
    assert Keyring(tmp_path).key_id() == kid == ring.key_id()
    assert ring.public_pem() == Keyring(tmp_path).public_pem()
    public = serialization.load_pem_public_key(ring.public_pem())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    assert key_id(public) == kid


def test_no_signing_key_says_how_to_make_one(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    assert not ring.has_signing_key()
    with pytest.raises(KeyringError, match="There is no signing key") as info:
        ring.signing_key()
    assert info.value.hint == "Run 'stackyard keys generate' to create a signing key."
    assert ring.trusted() == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [(0o640, "group may read it"), (0o604, "others may read it"), (0o620, "group may write it")],
    ids=["group-read", "other-read", "group-write"],
)
def test_a_signing_key_accessible_by_others_is_refused(
    tmp_path: Path, mode: int, reason: str
) -> None:
    ring = Keyring(tmp_path)
    ring.generate()
    os.chmod(ring.signing_path, mode)
    with pytest.raises(KeyringError, match="accessible by group or others") as info:
        ring.signing_key()
    assert info.value.hint == f"Run 'chmod 600 {ring.signing_path}'."


def test_a_corrupt_signing_key_is_refused(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    ring.generate()
    ring.signing_path.write_bytes(b"garbage")
    with pytest.raises(KeyringError, match="not an unencrypted PEM private key"):
        ring.signing_key()


def test_import_a_key_from_another_keyring_then_verify_its_signatures(tmp_path: Path) -> None:
    publisher = Keyring(tmp_path / "publisher")
    consumer = Keyring(tmp_path / "consumer")
    publisher.generate()
    envelope = _attest(publisher)

    with pytest.raises(UntrustedKeyError) as info:
        _verify(envelope, consumer)
    assert publisher.key_id() in info.value.message

    kid = consumer.import_public(publisher.public_pem(), name="team-data CI")
    assert kid == publisher.key_id()
    assert consumer.import_public(publisher.public_pem()) == kid, "import is idempotent"
    [entry] = consumer.trusted_keys()
    assert (entry.key_id, entry.own) == (kid, False)
    assert _verify(envelope, consumer).subject_version == "2.0.0"
    assert not consumer.has_signing_key(), "importing never creates a signing key"


def test_an_imported_name_is_kept(tmp_path: Path) -> None:
    publisher = Keyring(tmp_path / "p")
    publisher.generate()
    consumer = Keyring(tmp_path / "c")
    consumer.import_public(publisher.public_pem(), name="team-data CI")
    assert [t.name for t in consumer.trusted_keys()] == ["team-data CI"]


def _private_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ec_public_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("pem", "message", "reason"),
    [
        (b"", "not a PEM public key", "an empty file"),
        (b"hello world", "not a PEM public key", "garbage"),
        (
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not a PEM public key",
            "a PEM block that is not a key",
        ),
        (_private_pem(), "This is a private key", "a private key must never be imported"),
        (_ec_public_pem(), "Ed25519 keys only", "a key of another algorithm"),
    ],
    ids=["empty", "garbage", "bad-pem", "private-key", "ec-key"],
)
def test_import_refuses_what_is_not_an_ed25519_public_key(
    tmp_path: Path, pem: bytes, message: str, reason: str
) -> None:
    ring = Keyring(tmp_path)
    with pytest.raises(KeyringError, match=message) as info:
        ring.import_public(pem)
    assert info.value.hint
    assert ring.trusted() == []


def test_import_refuses_a_bad_name(tmp_path: Path) -> None:
    publisher = Keyring(tmp_path / "p")
    publisher.generate()
    with pytest.raises(KeyringError, match="not a printable name"):
        Keyring(tmp_path / "c").import_public(publisher.public_pem(), name="a\nb")


def test_remove_stops_trusting_a_key(tmp_path: Path) -> None:
    publisher = Keyring(tmp_path / "p")
    publisher.generate()
    envelope = _attest(publisher)
    consumer = Keyring(tmp_path / "c")
    kid = consumer.import_public(publisher.public_pem())
    consumer.remove(kid)
    assert consumer.trusted() == []
    with pytest.raises(UntrustedKeyError):
        _verify(envelope, consumer)
    with pytest.raises(KeyringError, match=f"Key {kid} is not trusted"):
        consumer.remove(kid)


def test_a_trusted_key_id_comes_from_the_key_not_the_file_name(tmp_path: Path) -> None:
    publisher = Keyring(tmp_path / "p")
    publisher.generate()
    consumer = Keyring(tmp_path / "c")
    consumer.import_public(publisher.public_pem())
    [path] = consumer.trusted_dir.iterdir()
    path.rename(path.with_name("ed25519-0000000000000000.pub"))
    assert [k for k, _ in consumer.trusted()] == [publisher.key_id()]


def test_a_broken_trusted_key_file_is_reported(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    ring.generate()
    (ring.trusted_dir / "junk.pub").write_text("nope")
    with pytest.raises(KeyringError, match=re.escape("junk.pub is not an Ed25519 PEM public key")):
        ring.trusted()
