"""Catalog reads over a registry: list, show, pull and verify published component builds.

Only our builds are read: ``read_build`` refuses what is not a stackyard component
(``NotAComponentError``) and a tag that names another version than the build inside
(``TagMismatchError``), before any layer is fetched; both exit 2. Where a command lists or
resolves (``entries``, ``details``, resolution) such tags are skipped with a warning instead,
so one foreign tag under a component's name breaks nothing. Archives are read only through
``package.read_archive`` (bounded inflation).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stackyard.canonical import canonical_bytes
from stackyard.components import attest
from stackyard.components.checked import CheckedBuilds, trust_fingerprint
from stackyard.components.keys import Keyring
from stackyard.components.oci import (
    ANNOTATION_VERSION,
    NotAComponentError,
    NotFoundError,
    TagMismatchError,
    check_build,
    check_config,
)
from stackyard.components.package import check_destination, read_archive, unpack
from stackyard.components.registry import Registry
from stackyard.diagnostics import Diagnostic, Severity
from stackyard.errors import StackyardError
from stackyard.model.component import ComponentManifest, manifest_from_data
from stackyard.model.versions import Version

#: Called with a sentence for each tag skipped while listing or resolving.
Warn = Callable[[str], None]
#: (name, version) -> (manifest, digest): how resolution fetches a build.
Fetch = Callable[[str, str], tuple[ComponentManifest, str]]
#: What a listing or a resolution skips (with a warning) rather than fails on: not our
#: artifact, a tag that lies, or (where attestation is required) an unattested build.
SKIPPED: tuple[type[StackyardError], ...] = (
    NotAComponentError,
    TagMismatchError,
    attest.AttestationError,
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of ``component list``."""

    name: str
    latest: str
    owner: str
    lifecycle: str
    provides: str
    sla: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "latest": self.latest,
            "owner": self.owner,
            "lifecycle": self.lifecycle,
            "provides": self.provides,
            "sla": self.sla,
        }


@dataclass(frozen=True, slots=True)
class PublishedBuild:
    """One of our builds as read from a registry: checked, with its tag agreeing."""

    name: str
    version: str
    digest: str
    manifest: dict[str, Any]  # the OCI image manifest
    config: dict[str, Any]  # the component manifest, as published
    component: ComponentManifest
    layer: dict[str, Any]  # the archive's descriptor

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


def versions(registry: Registry, name: str) -> list[str]:
    """Tags of ``name`` that are versions, lowest first (not read: may hold foreign builds)."""
    parsed = []
    for tag in registry.tags(name):
        try:
            parsed.append(Version.parse(tag))
        except ValueError:
            continue
    return [str(v) for v in sorted(parsed)]


def read_build(
    registry: Registry, name: str, version: str, *, checked: CheckedBuilds | None = None
) -> PublishedBuild:
    """The build at ``name@version`` (``version`` may be a digest), checked to be ours.

    Reads the manifest and the config blob (both bounded), never the layer.
    ``NotAComponentError`` when it is not a stackyard component build (or its component
    manifest is not valid), ``TagMismatchError`` when it is the build of another version.
    With ``checked``, a manifest digest that passed the schema check before (against the
    same schema) is not checked again: the config it names is immutable.
    """
    reference = f"{name}@{version}"
    where = registry.location
    digest, manifest = registry.manifest(name, version)
    config_desc, layer = check_build(manifest, reference=reference, component=name, registry=where)
    try:
        document = json.loads(registry.blob(name, config_desc["digest"]))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise NotAComponentError(
            reference, "a build whose config is not JSON", component=name, registry=where
        ) from None
    by_tag = None if version.startswith("sha256:") else version
    document = check_config(
        document, name=name, version=by_tag, reference=reference, registry=where
    )
    annotated = (manifest.get("annotations") or {}).get(ANNOTATION_VERSION)
    if by_tag is not None and isinstance(annotated, str) and annotated != by_tag:
        raise TagMismatchError(reference, f"{name}@{annotated}", component=name, registry=where)
    problems = _structure_problems(document, reference, digest, checked)
    if problems:
        raise NotAComponentError(
            reference,
            f"a build whose component manifest this stackyard cannot read "
            f"({problems[0].summary}: {problems[0].detail})",
            component=name,
            registry=where,
        )
    component = manifest_from_data(document)
    return PublishedBuild(name, component.version, digest, manifest, document, component, layer)


def _structure_problems(
    document: dict[str, Any], reference: str, digest: str, checked: CheckedBuilds | None
) -> list[Diagnostic]:
    """The schema errors of a build's component manifest; none, without checking (nor
    importing jsonschema), when ``checked`` saw this manifest digest pass this schema."""
    if checked is not None:
        schema = _schema_digest()
        if checked.passed("structure", schema, digest):
            return []
    from stackyard.model.component_schema import check_structure

    problems = [
        d for d in check_structure(document, file=reference) if d.severity is Severity.ERROR
    ]
    if checked is not None and not problems:
        checked.record("structure", schema, digest)
    return problems


@functools.cache
def _schema_digest() -> str:
    """The digest of the component manifest schema (read as bytes, not compiled)."""
    data = resources.files("stackyard.model").joinpath("schemas", "component-v1.json")
    return "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()


def config(
    registry: Registry, name: str, version: str, *, checked: CheckedBuilds | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(manifest digest, OCI manifest, component manifest document)`` of ``name@version``,
    checked by ``read_build`` (``checked``: see there)."""
    found = read_build(registry, name, version, checked=checked)
    return found.digest, found.manifest, found.config


def usable(
    registry: Registry, name: str, *, warn: Warn, candidates: list[str] | None = None
) -> Iterator[PublishedBuild]:
    """Our builds of ``name``, newest first, read lazily; a tag that is not ours or that
    names another version is skipped with a warning (``candidates``: the versions to try,
    default every version tag)."""
    for version in reversed(candidates if candidates is not None else versions(registry, name)):
        try:
            yield read_build(registry, name, version)
        except (NotAComponentError, TagMismatchError) as exc:
            warn(f"skipped {exc.message}")


def entries(registry: Registry, *, warn: Warn | None = None) -> list[Entry]:
    """Every published component at its latest build; foreign tags are skipped (``warn``)."""
    say = warn or (lambda _m: None)
    out: list[Entry] = []
    for name in sorted(registry.names()):
        latest = next(usable(registry, name, warn=say), None)
        if latest is None:
            continue
        c = latest.component
        out.append(
            Entry(
                name=name,
                latest=latest.version,
                owner=c.owner,
                lifecycle=c.lifecycle,
                provides=c.provides,
                sla=dict(c.sla),
            )
        )
    return out


#: Statements of envelopes this process checked, by the same facts as the checked-builds
#: cache (the build, the envelope's digest, the trusted keys): a deploy verifies each build
#: at resolution and again for the policies' facts, and parses its statement once.
_REVERIFIED: dict[tuple[str, ...], attest.Statement] = {}
_REVERIFIED_MAX = 512


def verify(
    registry: Registry,
    ring: Keyring,
    name: str,
    version: str,
    *,
    digest: str | None = None,
    fresh: bool = False,
) -> attest.Statement:
    """Verify ``name@version``'s attestation; raises an ``AttestationError`` when it fails.

    The build is read first (``NotAComponentError`` for what is not ours), unless its
    ``digest`` is given by a caller that has read it already.

    A verification that passed is remembered in the home's checked-builds cache, keyed by the
    build digest, name and version, the attestation's manifest digest and bytes, and the
    trusted key files: the signature of the same envelope is not checked again while the
    trusted keys are unchanged (adding, removing or changing one misses). Everything else is.
    ``fresh`` (``stackyard component verify``) checks the signature whatever the cache says.
    """
    checked = CheckedBuilds(ring.dir.parent)
    if digest is None:
        digest = read_build(registry, name, version, checked=checked).digest
    found = registry.referrers(name, digest, attest.ARTIFACT_TYPE)
    keys = trust_fingerprint(ring.trusted_dir)
    trusted: list[attest.PublicKey] | None = None  # parsed only when a signature is checked
    last: attest.AttestationError | None = None
    for descriptor in found:
        payload = _payload(registry, name, descriptor)
        if payload is None:
            continue  # a referrer that is not an attestation after all: not ours to read
        envelope = "sha256:" + hashlib.sha256(payload).hexdigest()
        facts = ("attested", digest, name, version, str(descriptor["digest"]), envelope, keys)
        expect = {"expect_digest": digest, "expect_name": name, "expect_version": version}
        try:
            if not fresh:
                known = _REVERIFIED.get(facts)
                if known is not None:  # this process read this very envelope before
                    return known
            if not fresh and checked.passed(*facts):
                statement = attest.reverify(payload, **expect)
                if len(_REVERIFIED) >= _REVERIFIED_MAX:
                    _REVERIFIED.clear()
                _REVERIFIED[facts] = statement
                return statement
            if trusted is None:
                trusted = [key for _, key in ring.trusted()]
            statement = attest.verify(payload, trusted, **expect)
        except attest.AttestationError as exc:
            last = exc
            continue
        if trust_fingerprint(ring.trusted_dir) == keys:  # not changed while verifying
            checked.record(*facts)
        return statement
    raise last or attest.MissingAttestationError(f"{name}@{version}", digest=digest)


def require_attestation(fetch: Fetch, *, registry: Registry, keyring: Keyring) -> Fetch:
    """``fetch`` that also refuses (``AttestationError``) a build no trusted key attested:
    what resolution uses for an environment type whose ``attestation`` is ``required``."""
    verified: dict[str, attest.Statement] = {}

    def fetched(name: str, version: str) -> tuple[ComponentManifest, str]:
        manifest, digest = fetch(name, version)
        if digest not in verified:
            verified[digest] = verify(registry, keyring, name, version, digest=digest)
        return manifest, digest

    return fetched


def skipped_detail(chosen: str, why: StackyardError) -> str:
    """Why resolution passed over a newer build in range than ``chosen`` (a warning)."""
    return f"Resolved {chosen}, passing over a newer build in range: {_reason(why)}"


def none_usable_detail(
    component: str, rng: str, env_type: str, skipped: list[StackyardError]
) -> str:
    """Why no build in ``component@rng`` can be used, and what to do (an error)."""
    reasons = "; ".join(_reason(e) for e in skipped)
    detail = f"No build of {component}@{rng} can be used: {reasons}."
    if any(isinstance(e, attest.AttestationError) for e in skipped):
        detail += (
            f" Environment type '{env_type}' resolves only builds attested by a trusted key. "
            f"Publish {component} with 'stackyard component publish' (it attests every build "
            "that passes the pipeline), trust its publisher's key with 'stackyard keys import "
            f"FILE', or let '{env_type}' use unattested builds with 'attestation: optional' "
            "in its spec."
        )
    return detail


def _reason(exc: StackyardError) -> str:
    if isinstance(exc, attest.AttestationError):
        return f"{exc.component or 'a build'} is not attested by a trusted key ({exc.message})"
    return exc.message


def details(
    registry: Registry,
    ring: Keyring,
    name: str,
    version: str | None,
    *,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """Everything ``component show`` prints; foreign tags are left out of ``versions``."""
    say = warn or (lambda _m: None)
    chosen = read_build(registry, name, version) if version else None
    skipped: list[str] = []

    def note(message: str) -> None:
        skipped.append(message)
        say(message)

    builds = list(usable(registry, name, warn=note))
    if chosen is None:
        if not builds:
            if skipped:  # every tag is foreign: say what the newest one is
                read_build(registry, name, versions(registry, name)[-1])
            raise NotFoundError(
                f"No published component '{name}' in {registry.location}",
                component=name,
                registry=registry.location,
            )
        chosen = builds[0]
    c = chosen.component
    archive = registry.blob(name, chosen.layer["digest"])
    files = read_archive(archive)  # bounded: a bomb is refused, not inflated
    try:
        verify(registry, ring, name, chosen.version, digest=chosen.digest)
        status = "verified"
    except attest.AttestationError as exc:
        status = f"not verified: {exc.message}"
    outputs = c.raw.get("spec", {}).get("outputs", {})
    return {
        "name": name,
        "version": chosen.version,
        "digest": chosen.digest,
        "archive_digest": chosen.layer["digest"],
        "description": c.description,
        "owner": c.owner,
        "lifecycle": c.lifecycle,
        "provides": c.provides,
        "sla": dict(c.sla),
        "versions": sorted((b.version for b in builds), key=Version.parse),
        "inputs": sorted(c.inputs.get("properties") or {}),
        "outputs": sorted(outputs),
        "secret_outputs": sorted(
            k for k, v in outputs.items() if isinstance(v, dict) and v.get("secret")
        ),
        "cost": c.raw.get("spec", {}).get("cost"),
        "attestation": status,
        "deprecated": deprecation(registry, name, chosen.version, digest=chosen.digest),
        "readme": files.get("README.md", b"")[: 1024 * 1024].decode("utf-8", "replace"),
    }


def pull(registry: Registry, name: str, version: str, dest: Path) -> tuple[str, list[str]]:
    """Download ``name@version`` (ours, its tag agreeing, digests verified) and unpack it
    safely into ``dest``."""
    check_destination(dest)
    found = read_build(registry, name, version)
    archive = registry.blob(name, found.layer["digest"])
    return found.digest, unpack(archive, dest)


def _payload(registry: Registry, name: str, descriptor: dict[str, Any]) -> bytes | None:
    """The one layer of a referrer (an attestation or a notice), or None when the referrer
    is not shaped like one of ours."""
    ref = descriptor.get("digest")
    if not isinstance(ref, str) or not ref.startswith("sha256:"):
        return None
    _, art = registry.manifest(name, ref)
    layers = art.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        return None
    digest = layers[0].get("digest")
    return registry.blob(name, digest) if isinstance(digest, str) else None


DEPRECATION_TYPE = "application/vnd.stackyard.deprecation.v1"
DEPRECATION_MEDIA_TYPE = "application/vnd.stackyard.deprecation.v1+json"


def deprecate(registry: Registry, name: str, version: str, *, reason: str, actor: str) -> str:
    """Mark ``name@version`` deprecated. Published builds are immutable, so the notice is a
    referrer attached to the build; returns its digest."""
    found = read_build(registry, name, version)
    digest, manifest = found.digest, found.manifest
    from datetime import UTC, datetime

    notice = canonical_bytes(
        {
            "component": name,
            "version": version,
            "reason": reason,
            "by": actor,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    size = len(canonical_bytes(manifest))  # the bytes it was pushed as (oci.encode)
    return registry.push_referrer(
        name=name,
        subject_digest=digest,
        subject_size=size,
        artifact_type=DEPRECATION_TYPE,
        payload=notice,
        payload_media_type=DEPRECATION_MEDIA_TYPE,
        annotations={},
    )


def deprecation(
    registry: Registry, name: str, version: str, *, digest: str | None = None
) -> dict[str, Any] | None:
    """The deprecation notice of ``name@version``, if any (the newest one); a notice that
    cannot be read is ignored."""
    digest = digest or registry.resolve(name, version)
    notices = []
    for descriptor in registry.referrers(name, digest, DEPRECATION_TYPE):
        payload = _payload(registry, name, descriptor)
        try:
            notice = json.loads(payload) if payload is not None else None
        except (ValueError, RecursionError):
            notice = None
        if isinstance(notice, dict):
            notices.append(notice)
    return max(notices, key=lambda n: str(n.get("at", "")), default=None)
