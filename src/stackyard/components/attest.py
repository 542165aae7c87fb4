"""Attestations: signed statements of what the component pipeline checked (DSSE + Ed25519).

A ``Statement`` says which build (name, version, manifest digest) passed which pipeline
stages, with which tool and when. ``sign`` wraps it in a DSSE envelope signed with Ed25519
over the DSSE pre-authentication encoding (PAE); ``verify`` checks an envelope against a set
of trusted public keys *before* it reads the statement, then checks the subject and stages.

The error tree (under ``VerificationFailedError``, exit 8; drawn whole in ``errors.py``)::

    AttestationError            malformed envelope or statement, or a stage that failed
    ├── SignatureError          not signed, or no signature is valid for a trusted key
    ├── UntrustedKeyError       signed only by keys that are not trusted (.key_ids)
    ├── MissingAttestationError the build has no attestation at all (exit 9)
    └── SubjectMismatchError    it attests another build (.field, .expected, .actual)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import stackyard
from stackyard.canonical import canonical_bytes
from stackyard.errors import VerificationFailedError

__all__ = [
    "ARTIFACT_TYPE",
    "ENVELOPE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "AttestationError",
    "MissingAttestationError",
    "PublicKey",
    "SignatureError",
    "SigningKey",
    "StageResult",
    "Statement",
    "SubjectMismatchError",
    "UntrustedKeyError",
    "key_id",
    "pae",
    "sign",
    "verify",
]

SigningKey: TypeAlias = Ed25519PrivateKey
PublicKey: TypeAlias = Ed25519PublicKey

PREDICATE_TYPE = "https://stackyard.dev/attestation/component-pipeline/v1"
PAYLOAD_TYPE = "application/vnd.stackyard.attestation.v1+json"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
ARTIFACT_TYPE = "application/vnd.stackyard.attestation.v1"

# An attestation is a few kilobytes; refuse to parse anything absurdly large.
MAX_ENVELOPE_BYTES = 1024 * 1024

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_RFC3339_UTC = "%Y-%m-%dT%H:%M:%SZ"
_VERIFY_HINT = (
    "Run 'stackyard keys' to list the trusted keys. Import the publisher's public key with "
    "'stackyard keys import FILE' if you trust it, or publish the component again."
)


class AttestationError(VerificationFailedError):
    """An attestation is malformed, or it records a pipeline stage that did not pass."""

    def __init__(self, message: str, *, component: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.component = component


class SignatureError(AttestationError):
    """The envelope has no signature that verifies with the key it names."""


class UntrustedKeyError(AttestationError):
    """The envelope is signed, but only by keys outside the trusted set."""

    def __init__(self, message: str, *, key_ids: Sequence[str], component: str = "") -> None:
        super().__init__(
            message,
            component=component,
            hint=(
                "If you trust the publisher, import its public key with "
                "'stackyard keys import FILE'. Run 'stackyard keys' to list the trusted keys."
            ),
        )
        self.key_ids = tuple(key_ids)


class MissingAttestationError(AttestationError):
    """The build has no attestation (no referrer of the attestation artifact type)."""

    exit_code = 9

    def __init__(self, component: str, *, digest: str = "") -> None:
        at = f" (manifest {digest})" if digest else ""
        super().__init__(
            f"Component {component}{at} has no attestation",
            component=component,
            hint=(
                "Builds are attested by 'stackyard component publish' after every pipeline "
                "stage passes. Publish the component with stackyard, or check that the "
                "registry supports OCI referrers."
            ),
        )
        self.digest = digest


class SubjectMismatchError(AttestationError):
    """The attestation is valid but about a different build."""

    def __init__(self, field_name: str, *, expected: str, actual: str, component: str) -> None:
        super().__init__(
            f"The attestation for {component} is about another build: its {field_name} is "
            f"'{actual}', expected '{expected}'",
            component=component,
            hint="The attestation was copied from another build. Publish the component again.",
        )
        self.field = field_name
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class StageResult:
    """The outcome of one pipeline stage: ``detail`` is a sentence or empty."""

    name: str
    ok: bool
    detail: str = ""


def _tool() -> str:
    return f"stackyard {stackyard.__version__}"


def _now() -> str:
    return datetime.now(UTC).strftime(_RFC3339_UTC)


@dataclass(frozen=True)
class Statement:
    """What the pipeline says about one build. ``to_json`` is the exact signed payload."""

    subject_name: str
    subject_version: str
    subject_digest: str
    stages: tuple[StageResult, ...]
    tool: str = field(default_factory=_tool)
    created: str = field(default_factory=_now)
    predicate_type: str = PREDICATE_TYPE

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if not _DIGEST.match(self.subject_digest):
            raise ValueError(f"subject_digest is not a sha256 digest: {self.subject_digest!r}")
        try:
            datetime.strptime(self.created, _RFC3339_UTC)
        except ValueError:
            raise ValueError(
                f"created is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ): {self.created!r}"
            ) from None

    @property
    def component(self) -> str:
        """``name@version`` of the subject."""
        return f"{self.subject_name}@{self.subject_version}"

    def to_dict(self) -> dict[str, Any]:
        """The statement as JSON-ready data."""
        return {
            "predicateType": self.predicate_type,
            "subject": {
                "name": self.subject_name,
                "version": self.subject_version,
                "digest": self.subject_digest,
            },
            "stages": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in self.stages],
            "tool": self.tool,
            "created": self.created,
        }

    def to_json(self) -> bytes:
        """Canonical JSON: sorted keys, no insignificant whitespace, UTF-8."""
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes) -> Statement:
        """Parse a statement; ``AttestationError`` says what is wrong with it."""
        try:
            doc = _loads(data, "statement")
            if doc.get("predicateType") != PREDICATE_TYPE:
                raise ValueError(
                    f"its predicateType is {doc.get('predicateType')!r}, expected "
                    f"'{PREDICATE_TYPE}'"
                )
            subject = _obj(doc, "subject")
            stages = doc.get("stages")
            if not isinstance(stages, list):
                raise ValueError("'stages' is not a list")
            return cls(
                subject_name=_str(subject, "name"),
                subject_version=_str(subject, "version"),
                subject_digest=_str(subject, "digest"),
                stages=tuple(_stage(s) for s in stages),
                tool=_str(doc, "tool"),
                created=_str(doc, "created"),
            )
        except (ValueError, AttestationError) as exc:
            why = exc.message if isinstance(exc, AttestationError) else str(exc)
            raise AttestationError(
                f"The attestation statement is malformed: {why}",
                hint="Publish the component again with 'stackyard component publish'.",
            ) from None


def key_id(key: PublicKey | SigningKey) -> str:
    """``ed25519:`` + the first 16 hex digits of sha256 of the raw 32-byte public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes a signature covers.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, where LEN is the length in bytes
    as ASCII decimal. Binding the type into the signed bytes stops a signature made for one
    payload type from being accepted for another.
    """
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def sign(statement: Statement, key: SigningKey) -> bytes:
    """The DSSE envelope (JSON bytes) of ``statement``, signed with ``key``."""
    body = statement.to_json()
    signature = key.sign(pae(PAYLOAD_TYPE, body))
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [{"keyid": key_id(key), "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return canonical_bytes(envelope)  # ASCII only (base64, key ids): no escape to differ


def verify(
    envelope: bytes,
    trusted: Sequence[PublicKey],
    *,
    expect_digest: str,
    expect_name: str,
    expect_version: str,
) -> Statement:
    """Check an envelope and return its statement; raise ``AttestationError`` if it fails.

    The order matters: the signature is checked over the exact payload bytes before the
    payload is parsed, and only then are the subject and the stages checked. One valid
    signature by a trusted key is enough. Does no I/O.
    """
    component = f"{expect_name}@{expect_version}"
    body, signatures = _signed_body(envelope, component)
    _check_signatures(body, signatures, trusted, component)
    return _accept(body, component, expect_digest, expect_name, expect_version)


def reverify(
    envelope: bytes, *, expect_digest: str, expect_name: str, expect_version: str
) -> Statement:
    """``verify`` but for the signature: for an envelope whose exact bytes the current set
    of trusted keys has verified before (the checked-builds cache says so). Everything else
    (the payload type, the subject, the stages) is checked again. Does no I/O."""
    component = f"{expect_name}@{expect_version}"
    body, _ = _signed_body(envelope, component)
    return _accept(body, component, expect_digest, expect_name, expect_version)


def _signed_body(envelope: bytes, component: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    payload_type, body, signatures = _parse_envelope(envelope, component)
    if payload_type != PAYLOAD_TYPE:
        raise AttestationError(
            f"The attestation for {component} has payload type '{payload_type}', "
            f"expected '{PAYLOAD_TYPE}'",
            component=component,
        )
    return body, signatures


def _accept(
    body: bytes, component: str, expect_digest: str, expect_name: str, expect_version: str
) -> Statement:
    statement = Statement.from_json(body)
    for name, expected, actual in (
        ("digest", expect_digest, statement.subject_digest),
        ("name", expect_name, statement.subject_name),
        ("version", expect_version, statement.subject_version),
    ):
        if expected != actual:
            raise SubjectMismatchError(name, expected=expected, actual=actual, component=component)
    if not statement.stages:
        raise AttestationError(
            f"The attestation for {component} records no pipeline stages",
            component=component,
            hint="Publish the component again with 'stackyard component publish'.",
        )
    failed = [s for s in statement.stages if not s.ok]
    if failed:
        listed = "; ".join(f"{s.name}: {s.detail}" if s.detail else s.name for s in failed)
        raise AttestationError(
            f"The attestation for {component} records failed pipeline stages: {listed}",
            component=component,
            hint="Fix the failures and publish a new version.",
        )
    return statement


def _check_signatures(
    body: bytes,
    signatures: list[tuple[str, bytes]],
    trusted: Sequence[PublicKey],
    component: str,
) -> None:
    if not signatures:
        raise SignatureError(
            f"The attestation for {component} is not signed",
            component=component,
            hint=_VERIFY_HINT,
        )
    by_id = {key_id(k): k for k in trusted}
    message = pae(PAYLOAD_TYPE, body)
    untrusted: list[str] = []
    invalid: list[str] = []
    for kid, sig in signatures:
        # The keyid is an unauthenticated hint: it only picks candidates, never grants trust.
        candidates = [by_id[kid]] if kid in by_id else ([] if kid else list(by_id.values()))
        if not candidates:
            untrusted.append(kid)
            continue
        for candidate in candidates:
            try:
                candidate.verify(sig, message)
            except InvalidSignature:
                continue
            return
        invalid.append(kid or "(no key id)")
    if invalid:
        raise SignatureError(
            f"The attestation for {component} has an invalid signature (key "
            f"{', '.join(invalid)}): the statement or the signature was altered",
            component=component,
            hint="Do not use this build. Publish the component again.",
        )
    raise UntrustedKeyError(
        f"The attestation for {component} is signed by {', '.join(untrusted)}, which is not "
        "a trusted key",
        key_ids=untrusted,
        component=component,
    )


def _parse_envelope(envelope: bytes, component: str) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    def malformed(why: str) -> AttestationError:
        return AttestationError(
            f"The attestation for {component} is not a valid DSSE envelope: {why}",
            component=component,
            hint="Publish the component again with 'stackyard component publish'.",
        )

    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise malformed(f"it is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        doc = _loads(envelope, "envelope")
        payload_type = _str(doc, "payloadType")
        body = _b64(_str(doc, "payload"), "payload")
        raw = doc.get("signatures")
        if not isinstance(raw, list):
            raise ValueError("'signatures' is not a list")
        signatures: list[tuple[str, bytes]] = []
        for item in raw:
            if not isinstance(item, dict):
                raise ValueError("a signature is not an object")
            kid = item.get("keyid", "")
            if not isinstance(kid, str):
                raise ValueError("a signature's 'keyid' is not a string")
            signatures.append((kid, _b64(_str(item, "sig"), "sig")))
    except (ValueError, AttestationError) as exc:
        raise malformed(exc.message if isinstance(exc, AttestationError) else str(exc)) from None
    return payload_type, body, signatures


def _loads(data: bytes, what: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            # Two parsers may pick different duplicates; refuse the ambiguity.
            raise ValueError(f"the {what} has a duplicate key")
        return dict(pairs)

    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise AttestationError(f"the {what} is not UTF-8") from None
    except ValueError as exc:
        raise AttestationError(f"the {what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise AttestationError(f"the {what} is not a JSON object")
    return doc


def _b64(text: str, what: str) -> bytes:
    # DSSE allows standard or URL-safe base64; padding is required either way.
    alphabet = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"'{what}' is not valid base64") from None


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"'{key}' is missing or not an object")
    return value


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"'{key}' is missing or not a string")
    return value


def _stage(item: object) -> StageResult:
    if not isinstance(item, dict):
        raise ValueError("a stage is not an object")
    ok = item.get("ok")
    if not isinstance(ok, bool):
        raise ValueError("a stage's 'ok' is not true or false")
    return StageResult(name=_str(item, "name"), ok=ok, detail=_str(item, "detail"))
