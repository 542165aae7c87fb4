from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import stackyard
from stackyard.components.attest import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    AttestationError,
    MissingAttestationError,
    SignatureError,
    StageResult,
    Statement,
    SubjectMismatchError,
    UntrustedKeyError,
    key_id,
    pae,
    sign,
    verify,
)
from stackyard.errors import StackyardError

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
STAGES = (
    StageResult("schema", ok=True),
    StageResult("lint", ok=True, detail="12 references resolved"),
    StageResult("version-rules", ok=True),
    StageResult("policy", ok=True),
    StageResult("tests", ok=True, detail="2 of 2 passed"),
)


def _statement(**changes: Any) -> Statement:
    values: dict[str, Any] = {
        "subject_name": "postgres-database",
        "subject_version": "1.4.2",
        "subject_digest": DIGEST,
        "stages": STAGES,
        "created": "2024-05-01T12:00:00Z",
    }
    values.update(changes)
    return Statement(**values)


def _verify(envelope: bytes, *keys: Any, **expect: str) -> Statement:
    return verify(
        envelope,
        list(keys),
        expect_digest=expect.get("digest", DIGEST),
        expect_name=expect.get("name", "postgres-database"),
        expect_version=expect.get("version", "1.4.2"),
    )


def _edit(envelope: bytes, **changes: Any) -> bytes:
    doc = json.loads(envelope)
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_pae_matches_the_dsse_spec_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sign_and_verify_round_trip(key: Ed25519PrivateKey) -> None:
    statement = _statement()
    envelope = sign(statement, key)
    doc = json.loads(envelope)
    assert doc["payloadType"] == PAYLOAD_TYPE
    assert doc["signatures"][0]["keyid"] == key_id(key)
    assert base64.b64decode(doc["payload"]) == statement.to_json()
    assert _verify(envelope, key.public_key()) == statement


def test_statement_json_is_canonical_and_carries_the_tool_and_time() -> None:
    statement = Statement("c", "1.0.0", DIGEST, STAGES)
    raw = statement.to_json()
    doc = json.loads(raw)
    assert raw == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["predicateType"] == PREDICATE_TYPE
    assert doc["subject"] == {"name": "c", "version": "1.0.0", "digest": DIGEST}
    assert doc["tool"] == f"stackyard {stackyard.__version__}"
    assert doc["created"].endswith("Z")
    assert Statement.from_json(raw) == statement


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"subject_digest": "sha256:xyz"}, "the digest must be a full sha256"),
        ({"created": "2024-05-01 12:00:00"}, "the time must be RFC 3339 UTC"),
    ],
    ids=["bad-digest", "bad-time"],
)
def test_a_malformed_statement_cannot_be_built(changes: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError):
        _statement(**changes)


def test_a_tampered_payload_is_refused(key: Ed25519PrivateKey) -> None:
    envelope = sign(_statement(), key)
    forged = _statement(stages=(StageResult("tests", ok=True),)).to_json()
    tampered = _edit(envelope, payload=base64.b64encode(forged).decode())
    with pytest.raises(SignatureError, match=r"invalid signature.*altered"):
        _verify(tampered, key.public_key())


def test_a_tampered_signature_is_refused(key: Ed25519PrivateKey) -> None:
    envelope = sign(_statement(), key)
    doc = json.loads(envelope)
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[0] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SignatureError) as info:
        _verify(json.dumps(doc).encode(), key.public_key())
    assert key_id(key) in info.value.message
    assert info.value.component == "postgres-database@1.4.2"


def test_a_wrong_payload_type_is_refused(key: Ed25519PrivateKey) -> None:
    envelope = _edit(sign(_statement(), key), payloadType="application/vnd.in-toto+json")
    with pytest.raises(
        AttestationError, match=re.escape("payload type 'application/vnd.in-toto+json'")
    ):
        _verify(envelope, key.public_key())


def test_a_signature_by_an_untrusted_key_names_the_key(key: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    envelope = sign(_statement(), stranger)
    with pytest.raises(UntrustedKeyError) as info:
        _verify(envelope, key.public_key())
    assert info.value.key_ids == (key_id(stranger),)
    assert key_id(stranger) in info.value.message
    assert "not a trusted key" in info.value.message
    assert info.value.hint and "stackyard keys import" in info.value.hint


def test_no_trusted_keys_at_all_is_untrusted(key: Ed25519PrivateKey) -> None:
    with pytest.raises(UntrustedKeyError):
        _verify(sign(_statement(), key))


def test_a_lying_keyid_does_not_grant_trust(key: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    doc = json.loads(sign(_statement(), stranger))
    doc["signatures"][0]["keyid"] = key_id(key)
    with pytest.raises(SignatureError):
        _verify(json.dumps(doc).encode(), key.public_key())


def test_a_signature_without_keyid_is_tried_against_every_trusted_key(
    key: Ed25519PrivateKey,
) -> None:
    doc = json.loads(sign(_statement(), key))
    del doc["signatures"][0]["keyid"]
    other = Ed25519PrivateKey.generate().public_key()
    assert _verify(json.dumps(doc).encode(), other, key.public_key()).subject_name


def test_an_unsigned_envelope_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(SignatureError, match="is not signed"):
        _verify(_edit(sign(_statement(), key), signatures=[]), key.public_key())


@pytest.mark.parametrize(
    ("expect", "field", "reason"),
    [
        ({"digest": OTHER_DIGEST}, "digest", "an attestation copied onto another build"),
        ({"name": "redis-cache"}, "name", "an attestation of another component"),
        ({"version": "1.4.3"}, "version", "an attestation of another version"),
    ],
    ids=["digest", "name", "version"],
)
def test_a_subject_mismatch_is_refused(
    key: Ed25519PrivateKey, expect: dict[str, str], field: str, reason: str
) -> None:
    envelope = sign(_statement(), key)
    with pytest.raises(SubjectMismatchError) as info:
        _verify(envelope, key.public_key(), **expect)
    assert info.value.field == field
    assert info.value.expected == expect[field]
    assert f"its {field} is" in info.value.message


def test_a_failed_stage_is_refused_and_named(key: Ed25519PrivateKey) -> None:
    stages = (*STAGES[:-1], StageResult("tests", ok=False, detail="1 of 2 failed"))
    envelope = sign(_statement(stages=stages), key)
    with pytest.raises(AttestationError, match="failed pipeline stages: tests: 1 of 2 failed"):
        _verify(envelope, key.public_key())


def test_a_statement_without_stages_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(AttestationError, match="records no pipeline stages"):
        _verify(sign(_statement(stages=()), key), key.public_key())


def _signed_payload(key: Ed25519PrivateKey, body: bytes) -> bytes:
    sig = key.sign(pae(PAYLOAD_TYPE, body))
    return json.dumps(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(body).decode(),
            "signatures": [{"keyid": key_id(key), "sig": base64.b64encode(sig).decode()}],
        }
    ).encode()


@pytest.mark.parametrize(
    ("body", "message", "reason"),
    [
        (b"not json", "not valid JSON", "a signed payload that is not JSON"),
        (b"[]", "not a JSON object", "a signed payload that is not an object"),
        (
            json.dumps({"predicateType": "https://slsa.dev/provenance/v1"}).encode(),
            "predicateType is 'https://slsa.dev/provenance/v1'",
            "a statement of another kind",
        ),
        (
            b'{"predicateType":"x","predicateType":"y"}',
            "duplicate key",
            "duplicate keys are ambiguous across parsers",
        ),
    ],
    ids=["not-json", "not-object", "wrong-predicate", "duplicate-keys"],
)
def test_a_signed_but_malformed_statement_is_refused(
    key: Ed25519PrivateKey, body: bytes, message: str, reason: str
) -> None:
    with pytest.raises(AttestationError, match=message) as info:
        _verify(_signed_payload(key, body), key.public_key())
    assert info.value.message.startswith("The attestation statement is malformed")


@pytest.mark.parametrize(
    ("envelope", "message", "reason"),
    [
        (b"", "not valid JSON", "an empty blob"),
        (b"\xff\xfe", "not UTF-8", "binary garbage"),
        (b"[1, 2]", "not a JSON object", "JSON of the wrong shape"),
        (b'{"payload": "e30="}', "'payloadType' is missing", "no payload type"),
        (
            b'{"payloadType": "t", "payload": "!!!", "signatures": []}',
            "'payload' is not valid base64",
            "a payload that is not base64",
        ),
        (
            b'{"payloadType": "t", "payload": "e30=", "signatures": {}}',
            "'signatures' is not a list",
            "signatures of the wrong shape",
        ),
        (
            b'{"payloadType": "t", "payload": "e30=", "signatures": [{"sig": "%%"}]}',
            "'sig' is not valid base64",
            "a signature that is not base64",
        ),
        (b"{" * 10 + b" " * (1024 * 1024), "larger than", "an absurdly large blob"),
    ],
    ids=[
        "empty",
        "binary",
        "array",
        "no-type",
        "bad-payload-b64",
        "bad-signatures",
        "bad-sig-b64",
        "too-large",
    ],
)
def test_a_garbage_envelope_is_refused_clearly(
    key: Ed25519PrivateKey, envelope: bytes, message: str, reason: str
) -> None:
    with pytest.raises(AttestationError, match=message) as info:
        _verify(envelope, key.public_key())
    assert type(info.value) is AttestationError
    assert info.value.message.startswith(
        "The attestation for postgres-database@1.4.2 is not a valid DSSE envelope"
    )
    assert info.value.hint


def test_url_safe_base64_is_accepted(key: Ed25519PrivateKey) -> None:
    doc = json.loads(sign(_statement(), key))
    doc["payload"] = base64.urlsafe_b64encode(base64.b64decode(doc["payload"])).decode()
    sig = base64.b64decode(doc["signatures"][0]["sig"])
    doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(sig).decode()
    assert _verify(json.dumps(doc).encode(), key.public_key()) == _statement()


def test_missing_attestation_error_is_clear() -> None:
    err = MissingAttestationError("postgres-database@1.4.2", digest=DIGEST)
    assert isinstance(err, AttestationError)
    assert isinstance(err, StackyardError)
    assert (
        err.message == f"Component postgres-database@1.4.2 (manifest {DIGEST}) has no attestation"
    )
    assert err.hint and "stackyard component publish" in err.hint


def test_key_id_is_stable_and_derived_from_the_public_key(key: Ed25519PrivateKey) -> None:
    kid = key_id(key)
    assert kid == key_id(key.public_key())
    assert kid.startswith("ed25519:")
    assert len(kid) == len("ed25519:") + 16
    fixed = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    assert key_id(fixed) == key_id(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    assert key_id(fixed) != kid
